"""Parameter updates of the step: Adam (TTUR), masked updates, network slimming's L1, EMA G.

Pure functions on pytrees; :mod:`jaxgan_lth.training.step` composes them into the D and G updates.
Masks are bool pytrees shaped like the parameters (:mod:`jaxgan_lth.sparsity.masks`).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.sparsity import pruning

#: How the EMA generator treats G's non-parameter variables (batch-norm statistics and
#: spectral-norm buffers): "copy" takes G's, "average" averages them with the same decay
#: (UDEG BigGAN / StudioGAN's EMA with buffers).
EMA_BUFFERS = ("copy", "average")


def make_optimizer(
    lr: float, betas: tuple[float, float], eps: float, decay_steps: int | None
) -> optax.GradientTransformation:
    """Adam with a constant learning rate, or linear decay to 0 over ``decay_steps`` updates.

    The learning rate is held in the optimizer state (``optax.inject_hyperparams``) so it can be
    logged. TTUR (Heusel et al. 2017) = separate G/D learning rates and betas.
    """
    schedule = lr if not decay_steps else optax.linear_schedule(lr, 0.0, decay_steps)
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=schedule, b1=betas[0], b2=betas[1], eps=eps
    )


def current_lr(opt_state: Any) -> jax.Array:
    """The learning rate stored in an ``inject_hyperparams`` optimizer state."""
    return opt_state.hyperparams["learning_rate"]


#: G parameters that network slimming's L1 penalty acts on: the batch-norm scales (gamma) of
#: ``bn*`` modules (dcgan ``bn1``/``bn2``, sngan ``block*/bn1``, ``bn2``, ``bn_out``).
BN_SCALE_PATTERN = r"(.*/)?bn[^/]*/scale"


def add_bn_l1(grads, params, weight: float, pattern: str = BN_SCALE_PATTERN):
    """``grads`` plus ``weight * sign(gamma)`` on the batch-norm scales (network slimming).

    The subgradient of ``weight * sum |gamma|`` added after the backward pass, as network
    slimming's reference ``updateBN`` (Liu et al., ICCV 2017, "Learning Efficient Convolutional
    Networks through Network Slimming", Eq. 1; github.com/Eric-mingjie/network-slimming
    ``main.py``). Leaves whose '/'-joined path fully matches ``pattern`` are penalised.
    """
    flat_g = traverse_util.flatten_dict(grads, sep="/")
    flat_p = traverse_util.flatten_dict(params, sep="/")
    rx = re.compile(pattern)
    out = {k: g + weight * jnp.sign(flat_p[k]) if rx.fullmatch(k) else g
           for k, g in flat_g.items()}
    return traverse_util.unflatten_dict(out, sep="/")


def masked_update(tx, grads, opt_state, params, mask, mask_grads: bool = True):
    """One optimizer update that keeps pruned weights exactly zero.

    ``mask_grads=True`` (the lottery stages; the ``dst`` stage's
    ``dst.inactive_moments="zero"``): the gradient is multiplied by the mask before the
    optimizer, so Adam's moments of a pruned weight receive 0. ``False`` (the ``dst`` default,
    STU-GAN's ``Masking``, GAN-LTH-main ``src/sparselearning/core_SNGAN.py`` ``step`` /
    ``apply_mask``): the optimizer sees the dense gradient (give it the gradient w.r.t. the
    effective weights, :func:`jaxgan_lth.sparsity.masks.apply_straight_through`), so the moments
    of pruned weights keep tracking it, and only the weights are re-zeroed after the step. In
    both, updates and the new parameters are multiplied by the mask, so a weight outside the
    mask is 0 after the step whatever the optimizer's momentum holds.
    """
    if mask_grads:
        grads = masks_lib.apply(grads, mask)
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = masks_lib.apply(updates, mask)
    params = masks_lib.apply(optax.apply_updates(params, updates), mask)
    return params, opt_state


def ema_update(ema, g, g_mask, decay, step, start: int, buffers: str = "copy",
               sema: tuple[str, ...] | None = None):
    """EMA generator: ``ema <- decay * ema + (1 - decay) * params`` (masked), per G step.

    Before G step ``start`` the EMA is a copy of G (decay 0), as BigGAN/StudioGAN's
    ``ema_start``. ``buffers`` (:data:`EMA_BUFFERS`): batch statistics / spectral-norm buffers
    copied from G, or averaged with the same decay. ``decay`` is a traced scalar.

    ``sema``: None (the lottery stages; ``dst.sema=False``) or the prunable-leaf regexes
    (``sparsity.prunable``) for STU-GAN's sparse EMA (``--SEMA``, the ``dst`` default): in
    those leaves an active position whose EMA is exactly 0 (a newly grown weight; the EMA is
    masked, so it was 0 while inactive) takes G's current value instead of
    ``(1 - decay) * value``, i.e. ``(decay*0 + (1-decay)*w) * mask + new * decay * w = w``
    (GAN-LTH-main ``src/SNGAN/functions.py`` ``train``, the ``args.SEMA`` branch, lines 116-129 at
    HEAD af172b2, from line 120 at 16aeaeb;
    BigGAN fork Shiweiliuiiiiiii/BigGAN-PyTorch-master ``utils.py`` ``ema.update``, lines
    644-650). Other leaves are averaged as usual. Without ``sema``, a grown weight enters the
    average from 0, the reference's non-SEMA branch ("EMA with mask version", functions.py
    lines 134-141).
    """
    d = jnp.where(step >= start, decay, 0.0)
    avg = lambda e, p: d * e + (1.0 - d) * p  # noqa: E731
    params = jax.tree.map(avg, ema["params"], g["params"])
    if sema is not None:
        flat_e, flat_g = (traverse_util.flatten_dict(t, sep="/") for t in (ema["params"],
                                                                          g["params"]))
        flat_m, flat_a = (traverse_util.flatten_dict(t, sep="/") for t in (g_mask, params))
        for k in pruning.prunable_paths(ema["params"], sema):
            new = flat_m[k].astype(bool) & (flat_e[k] == 0)
            flat_a[k] = jnp.where(new, flat_g[k], flat_a[k])
        params = traverse_util.unflatten_dict(flat_a, sep="/")
    stats = g["batch_stats"]
    if buffers == "average":
        stats = jax.tree.map(
            lambda e, p: avg(e, p) if jnp.issubdtype(p.dtype, jnp.floating) else p,
            ema["batch_stats"], g["batch_stats"])
    return {"params": masks_lib.apply(params, g_mask), "batch_stats": stats}
