"""Baselines of the ticket stage: network slimming (NS) and a parameter-matched small dense G.

The lottery paper compares IMP tickets with network slimming and a small dense network (Chen et
al., NeurIPS 2021, Figure 7 / Table 6; ``../shared/seeds/001_*``). Both are chosen with
``config.ticket.mask_type``:

* ``"slimming"``: network slimming (Liu et al., ICCV 2017, "Learning Efficient Convolutional
  Networks through Network Slimming", Sec. 3-4): a dense run of ``imp.num_steps`` G steps from
  theta_0 with the L1 penalty ``ticket.slimming_l1 * sum |gamma|`` on G's batch-norm scales
  (``train.g_bn_l1``; the subgradient is added to the gradient, as the reference ``updateBN``),
  in ``DIR/ticket_slimming/`` (the ``slimming`` stage, :mod:`jaxgan_lth.stages.slimming`,
  which the pipeline runs before such a ticket); then whole channels with the smallest
  ``|gamma|`` (one threshold over all of G's batch-norm layers, as the reference) are pruned
  until the prunable weights of G have the ticket's density. A pruned channel removes the kernel
  slices that produce and consume it (:data:`CHANNEL_GROUPS`); its conv weights are masked, the
  batch-norm itself is not (the channel carries a constant, as with a zero-masked channel in the
  reference's fine-tuning). The ticket then trains under these channel masks from the rewound
  theta_0, like the other baselines.
* ``"small_dense"``: a dense G whose width ``model.g_channels`` makes its parameter count the
  ticket's (``ticket.small_dense_count``: over the prunable weights the density counts, or over
  all of G's parameters), trained from its own initialisation with the ticket's D and settings.

The ticket's G density both use is :func:`ticket_density`, from the config alone (so the
small dense width is known when the config is validated).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxgan_lth import checkpointing
from jaxgan_lth import models as models_lib
from jaxgan_lth.sparsity import pruning
from jaxgan_lth.training import loop, run_axis

Pytree = Any
SMALL_DENSE_COUNTS = ("prunable", "all")

#: Per model: G's batch-norm scale -> the ``(kernel path, axis)`` slices one of its channels
#: occupies (producer's output axis -1, consumer's input axis -2 of the ``[kh, kw, in, out]``
#: kernels). dcgan: linear_in -> bn1 -> conv1 -> bn2 -> conv_out; sngan blocks:
#: bn1 -> conv1 -> bn2 -> conv2 (the shortcut keeps the block's input channels), bn_out -> conv_out.
CHANNEL_GROUPS = {
    "dcgan": lambda paths: {
        "bn1/scale": [("conv1/kernel", -2)],
        "bn2/scale": [("conv1/kernel", -1), ("conv_out/kernel", -2)]},
    "sngan": lambda paths: {
        **{f"{b}/bn1/scale": [(f"{b}/conv1/kernel", -2)]
           for b in sorted({p.split("/")[0] for p in paths if p.startswith("block")})},
        **{f"{b}/bn2/scale": [(f"{b}/conv1/kernel", -1), (f"{b}/conv2/kernel", -2)]
           for b in sorted({p.split("/")[0] for p in paths if p.startswith("block")})},
        "bn_out/scale": [("conv_out/kernel", -2)]},
}


def ticket_density(config: ml_collections.ConfigDict) -> float:
    """The G density of the ticket the config describes.

    ``1 - ticket.target_sparsity`` when set, else ``(1 - sparsity.g_ratio) ** r`` with ``r`` =
    ``ticket.round`` (or ``imp.rounds`` for -1): the density of global IMP after ``r`` rounds up
    to whole weights.
    """
    tc = config.ticket
    if tc.target_sparsity:
        return 1.0 - float(tc.target_sparsity)
    r = tc.round if tc.round >= 0 else config.imp.rounds
    return (1.0 - float(config.sparsity.g_ratio)) ** int(r)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks the baseline keys of ``config.ticket`` when a baseline is chosen.

    Raises:
      ValueError: as :func:`validate_slimming` (mask type ``slimming``); an unknown
        ``small_dense_count`` (mask type ``small_dense``).
    """
    tc = config.ticket
    if tc.mask_type == "slimming":
        validate_slimming(config)
    if tc.mask_type == "small_dense" and tc.small_dense_count not in SMALL_DENSE_COUNTS:
        raise ValueError(f"config.ticket.small_dense_count = {tc.small_dense_count!r}; "
                         f"accepted: {SMALL_DENSE_COUNTS}.")


def validate_slimming(config: ml_collections.ConfigDict) -> None:
    """Checks network slimming's keys (the model, the pruned networks, ``ticket.slimming_l1``).

    Raises:
      ValueError: a model without channel groups, D pruned, a negative ``slimming_l1``.
    """
    if config.model.name not in CHANNEL_GROUPS:
        raise ValueError(
            f"config.ticket.mask_type = 'slimming' needs G's batch-norm channel groups; "
            f"model {config.model.name!r} has none; accepted models: "
            f"{tuple(CHANNEL_GROUPS)}.")
    if config.sparsity.prune != "g":
        raise ValueError(
            f"config.ticket.mask_type = 'slimming' prunes G's channels only; "
            f"config.sparsity.prune = {config.sparsity.prune!r}; accepted: 'g'.")
    l1 = config.ticket.slimming_l1
    if isinstance(l1, bool) or not isinstance(l1, (int, float)) or l1 < 0:
        raise ValueError(f"config.ticket.slimming_l1 = {l1!r} must be a number >= 0.")


# ---- network slimming ---------------------------------------------------------------------------


def slimming_mask(params: Pytree, density: float, groups: dict,
                  patterns: Sequence[str] = pruning.DEFAULT_PRUNABLE) -> dict:
    """Channel-level mask of G keeping the prunable density at most ``density``.

    Channels are removed in ascending ``|gamma|`` (one ranking over every batch-norm layer in
    ``groups``; ties by layer path, then channel index) until the prunable weights of G have
    density <= ``density``; every batch-norm layer keeps at least one channel.

    Args:
      params: G's (trained) parameters; ``gamma`` is read from them.
      density: target density of the prunable weights in (0, 1].
      groups: ``{bn scale path: [(kernel path, axis), ...]}`` (:data:`CHANNEL_GROUPS`).
      patterns: the prunable regexes (every kernel in ``groups`` must be prunable).

    Returns:
      A bool mask (nested dict of numpy arrays) of the structure of ``params``.

    Raises:
      ValueError: a group names a missing or non-prunable kernel.
    """
    flat = pruning._host_flat(params)
    prunable = pruning.prunable_paths(params, patterns)
    for bn, slices in groups.items():
        for k, _ in slices:
            if k not in prunable or bn not in flat:
                raise ValueError(f"channel group {bn!r} -> {k!r}: not a prunable kernel / "
                                 f"batch-norm scale of G (prunable: {prunable}).")
    out = {k: np.ones(v.shape, bool) for k, v in flat.items()}
    total = sum(flat[k].size for k in prunable)
    order = sorted(((float(abs(g)), bn, c) for bn in sorted(groups)
                    for c, g in enumerate(flat[bn].ravel())))
    alive = {bn: flat[bn].size for bn in groups}

    def kept():
        return sum(int(out[k].sum()) for k in prunable)

    for _, bn, c in order:
        if kept() / total <= density:
            break
        if alive[bn] <= 1:
            continue
        alive[bn] -= 1
        for k, axis in groups[bn]:
            idx = [slice(None)] * out[k].ndim
            idx[axis] = c
            out[k][tuple(idx)] = False
    return pruning._unflat(out)


def slimming_masks(config, engine: loop.Engine, folder: str, k: int,
                   density: float) -> tuple[list[dict], dict]:
    """Network slimming's channel masks from the ``slimming`` stage's dense run, one per run.

    The dense run (L1 on G's batch-norm scales from theta_0, :mod:`jaxgan_lth.stages.slimming`)
    has trained in ``folder``; its final state (``engine.config.train.num_steps``) is read from
    its Orbax checkpoint and G's ``|gamma|`` chooses the channels (:func:`slimming_mask`).

    Args:
      config: the full config (``model.name``, ``sparsity.prunable``, ``ticket.slimming_l1``).
      engine: the dense run's engine (restore target; its config gives the step count).
      folder: the dense run's folder (``DIR/ticket_slimming``).
      k: the number of runs (the IMP runs: one mask each).
      density: the target G density.

    Returns:
      ``(masks, info)``; D's masks are dense.

    Raises:
      ValueError: the dense run has not finished (its last checkpoint is missing).
    """
    num_steps = int(engine.config.train.num_steps)
    ck = checkpointing.Checkpointer(os.path.join(folder, "checkpoints"))
    try:
        if num_steps not in ck.all_steps():
            raise ValueError(
                "config.ticket.mask_type='slimming' needs the finished dense run of the slimming "
                f"stage (checkpoint step {num_steps} in {ck.directory}; steps present: "
                f"{ck.all_steps()}): run --config.stages=slimming,ticket.")
        stacked, _ = ck.restore(num_steps, loop.abstract_state(engine, k))
    finally:
        ck.close()
    like = jax.eval_shape(engine.fns.init, jax.random.key(0))
    patterns = tuple(config.sparsity.prunable)
    paths = list(pruning._flat(like["g"]["params"]))
    groups = CHANNEL_GROUPS[config.model.name](paths)
    out = []
    for s in run_axis.unstack(jax.device_get(stacked), k):
        out.append({"g": slimming_mask(s["g"]["params"], density, groups, patterns),
                    "d": jax.tree.map(lambda m: np.asarray(m, bool),
                                      loop.dense_masks(like)["d"])})
    dens = pruning.density(out[0]["g"], patterns)
    logging.info("network slimming: G density %.4f (target %.4f)", dens, density)
    return out, {"mask_type": "slimming", "target_density": round(density, 6),
                 "slimming_l1": float(config.ticket.slimming_l1),
                 "dense_run_steps": num_steps}


# ---- small dense ---------------------------------------------------------------------------------


def g_param_count(config: ml_collections.ConfigDict, g_channels: int, count: str) -> int:
    """G's parameters at width ``g_channels``: the prunable ones or ``"all"`` (shapes only)."""
    model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
    model_kwargs["g_channels"] = int(g_channels)
    pair = models_lib.get_model(config.model.name, resolution=config.data.resolution,
                                channels=config.data.channels,
                                num_classes=10 if config.model.conditional else 0, **model_kwargs)
    g = pair.generator
    y = jnp.zeros((1,), jnp.int32) if config.model.conditional else None
    shapes = jax.eval_shape(lambda k: g.init(k, jnp.zeros((1, g.latent_dim)), y, train=False),
                            jax.random.key(0))["params"]
    flat = pruning._flat(shapes)
    keys = pruning.prunable_paths(shapes, tuple(config.sparsity.prunable)) \
        if count == "prunable" else list(flat)
    return int(sum(int(np.prod(flat[k].shape)) for k in keys))


def small_dense_width(config: ml_collections.ConfigDict) -> tuple[int, dict]:
    """The G width whose parameter count is nearest the ticket's (ties: the narrower).

    The ticket's count is ``ticket_density * prunable + non-prunable`` at ``model.g_channels``
    (``small_dense_count = "all"``) or ``ticket_density * prunable`` (``"prunable"``).

    Returns:
      ``(width, info)`` with the target and the chosen width's counts.
    """
    c0, how = int(config.model.g_channels), config.ticket.small_dense_count
    d = ticket_density(config)
    prunable = g_param_count(config, c0, "prunable")
    target = d * prunable + (g_param_count(config, c0, "all") - prunable if how == "all" else 0)
    lo, hi = 1, c0  # the count grows with the width: bisect for the first width >= target
    while lo < hi:
        mid = (lo + hi) // 2
        if g_param_count(config, mid, how) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = min({max(lo - 1, 1), lo},
               key=lambda c: (abs(g_param_count(config, c, how) - target), c))
    return best, {"mask_type": "small_dense", "g_channels": best, "count": how,
                  "target_params": int(round(target)),
                  "params": g_param_count(config, best, how), "ticket_density": round(d, 6)}
