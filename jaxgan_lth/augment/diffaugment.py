"""DiffAugment: differentiable, per-sample image augmentation for D's inputs (NHWC, JAX).

Differentiable Augmentation (Zhao, Liu, Lin, Zhu, Han, "Differentiable Augmentation for
Data-Efficient GAN Training", NeurIPS 2020, arXiv:2006.10738) applies the same random transform
`T` to every image the discriminator sees -- reals and fakes, in the D step and in the G step -- so
that `D(T(x))` replaces `D(x)` everywhere and gradients flow through `T` into the generator.

The maths follow the reference implementation `DiffAugment_pytorch.py` /
`DiffAugment-biggan-cifar/DiffAugment_pytorch.py` / `DiffAugment_tf.py` of
mit-han-lab/data-efficient-gans (summarised in `seed_repos.md` section 2.1), re-derived here for
NHWC arrays:

* `color` = brightness, then saturation, then contrast:
    * brightness: `x + b`, `b ~ U[-0.5, 0.5)` per sample;
    * saturation: `(x - m) * s + m`, `m` the per-pixel mean over channels, `s ~ U[0, 2)`;
    * contrast: `(x - m) * c + m`, `m` the per-sample mean over (H, W, C), `c ~ U[0.5, 1.5)`.
* `translation`: integer shift per sample, each axis independently uniform in
  `[-floor(ratio * size), floor(ratio * size)]` (inclusive), `ratio = 1/8` (+-4 px at 32x32,
  +-3 px at 28x28); uncovered pixels are filled with `fill`, 0 in the reference (mid-grey for
  images in [-1, 1]).
* `cutout`: one rectangle of `floor(ratio * size)` pixels per axis (`ratio = 1/2`: 16x16 at 32x32)
  set to `fill` (0 in the reference) per sample, its centre drawn uniformly, clipped at the image
  border.

`fill` is this project's addition (config key `diffaug.fill`, traced: a new value never
recompiles). The reference's 0 is mid-grey; on black-background data (Fashion-MNIST, MNIST) the
grey borders of translated reals are a feature D can see on every augmented image, and G learns
to draw them (docs/results.md, leak table). `fill = -1` (black) pads with the background there.

Every random op is split into a *draw* function (`sample_*`, the only place a PRNG key is used) and
a *deterministic* function taking the draws (`brightness`, `saturation`, `contrast`, `translate`,
`cutout`), so that tests and analyses can fix the draws. All functions are shape-static (masks and
gathers, no data-dependent shapes), `jax.jit`-friendly and differentiable w.r.t. the images.
The deterministic functions live in :mod:`jaxgan_lth.augment.diffaugment_ops` and are
re-exported here.

Conventions (read before comparing with the PyTorch code):

* Layout is NHWC, `x` float `[B, H, W, C]`, values nominally in [-1, 1] (nothing clips: brightness
  and contrast can leave that range, exactly as in the reference).
* Translation sign: `translate(x, shift_h, shift_w)` moves the pixel at `(i, j)` to
  `(i + shift_h, j + shift_w)`, i.e. `out[b, i, j] = x[b, i - shift_h[b], j - shift_w[b]]` and 0
  where that index leaves the image. The reference gathers `out[i, j] = x[i + t_h, j + t_w]`, so its
  draw `t` equals `-shift` here; because the draw is symmetric (uniform on `[-s, s]`) the two
  augmentation distributions are identical.
* Rounding of the sizes: the BigGAN-CIFAR/TF/repository-root copies compute `size * 1 // 8` and
  `size // 2` (floor), which is what `translation_max_shift` / `cutout_size` do; the
  StyleGAN2-PyTorch copy rounds half up (`int(size * ratio + 0.5)`). They agree at 32 and 256 px,
  but at 28 px the max shift is 3 here (floor) and 4 there.
* Grayscale (`C == 1`): the per-pixel channel mean equals the pixel, so saturation is exactly the
  identity (as in the reference); the draw is still consumed so the key usage does not depend on C.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxgan_lth.augment.diffaugment_ops import (
    _check_images,
    brightness,
    contrast,
    cutout,
    cutout_mask,
    saturation,
    translate,
)

Array = jax.Array

#: Policy names accepted by `parse_policy`, mapped to their ops, applied in this order.
POLICY_OPS: dict[str, tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "translation": ("translation",),
    "cutout": ("cutout",),
}

#: Default translation ratio (max shift = floor(ratio * size)), as in the reference.
TRANSLATION_RATIO = 0.125
#: Default cutout ratio (square side = floor(ratio * size)), as in the reference.
CUTOUT_RATIO = 0.5


# ------------------------------------------------------------------------------------------------
# Policy parsing
# ------------------------------------------------------------------------------------------------


def parse_policy(policy: str) -> tuple[str, ...]:
    """Splits a comma-separated DiffAugment policy into its validated names.

    Args:
        policy: Comma-separated combination of `color`, `translation`, `cutout` (any order,
            repetitions allowed and applied repeatedly, surrounding whitespace ignored, empty items
            such as a trailing comma skipped). `""` (or only whitespace) is the identity policy.

    Returns:
        The policy names in order, e.g. `("translation", "cutout")`; `()` for the identity.

    Raises:
        TypeError: If `policy` is not a string.
        ValueError: If a name is not one of the accepted names (the message names it and lists the
            accepted ones).
    """
    if not isinstance(policy, str):
        raise TypeError(f"DiffAugment policy must be a str, got {type(policy).__name__}.")
    names = []
    for item in policy.split(","):
        name = item.strip()
        if not name:
            continue
        if name not in POLICY_OPS:
            raise ValueError(
                f"Unknown DiffAugment policy name {name!r} in {policy!r}; "
                f"accepted names: {', '.join(POLICY_OPS)} (comma-separated, '' = identity)."
            )
        names.append(name)
    return tuple(names)


def policy_ops(policy: str) -> tuple[str, ...]:
    """Expands a policy into the elementary ops `diff_augment` applies, in order.

    Args:
        policy: A policy string as accepted by `parse_policy`.

    Returns:
        Op names among `brightness`, `saturation`, `contrast`, `translation`, `cutout`; e.g.
        `"color,cutout"` gives `("brightness", "saturation", "contrast", "cutout")`.

    Raises:
        TypeError, ValueError: As `parse_policy`.
    """
    return tuple(op for name in parse_policy(policy) for op in POLICY_OPS[name])


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def translation_max_shift(size: int, ratio: float = TRANSLATION_RATIO) -> int:
    """Largest absolute translation (pixels) along an axis: `floor(ratio * size)`.

    Args:
        size: Image height or width in pixels.
        ratio: Fraction of the size, `1/8` in the reference.

    Returns:
        The max shift `s`; shifts are drawn uniformly from the integers in `[-s, s]`.
    """
    return int(math.floor(size * ratio + 1e-9))


def cutout_size(height: int, width: int, ratio: float = CUTOUT_RATIO) -> tuple[int, int]:
    """Cutout rectangle size `(floor(ratio * H), floor(ratio * W))` (16x16 at 32x32 for 1/2).

    Args:
        height: Image height H.
        width: Image width W.
        ratio: Fraction of each side, `1/2` in the reference.

    Returns:
        `(size_h, size_w)` in pixels.
    """
    return int(math.floor(height * ratio + 1e-9)), int(math.floor(width * ratio + 1e-9))


# ------------------------------------------------------------------------------------------------
# Draws (the only functions that consume PRNG keys)
# ------------------------------------------------------------------------------------------------


def sample_brightness(key: Array, batch_size: int) -> Array:
    """Draws per-sample brightness offsets `b ~ U[-0.5, 0.5)`.

    Args:
        key: JAX PRNG key.
        batch_size: B.

    Returns:
        float32 `[B]`.
    """
    return jax.random.uniform(key, (batch_size,), jnp.float32) - 0.5


def sample_saturation(key: Array, batch_size: int) -> Array:
    """Draws per-sample saturation factors `s ~ U[0, 2)`.

    Args:
        key: JAX PRNG key.
        batch_size: B.

    Returns:
        float32 `[B]`.
    """
    return jax.random.uniform(key, (batch_size,), jnp.float32) * 2.0


def sample_contrast(key: Array, batch_size: int) -> Array:
    """Draws per-sample contrast factors `c ~ U[0.5, 1.5)`.

    Args:
        key: JAX PRNG key.
        batch_size: B.

    Returns:
        float32 `[B]`.
    """
    return jax.random.uniform(key, (batch_size,), jnp.float32) + 0.5


def sample_translation(
    key: Array, batch_size: int, height: int, width: int, ratio: float = TRANSLATION_RATIO
) -> tuple[Array, Array]:
    """Draws per-sample integer shifts, independently per axis, uniform on `[-s, s]` inclusive.

    `s = translation_max_shift(size, ratio)` (4 at 32 px for ratio 1/8). The sign convention of the
    returned shifts is the one of `translate` (positive moves content down / right).

    Args:
        key: JAX PRNG key.
        batch_size: B.
        height: H.
        width: W.
        ratio: Max shift as a fraction of the size.

    Returns:
        `(shift_h, shift_w)`, each int32 `[B]`.
    """
    key_h, key_w = jax.random.split(key)
    s_h = translation_max_shift(height, ratio)
    s_w = translation_max_shift(width, ratio)
    shift_h = jax.random.randint(key_h, (batch_size,), -s_h, s_h + 1, jnp.int32)
    shift_w = jax.random.randint(key_w, (batch_size,), -s_w, s_w + 1, jnp.int32)
    return shift_h, shift_w


def sample_cutout(
    key: Array, batch_size: int, height: int, width: int, ratio: float = CUTOUT_RATIO
) -> tuple[Array, Array]:
    """Draws per-sample cutout centres with the reference's offset convention.

    Along an axis of `size` pixels and cutout side `k`, the centre is uniform on the integers in
    `[0, size + (1 - k % 2))`, i.e. `0..size` (inclusive) for an even side (`0..32` for 16 at 32 px)
    and `0..size-1` for an odd side; see `cutout` for how a centre maps to rows/columns.

    Args:
        key: JAX PRNG key.
        batch_size: B.
        height: H.
        width: W.
        ratio: Cutout side as a fraction of the size.

    Returns:
        `(center_h, center_w)`, each int32 `[B]`.
    """
    key_h, key_w = jax.random.split(key)
    k_h, k_w = cutout_size(height, width, ratio)
    center_h = jax.random.randint(key_h, (batch_size,), 0, height + (1 - k_h % 2), jnp.int32)
    center_w = jax.random.randint(key_w, (batch_size,), 0, width + (1 - k_w % 2), jnp.int32)
    return center_h, center_w


# ------------------------------------------------------------------------------------------------
# Random ops and the policy driver
# ------------------------------------------------------------------------------------------------


def random_brightness(key: Array, x: Array) -> Array:
    """`brightness(x, sample_brightness(key, B))`."""
    return brightness(x, sample_brightness(key, x.shape[0]))


def random_saturation(key: Array, x: Array) -> Array:
    """`saturation(x, sample_saturation(key, B))` (identity for C == 1)."""
    return saturation(x, sample_saturation(key, x.shape[0]))


def random_contrast(key: Array, x: Array) -> Array:
    """`contrast(x, sample_contrast(key, B))`."""
    return contrast(x, sample_contrast(key, x.shape[0]))


def random_translation(key: Array, x: Array, ratio: float = TRANSLATION_RATIO,
                       fill: Array | float = 0.0) -> Array:
    """`translate(x, *sample_translation(key, B, H, W, ratio), fill)`."""
    b, h, w, _ = x.shape
    return translate(x, *sample_translation(key, b, h, w, ratio), fill=fill)


def random_cutout(key: Array, x: Array, ratio: float = CUTOUT_RATIO,
                  fill: Array | float = 0.0) -> Array:
    """`cutout(x, *sample_cutout(key, B, H, W, ratio), cutout_size(H, W, ratio), fill)`."""
    b, h, w, _ = x.shape
    return cutout(x, *sample_cutout(key, b, h, w, ratio), cutout_size(h, w, ratio), fill=fill)


def diff_augment(
    key: Array,
    x: Array,
    policy: str,
    *,
    translation_ratio: float = TRANSLATION_RATIO,
    cutout_ratio: float = CUTOUT_RATIO,
    fill: Array | float = 0.0,
) -> Array:
    """Applies a DiffAugment policy to a batch of NHWC images, with per-sample random draws.

    The ops of `policy_ops(policy)` are applied in order; op number `k` uses
    `jax.random.split(key, n_ops)[k]` (no key is consumed for the identity policy). Call it
    separately (with different keys) on reals and on fakes, in both the D and the G step.

    Args:
        key: JAX PRNG key.
        x: Images float `[B, H, W, C]` (NHWC), nominally in [-1, 1].
        policy: Static policy string, e.g. `"color,translation,cutout"`; `""` is the identity.
        translation_ratio: Static max shift as a fraction of H and W (1/8).
        cutout_ratio: Static cutout side as a fraction of H and W (1/2).
        fill: Value of translation's uncovered pixels and of cutout's rectangle (0 in the
            reference); a float or a traced 0-d array (no recompilation per value).

    Returns:
        Augmented images `[B, H, W, C]`, same dtype; differentiable w.r.t. `x`.

    Raises:
        TypeError, ValueError: Bad policy (see `parse_policy`); ValueError if `x` is not 4-D.
    """
    ops = policy_ops(policy)
    _check_images(x)
    if not ops:
        return x
    fns: dict[str, Callable[[Array, Array], Array]] = {
        "brightness": random_brightness,
        "saturation": random_saturation,
        "contrast": random_contrast,
        "translation": lambda k, v: random_translation(k, v, translation_ratio, fill),
        "cutout": lambda k, v: random_cutout(k, v, cutout_ratio, fill),
    }
    keys = jax.random.split(key, len(ops))
    for k, op in zip(keys, ops):
        x = fns[op](k, x)
    return x


__all__ = [
    "CUTOUT_RATIO",
    "POLICY_OPS",
    "TRANSLATION_RATIO",
    "brightness",
    "contrast",
    "cutout",
    "cutout_mask",
    "cutout_size",
    "diff_augment",
    "parse_policy",
    "policy_ops",
    "random_brightness",
    "random_contrast",
    "random_cutout",
    "random_saturation",
    "random_translation",
    "sample_brightness",
    "sample_contrast",
    "sample_cutout",
    "sample_saturation",
    "sample_translation",
    "saturation",
    "translate",
]
