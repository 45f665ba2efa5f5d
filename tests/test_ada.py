"""ADA: every op against hand-computed or scipy results, identity at p = 0, gradients, the p
controller against hand arithmetic, and p across a kill and resume."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

from jaxgan_lth import io_utils, pipeline
from jaxgan_lth.augment import ada
from jaxgan_lth.parts import ada as ada_part
from tests.helpers import full_and_resumed, make_image_folder, tiny_config

H = W = 16


def _smooth(channels=3, seed=0):
    """A smooth image [1, H, W, C] (low frequencies: the wavelet filters pass it ~unchanged)."""
    yy, xx = np.mgrid[0:H, 0:W] / H
    rng = np.random.default_rng(seed)
    chans = [np.sin(2 * np.pi * (xx * rng.uniform(0.3, 0.8)) + rng.uniform(0, 6))
             * np.cos(2 * np.pi * yy * rng.uniform(0.2, 0.6) + rng.uniform(0, 6))
             for _ in range(channels)]
    return jnp.asarray(np.stack(chans, -1)[None], jnp.float32) * 0.8


def test_upfirdn_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 20, 3)).astype(np.float32)
    f = np.asarray(ada.SYM6)
    for up, down, pad in ((2, 1, (6, 5)), (1, 2, (5, 5)), (1, 2, (-1, -1)), (3, 2, (2, 4))):
        got = np.asarray(ada.upfirdn_1d(jnp.asarray(x), f, axis=1, up=up, down=down, pad=pad))
        for b in range(2):
            for c in range(3):
                # zero insertion + padding, then scipy's upfirdn (a true convolution) and the
                # stride: the reference's upsample -> pad -> filter -> downsample
                z = np.zeros(20 * up)
                z[::up] = x[b, :, c]
                lo, hi = pad
                z = np.pad(z, (max(lo, 0), max(hi, 0)))[max(-lo, 0):len(z) + max(lo, 0)
                                                          + max(hi, 0) - max(-hi, 0)]
                full = scipy.signal.upfirdn(f, z, 1, 1)
                want = full[len(f) - 1:len(z)][::down]
                np.testing.assert_allclose(got[b, :, c], want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_p_zero_is_exactly_the_identity():
    x = jax.random.uniform(jax.random.key(0), (4, H, W, 3), minval=-1, maxval=1)
    out = ada.augment(jax.random.key(1), x, 0.0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


@pytest.mark.slow
def test_resampling_by_the_identity_reconstructs_the_image():
    """The sym6 up/down pair is an orthogonal wavelet's: the reference's p = 0 path is ~x."""
    x = jax.random.uniform(jax.random.key(0), (2, H, W, 3), minval=-1, maxval=1)
    out = ada.apply_geometric(x, jnp.broadcast_to(jnp.eye(3), (2, 3, 3)), exact_identity=False)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x), atol=1e-5)


@pytest.mark.slow
def test_blit_ops_at_fixed_parameters():
    x = _smooth()
    # integer translation: exact (samples land on the grid; reflect padding at the border)
    out = ada.augment_with(x, {"xint": jnp.asarray([[2.0, -1.0]])})
    want = np.pad(np.asarray(x[0]), ((1, 1), (2, 2), (0, 0)), mode="reflect")[2:2 + H, 0:W]
    np.testing.assert_allclose(np.asarray(out[0]), want, atol=1e-5)
    # x-flip and rotate90: exact up to the asymmetry of sym6 (the reference's filter)
    out = ada.augment_with(x, {"xflip": jnp.asarray([1.0])})
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(x[0, :, ::-1]), atol=0.05)
    out = ada.augment_with(x, {"rotate90": jnp.asarray([1.0])})
    np.testing.assert_allclose(np.asarray(out[0]), np.rot90(np.asarray(x[0]), 1), atol=0.05)


def _scipy_affine(img, g):
    """scipy.ndimage result of the inverse map ``g`` (3x3, centred pixel coords, x right)."""
    c = np.asarray([(H - 1) / 2, (W - 1) / 2])
    m = np.asarray([[g[1, 1], g[1, 0]], [g[0, 1], g[0, 0]]])  # (row, col) order
    offset = c + np.asarray([g[1, 2], g[0, 2]]) - m @ c
    return np.stack([scipy.ndimage.affine_transform(img[..., k], m, offset, order=3,
                                                    mode="mirror") for k in range(img.shape[-1])],
                    -1)


@pytest.mark.parametrize("params", [
    {"rotate": [[math.radians(30), 0.0]]},
    {"scale": [1.25]},
    {"aniso": [0.8]},
    {"xfrac": [[1.5, -0.75]]},
])
def test_geometric_ops_match_scipy_ndimage(params):
    x = _smooth()
    p = {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}
    out = np.asarray(ada.augment_with(x, p)[0])
    g = np.asarray(ada.geometric_matrix(p, 1)[0])
    want = _scipy_affine(np.asarray(x[0]), g)
    inner = (slice(3, -3), slice(3, -3))  # away from the border conventions
    np.testing.assert_allclose(out[inner], want[inner], atol=0.03)


def test_colour_ops_at_fixed_parameters():
    x = _smooth()
    xs = np.asarray(x[0])
    mean = xs.mean(-1, keepdims=True)
    cases = {
        "brightness": (0.1, xs + 0.1),
        "contrast": (2.0, 2.0 * xs),
        "lumaflip": (1.0, xs - 2.0 * mean),  # Householder reflection about the luma axis
        "saturation": (0.5, mean + 0.5 * (xs - mean)),
    }
    for op, (value, want) in cases.items():
        out = ada.augment_with(x, {op: jnp.asarray([value])})
        np.testing.assert_allclose(np.asarray(out[0]), want, atol=1e-5, err_msg=op)
    # hue: Rodrigues rotation about v = (1, 1, 1)/sqrt(3)
    th = 0.7
    v = np.ones(3) / np.sqrt(3)
    k = np.asarray([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    r = np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k
    out = ada.augment_with(x, {"hue": jnp.asarray([th])})
    np.testing.assert_allclose(np.asarray(out[0]), xs @ r.T, atol=1e-5)
    # grayscale: the reference's 1-channel rule (lumaflip negates, contrast scales)
    g = x[..., :1]
    np.testing.assert_allclose(np.asarray(ada.augment_with(g, {"lumaflip": jnp.asarray([1.0])})),
                               -np.asarray(g), atol=1e-6)
    np.testing.assert_allclose(np.asarray(ada.augment_with(g, {"contrast": jnp.asarray([3.0])})),
                               3 * np.asarray(g), atol=1e-6)


@pytest.mark.slow
def test_gradients_flow_through_every_op():
    x = jax.random.uniform(jax.random.key(0), (2, H, W, 3), minval=-1, maxval=1)
    for op in ada.ALL_OPS:
        params = ada.draw_params(jax.random.key(3), 2, 1.0, (op,), (H, W))
        if op in ("xflip", "rotate90", "lumaflip"):
            params[op] = jnp.ones_like(params[op])  # applied, not just gated on

        def f(x, params=params):
            return jnp.sum(ada.augment_with(x, params) * jnp.arange(3.0))

        grad = jax.grad(f)(x)
        assert np.all(np.isfinite(np.asarray(grad))), op
        assert float(jnp.sum(jnp.abs(grad))) > 0, op


def test_controller_against_hand_arithmetic():
    state = {"p": jnp.float32(0.0), "sign_sum": jnp.float32(0.0), "count": jnp.float32(0.0),
             "steps": jnp.int32(0), "r_t": jnp.float32(0.0)}
    hp = {"ada_target": jnp.float32(0.6), "ada_kimg": jnp.float32(0.5)}  # 500 images per unit
    b = 8
    # interval 2: steps 1-2 all positive (r_t = 1 > 0.6: p += 16/500), steps 3-4 half positive
    # (r_t = 0 < 0.6: p -= 16/500 -> 0), steps 5-6 positive again (p = 16/500)
    seq = [np.ones(b), np.ones(b), np.r_[np.ones(4), -np.ones(4)], np.r_[np.ones(4), -np.ones(4)],
           np.ones(b), np.full(b, 0.5)]
    ps = []
    for logits in seq:
        state = ada_part.controller(state, jnp.asarray(logits, jnp.float32), hp, interval=2,
                                    p_max=0.0, adjust=True)
        ps.append(float(state["p"]))
    step = 2 * b / 500.0
    np.testing.assert_allclose(ps, [0, step, step, 0.0, 0.0, step], rtol=1e-6)
    assert float(state["r_t"]) == 1.0
    # p_max clamps; adjust=False holds p
    s = dict(state, p=jnp.float32(0.99))
    for logits in seq[:2]:
        s = ada_part.controller(s, jnp.ones(b), hp, interval=2, p_max=1.0, adjust=True)
    assert float(s["p"]) == 1.0
    s2 = ada_part.controller(ada_part.controller(state, jnp.ones(b), hp, interval=2, p_max=0.0,
                                                 adjust=False), jnp.ones(b), hp, interval=2,
                             p_max=0.0, adjust=False)
    assert float(s2["p"]) == float(state["p"])


def _ada_config(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", n=16, size=16, channels=1)
    config = tiny_config(folder, num_steps=6)
    config.ada.pipeline = "bgc"
    config.ada.kimg = 0.01  # p moves 0.8 per 10 images: visible within a few steps
    config.ada.interval = 1
    config.ada.target = -0.5
    config.ada.p_init = 2.0
    return config


@pytest.mark.slow
def test_p_is_trained_logged_and_resumed_exactly(tmp_path, monkeypatch):
    config = _ada_config(tmp_path)
    a, b = full_and_resumed(config, tmp_path, monkeypatch, 4, 6)
    # the controller ran after each of the 12 D steps (6 G steps x n_dis 2), each moving p by
    # +-4/10 (4 reals / 10 images per unit) or 0 (r_t = target); it is never clamped from
    # p_init = 2 within 12 steps of 0.4 except at 0, so p is a multiple of 0.4 in [0, 6.8]
    st = a["parts"]["ada"]
    assert int(st["steps"]) == 12
    p = float(st["p"])
    assert 0 <= p <= 6.8 + 1e-5 and abs(p / 0.4 - round(p / 0.4)) < 1e-4
    assert p == float(b["parts"]["ada"]["p"])
    log = io_utils.read_jsonl(str(tmp_path / "full" / "train" / "metrics.jsonl"))
    assert log[-1]["step"] == 6 and log[-1]["ada_p"] == pytest.approx(p)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_bad_ada_values_are_named():
    from configs import default

    for key, value, match in (("pipeline", "bgcfnc", "pipeline.*not implemented.*bgc"),
                              ("interval", 0, "interval = 0"), ("kimg", 0.0, "kimg"),
                              ("target", 2.0, "target"), ("p_max", -1.0, "p_max")):
        c = default.get_config()
        c.ada.pipeline = "bgc"
        c.ada[key] = value
        with pytest.raises(ValueError, match=f"config.ada.{match}"):
            pipeline.validate_config(c)
