"""Tests of the model zoo (jaxgan_lth.models): registry, shapes, AdvAug hooks, pruning naming
contract, spectral norm, initialisation and parameter counts.

Tiny channel counts everywhere except where the real architecture is needed (parameter counts and
the naming contract use ``jax.eval_shape``, which builds no arrays).
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxgan_lth.models import (
    PRUNABLE_KERNEL_REGEX,
    available_models,
    get_model,
    register_model,
)
from jaxgan_lth.models.layers import ConvTranspose4s2

# XLA:CPU compile time dominates this file: "rbg" keys compile faster than threefry ones, test
# inputs come from numpy, and only the models whose initial values are checked run a real `init`.
KEY = jax.random.key(0, impl="rbg")
RNG = np.random.default_rng(0)
B = 2

# Tiny variants: (name, kwargs). biggan widths: G 4*8 = 32, D 2*8 = 16 (attention needs /8).
TINY = {
    "dcgan28": ("dcgan", dict(resolution=28, channels=1, latent_dim=8, g_channels=4, d_channels=4)),
    "dcgan32c": (
        "dcgan",
        dict(resolution=32, channels=3, num_classes=5, conditional=True, latent_dim=8,
             g_channels=4, d_channels=4),
    ),
    "sngan": ("sngan", dict(resolution=32, channels=3, latent_dim=8, g_channels=32, d_channels=8)),
    "biggan": (
        "biggan",
        dict(resolution=32, channels=3, num_classes=5, conditional=True, latent_dim=8,
             g_channels=8, d_channels=8, shared_dim=8),
    ),
}

# Real (reference-size) configurations, used only through jax.eval_shape.
REAL = {
    "dcgan": dict(resolution=28, channels=1, num_classes=10, latent_dim=64, g_channels=64,
                  d_channels=64, conditional=False),
    "sngan": dict(resolution=32, channels=3, latent_dim=128, g_channels=256, d_channels=128,
                  conditional=False),
    "biggan": dict(resolution=32, channels=3, num_classes=10, latent_dim=80, g_channels=96,
                   d_channels=96, conditional=True),
}


def _flat(tree):
    return traverse_util.flatten_dict(tree, sep="/")


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _normal(*shape, scale=1.0):
    return jnp.asarray(scale * RNG.standard_normal(shape), jnp.float32)


def _inputs(G, res, ch):
    z = _normal(B, G.latent_dim)
    x = jnp.asarray(RNG.uniform(-1.0, 1.0, (B, res, res, ch)), jnp.float32)
    y = jnp.asarray(RNG.integers(0, G.num_classes, B), jnp.int32) if G.num_classes else None
    return z, x, y


def _numpy_init(module, *args):
    """Variables with the structure of ``module.init(*args)`` filled from numpy (no compile).

    Kernels / embeddings ~ N(0, 1/fan_in), biases and running means 0, BN scales / variances and SN
    sigmas 1, SN ``u`` ~ N(0, 1), attention gamma 0.5 (so the attention branch is active).
    """
    shapes = jax.eval_shape(lambda: module.init(KEY, *args))

    def fill(path, s):
        name = str(path[-1].key)
        if name.endswith("/sigma") or name in ("scale", "var"):
            return jnp.ones(s.shape, s.dtype)
        if name in ("bias", "mean"):
            return jnp.zeros(s.shape, s.dtype)
        if name == "gamma":
            return jnp.full(s.shape, 0.5, s.dtype)
        fan_in = int(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 1
        return _normal(*s.shape, scale=1.0 / math.sqrt(fan_in))

    return jax.tree_util.tree_map_with_path(fill, shapes)


# Models whose initial values are tested (init statistics) or cheap to init run the real `init`.
REAL_INIT = {"dcgan28": (True, True), "sngan": (True, False), "biggan": (True, False)}


@pytest.fixture(scope="module")
def tiny():
    """name -> (G, D, g_vars, d_vars, z, x, y, kwargs) for each tiny model."""
    out = {}
    for tag, (name, kw) in TINY.items():
        G, D = get_model(name, **kw)
        z, x, y = _inputs(G, kw["resolution"], kw["channels"])
        real_g, real_d = REAL_INIT.get(tag, (False, False))
        g_vars = jax.jit(G.init)(KEY, z, y) if real_g else _numpy_init(G, z, y)
        d_vars = jax.jit(D.init)(KEY, x, y) if real_d else _numpy_init(D, x, y)
        out[tag] = (G, D, g_vars, d_vars, z, x, y, kw)
    return out


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------


def test_available_models():
    assert available_models() == ["biggan", "dcgan", "sngan", "stylegan2"]


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("stylegan9", dict(resolution=32, channels=3), r"stylegan9.*biggan.*dcgan.*sngan"),
        ("sngan", dict(resolution=64, channels=3), r"resolution.*\[32\].*64"),
        ("sngan", dict(resolution=32, channels=3, conditional=True), r"unconditional"),
        ("sngan", dict(resolution=32, channels=3, depth=4), r"depth.*accepted.*g_channels"),
        ("sngan", dict(resolution=32, channels=3, g_channels=0), r"g_channels.*positive"),
        ("dcgan", dict(resolution=64, channels=1), r"resolution.*\[28, 32\].*64"),
        ("dcgan", dict(resolution=28, channels=2), r"channels.*\[1, 3\].*2"),
        ("dcgan", dict(resolution=28, channels=1, conditional=True), r"num_classes >= 1"),
        ("dcgan", dict(resolution=28, channels=1, conditional="yes"),
         r"conditional must be a bool"),
        ("biggan", dict(resolution=32, channels=3, num_classes=0, conditional=True),
         r"num_classes >= 1"),
        ("biggan", dict(resolution=32, channels=3, num_classes=10, conditional=False),
         r"class-conditional.*True"),
        ("biggan", dict(resolution=32, channels=3, num_classes=10, conditional=True,
                        latent_dim=81), r"divisible by 4.*81"),
        ("biggan", dict(resolution=32, channels=3, num_classes=10, conditional=True,
                        g_channels=3), r"divisible by 8"),
    ],
)
def test_registry_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_model(name, **kwargs)


def test_register_duplicate_name_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("sngan")(lambda **kw: None)


def test_config_kwargs_accepted_by_every_builder():
    for name, kw in REAL.items():
        G, D = get_model(name, **kw)
        assert G.latent_dim == kw["latent_dim"]
        assert G.num_classes == (kw["num_classes"] if kw["conditional"] else 0)
        assert D.num_classes == G.num_classes


# ------------------------------------------------------------------------------------------------
# Shapes, ranges, labels
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["dcgan28", "sngan", "biggan"])  # dcgan32c: label test below
def test_shapes_and_ranges(tiny, tag):
    G, D, g_vars, d_vars, z, x, y, kw = tiny[tag]
    res, ch = kw["resolution"], kw["channels"]
    assert set(g_vars) == {"params", "batch_stats"}
    assert set(d_vars) == {"params", "batch_stats"}
    for train in (True, False):
        img, upd = G.apply(g_vars, z, y, train=train, mutable=["batch_stats"])
        assert img.shape == (B, res, res, ch) and img.dtype == jnp.float32
        assert bool(jnp.all(jnp.abs(img) <= 1.0)) and bool(jnp.all(jnp.isfinite(img)))
        logits, _ = D.apply(d_vars, img, y, train=train, mutable=["batch_stats"])
        assert logits.shape == (B,) and logits.dtype == jnp.float32
    h = D.apply(d_vars, x, y, train=False, method="features")
    assert h.shape == (B, D.feature_dim)
    assert bool(jnp.all(h >= 0))  # global sum pooling of ReLUs


def test_generator_batchnorm_train_vs_eval(tiny):
    G, _, g_vars, _, z, _, y, _ = tiny["sngan"]
    _, upd = G.apply(g_vars, z, y, train=True, mutable=["batch_stats"])
    before, after = _flat(g_vars["batch_stats"]), _flat(upd["batch_stats"])
    assert not np.allclose(before["bn_out/mean"], after["bn_out/mean"])
    # Eval mode needs no mutable collections and is deterministic.
    a = G.apply(g_vars, z, y, train=False)
    b = G.apply(g_vars, z, y, train=False)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("tag", ["biggan", "dcgan32c"])
def test_conditional_models_depend_on_labels(tiny, tag):
    G, D, g_vars, d_vars, z, x, y, _ = tiny[tag]
    y0 = jnp.zeros((B,), jnp.int32)
    y1 = jnp.ones((B,), jnp.int32)
    img0 = G.apply(g_vars, z, y0, train=False)
    img1 = G.apply(g_vars, z, y1, train=False)
    res, ch = TINY[tag][1]["resolution"], TINY[tag][1]["channels"]
    assert img0.shape == (B, res, res, ch) and bool(jnp.all(jnp.abs(img0) <= 1.0))
    if tag == "dcgan32c":  # cBN tables start at zero (= plain BN): perturb them to see y.
        params = jax.tree_util.tree_map(lambda p: p + _normal(*p.shape, scale=0.1),
                                        g_vars["params"])
        v = {"params": params, "batch_stats": g_vars["batch_stats"]}
        img0, img1 = G.apply(v, z, y0, train=False), G.apply(v, z, y1, train=False)
    assert float(jnp.max(jnp.abs(img0 - img1))) > 1e-4
    l0 = D.apply(d_vars, x, y0, train=False)
    l1 = D.apply(d_vars, x, y1, train=False)
    assert float(jnp.max(jnp.abs(l0 - l1))) > 1e-6
    with pytest.raises(ValueError, match="class-conditional"):
        G.apply(g_vars, z, None, train=False)
    with pytest.raises(ValueError, match="class-conditional"):
        D.apply(d_vars, x, None, train=False)


# ------------------------------------------------------------------------------------------------
# AdvAug hooks: perturb('g_first') / perturb('d_features'), head(features(.))
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["dcgan28", "biggan"])
def test_discriminator_call_is_head_of_features_and_perturbation(tiny, tag):
    _, D, _, d_vars, _, x, y, _ = tiny[tag]
    h, upd = D.apply(d_vars, x, y, train=True, method="features", mutable=["batch_stats"])
    # In train mode `features` advances the SN state (incl. the head's), which `head` then reads.
    expected = D.apply({**d_vars, **upd}, h, y, method="head")
    logits, _ = D.apply(d_vars, x, y, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)

    zero = {**d_vars, "perturbations": {"d_features": jnp.zeros_like(h)}}
    np.testing.assert_allclose(D.apply(zero, x, y, train=False), D.apply(d_vars, x, y, train=False),
                               rtol=1e-6, atol=1e-6)
    delta = _normal(*h.shape, scale=0.5)
    pert = {**d_vars, "perturbations": {"d_features": delta}}
    h_eval = D.apply(d_vars, x, y, train=False, method="features")
    out = D.apply(pert, x, y, train=False)
    np.testing.assert_allclose(out, D.apply(d_vars, h_eval + delta, y, method="head"),
                               rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(out - D.apply(d_vars, x, y, train=False)))) > 1e-4

    # Gradient w.r.t. the perturbation is the head's input gradient (for the unconditional
    # linear head: the normalised weight, the same for every sample).
    def loss(d):
        return jnp.mean(D.apply({**d_vars, "perturbations": {"d_features": d}}, x, y, train=False))

    g = jax.grad(loss)(jnp.zeros_like(h))
    assert g.shape == h.shape and float(jnp.max(jnp.abs(g))) > 0
    if tag == "dcgan28":
        np.testing.assert_allclose(g[0], g[1], rtol=1e-6)


def test_generator_first_layer_perturbation_equals_bias_shift(tiny):
    """Adding delta at 'g_first' (same for every sample) == adding it to linear_in's bias."""
    G, _, g_vars, _, z, _, y, _ = tiny["sngan"]
    base = G.apply(g_vars, z, y, train=False)
    shape = (B, 4, 4, G.channels)
    zero = {**g_vars, "perturbations": {"g_first": jnp.zeros(shape)}}
    np.testing.assert_allclose(G.apply(zero, z, y, train=False), base, rtol=1e-6, atol=1e-6)

    delta1 = _normal(*shape[1:], scale=0.3)
    pert = {**g_vars, "perturbations": {"g_first": jnp.broadcast_to(delta1, shape)}}
    out = G.apply(pert, z, y, train=False)
    assert float(jnp.max(jnp.abs(out - base))) > 1e-4
    params = _flat(g_vars["params"])
    params["linear_in/bias"] = params["linear_in/bias"] + delta1.reshape(-1)
    shifted = {"params": traverse_util.unflatten_dict(params, sep="/"),
               "batch_stats": g_vars["batch_stats"]}
    np.testing.assert_allclose(out, G.apply(shifted, z, y, train=False), rtol=1e-5, atol=1e-5)

    def loss(d):
        return jnp.sum(G.apply({**g_vars, "perturbations": {"g_first": d}}, z, y, train=False))

    assert float(jnp.max(jnp.abs(jax.grad(loss)(jnp.zeros(shape))))) > 0


def test_biggan_generator_perturbation(tiny):
    G, _, g_vars, _, z, _, y, _ = tiny["biggan"]
    shape = (B, 4, 4, 4 * G.conv_dim)
    base = G.apply(g_vars, z, y, train=False)
    zero = {**g_vars, "perturbations": {"g_first": jnp.zeros(shape)}}
    np.testing.assert_allclose(G.apply(zero, z, y, train=False), base, rtol=1e-6, atol=1e-6)
    one = {**g_vars, "perturbations": {"g_first": jnp.ones(shape)}}
    assert float(jnp.max(jnp.abs(G.apply(one, z, y, train=False) - base))) > 1e-4


# ------------------------------------------------------------------------------------------------
# Pruning naming contract and parameter counts (real sizes, eval_shape only)
# ------------------------------------------------------------------------------------------------


def _real_shapes(name):
    kw = REAL[name]
    G, D = get_model(name, **kw)
    res, ch = kw["resolution"], kw["channels"]
    z = jnp.zeros((B, G.latent_dim))
    y = jnp.zeros((B,), jnp.int32) if G.num_classes else None
    x = jnp.zeros((B, res, res, ch))
    g = jax.eval_shape(lambda: G.init(KEY, z, y))
    d = jax.eval_shape(lambda: D.init(KEY, x, y))
    return g, d


# number of conv kernels (G, D) in each real model
N_CONVS = {"dcgan": (2, 2), "sngan": (10, 10), "biggan": (14, 14)}


@pytest.mark.parametrize("name", list(REAL))
def test_prunable_regex_selects_exactly_conv_kernels(name):
    regex = re.compile(PRUNABLE_KERNEL_REGEX)
    for variables, n_convs in zip(_real_shapes(name), N_CONVS[name]):
        params = _flat(variables["params"])
        selected = {p for p in params if regex.fullmatch(p)}
        four_d = {p for p, v in params.items() if len(v.shape) == 4}
        assert selected == four_d
        assert len(selected) == n_convs
        # Naming contract: only conv modules contain "conv"; dense -> linear*, embed -> embed*.
        for path in params:
            for part in path.split("/")[:-1]:
                if "conv" in part:
                    assert part.startswith("conv")
            if path.endswith("/kernel") and path not in selected:
                assert re.search(r"(^|/)linear[^/]*/(layer_instance/)?kernel$", path), path
            if path.endswith("/embedding"):
                assert re.search(r"(^|/)embed[^/]*/(layer_instance/)?embedding$", path), path
            if path.endswith(("/scale", "/mean")):
                assert "/bn" in "/" + path, path


def test_sngan_parameter_counts():
    g, d = _real_shapes("sngan")
    # Generator: gf=256, latent 128, bottom 4.
    lin = 128 * 4 * 4 * 256 + 4 * 4 * 256                       # linear_in  528,384
    conv3 = 3 * 3 * 256 * 256 + 256                              # 590,080
    conv_sc = 256 * 256 + 256                                    # 65,792
    bn = 2 * 256                                                 # scale + bias
    block = 2 * bn + 2 * conv3 + conv_sc                         # 1,246,976
    c5 = 3 * 3 * 256 * 3 + 3                                     # 6,915
    g_total = lin + 3 * block + bn + c5
    assert g_total == 4_276_739
    assert _count(g["params"]) == g_total
    # Discriminator: df=128, SN convs with bias, l5 without bias.
    b1 = (3 * 3 * 3 * 128 + 128) + (3 * 3 * 128 * 128 + 128) + (3 * 128 + 128)   # 151,680
    conv3d = 3 * 3 * 128 * 128 + 128                             # 147,584
    b2 = 2 * conv3d + (128 * 128 + 128)                          # 311,680
    b34 = 2 * (2 * conv3d)                                       # 590,336
    d_total = b1 + b2 + b34 + 128
    assert d_total == 1_053_824
    assert _count(d["params"]) == d_total
    # SN state: one (u, sigma) per conv / linear of D; none in G's params.
    assert len(_flat(d["batch_stats"])) == 2 * (10 + 1)


def test_biggan_and_dcgan_parameter_counts():
    g, d = _real_shapes("biggan")
    c, zc, cond = 384, 20, 20 + 128
    block = 2 * (2 * cond * c) + 2 * (9 * c * c + c) + (c * c + c)   # 2 cBN + 2 conv3 + sc
    attn_g = 2 * c * (c // 8) + 2 * c * (c // 2) + 1
    g_total = 10 * 128 + (zc * 16 * c + 16 * c) + 3 * block + attn_g + 2 * c + (9 * c * 3 + 3)
    assert _count(g["params"]) == g_total == 9_416_196
    c = 192
    conv3 = 9 * c * c + c
    attn_d = 2 * c * (c // 8) + 2 * c * (c // 2) + 1
    d_total = ((9 * 3 * c + c) + conv3 + (3 * c + c)) + attn_d + (2 * conv3 + c * c + c) \
        + 4 * conv3 + (c + 1) + 10 * c
    assert _count(d["params"]) == d_total == 2_415_170
    g, d = _real_shapes("dcgan")
    # linear_in and conv1 have no bias (each feeds a batch norm)
    g_total = (64 * 7 * 7 * 128) + 2 * 128 + (16 * 128 * 64) + 2 * 64 + (16 * 64 * 1 + 1)
    d_total = (16 * 1 * 64 + 64) + (16 * 64 * 128 + 128) + (128 + 1)
    assert _count(g["params"]) == g_total == 533_889
    assert _count(d["params"]) == d_total == 132_417


# ------------------------------------------------------------------------------------------------
# Spectral norm
# ------------------------------------------------------------------------------------------------


def _top_singular(kernel):
    k = np.asarray(kernel)
    return np.linalg.svd(k.reshape(-1, k.shape[-1]), compute_uv=False)[0]


def test_spectral_norm_sigma_converges_and_only_train_updates(tiny):
    _, D, _, d_vars, _, x, y, _ = tiny["biggan"]

    @jax.jit
    def train_call(v):
        _, upd = D.apply(v, x, y, train=True, mutable=["batch_stats"])
        return {"params": v["params"], "batch_stats": upd["batch_stats"]}

    v = d_vars
    for _ in range(60):
        v = train_call(v)
    params, stats = _flat(v["params"]), _flat(v["batch_stats"])
    for layer in ["block2/conv1", "attn/conv_o", "block1/conv_sc"]:
        sigma = float(stats[f"{layer}/layer_instance/kernel/sigma"])
        np.testing.assert_allclose(sigma, _top_singular(params[f"{layer}/layer_instance/kernel"]),
                                   rtol=2e-3)
    # The head's SN state (linear_out, embed_proj) is advanced by train-mode `features` calls.
    sigma = float(stats["embed_proj/layer_instance/embedding/sigma"])
    emb = params["embed_proj/layer_instance/embedding"]
    np.testing.assert_allclose(sigma, _top_singular(emb), rtol=2e-3)
    # head() and eval-mode calls never change the state.
    h = D.apply(v, x, y, train=False, method="features")
    _, upd = D.apply(v, h, y, method="head", mutable=["batch_stats"])
    _, upd2 = D.apply(v, x, y, train=False, mutable=["batch_stats"])
    for new in (upd, upd2):
        for k, val in _flat(new.get("batch_stats", {})).items():
            np.testing.assert_array_equal(val, stats[k])
    # Initial sigma (before any update) differs from the converged one: the state is live.
    assert float(_flat(d_vars["batch_stats"])["block2/conv1/layer_instance/kernel/sigma"]) != sigma


def test_spectrally_normalised_linear_head_output(tiny):
    """D's SN linear head output == h . w / ||w|| (sigma of a [F, 1] kernel is its norm)."""
    _, D, _, v, *_ = tiny["sngan"]
    h = _normal(B, D.feature_dim)
    w = np.asarray(_flat(v["params"])["linear_out/layer_instance/kernel"])[:, 0]
    np.testing.assert_allclose(D.apply(v, h, method="head"), np.asarray(h) @ w / np.linalg.norm(w),
                               rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Initialisation statistics
# ------------------------------------------------------------------------------------------------


def test_sngan_init_statistics(tiny):
    params = _flat(tiny["sngan"][2]["params"])              # g_channels 32, latent_dim 8
    k = np.asarray(params["block1/conv1/kernel"])          # [3, 3, 32, 32]
    bound = math.sqrt(6.0 / (9 * 32 + 9 * 32))             # Xavier-uniform, gain 1
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.99 * bound
    np.testing.assert_allclose(k.var(), bound**2 / 3, rtol=0.05)
    b = np.asarray(params["block1/conv1/bias"])             # PyTorch default bias
    assert np.abs(b).max() <= 1 / math.sqrt(9 * 32) and np.abs(b).max() > 0.5 / math.sqrt(9 * 32)
    lin = np.asarray(params["linear_in/kernel"])            # [8, 512] kaiming_uniform(a=sqrt(5))
    assert np.abs(lin).max() <= 1 / math.sqrt(8) and np.abs(lin).max() > 0.99 / math.sqrt(8)
    np.testing.assert_allclose(lin.var(), (1 / 8) / 3, rtol=0.05)
    scale = np.concatenate([np.asarray(v) for p, v in params.items() if p.endswith("/scale")])
    assert abs(scale.mean() - 1) < 0.005 and 0.015 < scale.std() < 0.025   # N(1, 0.02)
    assert np.all(np.asarray(params["block1/bn1/bias"]) == 0)


def test_biggan_orthogonal_init(tiny):
    G, _, g_vars, *_ = tiny["biggan"]                            # real init of G
    gp = _flat(g_vars["params"])
    k = np.asarray(gp["block1/conv1/layer_instance/kernel"])   # [3, 3, 32, 32] -> [288, 32]
    m = k.reshape(-1, k.shape[-1])
    np.testing.assert_allclose(m.T @ m, np.eye(m.shape[1]), atol=1e-5)
    lin = np.asarray(gp["linear0/layer_instance/kernel"])      # [2, 512]: orthonormal rows
    np.testing.assert_allclose(lin @ lin.T, np.eye(lin.shape[0]), atol=1e-5)
    emb = np.asarray(gp["embed_shared/embedding"])              # [5, 8]: orthonormal rows
    np.testing.assert_allclose(emb @ emb.T, np.eye(5), atol=1e-5)
    gain = np.asarray(gp["block2/bn1/linear_gain/layer_instance/kernel"])  # [2 + 8, 32]
    np.testing.assert_allclose(gain @ gain.T, np.eye(gain.shape[0]), atol=1e-5)
    assert np.all(np.asarray(gp["block1/conv1/layer_instance/bias"]) == 0)
    assert float(gp["attn/gamma"][0]) == 0.0   # attention starts as the identity
    # All singular values of an orthogonal kernel are 1, so the SN estimate is 1 after one step.
    stats = _flat(g_vars["batch_stats"])
    np.testing.assert_allclose(stats["linear0/layer_instance/kernel/sigma"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(stats["block3/conv2/layer_instance/kernel/sigma"], 1.0, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Transposed convolution used by dcgan
# ------------------------------------------------------------------------------------------------


def test_conv_transpose_4s2_matches_definition():
    """out[2i + k - 1, 2j + l - 1] += x[i, j] @ w[k, l] (torch ConvTranspose2d k=4, s=2, p=1)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
    layer = ConvTranspose4s2(3)
    shapes = jax.eval_shape(lambda: layer.init(KEY, x))["params"]
    assert shapes["kernel"].shape == (4, 4, 2, 3) and shapes["bias"].shape == (3,)
    w = rng.normal(size=(4, 4, 2, 3)).astype(np.float32)
    bias = rng.normal(size=(3,)).astype(np.float32)
    v = {"params": {"kernel": w, "bias": bias}}
    out = np.asarray(layer.apply(v, x))
    ref = np.zeros((2, 6, 8, 3), np.float32)
    for i in range(3):
        for j in range(4):
            for k in range(4):
                for m in range(4):
                    oi, oj = 2 * i + k - 1, 2 * j + m - 1
                    if 0 <= oi < 6 and 0 <= oj < 8:
                        ref[:, oi, oj] += x[:, i, j] @ w[k, m]
    np.testing.assert_allclose(out, ref + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,stride,padding", [
    (1, 1, "VALID"), (3, 1, "SAME"), (4, 2, ((1, 1), (1, 1))), (2, 1, ((1, 0), (0, 1))),
    (3, 2, "VALID")])
@pytest.mark.parametrize("min_rows", [1, 10**9])  # the CPU matmul kernel gradient / XLA's
def test_conv2d_equals_lax_conv_with_first_and_second_order_gradients(
        k, stride, padding, min_rows, monkeypatch):
    from jaxgan_lth.models import conv_ops

    monkeypatch.setattr(conv_ops, "MATMUL_GRAD_MIN_ROWS", min_rows)
    rng = np.random.default_rng(k * 10 + stride)
    x = jnp.asarray(rng.normal(size=(3, 9, 8, 5)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, 5, 4)), jnp.float32)

    def ref(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def ours(x, w):
        return conv_ops.conv2d(x, w, (stride, stride), padding)

    y = jax.jit(ours)(x, w)
    np.testing.assert_allclose(y, ref(x, w), rtol=1e-5, atol=1e-5)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)

    def loss(f):  # a scalar whose gradient uses both cotangent paths
        return lambda x, w: jnp.sum(f(x, w) * g) + 0.1 * jnp.sum(jnp.tanh(f(x, w)))

    for a, b in zip(jax.jit(jax.grad(loss(ours), (0, 1)))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)

    def r1(f):  # reverse over reverse, as R1 and path-length regularisation differentiate
        return lambda x, w: jnp.sum(jax.grad(lambda v: jnp.sum(jnp.tanh(f(v, w))))(x) ** 2)

    for a, b in zip(jax.grad(r1(ours), (0, 1))(x, w), jax.grad(r1(ref), (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_dcgan_flatten_pooling_sees_where_a_stroke_is_and_sum_pooling_does_not():
    """A blob moved by 4 px (the trunk's total stride) inside a flat background: the
    sum-pooled features are unchanged (translation equivariance, then a sum), the flattened
    map moves with it (DCGAN's head sees the layout)."""
    x = -np.ones((2, 28, 28, 1), np.float32)
    x[0, 8:12, 8:12] = 1.0
    x[1, 12:16, 8:12] = 1.0  # the same blob 4 px lower, still away from the borders
    feats = {}
    for pooling in ("sum", "flatten"):
        _, D = get_model("dcgan", resolution=28, channels=1, latent_dim=8, g_channels=4,
                         d_channels=4, d_pooling=pooling)
        v = D.init(jax.random.key(0), jnp.asarray(x))
        f, _ = D.apply(v, jnp.asarray(x), train=True, method=D.features,
                       mutable=["batch_stats"])
        assert f.shape == (2, D.feature_dim)
        feats[pooling] = np.asarray(f)
    assert feats["sum"].shape[1] == 8 and feats["flatten"].shape[1] == 7 * 7 * 8
    np.testing.assert_allclose(feats["sum"][0], feats["sum"][1], rtol=1e-5, atol=1e-5)
    assert np.abs(feats["flatten"][0] - feats["flatten"][1]).max() > 1e-2
    # the flattened head's linear layer takes the whole map
    _, D = get_model("dcgan", resolution=28, channels=1, d_channels=4, d_pooling="flatten")
    v = D.init(jax.random.key(0), jnp.asarray(x))
    assert v["params"]["linear_out"]["layer_instance"]["kernel"].shape == (7 * 7 * 8, 1)
    with pytest.raises(ValueError, match=r"d_pooling.*\['sum', 'flatten'\].*'mean'"):
        get_model("dcgan", resolution=28, channels=1, d_pooling="mean")
