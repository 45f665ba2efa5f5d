"""Tests of the StyleGAN2 model (jaxgan_lth.models.stylegan2, sg2_ops) and its training terms.

Tiny networks (32 px, <= 8 channels, 2 mapping layers) except the parameter counts, which use
``jax.eval_shape`` (no arrays).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from flax import traverse_util

from jaxgan_lth.models import D_PERTURB, G_PERTURB, get_model
from jaxgan_lth.models import sg2_ops as ops
from jaxgan_lth.models import stylegan2 as sg2
from jaxgan_lth.models.base import G_NOISE
from tests.helpers import max_traces, use_model

RNG = np.random.default_rng(0)
TINY = dict(channels=3, latent_dim=8, g_channels=8, d_channels=8, channel_base=128,
            mapping_layers=2)


def _flat(tree):
    return traverse_util.flatten_dict(tree, sep="/")


# ------------------------------------------------------------------------------------------------
# upfirdn2d and the modulated convolution
# ------------------------------------------------------------------------------------------------


def _upfirdn_scipy(x, taps, up, down, pad):
    """Zero insertion, 2-D 'full' convolution with outer(f, f) (scipy), pad/crop, stride."""
    x0, x1, y0, y1 = pad
    f = np.asarray(taps, np.float64)
    f2 = np.outer(f, f) / np.outer(f, f).sum()
    b, h, w, c = x.shape
    k = len(f)
    out = []
    for bi in range(b):
        chans = []
        for ci in range(c):
            u = np.zeros((h * up, w * up))
            u[::up, ::up] = x[bi, :, :, ci]
            full = scipy.signal.convolve2d(u, f2, mode="full")  # index n <-> u index n - (k-1)
            # the padded image's sample j is u[j - p0]; the valid output i sums u over
            # [i - p0, i - p0 + k - 1], which is full[i - p0 + k - 1]
            big = np.pad(full, ((max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
            oy, ox = k - 1 - y0 + max(y0, 0), k - 1 - x0 + max(x0, 0)
            ny = h * up + y0 + y1 - k + 1
            nx = w * up + x0 + x1 - k + 1
            chans.append(big[oy:oy + ny, ox:ox + nx][::down, ::down])
        out.append(np.stack(chans, -1))
    return np.stack(out)


@pytest.mark.parametrize("up,down,pad", [
    (2, 1, (2, 1, 2, 1)),     # upsample2d's padding
    (1, 2, (1, 1, 1, 1)),     # downsample2d's padding
    (2, 1, (3, -1, 0, 2)),    # asymmetric, a negative pad crops
    (1, 1, (1, 2, 0, 1)),     # plain filtering
    (1, 2, (2, 2, 2, 2)),     # the 3x3 down conv's pre-filter padding, then stride
])
def test_upfirdn2d_matches_scipy(up, down, pad):
    x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)
    got = np.asarray(ops.upfirdn2d(jnp.asarray(x), ops.fir_filter(), up=up, down=down, pad=pad))
    want = _upfirdn_scipy(x, ops.FIR_TAPS, up, down, pad)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_upsample_and_downsample_keep_a_constant_image():
    x = jnp.full((1, 8, 8, 2), 3.0)
    up = ops.upsample2d(x, ops.fir_filter())
    down = ops.downsample2d(x, ops.fir_filter())
    assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
    # interior samples (away from the zero padding) keep the constant: gain up**2, sum-1 filter
    np.testing.assert_allclose(up[0, 2:-2, 2:-2], 3.0, rtol=1e-6)
    np.testing.assert_allclose(down[0, 1:-1, 1:-1], 3.0, rtol=1e-6)


@pytest.mark.parametrize("k,up,down", [(3, 2, 1), (3, 1, 2), (1, 1, 2), (3, 1, 1)])
def test_conv2d_resample_matches_scipy(k, up, down):
    # reference paddings (conv2d_resample.py, padding k // 2, 4-tap filter): FIR-upsample with
    # (k//2 + 2, k//2 + 1) then a valid conv; FIR-filter with (k//2 + 1, k//2 + 1) then a
    # stride-2 valid conv; 1x1: FIR-downsample with (1, 1) then the 1x1 conv; else "same"
    x = RNG.standard_normal((1, 6, 6, 1)).astype(np.float32)
    w = RNG.standard_normal((k, k, 1, 1)).astype(np.float32)
    p = k // 2
    if up > 1:
        t = 4 * _upfirdn_scipy(x, ops.FIR_TAPS, 2, 1, (p + 2, p + 1) * 2)[0, :, :, 0]
        want = scipy.signal.correlate2d(t, w[:, :, 0, 0], mode="valid")
    elif k == 1:
        t = _upfirdn_scipy(x, ops.FIR_TAPS, 1, 2, (1, 1, 1, 1))[0, :, :, 0]
        want = t * w[0, 0, 0, 0]
    elif down > 1:
        t = _upfirdn_scipy(x, ops.FIR_TAPS, 1, 1, (p + 1,) * 4)[0, :, :, 0]
        want = scipy.signal.correlate2d(t, w[:, :, 0, 0], mode="valid")[::2, ::2]
    else:
        want = scipy.signal.correlate2d(x[0, :, :, 0], w[:, :, 0, 0], mode="same")
    got = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), ops.fir_filter(), up=up, down=down)
    assert got.shape == (1, 6 * up // down, 6 * up // down, 1)
    np.testing.assert_allclose(np.asarray(got)[0, :, :, 0], want, rtol=1e-4, atol=1e-5)


def _explicit_modconv(x, w, s, demodulate, up):
    """Per sample: build w' = w * s (and demodulate), convolve that sample with it."""
    outs = []
    for b in range(x.shape[0]):
        wb = w * s[b][None, None, :, None]
        if demodulate:
            wb = wb / np.sqrt((wb ** 2).sum(axis=(0, 1, 2), keepdims=True) + ops.EPS)
        outs.append(ops.conv2d_resample(jnp.asarray(x[b:b + 1]), jnp.asarray(wb),
                                        ops.fir_filter(), up=up)[0])
    return np.stack(outs)


@pytest.mark.parametrize("demodulate,up,k", [(True, 1, 3), (True, 2, 3), (False, 1, 1)])
def test_modulated_conv_equals_explicit_per_sample_conv(demodulate, up, k):
    x = RNG.standard_normal((3, 6, 6, 4)).astype(np.float32)
    w = RNG.standard_normal((k, k, 4, 5)).astype(np.float32)
    s = RNG.uniform(0.2, 2.0, (3, 4)).astype(np.float32)
    got = ops.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s),
                               demodulate=demodulate, up=up)
    want = _explicit_modconv(x, w, s, demodulate, up)
    assert got.shape == (3, 6 * up, 6 * up, 5)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_demodulated_output_has_unit_variance():
    # iid unit-variance inputs; a demodulated kernel has unit L2 norm per sample and output
    # channel, so each interior output has variance exactly 1 in expectation
    x = RNG.standard_normal((8, 34, 34, 16)).astype(np.float32)
    w = RNG.standard_normal((3, 3, 16, 8)).astype(np.float32)
    s = RNG.uniform(0.1, 3.0, (8, 16)).astype(np.float32)
    y = np.asarray(ops.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s)))
    inner = y[:, 1:-1, 1:-1, :]  # 8 * 32 * 32 * 8 = 65536 values; std error of the var ~0.6%
    assert abs(inner.var() - 1.0) < 0.04
    # per sample too (each has its own styles): 8192 values each, std error ~1.6%
    np.testing.assert_allclose(inner.reshape(8, -1).var(axis=1), 1.0, atol=0.08)


def test_minibatch_std_by_hand_and_batch_rules():
    x = RNG.standard_normal((8, 2, 2, 3)).astype(np.float32)
    y = np.asarray(ops.minibatch_std(jnp.asarray(x), 4, 1, train=True))
    assert y.shape == (8, 2, 2, 4)
    np.testing.assert_array_equal(y[..., :3], x)
    for g in range(2):  # consecutive groups of 4
        grp = x[4 * g:4 * g + 4]
        want = np.sqrt(grp.var(axis=0) + ops.EPS).mean()
        np.testing.assert_allclose(y[4 * g:4 * g + 4, :, :, 3], want, rtol=1e-5)
    with pytest.raises(ValueError, match=r"D batch \(6\).*multiple of the group size 4"):
        ops.minibatch_std(jnp.asarray(x[:6]), 4, 1, train=True)
    y6 = ops.minibatch_std(jnp.asarray(x[:6]), 4, 1, train=False)  # eval: groups of 3
    np.testing.assert_allclose(y6[0, 0, 0, 3], np.sqrt(x[:3].var(axis=0) + ops.EPS).mean(),
                               rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Architecture: parameter counts, resolutions, shapes
# ------------------------------------------------------------------------------------------------


def _shapes(resolution, **kw):
    G, D = get_model("stylegan2", resolution=resolution, **kw)
    g = jax.eval_shape(lambda: G.init(jax.random.key(0), jnp.zeros((1, G.latent_dim)),
                                      train=False))
    d = jax.eval_shape(lambda: D.init(jax.random.key(0),
                                      jnp.zeros((4, resolution, resolution, kw["channels"])),
                                      train=False))
    return G, D, g, d


def _count(tree):
    return sum(math.prod(v.shape) for v in jax.tree.leaves(tree))


def test_parameter_counts_at_256_by_hand():
    G, D, g, d = _shapes(256, channels=3, latent_dim=512, g_channels=512, d_channels=512)
    w = 512
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}  # min(32768 // s, 512)

    def modconv(cin, cout, k):  # affine (w -> cin, bias) + kernel + bias + noise strength
        return (w * cin + cin) + k * k * cin * cout + cout + 1

    def torgb(cin):  # affine + 1x1 kernel + bias, no noise
        return (w * cin + cin) + cin * 3 + 3

    mapping = 8 * (512 * 512 + 512)  # 2,101,248
    synth = 4 * 4 * 512 + modconv(512, 512, 3) + torgb(512)  # b4: const, conv1, torgb
    for s in (8, 16, 32, 64, 128, 256):
        synth += modconv(ch[s // 2], ch[s], 3) + modconv(ch[s], ch[s], 3) + torgb(ch[s])
    assert _count(g["params"]) == mapping + synth == 30_034_338

    def conv(cin, cout, k, bias=True):
        return k * k * cin * cout + (cout if bias else 0)

    disc = conv(3, 128, 1)  # FromRGB at 256
    for s in (256, 128, 64, 32, 16, 8):  # conv0 (tmp), conv1 (down, out), skip (1x1, no bias)
        t, o = ch[s], ch[s // 2]
        disc += conv(t, t, 3) + conv(t, o, 3) + conv(t, o, 1, bias=False)
    disc += conv(512 + 1, 512, 3) + (512 * 16 * 512 + 512) + (512 + 1)  # conv, fc, out
    assert _count(d["params"]) == disc == 28_864_129
    # the counts of stylegan2-ada-pytorch's Generator / Discriminator built with the same
    # arguments (channel_base 32768, 8 mapping layers, resnet D; d72cc7d) are 30,034,338 and
    # 28,864,129
    assert G.num_ws == 14
    assert _flat(g["batch_stats"])["mapping_net/w_avg"].shape == (512,)


def test_paper256_channels_are_half():
    _, _, g, _ = _shapes(256, channels=3, latent_dim=512, g_channels=512, d_channels=512,
                         channel_base=16384)
    p = _flat(g["params"])
    assert p["blocks_b256/conv1/kernel"].shape == (3, 3, 64, 64)
    assert p["blocks_b64/conv1/kernel"].shape == (3, 3, 256, 256)


def test_prunable_regex_selects_exactly_the_conv_kernels():
    import re

    from jaxgan_lth.models import PRUNABLE_KERNEL_REGEX
    _, _, g, d = _shapes(32, **TINY)
    for tree in (g, d):
        params = _flat(tree["params"])
        sel = {k for k in params if re.fullmatch(PRUNABLE_KERNEL_REGEX, k)}
        assert sel == {k for k, v in params.items() if len(v.shape) == 4}
    assert "blocks_b8/conv0/kernel" in _flat(g["params"])


@pytest.mark.parametrize("res", [16, 48, 2048, 100])
def test_resolution_not_supported_names_the_value(res):
    with pytest.raises(ValueError, match=rf"resolution = {res} is not supported"):
        get_model("stylegan2", resolution=res, **TINY)


def test_bad_kwargs_are_named():
    with pytest.raises(ValueError, match="unknown keyword"):
        get_model("stylegan2", resolution=32, fmap_base=3, **TINY)
    with pytest.raises(ValueError, match="style_mixing_prob = 1.5"):
        get_model("stylegan2", resolution=32, style_mixing_prob=1.5, **TINY)
    with pytest.raises(ValueError, match="dtype"):
        get_model("stylegan2", resolution=32, dtype="float16", **TINY)


@pytest.fixture(scope="module")
def tiny32():
    G, D = get_model("stylegan2", resolution=32, **TINY)
    z = jnp.asarray(RNG.standard_normal((4, 8)), jnp.float32)
    g_vars = G.init(jax.random.key(1), z, train=False)
    x = jnp.asarray(RNG.uniform(-1, 1, (4, 32, 32, 3)), jnp.float32)
    d_vars = D.init(jax.random.key(2), x, train=False)
    return G, D, g_vars, d_vars, z, x


@pytest.mark.slow
def test_shapes_at_32_and_noise_modes(tiny32):
    G, D, g_vars, d_vars, z, x = tiny32
    img = G.apply(g_vars, z, train=False)
    assert img.shape == (4, 32, 32, 3) and img.dtype == jnp.float32
    assert np.isfinite(np.asarray(img)).all()
    # const noise (no g_noise stream) is deterministic; noise_strength starts at 0, so random
    # noise changes nothing at init: set one strength to check that the stream is used
    p = jax.tree.map(lambda a: a, g_vars["params"])
    p["blocks_b32"]["conv1"]["noise_strength"] = jnp.float32(1.0)
    v = {**g_vars, "params": p}
    a = G.apply(v, z, train=False)
    b = G.apply(v, z, train=False, rngs={G_NOISE: jax.random.key(0)})
    c = G.apply(v, z, train=False, rngs={G_NOISE: jax.random.key(1)})
    assert not np.allclose(a, b) and not np.allclose(b, c)
    np.testing.assert_array_equal(a, G.apply(v, z, train=False))
    logits = D.apply(d_vars, x, train=False)
    feats = D.apply(d_vars, x, train=False, method="features")
    assert logits.shape == (4,) and feats.shape == (4, D.feature_dim)
    np.testing.assert_allclose(logits, D.apply(d_vars, feats, method="head"), rtol=1e-6)
    delta = jnp.asarray(RNG.standard_normal(feats.shape), jnp.float32)
    pert = D.apply({**d_vars, "perturbations": {D_PERTURB: delta}}, x, train=False)
    np.testing.assert_allclose(pert, D.apply(d_vars, feats + delta, method="head"), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.slow
def test_without_noise_inputs(tiny32):
    """use_noise=False: no noise parameters or buffers, and G equals the noisy G with noise off."""
    G, _, g_vars, _, z, _ = tiny32
    G0, _ = get_model("stylegan2", resolution=32, use_noise=False, **TINY)
    v0 = G0.init(jax.random.key(1), z, train=False)
    # one noise_strength scalar per modulated 3x3 conv: 1 at 4 px, 2 at each of 8, 16, 32
    assert _count(g_vars["params"]) - _count(v0["params"]) == 1 + 2 * 3
    assert set(_flat(v0["batch_stats"])) == {"mapping_net/w_avg"}
    # the noisy G's variables less its noise entries drive the noise-free G
    p = jax.tree.map(lambda a: a, g_vars["params"])
    p["blocks_b16"]["conv0"]["noise_strength"] = jnp.float32(0.7)  # used unless noise is off
    drop = {k: v for k, v in _flat(p).items() if "noise" not in k}
    v = {"params": traverse_util.unflatten_dict(drop, sep="/"),
         "batch_stats": {"mapping_net": g_vars["batch_stats"]["mapping_net"]}}
    want = G.apply({**g_vars, "params": p}, z, method="generate", noise_mode="none")
    noisy = G.apply({**g_vars, "params": p}, z, method="generate",
                    noise_mode="random", rngs={G_NOISE: jax.random.key(0)})
    assert not np.allclose(want, noisy)
    for kw in ({}, {"rngs": {G_NOISE: jax.random.key(0)}}, {"rngs": {G_NOISE: jax.random.key(5)}}):
        np.testing.assert_array_equal(G0.apply(v, z, method="generate", **kw), want)
    with pytest.raises(ValueError, match="use_noise = 'no'"):
        get_model("stylegan2", resolution=32, use_noise="no", **TINY)


def test_shapes_at_64():
    _, _, g, d = _shapes(64, **TINY)
    G, D = get_model("stylegan2", resolution=64, **TINY)
    out = jax.eval_shape(lambda v: G.apply(v, jnp.zeros((2, 8)), train=False), g)
    assert out.shape == (2, 64, 64, 3) and G.num_ws == 10
    logits = jax.eval_shape(lambda v: D.apply(v, jnp.zeros((4, 64, 64, 3)), train=False), d)
    assert logits.shape == (4,)


@pytest.mark.slow
def test_mapping_w_avg_update_truncation_and_mixing(tiny32):
    G, _, g_vars, _, z, _ = tiny32
    ws = G.apply(g_vars, z, method="mapping")
    assert ws.shape == (4, G.num_ws, 8)
    np.testing.assert_array_equal(ws[:, 0], ws[:, -1])  # one w broadcast to every layer
    w_avg0 = g_vars["batch_stats"]["mapping_net"]["w_avg"]
    _, upd = G.apply(g_vars, z, train=True, mutable=["batch_stats"],
                     rngs={G_NOISE: jax.random.key(0)})
    want = 0.995 * w_avg0 + 0.005 * jnp.mean(ws[:, 0], axis=0)
    np.testing.assert_allclose(upd["batch_stats"]["mapping_net"]["w_avg"], want, rtol=1e-5,
                               atol=1e-7)
    # truncation: psi = 0 on the first 3 ws gives w_avg there, the rest untouched
    v = {**g_vars, "batch_stats": upd["batch_stats"]}
    t = G.apply(v, z, method="mapping", psi=0.0, cutoff=3)
    np.testing.assert_allclose(t[:, :3], np.broadcast_to(want, (4, 3, 8)), rtol=1e-5)
    np.testing.assert_array_equal(t[:, 3:], ws[:, 3:])
    np.testing.assert_allclose(sg2.truncate(ws, want, 0.5), want + 0.5 * (ws - want), rtol=1e-6)
    with pytest.raises(ValueError, match="g_noise"):
        G.apply(g_vars, z, train=True, mutable=["batch_stats"])


@pytest.mark.slow
def test_style_mixing_always_on_changes_train_images():
    G, _ = get_model("stylegan2", resolution=32, style_mixing_prob=1.0, **TINY)
    G0, _ = get_model("stylegan2", resolution=32, style_mixing_prob=0.0, **TINY)
    z = jnp.asarray(RNG.standard_normal((2, 8)), jnp.float32)
    v = G.init(jax.random.key(1), z, train=False)
    k = {G_NOISE: jax.random.key(3)}
    mixed, _ = G.apply(v, z, train=True, mutable=["batch_stats"], rngs=k)
    plain, _ = G0.apply(v, z, train=True, mutable=["batch_stats"], rngs=k)
    assert not np.allclose(mixed, plain)


@pytest.mark.slow
def test_g_first_perturbation_point_is_the_4x4_block_output(tiny32):
    G, _, g_vars, _, z, _ = tiny32
    _, upd = G.apply(g_vars, z, train=False, mutable=["perturbations"])
    delta = upd["perturbations"][G_PERTURB]
    assert delta.shape == (4, 4, 4, 8)  # [B, 4, 4, ch(4)]
    clean = G.apply(g_vars, z, train=False)
    pert = G.apply({**g_vars, "perturbations": {G_PERTURB: jnp.ones_like(delta)}}, z,
                   train=False)
    assert not np.allclose(clean, pert)


@pytest.mark.slow
def test_bfloat16_compute_runs_close_to_float32(tiny32):
    G, _, g_vars, _, z, _ = tiny32
    Gb, Db = get_model("stylegan2", resolution=32, dtype="bfloat16", **TINY)
    a = G.apply(g_vars, z, train=False)
    b = Gb.apply(g_vars, z, train=False)
    assert b.dtype == jnp.float32
    assert np.abs(np.asarray(a) - np.asarray(b)).max() < 0.1 * np.abs(np.asarray(a)).max()


# ------------------------------------------------------------------------------------------------
# Training terms: R1, path length, kimg schedules
# ------------------------------------------------------------------------------------------------


def _r1_part(gamma=10.0, interval=1, through_augment=True, lazy="separate_step",
             augment="shared"):
    from configs import default
    from jaxgan_lth import parts

    config = default.get_config()
    config.r1 = parts.R1.default_config(gamma)
    config.r1.interval = interval
    config.r1.through_augment = through_augment
    config.r1.lazy = lazy
    config.r1.augment = augment
    parts.validate_config(config)
    [part] = [p for p in parts.build(config) if p.name == "r1"]
    return part


def _tiny_d():
    w = jnp.asarray(RNG.standard_normal((2 * 3 * 3, 5)), jnp.float32)
    v = jnp.asarray(RNG.standard_normal((5,)), jnp.float32)
    return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w) @ v  # [B, 2, 3, 3] -> [B]


def test_r1_matches_finite_differences_and_interval():
    from jaxgan_lth import parts
    from jaxgan_lth.parts.r1 import r1_penalty

    d = _tiny_d()
    x = RNG.standard_normal((3, 2, 3, 3)).astype(np.float64)
    # central differences of sum_b D(x_b) w.r.t. every input element, in float64 numpy
    f = lambda a: float(np.sum(np.asarray(d(jnp.asarray(a, jnp.float32)), np.float64)))  # noqa
    grad = np.zeros_like(x)
    h = 1e-2
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        grad[idx] = (f(x + e) - f(x - e)) / (2 * h)
    want = np.mean(np.sum(grad ** 2, axis=(1, 2, 3)))
    xr = jnp.asarray(x, jnp.float32)
    ctx = parts.DContext(logits_real=d(xr), logits_fake=None, x_real=xr, d_apply=d,
                         step=jnp.int32(0), key=jax.random.key(0))
    part = _r1_part(10.0, through_augment=False)
    val, _, st = part.d_term(ctx, part.init_state(), part.hparams())
    np.testing.assert_allclose(float(st["penalty"]), want, rtol=2e-3)
    np.testing.assert_allclose(float(val), 5.0 * want, rtol=2e-3)  # gamma / 2
    assert part.lazy_phase() is None  # interval 1: in the main loss
    # lazy "loss_gain": x interval on steps divisible by it, 0 (and the last penalty kept)
    # otherwise, in the main loss
    lazy = _r1_part(10.0, interval=4, through_augment=False, lazy="loss_gain")
    assert lazy.lazy_phase() is None
    val4, _, _ = lazy.d_term(ctx, lazy.init_state(), lazy.hparams())
    np.testing.assert_allclose(float(val4), 4 * 5.0 * want, rtol=2e-3)
    ctx.step = jnp.int32(5)
    val5, _, st5 = lazy.d_term(ctx, {"penalty": jnp.float32(7.0)}, lazy.hparams())
    assert float(val5) == 0.0 and float(st5["penalty"]) == 7.0
    # lazy "separate_step" (default): nothing in the main loss; its own step's loss is x 4
    sep = _r1_part(10.0, interval=4, through_augment=False)
    assert (sep.lazy_phase(), sep.lazy_interval()) == ("d", 4)
    val, _, st = sep.d_term(ctx, {"penalty": jnp.float32(7.0)}, sep.hparams())
    assert float(val) == 0.0 and float(st["penalty"]) == 7.0
    val, _, st = sep.phase_term(ctx, sep.init_state(), sep.hparams())
    np.testing.assert_allclose(float(val), 4 * 5.0 * want, rtol=2e-3)
    np.testing.assert_allclose(float(st["penalty"]), want, rtol=2e-3)
    # through the augmentation: D(a x) has the gradient a D'(a x) w.r.t. x, so a^2 x the
    # penalty at a x. "shared" goes through the main loss's draws (augment_real: a = 3),
    # "redrawn" through a new draw of the augmentation (augment: a = 2).
    ctx = parts.DContext(logits_real=None, logits_fake=None, x_real=2 * xr, d_apply=d,
                         step=jnp.int32(0), key=jax.random.key(0), x_real_clean=xr,
                         augment=lambda k, a: 2 * a, augment_real=lambda a: 3 * a)
    pen = {}
    for name, kw in {"shared": {}, "redrawn": {"augment": "redrawn"},
                     "off": {"through_augment": False}}.items():
        p = _r1_part(10.0, **kw)
        pen[name] = float(p.d_term(ctx, p.init_state(), p.hparams())[2]["penalty"])
    at3 = float(r1_penalty(d, 3 * xr))
    np.testing.assert_allclose(pen["shared"], 9 * at3, rtol=1e-5)
    np.testing.assert_allclose(pen["redrawn"], 4 * pen["off"], rtol=1e-5)  # off: at x_real = 2x
    with pytest.raises(ValueError, match=r"r1\.augment = 'new'"):
        _r1_part(augment="new")
    with pytest.raises(ValueError, match=r"r1\.lazy = 'x'"):
        _r1_part(lazy="x")


def test_pathlen_mean_and_penalty_by_hand_on_a_linear_generator():
    from configs import default
    from jaxgan_lth import parts
    from jaxgan_lth.parts import pathlen

    b, n_ws, w_dim, hw, c = 4, 3, 2, 2, 1
    a = RNG.standard_normal((n_ws, w_dim, hw * hw * c)).astype(np.float32)

    def g_apply(*args, method=None, rngs=None):  # ws_of: z repeated; synthesis: linear in ws
        if method == "ws_of":
            return jnp.repeat(args[0][:, None, :], n_ws, axis=1)
        ws = args[0]
        return jnp.einsum("blw,lwp->bp", ws, a).reshape(ws.shape[0], hw, hw, c)

    config = default.get_config()
    config.pathlen = parts.PathLength.default_config(2.0)
    config.pathlen.lazy = "loss_gain"  # the penalty x interval in the main loss
    use_model(config, "stylegan2")  # validation: the generator has ws_of / synthesis
    config.data.resolution, config.data.channels = 32, 3
    parts.validate_config(config)
    [part] = [p for p in parts.build(config) if p.name == "pathlen"]
    z = jnp.asarray(RNG.standard_normal((2 * b, w_dim)), jnp.float32)
    ctx = parts.GContext(logits_fake=None, step=jnp.int32(8), z=z, g_apply=g_apply,
                         key=jax.random.key(5))
    state = {"pl_mean": jnp.float32(0.3), "penalty": jnp.float32(0.0)}
    val, _, new = part.g_term(ctx, state, part.hparams())
    # by hand: the noise the part draws (its helper), J^T u = a u per layer, lengths, mean
    k_u = jax.random.split(jax.random.fold_in(ctx.key, pathlen._SALT), 3)[2]
    u = np.asarray(pathlen.pl_noise(k_u, (b, hw, hw, c))).reshape(b, -1)
    g = np.einsum("lwp,bp->blw", a, u)
    lengths = np.sqrt(np.mean(np.sum(g ** 2, axis=2), axis=1))
    pl_mean = 0.3 + 0.01 * (lengths.mean() - 0.3)
    pen = np.mean((lengths - pl_mean) ** 2)
    np.testing.assert_allclose(float(new["pl_mean"]), pl_mean, rtol=1e-5)
    np.testing.assert_allclose(float(new["penalty"]), pen, rtol=1e-4)
    np.testing.assert_allclose(float(val), 4 * 2.0 * pen, rtol=1e-4)  # interval x weight
    ctx.step = jnp.int32(9)  # not a regularisation step: nothing added, state kept
    val9, _, new9 = part.g_term(ctx, state, part.hparams())
    assert float(val9) == 0.0 and float(new9["pl_mean"]) == pytest.approx(0.3)
    # "separate_step" (default): nothing in the main loss; its own step computes the same
    config.pathlen.lazy = "separate_step"
    [sep] = [p for p in parts.build(config) if p.name == "pathlen"]
    assert (sep.lazy_phase(), sep.lazy_interval()) == ("g", 4)
    ctx.step = jnp.int32(8)
    assert float(sep.g_term(ctx, state, sep.hparams())[0]) == 0.0
    val_s, _, new_s = sep.phase_term(ctx, state, sep.hparams())
    np.testing.assert_allclose(float(val_s), 4 * 2.0 * pen, rtol=1e-4)
    np.testing.assert_allclose(float(new_s["pl_mean"]), pl_mean, rtol=1e-5)
    config.model.name = "dcgan"
    config.data.resolution, config.data.channels = 28, 1
    with pytest.raises(ValueError, match="pathlen.weight = 2.0 needs a style-based generator"):
        parts.validate_config(config)


def test_kimg_schedules():
    from jaxgan_lth.training import schedules

    assert schedules.ema_beta(16, 10.0) == pytest.approx(0.5 ** (16 / 10000))
    # the weight of a snapshot halves after ema_kimg: beta ** (10000 / 16) = 0.5
    assert schedules.ema_beta(16, 10.0) ** (10000 / 16) == pytest.approx(0.5)
    assert schedules.steps_for_kimg(300, 16) == 18750
    assert schedules.steps_for_kimg(0.1, 64) == 2
    lr, (b1, b2) = schedules.lazy_regularization_adam(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17) and b1 == 0.0
    assert b2 == pytest.approx(0.99 ** (16 / 17))
    d = schedules.ema_rampup_decay(jnp.float32(0.999), jnp.arange(4), 0.05)
    # step t: half-life capped at 0.05 t iterations' images: 0.5 ** (1 / (0.05 t))
    np.testing.assert_allclose(d, [0.0, 0.5 ** 20, 0.5 ** 10, 0.5 ** (1 / 0.15)], rtol=1e-5)
    assert float(schedules.ema_rampup_decay(jnp.float32(0.9), jnp.int32(10 ** 6), 0.05)) == \
        pytest.approx(0.9)
    with pytest.raises(ValueError, match="ema_kimg = 0"):
        schedules.ema_beta(16, 0)


# ------------------------------------------------------------------------------------------------
# The project's step with StyleGAN2, R1, path length and the kimg EMA
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_iterations_with_r1_pathlen_and_kimg_ema(tmp_path):
    from jaxgan_lth import pipeline
    from jaxgan_lth.training import loop, schedules
    from tests.helpers import make_image_folder, tiny_config, tiny_stylegan2

    folder = make_image_folder(tmp_path / "imgs", n=8, size=32, channels=3)
    config = tiny_config(folder, resolution=32, channels=3, num_steps=2)
    tiny_stylegan2(config)  # EMA over 0.01 kimg = 10 images: beta = 0.5 ** (4 / 10)
    pipeline.validate_config(config)
    engine = loop.build_engine(config, str(tmp_path))
    fns = engine.fns
    assert float(fns.hparams["ema_decay"]) == pytest.approx(schedules.ema_beta(4, 0.01))
    state = loop.initial_state(engine, 0)
    masks = loop.dense_masks(state)
    # the parts' new states and lax.cond branches do not retrace (a retrace raises)
    it = jax.jit(max_traces(fns.iteration))
    s1, m1 = it(state, masks, engine.data, fns.hparams)
    s2, m2 = it(s1, masks, engine.data, fns.hparams)
    for m in (m1, m2):
        assert all(np.isfinite(np.asarray(v)).all() for v in m.values()), m
    assert float(m1["r1_penalty"]) > 0 and float(m1["pl_penalty"]) > 0
    # path length ran at step 0 only (interval 2), as G's own Adam step (lazy "separate_step"):
    # 2 main + 1 reg updates, G's Adam at lr * 2/3, betas ** (2/3) (stylegan2-ada-pytorch)
    assert int(s2["g_opt"].count) == 3
    assert float(s2["g_opt"].hyperparams["learning_rate"]) == pytest.approx(
        config.train.g_lr * 2 / 3, rel=1e-6)
    assert float(s2["g_opt"].hyperparams["b2"]) == pytest.approx(
        config.train.g_betas[1] ** (2 / 3), rel=1e-6)
    # pl_mean = 0.01 * mean length, then kept
    assert float(s1["parts"]["pathlen"]["pl_mean"]) > 0
    assert float(s2["parts"]["pathlen"]["pl_mean"]) == float(s1["parts"]["pathlen"]["pl_mean"])
    w_avg = [s["g"]["batch_stats"]["mapping_net"]["w_avg"] for s in (state, s1)]
    assert not np.allclose(w_avg[0], w_avg[1])  # updated in the train-mode forwards
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state["g"]["params"],
                         s2["g"]["params"])
    assert max(jax.tree.leaves(moved)) > 0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(s2))


@pytest.mark.slow
def test_nice_noise_points_in_the_residual_blocks(tiny32):
    from jaxgan_lth.models.base import D_NOISE, d_noise_variables

    _, D, _, d_vars, _, x = tiny32
    assert D.noise_paths == (("blocks_b32", "beta"), ("blocks_b16", "beta"),
                             ("blocks_b8", "beta"))
    plain = D.apply(d_vars, x, train=False)
    zero = d_noise_variables(D, jnp.float32(0.0), 2)
    np.testing.assert_allclose(
        D.apply({**d_vars, D_NOISE: zero}, x, train=False, rngs={D_NOISE: jax.random.key(0)}),
        plain, rtol=1e-6)
    noisy = D.apply({**d_vars, D_NOISE: d_noise_variables(D, jnp.float32(0.5), 2)}, x,
                    train=False, rngs={D_NOISE: jax.random.key(0)})
    assert not np.allclose(noisy, plain)
