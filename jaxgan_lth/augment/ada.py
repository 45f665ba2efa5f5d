"""ADA's augmentation pipeline ``bgc`` in JAX, for NHWC images in [-1, 1].

Karras et al., NeurIPS 2020, "Training Generative Adversarial Networks with Limited Data".

Follows NVlabs/stylegan2-ada-pytorch ``training/augment.py`` (``AugmentPipe``; constants are its
defaults, ``fewshot_sparse_regularisers.md`` section 2.3):

* **pixel blitting** -- x-flip (50%), rotation by k x 90 degrees (k uniform in 0..3), integer
  translation ``round(U[-0.125, 0.125] * size)``;
* **general geometric** -- isotropic scale ``2^N(0, 0.2^2)``, pre-rotation ``U[-pi, pi]`` with
  probability ``p_rot = 1 - sqrt(1 - p)``, anisotropic scale ``(s, 1/s)``,
  ``s = 2^N(0, 0.2^2)``, post-rotation with ``p_rot``, fractional translation
  ``N(0, 0.125^2) * size``;
* **colour** -- brightness ``+N(0, 0.2^2)``, contrast ``2^N(0, 0.5^2)``, luma flip (Householder
  reflection about ``v = (1, 1, 1)/sqrt(3)``, 50%), hue rotation about ``v`` by ``U[-pi, pi]``,
  saturation ``2^N(0, 1)`` orthogonal to ``v`` (hue and saturation only for RGB).

Each op is applied to each sample independently with probability ``p`` (ADA's strength; ``p``
is a traced scalar, so a new ``p`` never recompiles). The blitting and geometric ops compose
into one inverse affine matrix per sample, executed by one resampling: reflect padding, 2x
upsampling with the ``sym6`` wavelet low-pass filter, bilinear sampling (zeros outside),
filtering and 2x downsampling; the colour ops compose into one 4x4 matrix.

Differences from the reference, on purpose:

* **Static shapes.** The reference pads by a data-dependent margin (the transformed corners plus
  the filter support), clamped to ``size - 1``. Under ``jax.jit`` shapes are static, so the
  padding here is always that clamp, ``size - 1`` on every side. Every sample the reference
  reads lies inside its own margin, where both paddings hold the same reflected pixels, and
  where the reference clamps the margin so does this, so the resampled values agree; the cost
  is a larger intermediate image (``3 x size`` before upsampling).
* **Identity is exact.** The reference resamples the whole batch whenever a geometric op is
  enabled, so with ``p = 0`` its output is the input filtered by the wavelet's up/down pair
  (nearly, not exactly, the input). Here a sample whose matrix is the identity keeps its input
  bit for bit, so ``p = 0`` is exactly the identity.

Only ``bgc``'s ops are implemented (not ``imgfilter``, ``noise``, ``cutout``: the ``bgcfnc``
presets); asking for them raises.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Ops by group, in the reference's order of application.
BLIT_OPS = ("xflip", "rotate90", "xint")
GEOM_OPS = ("scale", "rotate", "aniso", "xfrac")
COLOR_OPS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
ALL_OPS = BLIT_OPS + GEOM_OPS + COLOR_OPS
#: The reference's presets (``train.py`` ``augpipe_specs``) this module implements.
PIPELINES = {"blit": BLIT_OPS, "geom": GEOM_OPS, "color": COLOR_OPS,
             "bg": BLIT_OPS + GEOM_OPS, "bgc": ALL_OPS}

# AugmentPipe defaults (training/augment.py).
XINT_MAX = 0.125
SCALE_STD = 0.2
ROTATE_MAX = 1.0
ANISO_STD = 0.2
XFRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5
HUE_MAX = 1.0
SATURATION_STD = 1.0

#: ``sym6`` wavelet low-pass filter (12 taps), the reference's ``Hz_geom`` before normalising.
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036,
        -0.007800708325034148)


def parse_pipeline(name: str) -> tuple[str, ...]:
    """The ops of a preset (``"bgc"``, ``"bg"``, ``"blit"``, ``"geom"``, ``"color"``).

    Raises:
      ValueError: an unknown preset, naming the accepted ones.
    """
    if name not in PIPELINES:
        raise ValueError(f"ADA pipeline {name!r} is not implemented; accepted: "
                         f"{tuple(PIPELINES)} (bgc = blit + geom + color, the reference's "
                         "--augpipe default).")
    return PIPELINES[name]


# ------------------------------------------------------------------------------------------
# FIR filtering (upfirdn along one axis)
# ------------------------------------------------------------------------------------------


def upfirdn_1d(x: Array, f: Sequence[float], axis: int, up: int = 1, down: int = 1,
               pad: tuple[int, int] = (0, 0), flip_filter: bool = False,
               gain: float = 1.0) -> Array:
    """Upsample, pad, FIR-filter and downsample ``x`` along ``axis``.

    The 1-D form of stylegan2-ada-pytorch's ``upfirdn2d`` reference path: insert ``up - 1``
    zeros after every sample, pad by ``pad`` (negative values crop), correlate with
    ``f * gain`` (``f`` flipped first unless ``flip_filter``, i.e. a true convolution by
    default), keep every ``down``-th sample from the first. Output length
    ``(n * up + pad[0] + pad[1] - len(f)) // down + 1``.

    Own code: no listed library has a differentiable JAX upfirdn (``scipy.signal.upfirdn`` is
    the numpy analogue the tests compare against).
    """
    x = jnp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if up > 1:
        z = jnp.zeros(x.shape + (up - 1,), x.dtype)
        x = jnp.concatenate([x[..., None], z], axis=-1).reshape(x.shape[:-1] + (n * up,))
    cfg = [(0, 0, 0)] * (x.ndim - 1) + [(int(pad[0]), int(pad[1]), 0)]
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), cfg)
    taps = np.asarray(f, np.float64) * gain
    if not flip_filter:
        taps = taps[::-1]
    m = x.shape[-1] - len(taps) + 1
    out = sum(float(t) * x[..., k:k + m] for k, t in enumerate(taps))
    out = out[..., ::down]
    return jnp.moveaxis(out, -1, axis)


def _normalized(f) -> np.ndarray:
    f = np.asarray(f, np.float64)
    return f / f.sum()


def upsample2d(x: Array, f: Sequence[float] = SYM6) -> Array:
    """2x upsampling of ``[B, H, W, C]`` to ``[B, 2H, 2W, C]`` with the separable filter ``f``.

    ``f`` is normalised to sum 1 with gain 2 per axis (reference ``upfirdn2d.upsample2d``).
    """
    f = _normalized(f)
    p = ((len(f) + 1) // 2, (len(f) - 2) // 2)
    x = upfirdn_1d(x, f, axis=2, up=2, pad=p, gain=2.0)
    return upfirdn_1d(x, f, axis=1, up=2, pad=p, gain=2.0)


def downsample2d(x: Array, f: Sequence[float] = SYM6, crop: int = 0) -> Array:
    """2x downsampling of ``[B, H, W, C]`` with the normalised, unflipped filter ``f``.

    ``crop`` pixels are cut from every side first (reference ``upfirdn2d.downsample2d``,
    down = 2, ``padding = -crop``, ``flip_filter=True``).
    """
    f = _normalized(f)
    p = ((len(f) - 1) // 2 - crop, (len(f) - 2) // 2 - crop)
    x = upfirdn_1d(x, f, axis=2, down=2, pad=p, flip_filter=True)
    return upfirdn_1d(x, f, axis=1, down=2, pad=p, flip_filter=True)


# ------------------------------------------------------------------------------------------
# Matrices
# ------------------------------------------------------------------------------------------


def _eye(b: int, n: int) -> Array:
    return jnp.broadcast_to(jnp.eye(n, dtype=jnp.float32), (b, n, n))


def _mat3(rows) -> Array:
    """``[B, 3, 3]`` from 3 rows of 3 entries, each a ``[B]`` array or a number."""
    b = next(jnp.shape(e)[0] for r in rows for e in r if jnp.ndim(e))
    return jnp.stack([jnp.stack([jnp.broadcast_to(jnp.asarray(e, jnp.float32), (b,))
                                 for e in r], -1) for r in rows], -2)


def translate2d(tx, ty) -> Array:
    """``[B, 3, 3]`` homogeneous translation by ``(tx, ty)`` pixels."""
    return _mat3([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def scale2d(sx, sy) -> Array:
    """``[B, 3, 3]`` homogeneous scaling."""
    return _mat3([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def rotate2d(theta) -> Array:
    """``[B, 3, 3]`` homogeneous rotation by ``theta`` radians (x right, y down)."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    return _mat3([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _outer(v):
    return jnp.outer(v, v)


def _rotate3d(v: np.ndarray, theta: Array) -> Array:
    """``[B, 4, 4]`` rotation about the unit axis ``v`` (3,) by ``theta`` ``[B]``."""
    vx, vy, vz = (float(a) for a in v)
    s, c = jnp.sin(theta), jnp.cos(theta)
    cc = 1 - c
    rows = [[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0 * c],
            [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0 * c],
            [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0 * c],
            [0 * c, 0 * c, 0 * c, 1 + 0 * c]]
    return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


# ------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------


def draw_params(key: Array, batch: int, p: Array, ops: Sequence[str],
                size: tuple[int, int]) -> dict[str, Array]:
    """Per-sample parameters of every op in ``ops``, identity where the op is not applied.

    Args:
      key: PRNG key.
      batch: B.
      p: augmentation probability (scalar, traced); each op is applied to each sample
        independently with probability ``p`` (rotations: ``p_rot`` before and after aniso).
      ops: op names from :data:`ALL_OPS`.
      size: ``(H, W)`` in pixels (translations are relative to it).

    Returns:
      ``{op: [B] or [B, 2] float32}``; identity values: flip/rot90/lumaflip 0, translations 0,
      scales 1, angles 0, brightness 0, contrast/saturation 1.
    """
    h, w = size
    keys = iter(jax.random.split(key, 2 * len(ALL_OPS) + 2))
    p = jnp.asarray(p, jnp.float32)
    out = {}

    def gate(value, identity, prob=p, shape=(batch,)):
        on = jax.random.uniform(next(keys), (batch,)) < prob
        on = on.reshape((batch,) + (1,) * (len(shape) - 1))
        return jnp.where(on, value, identity)

    def uni(shape=(batch,)):
        return jax.random.uniform(next(keys), shape)

    def nrm(shape=(batch,)):
        return jax.random.normal(next(keys), shape)

    p_rot = 1.0 - jnp.sqrt(jnp.clip(1.0 - p, 0.0, 1.0))  # P(pre OR post) = p
    for op in ops:
        if op == "xflip":
            out[op] = gate(jnp.floor(uni() * 2), 0.0)
        elif op == "rotate90":
            out[op] = gate(jnp.floor(uni() * 4), 0.0)
        elif op == "xint":
            t = (uni((batch, 2)) * 2 - 1) * XINT_MAX
            out[op] = gate(jnp.round(t * jnp.asarray([w, h], jnp.float32)), 0.0, shape=(batch, 2))
        elif op == "scale":
            out[op] = gate(jnp.exp2(nrm() * SCALE_STD), 1.0)
        elif op == "rotate":
            pre = gate((uni() * 2 - 1) * math.pi * ROTATE_MAX, 0.0, prob=p_rot)
            post = gate((uni() * 2 - 1) * math.pi * ROTATE_MAX, 0.0, prob=p_rot)
            out[op] = jnp.stack([pre, post], -1)
        elif op == "aniso":
            out[op] = gate(jnp.exp2(nrm() * ANISO_STD), 1.0)
        elif op == "xfrac":
            t = nrm((batch, 2)) * XFRAC_STD * jnp.asarray([w, h], jnp.float32)
            out[op] = gate(t, 0.0, shape=(batch, 2))
        elif op == "brightness":
            out[op] = gate(nrm() * BRIGHTNESS_STD, 0.0)
        elif op == "contrast":
            out[op] = gate(jnp.exp2(nrm() * CONTRAST_STD), 1.0)
        elif op == "lumaflip":
            out[op] = gate(jnp.floor(uni() * 2), 0.0)
        elif op == "hue":
            out[op] = gate((uni() * 2 - 1) * math.pi * HUE_MAX, 0.0)
        elif op == "saturation":
            out[op] = gate(jnp.exp2(nrm() * SATURATION_STD), 1.0)
        else:
            raise ValueError(f"unknown ADA op {op!r}; accepted: {ALL_OPS}.")
    return out


def geometric_matrix(params: dict[str, Array], batch: int) -> Array:
    """``G_inv`` ``[B, 3, 3]``: output pixel -> input pixel, composed in the reference's order.

    Pixel units about the image centre, x right, y down.
    """
    g = _eye(batch, 3)
    if "xflip" in params:
        g = g @ scale2d(1.0 / (1 - 2 * params["xflip"]), 1.0)
    if "rotate90" in params:
        g = g @ rotate2d(math.pi / 2 * params["rotate90"])  # rotate2d_inv(-pi/2 i)
    if "xint" in params:
        g = g @ translate2d(-params["xint"][:, 0], -params["xint"][:, 1])
    if "scale" in params:
        g = g @ scale2d(1.0 / params["scale"], 1.0 / params["scale"])
    if "rotate" in params:
        g = g @ rotate2d(params["rotate"][:, 0])  # rotate2d_inv(-theta): before aniso
    if "aniso" in params:
        g = g @ scale2d(1.0 / params["aniso"], params["aniso"])
    if "rotate" in params:
        g = g @ rotate2d(params["rotate"][:, 1])  # after aniso
    if "xfrac" in params:
        g = g @ translate2d(-params["xfrac"][:, 0], -params["xfrac"][:, 1])
    return g


def color_matrix(params: dict[str, Array], batch: int, channels: int) -> Array:
    """``C`` ``[B, 4, 4]``: homogeneous RGB colour transform in the reference's order.

    Hue and saturation apply only when ``channels > 1``.
    """
    c = _eye(batch, 4)
    v = np.asarray([1, 1, 1, 0], np.float64) / np.sqrt(3)
    vv = jnp.asarray(np.outer(v, v), jnp.float32)
    eye = jnp.eye(4, dtype=jnp.float32)
    if "brightness" in params:
        b = params["brightness"]
        t = jnp.broadcast_to(eye, (batch, 4, 4)).at[:, :3, 3].set(b[:, None])
        c = t @ c
    if "contrast" in params:
        s = params["contrast"]
        d = jnp.stack([s, s, s, jnp.ones_like(s)], -1)
        c = (d[:, :, None] * eye) @ c
    if "lumaflip" in params:
        i = params["lumaflip"][:, None, None]
        c = (eye - 2 * vv * i) @ c
    if "hue" in params and channels > 1:
        c = _rotate3d(v[:3], params["hue"]) @ c
    if "saturation" in params and channels > 1:
        s = params["saturation"][:, None, None]
        c = (vv + (eye - vv) * s) @ c
    return c


# ------------------------------------------------------------------------------------------
# Execution
# ------------------------------------------------------------------------------------------


def _bilinear_zeros(img: Array, iy: Array, ix: Array) -> Array:
    """Bilinear samples of ``img`` ``[H, W, C]`` at pixel coordinates ``iy, ix`` ``[h, w]``.

    Pixel centres at integers; zero outside (``grid_sample`` with zeros padding).
    """
    h, w = img.shape[:2]
    y0, x0 = jnp.floor(iy), jnp.floor(ix)
    wy, wx = iy - y0, ix - x0
    out = 0.0
    for dy, fy in ((0, 1 - wy), (1, wy)):
        for dx, fx in ((0, 1 - wx), (1, wx)):
            yy, xx = (y0 + dy).astype(jnp.int32), (x0 + dx).astype(jnp.int32)
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            v = img[jnp.clip(yy, 0, h - 1), jnp.clip(xx, 0, w - 1)]
            out = out + v * (fy * fx * ok)[..., None]
    return out


def apply_geometric(x: Array, g_inv: Array, exact_identity: bool = True) -> Array:
    """Resamples ``x`` ``[B, H, W, C]`` by the inverse matrices ``g_inv`` ``[B, 3, 3]``.

    Reflect padding by ``(H - 1, W - 1)`` (module docstring), 2x ``sym6`` upsampling,
    bilinear sampling of the ``[2H + 12, 2W + 12]`` output grid (zeros outside), ``sym6``
    filtering and 2x downsampling with a 1-pixel crop: ``[B, H, W, C]``. With
    ``exact_identity`` (default) samples whose matrix is the identity are returned unchanged;
    False resamples them too, as the reference does.
    """
    b, h, w, _ = x.shape
    hz_pad = len(SYM6) // 4
    xp = jnp.pad(x, ((0, 0), (h - 1, h - 1), (w - 1, w - 1), (0, 0)), mode="reflect")
    up = upsample2d(xp)
    h_in, w_in = up.shape[1:3]
    h_out, w_out = (h + 2 * hz_pad) * 2, (w + 2 * hz_pad) * 2
    u = jnp.arange(w_out, dtype=jnp.float32) + 0.5 - w_out / 2
    v = jnp.arange(h_out, dtype=jnp.float32) + 0.5 - h_out / 2
    uu, vv = jnp.meshgrid(u, v)  # [h_out, w_out]
    # grid of the upsampled image: q -> 2 * G_inv((q + 0.5) / 2) - 0.5 (the reference's
    # conjugations by the 2x scale and the half-pixel shift), then to pixel indices
    pts = jnp.stack([(uu + 0.5) / 2, (vv + 0.5) / 2, jnp.ones_like(uu)], -1)  # [h, w, 3]
    src = jnp.einsum("bij,hwj->bhwi", g_inv, pts)
    ix = 2 * src[..., 0] - 0.5 + w_in / 2 - 0.5
    iy = 2 * src[..., 1] - 0.5 + h_in / 2 - 0.5
    sampled = jax.vmap(_bilinear_zeros)(up, iy, ix)
    out = downsample2d(sampled, crop=2 * hz_pad)
    if not exact_identity:
        return out.astype(x.dtype)
    identity = jnp.all(g_inv == jnp.eye(3, dtype=g_inv.dtype), axis=(1, 2))
    return jnp.where(identity[:, None, None, None], x, out.astype(x.dtype))


def apply_color(x: Array, c: Array) -> Array:
    """Applies colour matrices ``c`` ``[B, 4, 4]`` to ``x`` ``[B, H, W, C]`` (C = 1 or 3).

    RGB: ``C[:3, :3] @ rgb + C[:3, 3]``; grayscale: ``x * sum(mean_rows C[:3, :3]) +
    mean_rows C[:3, 3]`` (the reference's 1-channel rule).

    Raises:
      ValueError: C not 1 or 3.
    """
    ch = x.shape[-1]
    if ch == 3:
        out = jnp.einsum("bij,bhwj->bhwi", c[:, :3, :3], x) + c[:, None, None, :3, 3]
    elif ch == 1:
        m = jnp.mean(c[:, :3, :], axis=1)  # [B, 4]
        out = x * jnp.sum(m[:, :3], -1)[:, None, None, None] + m[:, 3][:, None, None, None]
    else:
        raise ValueError(f"ADA's colour ops need 1 or 3 channels, got {ch}.")
    identity = jnp.all(c == jnp.eye(4, dtype=c.dtype), axis=(1, 2))
    return jnp.where(identity[:, None, None, None], x, out.astype(x.dtype))


def augment_with(x: Array, params: dict[str, Array]) -> Array:
    """Applies explicit per-sample parameters (:func:`draw_params`) to ``x`` ``[B, H, W, C]``."""
    b = x.shape[0]
    if any(op in params for op in BLIT_OPS + GEOM_OPS):
        x = apply_geometric(x, geometric_matrix(params, b))
    if any(op in params for op in COLOR_OPS):
        x = apply_color(x, color_matrix(params, b, x.shape[-1]))
    return x


def augment(key: Array, x: Array, p: Array, ops: Sequence[str] = ALL_OPS) -> Array:
    """ADA: ``ops`` applied to ``x`` ``[B, H, W, C]`` in [-1, 1], each with probability ``p``.

    Differentiable in ``x`` (and in ``p`` nowhere: the gates are random draws). ``p = 0``
    returns ``x`` exactly.
    """
    return augment_with(x, draw_params(key, x.shape[0], p, ops, x.shape[1:3]))
