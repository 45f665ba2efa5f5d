"""MaskedGAN's maskings of D's inputs (NHWC, JAX): a *reconstruction*, not the authors' code.

Huang et al., "Masked Generative Adversarial Networks are Data-Efficient Generation Learners"
(NeurIPS 2022) released no code (``fewshot_sparse_regularisers.md`` section 5.1). What is known
(section 5.2, abstract): two maskings of D's inputs, *shifted spatial masking* (spatial regions
masked "with random shifts") and *balanced spectral masking* (spectral bands masked "with
self-adaptive probabilities"). Mask ratio, patch size, shift rule, band definition and the
adaptation rule are unverified; everything below that is not named as sourced is ours.

Shifted spatial masking (ours, after the abstract)::

    the image is tiled by a grid of P x P patches (H, W divisible by P: n = (H/P)(W/P) cells),
    shifted per image by (s_h, s_w) ~ U{0..P-1}^2 and wrapped around the border (torus), so
    every cell holds exactly P^2 pixels; k = round(ratio * n) cells, uniformly without
    replacement per image, are set to 0 (mid-grey in [-1, 1], as DiffAugment's cutout).

``keep_s = roll(keep_0, (s_h, s_w))``: the shift moves the whole grid; exactly ``k / n`` of the
pixels are masked whatever the shift.

Balanced spectral masking::

    X = fft2(x) per image and channel (unshifted: frequency 0 at index 0);
    band(u, v) = floor(r * K / (R + 1)), r = max(min(u, H - u), min(v, W - v)),
    R = max(H // 2, W // 2): K Chebyshev rings of the frequency magnitude;
    x' = real(ifft2(X * keep[band])), band b dropped per image with probability p_b.

The bands are Chebyshev rings as GenCo's (the MaskedGAN authors' AAAI'22 code, section 5.3,
``fre_remove_random``: 64 rings of 2 px at 256 px), but measured from the true frequency
``min(u, H - u)`` rather than from each corner, so that every band is symmetric under
``u -> -u``: the masked spectrum stays Hermitian, ``x'`` is real up to rounding and dropping
band b removes exactly its energy ``sum_b |X|^2 / (H W)`` (Parseval).

The *balanced* adaptation of ``p`` (ours; the paper's rule is unverified): D's reliance on
band b is estimated after each D step from its logits on the reals as
``mean(D | b kept) - mean(D | b dropped)`` (how much D's real score falls when b is masked),
averaged by an EMA; a zero-mean integral controller, in the style of ADA's and CHAIN's
``sign(.)`` steps (sections 2.1, 4.3), moves each band's relative offset by
``step * sign(reliance_b - mean reliance)`` so that bands D relies on more are dropped more often
and the reliance is balanced over the bands; ``p_b = clip(ratio * (1 + o_b), 0, p_max)`` keeps the
mean drop probability at ``ratio`` (up to the clipping).

Like :mod:`jaxgan_lth.augment.diffaugment`, draws (``sample_*``, the only users of a PRNG key) are
split from deterministic functions taking them, everything is shape-static, jit-friendly and
differentiable w.r.t. the images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# ---- shifted spatial masking -------------------------------------------------------------------


def grid_shape(height: int, width: int, patch: int) -> tuple[int, int]:
    """``(H / P, W / P)`` cells of the patch grid.

    Raises:
      ValueError: ``patch < 1`` or H, W not divisible by ``patch``.
    """
    if patch < 1 or height % patch or width % patch:
        raise ValueError(f"patch size {patch} must be >= 1 and divide the image size "
                         f"{height}x{width}.")
    return height // patch, width // patch


def num_masked(ratio: Array | float, num_cells: int) -> Array:
    """``round(ratio * num_cells)`` (int32, traced ``ratio`` in [0, 1]) cells masked per image."""
    return jnp.round(jnp.asarray(ratio, jnp.float32) * num_cells).astype(jnp.int32)


def sample_spatial(key: Array, batch: int, num_cells: int, patch: int,
                   ratio: Array | float) -> tuple[Array, Array]:
    """Draws the masked cells and the grid shift of every image.

    Args:
      key: PRNG key.
      batch: B.
      num_cells: n, cells of the grid.
      patch: P.
      ratio: fraction of cells masked, in [0, 1] (traced).

    Returns:
      ``(masked [B, n] bool with exactly round(ratio * n) True per row, shift [B, 2] int32 in
      [0, P))``.
    """
    k_cells, k_shift = jax.random.split(key)
    order = jnp.argsort(jax.random.uniform(k_cells, (batch, num_cells)), axis=1)
    ranks = jnp.argsort(order, axis=1)  # a uniform random permutation per row
    masked = ranks < num_masked(ratio, num_cells)
    shift = jax.random.randint(k_shift, (batch, 2), 0, patch, jnp.int32)
    return masked, shift


def spatial_keep(masked: Array, shift: Array, height: int, width: int, patch: int) -> Array:
    """Per-pixel keep mask of the shifted grid.

    Args:
      masked: ``[B, n]`` bool, cell ``c = row * (W / P) + col`` of the unshifted grid masked.
      shift: ``[B, 2]`` int, the grid moved by ``(s_h, s_w)`` pixels (wrapping around).
      height: H.
      width: W.
      patch: P.

    Returns:
      ``[B, H, W]`` float32, 0 where masked and 1 elsewhere; equals
      ``roll(spatial_keep(masked, 0), (s_h, s_w), axis=(1, 2))``.
    """
    gh, gw = grid_shape(height, width, patch)
    del gh
    b = masked.shape[0]
    rows = ((jnp.arange(height)[None, :] - shift[:, :1]) % height) // patch  # [B, H]
    cols = ((jnp.arange(width)[None, :] - shift[:, 1:]) % width) // patch  # [B, W]
    cell = rows[:, :, None] * gw + cols[:, None, :]  # [B, H, W]
    hit = jnp.take_along_axis(masked.astype(jnp.float32), cell.reshape(b, -1), axis=1)
    return 1.0 - hit.reshape(b, height, width)


def spatial_mask(key: Array, x: Array, ratio: Array | float, patch: int) -> Array:
    """Shifted spatial masking of ``x`` ``[B, H, W, C]``: masked patches set to 0."""
    b, h, w, _ = x.shape
    gh, gw = grid_shape(h, w, patch)
    masked, shift = sample_spatial(key, b, gh * gw, patch, ratio)
    return x * spatial_keep(masked, shift, h, w, patch)[..., None].astype(x.dtype)


# ---- balanced spectral masking -----------------------------------------------------------------


def band_index(height: int, width: int, num_bands: int) -> np.ndarray:
    """Band of every FFT bin: ``[H, W]`` int32 in ``[0, num_bands)`` (module docstring).

    Raises:
      ValueError: ``num_bands`` outside ``[1, max(H // 2, W // 2) + 1]`` (a band would be empty).
    """
    rmax = max(height // 2, width // 2)
    if not 1 <= num_bands <= rmax + 1:
        raise ValueError(f"num_bands = {num_bands} must be in [1, {rmax + 1}] for "
                         f"{height}x{width} images (one Chebyshev radius per band at most).")
    fu = np.minimum(np.arange(height), height - np.arange(height))
    fv = np.minimum(np.arange(width), width - np.arange(width))
    r = np.maximum(fu[:, None], fv[None, :])
    return ((r * num_bands) // (rmax + 1)).astype(np.int32)


def spectral_filter(x: Array, keep: Array, num_bands: int) -> Array:
    """``real(ifft2(fft2(x) * keep[band]))`` per image and channel.

    Args:
      x: ``[B, H, W, C]`` float.
      keep: ``[B, num_bands]`` float, 1 = band kept, 0 = dropped (any weight works).
      num_bands: K.

    Returns:
      ``[B, H, W, C]`` in the dtype of ``x``; ``x`` up to rounding when every band is kept.
    """
    _, h, w, _ = x.shape
    bands = jnp.asarray(band_index(h, w, num_bands))
    m = keep[:, bands][..., None]  # [B, H, W, 1]
    spec = jnp.fft.fft2(x.astype(jnp.float32), axes=(1, 2))
    return jnp.real(jnp.fft.ifft2(spec * m, axes=(1, 2))).astype(x.dtype)


def band_probs(offsets: Array, ratio: Array | float, p_max: Array | float) -> Array:
    """Drop probabilities ``clip(ratio * (1 + offsets), 0, p_max)`` ``[K]`` (traced)."""
    return jnp.clip(ratio * (1.0 + offsets), 0.0, p_max)


def sample_band_drops(key: Array, batch: int, probs: Array) -> Array:
    """``[B, K]`` bool: band b dropped in an image with probability ``probs[b]``, independently."""
    return jax.random.uniform(key, (batch, probs.shape[0])) < probs[None, :]


def spectral_mask(key: Array, x: Array, probs: Array) -> Array:
    """Balanced spectral masking of ``x`` ``[B, H, W, C]`` with band drop probabilities ``[K]``."""
    drops = sample_band_drops(key, x.shape[0], probs)
    return spectral_filter(x, 1.0 - drops.astype(jnp.float32), probs.shape[0])


def band_reliance(drops: Array, logits: Array) -> tuple[Array, Array]:
    """D's reliance on each band from one batch of reals.

    Args:
      drops: ``[B, K]`` bool, the bands dropped in each real image.
      logits: D's logits ``[B]`` on those images.

    Returns:
      ``(reliance [K], valid [K])``: ``mean(logits | kept) - mean(logits | dropped)`` and whether
      both groups were non-empty (else the reliance is 0 and carries no information).
    """
    d = drops.astype(jnp.float32)
    k = 1.0 - d
    n_d, n_k = jnp.sum(d, axis=0), jnp.sum(k, axis=0)
    valid = (n_d > 0) & (n_k > 0)
    mean_d = jnp.sum(d * logits[:, None], axis=0) / jnp.maximum(n_d, 1.0)
    mean_k = jnp.sum(k * logits[:, None], axis=0) / jnp.maximum(n_k, 1.0)
    return jnp.where(valid, mean_k - mean_d, 0.0), valid


def balance_update(state: dict, reliance: Array, valid: Array, decay: Array | float,
                   step: Array | float) -> dict:
    """One step of the band-balancing controller.

    ``credit <- decay * credit + (1 - decay) * reliance`` (bands with ``valid``), then
    ``o <- clip(o + step * (s - mean(s)), -1, K - 1)`` with ``s = sign(credit - mean(credit))``.

    Args:
      state: ``{"offsets": [K], "credit": [K]}`` float32.
      reliance: ``[K]`` from :func:`band_reliance`.
      valid: ``[K]`` bool from :func:`band_reliance`.
      decay: EMA decay in [0, 1).
      step: controller step (>= 0).

    Returns:
      The new state.
    """
    credit = jnp.where(valid, decay * state["credit"] + (1.0 - decay) * reliance, state["credit"])
    s = jnp.sign(credit - jnp.mean(credit))
    k = credit.shape[0]
    offsets = jnp.clip(state["offsets"] + step * (s - jnp.mean(s)), -1.0, k - 1.0)
    return {"offsets": offsets, "credit": credit}
