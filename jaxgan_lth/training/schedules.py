"""kimg-based schedules of StyleGAN2-style training: EMA half-life, ramp-up, run length, lazy Adam.

StyleGAN counts training in *kimg*, thousands of real images shown to D (``cur_nimg`` of
stylegan2-ada-pytorch ``training/training_loop.py``). Here one G iteration shows D
``train.d_batch_size * train.n_dis`` reals (:func:`images_per_iteration`); with StyleGAN2's
``n_dis = 1`` and equal G/D batches that is the reference's ``batch_size``.

* EMA generator by half-life (``ema_kimg``): after each iteration
  ``ema <- beta ema + (1 - beta) G`` with ``beta = 0.5 ** (images / (ema_kimg * 1000))``, so
  the weight of a G snapshot halves every ``ema_kimg`` kimg (training_loop.py lines 297-303).
* EMA ramp-up (``ema_rampup``, e.g. 0.05 in ADA's ``auto``/``cifar`` configs): the half-life is
  capped at ``ema_rampup * cur_nimg``, i.e. ``beta = min(beta, 0.5 ** (1 / (ema_rampup * t)))``
  in G iteration ``t`` (0-based; ``beta = 0`` at ``t = 0``, a copy, as the reference's
  ``max(ema_nimg, 1e-8)``).
* Lazy regularisation's Adam rescale (``training_loop.py`` lines 197-205): the reference runs
  the regulariser as an extra optimizer step every ``k`` minibatches and compensates the
  ``k + 1`` steps per ``k`` minibatches with ``lr * c`` and ``beta ** c``, ``c = k / (k + 1)``
  (:func:`lazy_regularization_adam`). The step does the same for R1 / path length with
  ``lazy = "separate_step"`` (the default; :mod:`jaxgan_lth.training.lazy_reg`); ``lazy =
  "loss_gain"``
  adds ``k`` times the penalty to the main loss of every ``k``-th step instead, Adam unscaled.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def images_per_iteration(d_batch_size: int, n_dis: int) -> int:
    """Real images D sees per G iteration: ``d_batch_size * n_dis``."""
    return int(d_batch_size) * int(n_dis)


def steps_for_kimg(kimg: float, images_per_iter: int) -> int:
    """G iterations that show D ``kimg`` thousand reals: ``ceil(kimg * 1000 / images_per_iter)``.

    Raises:
      ValueError: ``kimg <= 0`` or ``images_per_iter < 1``.
    """
    if kimg <= 0 or images_per_iter < 1:
        raise ValueError(f"steps_for_kimg: kimg = {kimg} must be > 0 and images_per_iter = "
                         f"{images_per_iter} >= 1")
    return int(math.ceil(kimg * 1000.0 / images_per_iter - 1e-9))


def ema_beta(images_per_iter: int, ema_kimg: float) -> float:
    """EMA decay per iteration for a half-life of ``ema_kimg`` kimg.

    ``0.5 ** (images_per_iter / (ema_kimg * 1000))``; e.g. batch 16, 10 kimg: 0.99889.

    Raises:
      ValueError: ``ema_kimg <= 0``.
    """
    if ema_kimg <= 0:
        raise ValueError(f"ema_beta: ema_kimg = {ema_kimg} must be > 0")
    return 0.5 ** (images_per_iter / (ema_kimg * 1000.0))


def ema_rampup_decay(decay: jax.Array, step: jax.Array, rampup: float) -> jax.Array:
    """The EMA decay of G iteration ``step`` (0-based) with ramp-up ``rampup`` (> 0).

    ``min(decay, 0.5 ** (1 / (rampup * step)))``, and 0 at step 0 (traced-friendly).
    """
    t = jnp.asarray(step, jnp.float32)
    ramp = jnp.where(t > 0, 0.5 ** (1.0 / (rampup * jnp.maximum(t, 1.0))), 0.0)
    return jnp.minimum(decay, ramp)


def lazy_regularization_adam(lr: float, betas: tuple[float, float],
                             interval: int) -> tuple[float, tuple[float, float]]:
    """The reference's Adam for a regulariser run as an extra step every ``interval`` steps.

    Returns ``(lr * c, (b1 ** c, b2 ** c))`` with ``c = interval / (interval + 1)``; e.g.
    ``(0.002, (0, 0.99))`` every 16 steps -> ``(0.0018824, (0, 0.99057))``. Used by
    :func:`jaxgan_lth.training.lazy_reg.adam_settings` for lazy ``"separate_step"`` regularisers.

    Raises:
      ValueError: ``interval < 1``.
    """
    if interval < 1:
        raise ValueError(f"lazy_regularization_adam: interval = {interval} must be >= 1")
    c = interval / (interval + 1.0)
    return lr * c, (betas[0] ** c, betas[1] ** c)
