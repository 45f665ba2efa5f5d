"""Dynamic sparse training (DST) of GANs: STU-GAN's prune-and-grow mask update.

STU-GAN (Liu, Tian, Chen, Shen, "Don't Be So Dense: Sparse-to-Sparse GAN Training Without
Sacrificing Performance", arXiv 2203.02770; ``../shared/seeds/003_*``) trains sparse G and D from
scratch. Every ``update_frequency`` G steps each prunable layer of an explored network

1. drops ``n = ceil(rate * active_l)`` of its active weights with the smallest magnitude, and
2. grows ``n`` weights among the inactive positions: G by the largest gradient magnitude
   (``G_growth='gradient'``), D at random (``D_growth='random'``),

so every layer keeps its number of active weights (its ERK density). Grown weights start at 0.
The drop rate follows a cosine from 0.5 to 0.005 over the total number of D steps
(``CosineDecay`` = ``torch.optim.lr_scheduler.CosineAnnealingLR`` stepped once per D step).

Source: the author's SNGAN code ``src/sparselearning/core_SNGAN.py`` (``Masking.step``,
``weight_exploration``, ``magnitude_death``, ``gradient_growth``, ``random_growth``), and its
BigGAN fork (``../shared/reference/fewshot_sparse_regularisers.md`` 6.3, ``seed_repos.md`` 3.1).
We port the 2021 behaviour (commit 16aeaeb, the one that produced the logs): exploration runs
whenever it is switched on, and the cosine spans the whole run (the 2022 HEAD only explores with
``--sparse_mode DST`` and completes its cosine after 1/n_dis of training).

Differences from the reference, each to keep the per-layer count exact and deterministic:

* drop and growth pick exactly ``n`` positions by a stable sort (ties broken by flattened index),
  where the reference thresholds magnitudes (ties may drop more) and grows D by
  Bernoulli(n / n_zero) (the right count only in expectation);
* growth ranks the positions inactive after the drop (as the reference: a just-dropped weight may
  be regrown, and then keeps its value and moments, as in the reference, whose weights are only
  re-masked after the growth); so a layer that ERK made dense is left unchanged;
* the gradient of G's growth is computed inside the compiled update, from a G-loss gradient at
  the current weights on a batch drawn for the update (the reference reuses ``weight.grad`` of the
  last G step, i.e. the weights one Adam step earlier). It is the gradient w.r.t. the effective
  weights ``w * m`` (zero where pruned), so inactive positions get their true gradient.

Optimizer state of inactive weights (``dst.inactive_moments``, :data:`INACTIVE_MOMENTS`):

* ``"dense"`` (the default since issue 27; the reference): the reference never masks a
  gradient; ``Masking.step`` runs ``optimizer.step()`` and then ``apply_mask()``, which only
  multiplies the weights by the masks (``core_SNGAN.py`` at HEAD af172b2 lines 188-197 and
  232-244; the same code at 16aeaeb lines 170-177 and 203-). So Adam's
  moments of an inactive weight keep tracking its dense gradient (the gradient at weight 0),
  and a grown weight starts with warm moments; the update leaves every moment as it is and
  only zeroes the dropped weights. The step feeds Adam the gradient w.r.t. the effective
  weights (``train.mask_grads=False``, :func:`jaxgan_lth.training.updates.masked_update`).
* ``"zero"`` (this module's behaviour before issue 27, kept as an option): the step masks the
  gradient and the update zeroes the moments (``mu``, ``nu``) of grown and dropped weights,
  so a grown weight's first Adam update, with optax's bias correction by the global step
  count ``t``, is ``lr * (1-b1)/(1-b1^t) / sqrt((1-b2)/(1-b2^t))`` ~ ``lr (1-b1)/sqrt(1-b2)``
  in size (3.2 lr for SNGAN's betas (0, 0.9), 31.6 lr for (0, 0.999)), not ``lr``.

The EMA generator is masked by the new mask at every G step (both reference branches do).
With ``dst.sema`` (default, every released DST script passes ``--SEMA``) a grown weight's EMA
takes G's value at its first G step after the growth; with ``dst.sema=False`` it enters the
average from 0 (the reference's non-SEMA branch); see
:func:`jaxgan_lth.training.updates.ema_update`.

The update is one compiled function of ``(state, masks, data, key, counts, hparams)`` returning a
state and masks of the same structure; the drop counts per layer are traced int32 scalars
computed on the host in float64 (:func:`drop_counts`, Python's ``math.ceil`` as the reference),
so nothing recompiles across updates and the training step keeps its single trace.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.sparsity import pruning

Pytree = Any
NETS = ("g", "d")
GROWTH_MODES = ("gradient", "random")
#: ``dst.inactive_moments``: "dense" (reference: moments of inactive weights track the dense
#: gradient, kept at a mask update) or "zero" (masked gradient, moments zeroed at an update).
INACTIVE_MOMENTS = ("dense", "zero")
#: Salt folded into an update's key for the gradient batch of gradient growth.
_GRAD_SALT = 0x475257


def drop_rate(step: int, total_steps: int, start: float = 0.5, end: float = 0.005) -> float:
    """The drop rate at G step ``step`` of ``total_steps``: a cosine from ``start`` to ``end``.

    ``end + (start - end) * (1 + cos(pi * t / T)) / 2`` with ``t`` the D steps done and ``T`` the
    total D steps (STU-GAN 2021: ``CosineAnnealingLR(T_max = all D steps, eta_min=0.005)``
    stepped per D step). With ``n_dis`` D steps per G step, ``t / T = step / total_steps``;
    ``t`` is clamped to ``T``.
    """
    frac = min(max(float(step) / float(total_steps), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * frac))


def drop_counts(mask: Pytree, rate: float,
                patterns: Sequence[str] = pruning.DEFAULT_PRUNABLE) -> dict:
    """``ceil(rate * active_l)`` per prunable leaf of one network's mask (0 elsewhere).

    Host function (float64, as the reference's ``math.ceil(death_rate * num_nonzero)``); the
    result is a tree of int32 scalars with the structure of ``mask``, an argument of the
    compiled update. ``rate = 0`` gives all zeros (no update).
    """
    flat = pruning._host_flat(mask)
    chosen = set(pruning.prunable_paths(mask, patterns))
    out = {}
    for k, m in flat.items():
        active = int(np.count_nonzero(m))
        n = min(active, int(math.ceil(float(rate) * active))) if k in chosen else 0
        out[k] = np.int32(n)
    return pruning._unflat(out)


def prune_and_grow(weights: jax.Array, mask: jax.Array, grow_score: jax.Array,
                   n: jax.Array) -> jax.Array:
    """One layer's update: drop the ``n`` smallest-|w| active weights, grow ``n`` positions.

    Args:
      weights: the layer's weights (any shape).
      mask: bool, same shape; True = active.
      grow_score: same shape; the ``n`` inactive (after the drop) positions with the largest
        score are grown (|gradient| or uniform noise).
      n: int32 scalar, the number dropped and grown (``<= active``).

    Returns:
      The new bool mask (the same number of active weights as ``mask``).
    """
    shape = mask.shape
    m = mask.reshape(-1).astype(bool)
    size = m.shape[0]
    idx = jnp.arange(size, dtype=jnp.int32)
    drop_key = jnp.where(m, jnp.abs(weights.reshape(-1)).astype(jnp.float32), jnp.inf)
    rank = jnp.zeros(size, jnp.int32).at[jnp.argsort(drop_key, stable=True)].set(idx)
    kept = m & (rank >= n)
    grow_key = jnp.where(kept, -jnp.inf, grow_score.reshape(-1).astype(jnp.float32))
    rank = jnp.zeros(size, jnp.int32).at[jnp.argsort(-grow_key, stable=True)].set(idx)
    grown = ~kept & (rank < n)
    return (kept | grown).reshape(shape)


def zero_outside(state: Pytree, keep: Mapping[str, Pytree], optimizers: Mapping[str, Any],
                 moments: bool = True) -> Pytree:
    """``state`` with G, D and EMA weights (and optimizer moments) multiplied by ``keep``.

    ``keep = {"g": bool tree, "d": bool tree}`` like the parameters; with ``moments`` the
    optimizer leaves that mirror the parameters (Adam's ``mu`` and ``nu``, found with
    ``optax.tree_utils.tree_map_params``) too (``dst.inactive_moments="zero"``); without, they
    are left as they are (``"dense"``, the reference).
    """
    state = dict(state)
    for n in NETS:
        state[n] = {**state[n], "params": masks_lib.apply(state[n]["params"], keep[n])}
        if not moments:
            continue
        state[f"{n}_opt"] = optax.tree_utils.tree_map_params(
            optimizers[n], lambda x, k: x * k.astype(x.dtype), state[f"{n}_opt"], keep[n],
            transform_non_params=lambda x: x)
    state["ema"] = {**state["ema"], "params": masks_lib.apply(state["ema"]["params"],
                                                              keep["g"])}
    return state


def make_update(fns, growth: Mapping[str, str], inactive_moments: str = "dense") -> Callable:
    """The mask update ``update(state, masks, data, key, counts, hparams) -> (state, masks)``.

    Args:
      fns: the run's :class:`jaxgan_lth.training.step.StepFns` (``g_grads`` / ``d_grads`` for
      gradient
        growth, ``optimizers`` for the moments).
      growth: ``{"g": mode, "d": mode}`` from :data:`GROWTH_MODES`.
      inactive_moments: :data:`INACTIVE_MOMENTS`; "dense" leaves the Adam moments alone
        (dropped weights are zeroed, grown ones are 0 already), "zero" zeroes the moments of
        dropped and grown weights. Must match the step's ``train.mask_grads`` (the ``dst``
        stage sets both from ``dst.inactive_moments``).

    Returns:
      A pure function (compile with ``jax.jit``): ``counts = {"g": tree, "d": tree}`` of int32
      drop/grow counts per leaf (:func:`drop_counts`; all 0 = the network is not explored),
      ``key`` a PRNG key. The returned masks have the structure of ``masks``.

    Raises:
      ValueError: an unknown growth mode (accepted: :data:`GROWTH_MODES`) or
        ``inactive_moments`` (accepted: :data:`INACTIVE_MOMENTS`).
    """
    if inactive_moments not in INACTIVE_MOMENTS:
        raise ValueError(f"inactive_moments {inactive_moments!r}; accepted: {INACTIVE_MOMENTS}.")
    for n in NETS:
        if growth[n] not in GROWTH_MODES:
            raise ValueError(f"growth of {n!r}: {growth[n]!r}; accepted: {GROWTH_MODES}.")
    grads_of = {"g": fns.g_grads, "d": fns.d_grads}

    def update(state, masks, data, key, counts, hparams):
        new_masks, keep = {}, {}
        for j, n in enumerate(NETS):
            k = jax.random.fold_in(key, j)
            params = state[n]["params"]
            if growth[n] == "gradient":
                # gradient w.r.t. the effective weights w * m: this net's mask all True (its
                # pruned weights are exactly 0, so the forward is the masked one)
                open_masks = {**masks, n: masks_lib.ones_like(params)}
                g, _ = grads_of[n](state, open_masks, data, jax.random.fold_in(k, _GRAD_SALT),
                                   hparams)
                scores = jax.tree.map(jnp.abs, g)
            else:
                leaves, treedef = jax.tree.flatten(params)
                keys = jax.random.split(k, len(leaves))
                scores = jax.tree.unflatten(treedef, [
                    jax.random.uniform(kk, p.shape) for kk, p in zip(keys, leaves)])
            new_masks[n] = jax.tree.map(prune_and_grow, params, masks[n], scores, counts[n])
            # active before and after: dropped weights (and, "zero", grown moments) restart at 0
            keep[n] = jax.tree.map(jnp.logical_and, masks[n], new_masks[n])
        return zero_outside(state, keep, fns.optimizers, inactive_moments == "zero"), new_masks

    return update
