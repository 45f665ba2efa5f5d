"""DiffAugment's deterministic ops: the transforms with their random draws given (NHWC, JAX).

The ``brightness``, ``saturation``, ``contrast``, ``translate`` and ``cutout`` halves of
:mod:`jaxgan_lth.augment.diffaugment` (Zhao et al., NeurIPS 2020; mit-han-lab/data-efficient-gans
``DiffAugment_pytorch.py``), whose module docstring gives the maths, the sign conventions and
the ``fill`` value; that module draws the parameters (``sample_*``), re-exports these functions
and applies a policy (``diff_augment``). Every function here is shape-static, ``jax.jit``-able
and differentiable w.r.t. the images; none takes a PRNG key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _check_images(x: Array) -> None:
    if x.ndim != 4:
        raise ValueError(f"DiffAugment expects NHWC images [B, H, W, C], got shape {x.shape}.")


def _per_sample(v: Array, x: Array) -> Array:
    """Reshapes a per-sample vector [B] to [B, 1, 1, 1] in x's dtype."""
    return jnp.asarray(v, x.dtype).reshape((x.shape[0], 1, 1, 1))


# ------------------------------------------------------------------------------------------------
# Deterministic ops (draws given)
# ------------------------------------------------------------------------------------------------


def brightness(x: Array, b: Array) -> Array:
    """Adds a per-sample brightness offset: `x + b[:, None, None, None]`.

    Args:
        x: Images `[B, H, W, C]`.
        b: Offsets `[B]` (DiffAugment draws them in `[-0.5, 0.5)`).

    Returns:
        Images `[B, H, W, C]`, dtype of `x`.
    """
    _check_images(x)
    return x + _per_sample(b, x)


def saturation(x: Array, s: Array) -> Array:
    """Scales each pixel's deviation from its channel mean: `(x - m) * s + m`.

    `m = mean(x, axis=C)` per pixel. For grayscale (`C == 1`), `m == x` and this is exactly the
    identity.

    Args:
        x: Images `[B, H, W, C]`.
        s: Factors `[B]` (DiffAugment draws them in `[0, 2)`).

    Returns:
        Images `[B, H, W, C]`, dtype of `x`.
    """
    _check_images(x)
    m = jnp.mean(x, axis=3, keepdims=True)
    return (x - m) * _per_sample(s, x) + m


def contrast(x: Array, c: Array) -> Array:
    """Scales each sample's deviation from its image mean: `(x - m) * c + m`.

    `m = mean(x, axis=(H, W, C))` per sample.

    Args:
        x: Images `[B, H, W, C]`.
        c: Factors `[B]` (DiffAugment draws them in `[0.5, 1.5)`).

    Returns:
        Images `[B, H, W, C]`, dtype of `x`.
    """
    _check_images(x)
    m = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - m) * _per_sample(c, x) + m


def _shift_axis(x: Array, shift: Array, axis: int, fill: Array | float = 0.0) -> Array:
    """out[..., i, ...] = x[..., i - shift[b], ...] along `axis`, `fill` where that leaves it."""
    size = x.shape[axis]
    src = jnp.arange(size, dtype=jnp.int32)[None, :] - shift.astype(jnp.int32)[:, None]  # [B, size]
    valid = (src >= 0) & (src < size)
    src = jnp.clip(src, 0, size - 1)
    bshape = [x.shape[0], 1, 1, 1]
    bshape[axis] = size
    gathered = jnp.take_along_axis(x, src.reshape(bshape), axis=axis, mode="clip")
    return jnp.where(valid.reshape(bshape), gathered, jnp.asarray(fill, x.dtype))


def translate(x: Array, shift_h: Array, shift_w: Array, fill: Array | float = 0.0) -> Array:
    """Translates each image by an integer number of pixels, filling uncovered pixels with `fill`.

    Sign convention: the pixel at `(i, j)` moves to `(i + shift_h[b], j + shift_w[b])`, i.e.
    `out[b, i, j, :] = x[b, i - shift_h[b], j - shift_w[b], :]`, and `out` is `fill` (0 in the
    reference) where that source index is outside the image. (The reference's gather offset is
    `-shift`; see the module docstring.) Implemented as two per-axis gathers with masks: static
    shapes, differentiable w.r.t. `x` (the gradient is the inverse shift of the cotangent).

    Args:
        x: Images `[B, H, W, C]`.
        shift_h: Integer row shifts `[B]` (positive = down).
        shift_w: Integer column shifts `[B]` (positive = right).
        fill: Scalar value of the uncovered pixels (float or traced 0-d array), in image units.

    Returns:
        Images `[B, H, W, C]`, dtype of `x`.
    """
    _check_images(x)
    x = _shift_axis(x, jnp.asarray(shift_h), axis=1, fill=fill)
    return _shift_axis(x, jnp.asarray(shift_w), axis=2, fill=fill)


def cutout_mask(
    center_h: Array, center_w: Array, height: int, width: int, size: int | tuple[int, int]
) -> Array:
    """Boolean keep-mask of `cutout`: False inside each sample's (clipped) rectangle.

    Rows `[center_h - size_h // 2, center_h - size_h // 2 + size_h)` intersected with `[0, H)`, and
    likewise for columns, are cut. This equals the reference, which clamps the rectangle's indices
    into the image before zeroing them.

    Args:
        center_h: Integer centres `[B]`.
        center_w: Integer centres `[B]`.
        height: H.
        width: W.
        size: Rectangle side, an int (square) or `(size_h, size_w)`.

    Returns:
        bool `[B, H, W]`, True where the pixel is kept.
    """
    size_h, size_w = (size, size) if isinstance(size, int) else tuple(size)
    top = jnp.asarray(center_h, jnp.int32)[:, None] - size_h // 2  # [B, 1]
    left = jnp.asarray(center_w, jnp.int32)[:, None] - size_w // 2
    rows = jnp.arange(height, dtype=jnp.int32)[None, :]
    cols = jnp.arange(width, dtype=jnp.int32)[None, :]
    cut_rows = (rows >= top) & (rows < top + size_h)  # [B, H]
    cut_cols = (cols >= left) & (cols < left + size_w)  # [B, W]
    return ~(cut_rows[:, :, None] & cut_cols[:, None, :])


def cutout(x: Array, center_h: Array, center_w: Array, size: int | tuple[int, int],
           fill: Array | float = 0.0) -> Array:
    """Sets one rectangle per image (all channels) to `fill`, clipped at the image border.

    The reference zeroes it (`fill = 0`).

    See `cutout_mask` for the exact rows/columns. At 32x32 with `size=16` and centre `(16, 16)` the
    cut is `[8:24, 8:24]`; centre `(0, 32)` cuts `[0:8, 24:32]`.

    Args:
        x: Images `[B, H, W, C]`.
        center_h: Integer centres `[B]` (DiffAugment draws them with `sample_cutout`).
        center_w: Integer centres `[B]`.
        size: Rectangle side (static), an int or `(size_h, size_w)`.
        fill: Scalar value inside the rectangle (float or traced 0-d array), in image units.

    Returns:
        Images `[B, H, W, C]`, dtype of `x`; gradient w.r.t. `x` is the cotangent times the mask.
    """
    _check_images(x)
    keep = cutout_mask(center_h, center_w, x.shape[1], x.shape[2], size)
    return jnp.where(keep[..., None], x, jnp.asarray(fill, x.dtype))
