"""The Evaluator's interface (sample functions, no trainer) and evaluation-config validation.

No Inception run: a fake feature extractor stands in (the network itself is tested in
test_evaluation.py and test_inception_parity.py). Generators and discriminators are tiny Flax
modules or numpy functions, so these tests need neither ``jaxgan_lth.train`` nor a Setup.
"""

import os
import subprocess
import sys

import flax.linen as nn
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxgan_lth import evaluation
from jaxgan_lth.evaluation import evaluator as evaluator_lib
from jaxgan_lth.evaluation import metrics, reference

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENT = 6


class _TinyG(nn.Module):
    """z [B, LATENT] (+ labels) -> tanh images [B, 8, 8, 1]."""

    num_classes: int = 0

    @nn.compact
    def __call__(self, z, y=None):
        h = nn.Dense(64)(z)
        if y is not None:
            h = h + nn.Embed(self.num_classes, 64)(y)
        return jnp.tanh(h).reshape(z.shape[0], 8, 8, 1)


def _config(folder=None, **eval_overrides):
    config = default.get_config()
    if folder is not None:
        config.data.name = "folder"
        config.data.folder = str(folder)
        config.data.resolution = 8
        config.data.channels = 1
        config.eval.reference_split = "train"
    config.eval.batch_size = 4
    config.eval.num_samples = 10
    config.eval.diagnostic_samples = 8
    for key, value in eval_overrides.items():
        config.eval[key] = value
    return config


def _evaluator(config, tmp_path, num_classes=0, n=12):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (n, 8, 8, 1)).astype(np.float32)
    labels = np.arange(n) % max(num_classes, 1)
    return evaluator_lib.Evaluator(config, str(tmp_path), latent_dim=LATENT,
                                   num_classes=num_classes, train_images=images,
                                   train_labels=labels)


def _expected_latents(seed, eval_seed, num, bs, ncls):
    """The documented noise: fold_in(key(config.seed), 0xE7A1 + seed), then per block start
    (blocks of ``evaluator_lib.SAMPLE_BLOCK`` images, whatever eval.batch_size is)."""
    key = jax.random.fold_in(jax.random.key(seed), 0xE7A1 + eval_seed)
    zs, ys = [], []
    for i in range(0, num, bs):
        kz, ky = jax.random.split(jax.random.fold_in(key, i))
        zs.append(np.asarray(jax.random.normal(kz, (bs, LATENT), jnp.float32)))
        if ncls:
            ys.append(np.asarray(jax.random.randint(ky, (bs,), 0, ncls)))
    return zs, ys


@pytest.fixture
def folder(tmp_path):
    return helpers.make_image_folder(tmp_path / "imgs", n=12, size=16, channels=1)


# ---- generate ----------------------------------------------------------------------------------


def test_generate_uses_fixed_documented_latents(tmp_path):
    config = _config()
    config.seed = 3
    ev = _evaluator(config, tmp_path)
    calls = []

    def sample_fn(z, y, key):
        calls.append((np.asarray(z), y, np.asarray(jax.random.key_data(key))))
        return np.broadcast_to(np.asarray(z)[:, :1, None, None], (z.shape[0], 8, 8, 1))

    block = evaluator_lib.SAMPLE_BLOCK
    n = 2 * block + 7
    out = ev.generate(sample_fn, n)
    assert out.shape == (n, 8, 8, 1) and len(calls) == 3  # blocks of 50, not eval.batch_size 4
    zs, _ = _expected_latents(3, 0, n, block, 0)
    for (z, y, _), expected in zip(calls, zs):
        assert y is None and z.dtype == np.float32 and z.shape == (block, LATENT)
        np.testing.assert_array_equal(z, expected)
    np.testing.assert_array_equal(out[:, 0, 0, 0], np.concatenate(zs)[:n, 0])
    # G's noise key: a different key per block, the same keys at every evaluation
    keys = [c[2] for c in calls]
    assert len({k.tobytes() for k in keys}) == 3
    np.testing.assert_array_equal(ev.generate(sample_fn, n), out)  # same noise every time
    np.testing.assert_array_equal(np.stack([c[2] for c in calls[3:6]]), np.stack(keys))
    assert not np.array_equal(ev.generate(sample_fn, n, seed=1), out)
    assert not np.array_equal(calls[6][2], keys[0])
    # eval.batch_size (images per Inception call) does not change the images or the noise
    config.eval.batch_size = 7
    calls.clear()
    np.testing.assert_array_equal(_evaluator(config, tmp_path).generate(sample_fn, n), out)
    np.testing.assert_array_equal(np.stack([c[2] for c in calls]), np.stack(keys))


@pytest.mark.slow
def test_generate_gives_stylegan2_random_noise_fixed_per_evaluation(tmp_path):
    """The FID sampler draws StyleGAN2's per-pixel noise (reference metrics: noise_mode
    'random'), the same at every evaluation, and not the constant noise maps."""
    from jaxgan_lth import models as models_lib

    g, _ = models_lib.get_model("stylegan2", resolution=32, channels=1, latent_dim=LATENT,
                                g_channels=8, d_channels=8, channel_base=256, mapping_layers=1)
    variables = g.init(jax.random.key(0), jnp.zeros((1, LATENT)), train=False)
    # noise strengths start at 0 in StyleGAN2; give them a value so that noise shows
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.ones_like(v) if "noise_strength" in jax.tree_util.keystr(p) else v,
        variables["params"])
    variables = {**variables, "params": params}
    sample = jax.jit(lambda z, y, key: g.apply(variables, z, y, train=False,
                                               rngs={models_lib.G_NOISE: key}))
    const = jax.jit(lambda z, y, key: g.apply(variables, z, y, train=False))
    ev = _evaluator(_config(), tmp_path)
    a, b = ev.generate(sample, 4), ev.generate(sample, 4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - ev.generate(const, 4)).max() > 1e-3


def test_generate_with_a_flax_generator_matches_direct_apply(tmp_path):
    g = _TinyG(num_classes=3)
    variables = g.init(jax.random.key(0), jnp.zeros((1, LATENT)), jnp.zeros((1,), jnp.int32))
    sample_fn = jax.jit(lambda z, y, key: g.apply(variables, z, y))
    config = _config()
    config.model.conditional = True
    ev = _evaluator(config, tmp_path, num_classes=3)
    out = ev.generate(sample_fn, 7)
    zs, ys = _expected_latents(config.seed, 0, 7, evaluator_lib.SAMPLE_BLOCK, 3)
    assert all(y.dtype == np.int32 and 0 <= y.min() and y.max() < 3 for y in ys)
    expected = np.concatenate([np.asarray(g.apply(variables, z, y)) for z, y in zip(zs, ys)])
    np.testing.assert_allclose(out, expected[:7], rtol=0, atol=1e-6)
    # Unconditional model (model.conditional False): no labels, even with num_classes > 0.
    config.model.conditional = False
    seen = []
    _evaluator(config, tmp_path, num_classes=3).generate(
        lambda z, y, key: seen.append(y) or jnp.zeros((z.shape[0], 8, 8, 1)), 4)
    assert seen == [None]


# ---- FID / KID ---------------------------------------------------------------------------------


def test_fid_kid_and_evaluate_with_fake_extractor(folder, tmp_path):
    g = _TinyG()
    ema = g.init(jax.random.key(1), jnp.zeros((1, LATENT)))
    raw = g.init(jax.random.key(2), jnp.zeros((1, LATENT)))
    ema_fn = jax.jit(lambda z, y, key: g.apply(ema, z, y))
    raw_fn = jax.jit(lambda z, y, key: g.apply(raw, z, y))
    config = _config(folder, cache_dir=str(tmp_path / "cache"))
    ev = _evaluator(config, tmp_path)
    ev._extractor = helpers.FakeExtractor()
    result = ev.fid_kid(ema_fn)
    assert sorted(result) == ["fid", "kid", "kid_std"]

    # The same numbers by hand: reference = the WHOLE folder (12 images, not the subset).
    ref = reference.reference_statistics(config.data, "train", str(tmp_path / "cache"),
                                         helpers.FakeExtractor())
    assert ref.num_images == 12 and ref.metadata["split"] == "train"
    assert os.path.isfile(tmp_path / "cache" / "fid_stats_imgs_train_8_c1.npz")
    feats = helpers.FakeExtractor().features(ev.generate(ema_fn, 10))
    gen = metrics.compute_statistics(feats)
    assert result["fid"] == pytest.approx(
        metrics.frechet_distance(ref.mu, ref.sigma, gen.mu, gen.sigma), rel=1e-9, abs=1e-9)
    kid, kid_std = metrics.kernel_inception_distance(ref.features, feats, num_subsets=100,
                                                     max_subset_size=1000)
    assert (result["kid"], result["kid_std"]) == (kid, kid_std)

    assert ev.evaluate(ema_fn) == result  # raw_generator off: raw_sample_fn not used
    assert ev.evaluate(ema_fn, raw_fn) == result
    config.eval.raw_generator = True
    both = ev.evaluate(ema_fn, raw_fn)
    assert {k: both[k] for k in result} == result
    assert {k[4:]: v for k, v in both.items() if k.startswith("raw_")} == ev.fid_kid(raw_fn)
    assert both["raw_fid"] != both["fid"]
    assert ev.evaluate(ema_fn) == result  # raw_generator on, no raw_sample_fn: EMA only

    # A second evaluator of the run reads the cache: the reference is not recomputed.
    again = _evaluator(config, tmp_path)
    again._extractor = helpers.FakeExtractor()
    assert again.fid_kid(ema_fn) == result and again._extractor.calls == 1


def test_folder_reference_split_refused_before_any_loading(folder, tmp_path):
    config = _config(folder, reference_split="test[:500]")
    ev = _evaluator(config, tmp_path)
    with pytest.raises(ValueError, match="--config.eval.reference_split=train"):
        ev.fid_kid(lambda z, y, key: np.zeros((z.shape[0], 8, 8, 1), np.float32))
    assert ev._extractor is None  # no Inception weights loaded


def test_constructor_checks_the_training_set(tmp_path):
    config = _config()
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        evaluator_lib.Evaluator(config, str(tmp_path), latent_dim=4, num_classes=0,
                                train_images=np.zeros((3, 8, 8)), train_labels=np.zeros(3))
    with pytest.raises(ValueError, match="one label per training image"):
        evaluator_lib.Evaluator(config, str(tmp_path), latent_dim=4, num_classes=0,
                                train_images=np.zeros((3, 8, 8, 1)), train_labels=np.zeros(2))


# ---- D-overfitting diagnostic ------------------------------------------------------------------


def _signed_images(signs):
    """Images whose mean has the given signs (a D that outputs the mean sees these signs)."""
    return np.asarray(signs, np.float32)[:, None, None, None] * np.full((1, 8, 8, 1), 0.5,
                                                                        np.float32)


def test_diagnostic_accuracies_folder_and_unconditional(folder, tmp_path):
    config = _config(folder)
    signs = np.array([1, 1, -1, 1, 1, 1, -1, 1, -1, -1, -1, -1])  # first 8: 6 positive
    ev = evaluator_lib.Evaluator(config, str(tmp_path), latent_dim=LATENT, num_classes=0,
                                 train_images=_signed_images(signs),
                                 train_labels=np.zeros(12, np.int64))
    calls = []

    def d_fn(x, y):
        calls.append((np.shape(x), y))
        return jnp.mean(jnp.asarray(x), axis=(1, 2, 3))

    def fake_fn(n, y):
        assert y is None
        return _signed_images([-1, -1, -1, 1, 1, 1, 1, 1][:n])  # 3 of 8 fakes spotted

    out = ev.diagnostic(d_fn, fake_fn)
    assert out == {"d_acc_train_real": 0.75, "d_acc_fake": 0.375}  # no held-out for folders
    assert calls == [((8, 8, 8, 1), None), ((8, 8, 8, 1), None)]


def test_diagnostic_heldout_split_and_conditional_labels(tmp_path, monkeypatch):
    import jaxgan_lth.data

    config = _config()  # fashion_mnist, heldout_split "test"
    config.model.conditional = True
    config.eval.diagnostic_samples = 7
    loads = []
    heldout = _signed_images([1, -1, -1, 1, -1, 1, -1])  # 3 of 7 positive

    def fake_load_split(data_config, split):
        loads.append(split)
        return heldout, np.arange(7, dtype=np.int64) % 3, 10

    monkeypatch.setattr(jaxgan_lth.data, "load_split", fake_load_split)
    signs = np.array([1, -1, 1, 1, 1, -1, 1, 1, 1])  # first 7: 5 positive
    labels = np.array([4, 1, 2, 3, 0, 9, 8, 7, 6])
    ev = evaluator_lib.Evaluator(config, str(tmp_path), latent_dim=LATENT, num_classes=10,
                                 train_images=_signed_images(signs), train_labels=labels)
    seen = []

    def d_fn(x, y):
        seen.append(np.asarray(y))
        return jnp.mean(jnp.asarray(x), axis=(1, 2, 3))

    def fake_fn(n, y):
        np.testing.assert_array_equal(y, labels[:7])  # fakes get the training labels
        return _signed_images([1] * n)  # D fooled by every fake

    out = ev.diagnostic(d_fn, fake_fn)
    expected_train = float(jnp.mean(jnp.asarray(signs[:7]) > 0))  # float32 fraction, as jnp
    assert out == {"d_acc_train_real": expected_train, "d_acc_fake": 0.0,
                   "d_acc_heldout_real": float(jnp.mean(jnp.asarray([1, -1, -1, 1, -1, 1, -1])
                                                        > 0))}
    assert loads == ["test[:7]"]
    assert all(y.dtype == np.int32 for y in seen)
    np.testing.assert_array_equal(seen[2], np.arange(7) % 3)
    ev.diagnostic(d_fn, fake_fn)
    assert loads == ["test[:7]"]  # the held-out reals are loaded once


def test_diagnostic_folder_rest_holds_out_the_images_the_subset_leaves(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    # 10 PNGs of constant grey v_i = 10 * i: each image is identified by its value
    from PIL import Image

    for i in range(10):
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(folder / f"{i:02d}.png")
    config = _config(folder)
    config.data.channels = 1
    config.data.allow_folder_subset = True
    config.data.subset_fraction = 0.0
    config.data.subset_count = 4
    config.data.subset_selection = "random"
    config.data.subset_seed = 3
    config.data.heldout_split = "rest"
    config.eval.diagnostic_samples = 5
    evaluation.validate_config(config)
    chosen = np.random.RandomState(3).choice(10, 4, replace=False)  # DiffAugment's draw
    expected_rest = [i for i in range(10) if i not in set(chosen.tolist())][:5]
    got = evaluator_lib._folder_rest(config.data, 5)
    values = np.round((got[:, 0, 0, 0] + 1.0) * 127.5).astype(int)  # back to 0..255
    np.testing.assert_array_equal(values, 10 * np.asarray(expected_rest))

    ev = evaluator_lib.Evaluator(config, str(tmp_path), latent_dim=LATENT, num_classes=0,
                                 train_images=np.zeros((4, 8, 8, 1), np.float32),
                                 train_labels=np.zeros(4, np.int64))
    out = ev.diagnostic(lambda x, y: jnp.mean(jnp.asarray(x), axis=(1, 2, 3)) - 0.0,
                        lambda n, y: -np.ones((n, 8, 8, 1), np.float32))
    # held-out images with grey > 127.5 have positive mean: D(x) > 0
    assert out["d_acc_heldout_real"] == pytest.approx(np.mean(10 * np.asarray(expected_rest)
                                                              > 127.5))


def test_folder_rest_needs_a_folder_and_a_subset(folder):
    config = _config(folder)
    config.data.subset_fraction = 0.0  # the whole folder trains
    config.data.heldout_split = "rest"
    with pytest.raises(ValueError, match="needs a training subset"):
        evaluation.validate_config(config)
    config = _config()
    config.data.heldout_split = "rest"
    with pytest.raises(ValueError, match="is not a folder"):
        evaluation.validate_config(config)
    config = _config(folder)
    config.data.allow_folder_subset = True
    config.data.subset_fraction = 1.0
    config.data.heldout_split = "rest"
    with pytest.raises(ValueError, match="nothing is left to hold out"):
        evaluator_lib._folder_rest(config.data, 5)


# ---- no trainer imports ------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluator_imports_no_trainer_or_sparsity_module():
    code = (
        "import sys\n"
        "import jaxgan_lth.evaluation.evaluator\n"
        "from jaxgan_lth.evaluation import Evaluator, validate_config\n"
        "bad = [m for m in sys.modules if m.startswith(('jaxgan_lth.train', "
        "'jaxgan_lth.sparsity', 'jaxgan_lth.multirun', 'jaxgan_lth.models'))]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---- validate_config ---------------------------------------------------------------------------


def test_validate_config_accepts_defaults_and_paper_configs(folder):
    from configs import biggan_cifar10, sngan_cifar10

    for module in (default, sngan_cifar10, biggan_cifar10):
        evaluation.validate_config(module.get_config())
    config = _config(folder)  # folder + reference "train"; heldout_split "test" is ignored
    assert config.data.heldout_split == "test"
    evaluation.validate_config(config)
    config = default.get_config()
    for split in ("train[10%:]", "test[:500]", "train[:50%]+test"):
        config.eval.reference_split = split
        evaluation.validate_config(config)
    config.data.heldout_split = ""  # no held-out diagnostic
    evaluation.validate_config(config)


@pytest.mark.parametrize("key,value,accepted", [
    ("num_samples", 1, ">= 2"),
    ("batch_size", 0, ">= 1"),
    ("every", -1, ">= 0"),
    ("diagnostic_samples", 0, ">= 1"),
])
def test_validate_config_eval_integers(key, value, accepted):
    config = default.get_config()
    config.eval[key] = value
    with pytest.raises(ValueError) as error:
        evaluation.validate_config(config)
    message = str(error.value)
    assert f"eval.{key}={value!r}" in message and f"integer {accepted}" in message


def test_validate_config_folder_needs_train_reference(folder):
    config = _config(folder, reference_split="test[:500]")
    with pytest.raises(ValueError) as error:
        evaluation.validate_config(config)
    message = str(error.value)
    assert "eval.reference_split='test[:500]'" in message and "'train'" in message
    assert "--config.eval.reference_split=train" in message


@pytest.mark.parametrize("name,section,key,value", [
    ("fashion_mnist", "eval", "reference_split", "validation[:500]"),
    ("cifar10", "eval", "reference_split", "tset"),
    ("cifar100", "data", "heldout_split", "valid[:100]"),
    ("fashion_mnist", "data", "heldout_split", "train+val"),
])
def test_validate_config_known_tfds_splits(name, section, key, value):
    config = default.get_config()
    config.data.name = name
    config[section][key] = value
    with pytest.raises(ValueError) as error:
        evaluation.validate_config(config)
    message = str(error.value)
    assert f"{section}.{key}={value!r}" in message and "['train', 'test']" in message


def test_validate_config_unknown_tfds_name_and_disabled_eval(folder):
    config = default.get_config()
    config.data.name = "celeb_a"  # not in KNOWN_SPLITS: splits accepted as they are
    config.eval.reference_split = "validation[:100]"
    config.data.heldout_split = "test"
    evaluation.validate_config(config)
    config = _config(folder, reference_split="test[:500]", num_samples=0)
    config.eval.enabled = False  # evaluation settings unused: nothing to check
    evaluation.validate_config(config)


def test_every_lazy_export_of_the_evaluation_package_resolves():
    # the package's lazy name -> module map must follow modules that move (a stale entry
    # raised AttributeError only when a user touched that name)
    import jaxgan_lth.evaluation as ev

    for name in ev.__all__:
        obj = getattr(ev, name)
        assert getattr(obj, "__name__", name) == name, (name, obj)
