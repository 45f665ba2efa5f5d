"""Stage ``dst``: sparse-to-sparse GAN training from scratch (STU-GAN), or static sparse (ERK).

G and D start from their initial weights under sparse masks (:mod:`jaxgan_lth.sparsity.erk`:
ERK or uniform layer densities, ``dst.g_density`` / ``dst.d_density``, balanced or not) and
train for ``dst.num_steps`` G steps through the one loop
(:func:`jaxgan_lth.training.loop.train_runs`).
With ``dst.updates`` the networks in ``dst.explore`` update their masks every
``dst.update_frequency`` G steps by prune and grow (:mod:`jaxgan_lth.sparsity.dst`), a hook of
the loop; without, the ERK masks stay fixed (the static sparse-from-scratch control).
``dst.inactive_moments`` (Adam of inactive weights: "dense", the reference, or "zero") and
``dst.sema`` (STU-GAN's sparse EMA) set the step's options (:meth:`DstStage.config_for`).

The stage uses the top-level part sections (``diffaug``, ``advaug``, ``lecam``, ...) as the
``train`` stage does, can be swept (``config.sweep.stages = "dst"``: one mask sequence per run),
and is evaluated like every stage.

Outputs in ``DIR/dst/`` (besides the loop's checkpoints, samples, eval.json, summary)::

    masks/            Orbax: the masks at step 0 and after every update (step = G step), stacked
                      over the runs [K, ...]
    densities.json    per update: step, drop rate, per-layer density table of G and D (run 0),
                      weights grown per network
    result.json       densities, steps, FID/KID

A resumed stage restores the latest state checkpoint and the masks of the last update at or
before it; updates are deterministic (keys folded from the run's key and the step), so a killed
and resumed stage ends with the masks and weights of an uninterrupted one.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxgan_lth import checkpointing, io_utils, parallel
from jaxgan_lth.sparsity import dst as dst_lib
from jaxgan_lth.sparsity import erk, pruning
from jaxgan_lth.stages.base import NETS, Context, Stage, register, strategy
from jaxgan_lth.training import loop, run_axis

Pytree = Any
EXPLORE = ("g", "d", "gd")
#: Salt folded into (run key, step) for the key of a mask update.
_UPDATE_SALT = 0x445354


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks ``config.dst``.

    Raises:
      ValueError: a density outside (0, 1], an unknown distribution, growth mode or explored
        network, an update frequency < 1 with updates on, a drop rate outside [0, 1], a dense
        network explored, ``num_steps`` < 1, an unknown ``inactive_moments`` or a non-bool
        ``sema`` (each message names the key and what is accepted).
    """
    c = config.dst
    for n in NETS:
        erk.check_density(c[f"{n}_density"], f"dst.{n}_density")
        if c[f"{n}_growth"] not in dst_lib.GROWTH_MODES:
            raise ValueError(f"config.dst.{n}_growth = {c[f'{n}_growth']!r}; accepted: "
                             f"{dst_lib.GROWTH_MODES}.")
    if c.distribution not in erk.DISTRIBUTIONS:
        raise ValueError(f"config.dst.distribution = {c.distribution!r}; accepted: "
                         f"{erk.DISTRIBUTIONS}.")
    if int(c.num_steps) < 1:
        raise ValueError(f"config.dst.num_steps = {c.num_steps} must be >= 1.")
    im = c.get("inactive_moments", "dense")
    if im not in dst_lib.INACTIVE_MOMENTS:
        raise ValueError(f"config.dst.inactive_moments = {im!r}; accepted: "
                         f"{dst_lib.INACTIVE_MOMENTS}.")
    if not isinstance(c.get("sema", True), bool):
        raise ValueError(f"config.dst.sema = {c.sema!r}; accepted: True or False.")
    if not isinstance(c.updates, bool):
        raise ValueError(f"config.dst.updates = {c.updates!r}; accepted: True or False.")
    if not c.updates:
        return
    uf = c.update_frequency
    if isinstance(uf, bool) or not isinstance(uf, int) or uf < 1:
        raise ValueError(f"config.dst.update_frequency = {uf!r} with config.dst.updates=True; "
                         "accepted: an integer >= 1 (G steps between mask updates), or set "
                         "config.dst.updates=False for static sparse training.")
    if c.explore not in EXPLORE:
        raise ValueError(f"config.dst.explore = {c.explore!r}; accepted: {EXPLORE}.")
    for n in c.explore:
        if c[f"{n}_density"] == 1.0:
            raise ValueError(f"config.dst.explore = {c.explore!r} explores {n.upper()}, but "
                             f"config.dst.{n}_density = 1.0 (dense: nothing to prune and "
                             "grow); accepted: a density < 1 or explore without it.")
    for key in ("drop_rate_start", "drop_rate_end"):
        if not 0.0 <= c[key] <= 1.0:
            raise ValueError(f"config.dst.{key} = {c[key]} must be in [0, 1].")


def _zeros(shapes: Pytree) -> Pytree:
    return jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)


def initial_masks(config, like: Pytree, seed: int) -> dict:
    """The step-0 masks ``{"g", "d"}`` of a run with ``seed`` (host numpy bools)."""
    c, patterns = config.dst, tuple(config.sparsity.prunable)
    return {n: erk.initial_masks((int(seed), j, 0x455243), _zeros(like[n]["params"]),
                                 float(c[f"{n}_density"]), c.distribution, patterns)
            for j, n in enumerate(NETS)}


def _host(masks: Pytree) -> Pytree:
    return jax.tree.map(lambda m: np.asarray(jax.device_get(m), bool), masks)


class _Updates:
    """The loop hook of one ``dst`` stage: prune and grow, mask files, density history."""

    def __init__(self, config, engine, folder, runs, masks_ckpt, num_steps):
        c = config.dst
        self.config, self.engine, self.folder = config, engine, folder
        self.patterns = tuple(config.sparsity.prunable)
        self.runs, self.ckpt, self.num_steps = runs, masks_ckpt, int(num_steps)
        self.explore = tuple(c.explore)
        self.rates = (float(c.drop_rate_start), float(c.drop_rate_end))
        self.update = jax.jit(dst_lib.make_update(
            engine.fns, {n: c[f"{n}_growth"] for n in NETS}, c.get("inactive_moments", "dense")))
        base = {n: float(v) for n, v in engine.fns.hparams.items()}
        self.hparams = [parallel.replicate({n: jnp.float32(r.hparams.get(n, base[n]))
                                            for n in base}, engine.mesh) for r in runs]
        self.path = os.path.join(folder, "densities.json")

    def history(self) -> list[dict]:
        return (io_utils.read_json(self.path) or {}).get("updates", [])

    def record(self, step: int, rate, masks: dict, grown: dict | None) -> None:
        """Adds (or replaces) the density row of ``step`` in ``densities.json``."""
        rows = [r for r in self.history() if r["step"] != step]
        row = {"step": int(step), "drop_rate": rate}
        for n in NETS:
            table = pruning.density_table(masks[n], self.patterns)
            row[n] = {"density": pruning.density(masks[n], self.patterns), "layers": table}
            if grown is not None:
                row[n]["grown"] = grown[n]
        rows.append(row)
        rows.sort(key=lambda r: r["step"])
        if parallel.is_main_process():
            io_utils.write_json(self.path, {"updates": rows})

    def __call__(self, step: int, states: list, masks: list) -> tuple[list, list]:
        rate = dst_lib.drop_rate(step, self.num_steps, *self.rates)
        out_s, out_m, grown = [], [], None
        for i, (s, m) in enumerate(zip(states, masks)):
            hm = _host(m)
            counts = {n: dst_lib.drop_counts(hm[n], rate if n in self.explore else 0.0,
                                             self.patterns) for n in NETS}
            key = jax.random.fold_in(jax.random.fold_in(
                jax.random.wrap_key_data(s["rng"]), step), _UPDATE_SALT)
            s, new = self.update(s, m, self.engine.data, key, counts, self.hparams[i])
            out_s.append(s)
            out_m.append(_host(new))
            if i == 0:
                grown = {n: int(sum(np.count_nonzero(a & ~b) for a, b in zip(
                    jax.tree.leaves(out_m[0][n]), jax.tree.leaves(hm[n])))) for n in NETS}
        # saving an existing step is a no-op: a resumed stage recomputes the same masks
        self.ckpt.save(step, run_axis.stack(out_m), {"step": step, "drop_rate": rate,
                                                     "runs": [r.name for r in self.runs]})
        self.record(step, rate, out_m[0], grown)
        logging.info("dst/step %d: mask update (drop rate %.4f): %s", step, rate,
                     ", ".join(f"{n.upper()} grew {grown[n]}" for n in NETS))
        return out_s, out_m


def load_masks(ckpt: checkpointing.Checkpointer, step: int, like: Pytree, k: int) -> list[dict]:
    """The K runs' masks saved at ``step`` in ``ckpt`` (host numpy bools).

    Raises:
      ValueError: the step is absent or the masks do not match the model.
    """
    target = run_axis.stack([{n: jax.tree.map(lambda s: np.ones(s.shape, bool), like[n]["params"])
                              for n in NETS}] * k)
    try:
        stacked, _ = ckpt.restore(step, target)
    except checkpointing.CheckpointError as e:
        raise ValueError(f"dst masks of step {step} in {ckpt.directory}: {e}") from e
    return [_host(m) for m in run_axis.unstack(jax.device_get(stacked), k)]


def run_dst(config, stage_cfg, workdir: str, runs, strategy: str = "loop") -> dict:
    """Runs (or resumes) the ``dst`` stage in ``workdir/dst``; returns its result row.

    Args:
      config: the full config (``dst`` and ``sparsity.prunable``).
      stage_cfg: the stage's config (``train.num_steps = dst.num_steps``).
      workdir: the run's folder.
      runs: the K runs (:mod:`jaxgan_lth.training.sweep`).
      strategy: the run-axis strategy of a sweep.
    """
    engine = loop.build_engine(stage_cfg, workdir)
    folder = os.path.join(workdir, "dst")
    os.makedirs(folder, exist_ok=True)
    names = [r.name for r in runs]
    num_steps = int(stage_cfg.train.num_steps)
    like = jax.eval_shape(engine.fns.init, jax.random.key(0))
    ckpt = checkpointing.Checkpointer(os.path.join(folder, "masks"), keep=10_000)
    hook = _Updates(config, engine, folder, runs, ckpt, num_steps)
    if 0 not in ckpt.all_steps():
        first = [initial_masks(config, like, r.seed) for r in runs]
        ckpt.save(0, run_axis.stack(first), {"step": 0, "runs": names})
        hook.record(0, None, first[0], None)
    state_ck = checkpointing.Checkpointer(os.path.join(folder, "checkpoints"))
    latest = state_ck.latest_verified_step() or 0  # the step train_runs resumes from
    state_ck.close()
    mask_step = max(s for s in ckpt.all_steps() if s <= latest)
    masks = load_masks(ckpt, mask_step, like, len(runs))
    for n in NETS:
        logging.info("\n%s", pruning.format_density_table(
            pruning.density_table(masks[0][n], hook.patterns),
            f"dst masks at step {mask_step}: {n.upper()}"))

    def starts():
        return [dst_lib.zero_outside(loop.initial_state(engine, r.seed), m, engine.fns.optimizers)
                for r, m in zip(runs, masks)]

    c = config.dst
    final, summary = loop.train_runs(
        engine, folder, runs=runs, init_states=starts, masks=masks, num_steps=num_steps,
        strategy=strategy, meta={"stage": "dst"}, log_prefix="dst/",
        evaluator=loop.make_evaluator(stage_cfg, workdir, engine),
        hook=hook if c.updates else None,
        hook_every=int(c.update_frequency) if c.updates else 0)
    del final
    mask_steps = ckpt.all_steps()
    end_masks = load_masks(ckpt, mask_steps[-1], like, len(runs))[0]
    ckpt.close()
    row = {"stage": "dst", "updates": bool(c.updates), "distribution": c.distribution,
           "explore": c.explore if c.updates else "", "mask_steps": mask_steps,
           "steps": summary["steps"], "wall_time_s": summary["wall_time_s"]}
    for n in NETS:
        d = pruning.density(end_masks[n], hook.patterns)
        row[f"{n}_density"] = round(d, 6)
        row[f"{n}_sparsity"] = round(1.0 - d, 6)
    row.update({k: summary[k] for k in loop.EVAL_KEYS if k in summary})
    if "runs" in summary:
        row["runs"] = summary["runs"]
    else:
        row["last_metrics"] = summary["last_metrics"]
    if parallel.is_main_process():
        io_utils.write_json(os.path.join(folder, "result.json"), row)
    return row


@register
class DstStage(Stage):
    """Stage ``dst`` (see the module docstring): sparse from scratch, in ``DIR/dst``."""

    name = "dst"

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """Checks ``config.dst`` when the config has one (:func:`validate_config`)."""
        if "dst" in config:
            validate_config(config)

    def config_for(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """``dst.num_steps`` and the step's sparse-update options (top-level part sections).

        ``train.mask_grads`` (``dst.inactive_moments == "zero"``) and ``train.sema``
        (``dst.sema``) are the keys the step reads (:mod:`jaxgan_lth.training.updates`
        ``masked_update``, ``ema_update``); absent elsewhere: masked gradients, plain masked
        EMA.
        """
        cfg = super().config_for(config)
        cfg.train.num_steps = cfg.dst.num_steps
        cfg.train.mask_grads = cfg.dst.get("inactive_moments", "dense") == "zero"
        cfg.train.sema = bool(cfg.dst.get("sema", True))
        return cfg

    def run(self, ctx: Context) -> dict:
        """Runs (or resumes) the stage (:func:`run_dst`); returns its result row."""
        stage_cfg = ctx.stage_config(self.name)
        return run_dst(ctx.config, stage_cfg, ctx.workdir, self.runs(ctx.config, stage_cfg),
                       strategy(ctx.config))
