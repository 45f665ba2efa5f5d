"""Real batches drawn inside the compiled step from the training set held on the accelerator.

The limited training set lives on the device as ``{"images": float32 [N, H, W, C] in [-1, 1],
"labels": int32 [N]}``, so drawing a batch is an index gather in the jitted step and no host
input pipeline can stall. Two ways of drawing (``config.data.sampling``, :data:`SAMPLING`):

* ``"replacement"``: :func:`sample_real`, uniform with replacement (a batch of 64 from 100
  images holds only about 47 distinct images);
* ``"epoch"``: :func:`sample_real_epoch`, without replacement within an epoch, from a per-epoch
  permutation kept in the train state (:func:`init_sampler`), as the reference data loaders
  with ``shuffle=True, drop_last=True`` (DiffAugment / StyleGAN2-ADA PyTorch code).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: ``data.sampling`` values: with replacement, or without replacement within an epoch.
SAMPLING = ("replacement", "epoch")


def _random_xflip(key, x):
    """``x`` ``[B, H, W, C]`` with each image mirrored left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def sample_real(key, data: dict, batch: int, random_flip: bool):
    """A real batch ``[batch, H, W, C]`` (and labels) drawn uniformly with replacement."""
    k_idx, k_flip = jax.random.split(key)
    n = data["images"].shape[0]
    idx = jax.random.randint(k_idx, (batch,), 0, n)
    x = data["images"][idx]
    y = data["labels"][idx]
    if random_flip:
        x = _random_xflip(k_flip, x)
    return x, y


def init_sampler(num_real: int) -> dict:
    """The epoch sampler's state before the first batch: an empty epoch (``pos = N``).

    Args:
      num_real: N, images in the training set.

    Returns:
      ``{"perm": int32 [N], "pos": int32, "epoch": int32}``; the first draw shuffles epoch 0.
    """
    return {"perm": jnp.zeros((num_real,), jnp.int32), "pos": jnp.int32(num_real),
            "epoch": jnp.int32(-1)}


def sample_real_epoch(sampler: dict, base_key, data: dict, key, batch: int,
                      random_flip: bool):
    """A real batch drawn without replacement within an epoch.

    When fewer than ``batch`` images of the current permutation are left (the tail is dropped,
    as ``drop_last=True``), a new epoch starts with the permutation
    ``permutation(fold_in(base_key, epoch), N)``, so the order depends only on the run's key and
    the epoch (and resumes exactly).

    Args:
      sampler: :func:`init_sampler`'s state.
      base_key: the run's PRNG key for permutations.
      data: ``{"images": [N, H, W, C], "labels": [N]}``.
      key: this draw's key (flips).
      batch: B <= N.
      random_flip: x-flip each image with probability 1/2.

    Returns:
      ``(x [B, H, W, C], y [B], new sampler state)``.
    """
    n = data["images"].shape[0]

    def reshuffle(s):
        epoch = s["epoch"] + 1
        perm = jax.random.permutation(jax.random.fold_in(base_key, epoch), n).astype(jnp.int32)
        return {"perm": perm, "pos": jnp.int32(0), "epoch": epoch}

    s = jax.lax.cond(sampler["pos"] + batch > n, reshuffle, lambda s: s, sampler)
    idx = jax.lax.dynamic_slice(s["perm"], (s["pos"],), (batch,))
    x, y = data["images"][idx], data["labels"][idx]
    if random_flip:
        x = _random_xflip(jax.random.split(key)[1], x)
    return x, y, {**s, "pos": s["pos"] + batch}
