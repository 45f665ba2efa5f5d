"""IMP and the ticket: the machinery of the ``imp`` and ``ticket`` stages.

Chen et al., NeurIPS 2021 (``../shared/seeds/001_*.txt`` Sec. 3.2, App. A2.2) and the released
code (seed_repos.md sections 0 and 1.2); see :mod:`jaxgan_lth.pipeline` for the rounds,
rewinding and the workdir layout. :class:`Lottery` runs IMP's rounds, rewinds to theta_0, picks
and derives the ticket's masks and trains the ticket; one instance is shared by the ``imp``,
``ticket`` and ``slimming`` stages of a pipeline (:func:`lottery_of`). The sections'
validation is in :mod:`jaxgan_lth.stages.lottery_config`, the stage classes in
:mod:`jaxgan_lth.stages.imp`, :mod:`~jaxgan_lth.stages.ticket` and
:mod:`~jaxgan_lth.stages.slimming`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxgan_lth import checkpointing, io_utils, parallel
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.sparsity import pruning
from jaxgan_lth.stages import baselines
from jaxgan_lth.stages.base import (
    NETS,
    Context,
    density_summary,
    get,
    pruned_nets,
    result_fields,
    runs_of,
    stage_config,
    strategy,
)
from jaxgan_lth.stages.lottery_config import imp_runs, imp_source_config
from jaxgan_lth.stages.ticket_source import resolve_round
from jaxgan_lth.training import loop, run_axis

Pytree = Any

def _apply_masks(state, masks) -> Pytree:
    """``state`` with G, D and EMA parameters multiplied by the masks."""
    masks = jax.device_get(masks)  # host copies combine with arrays on any devices
    state = dict(state)
    for n in NETS:
        state[n] = dict(state[n])
        state[n]["params"] = masks_lib.apply(state[n]["params"], masks[n])
    state["ema"] = dict(state["ema"])
    state["ema"]["params"] = masks_lib.apply(state["ema"]["params"], masks["g"])
    return state


class Lottery:
    """Runs and resumes the ``imp`` and ``ticket`` stages of one workdir.

    Args:
      config: the full run config.
      workdir: the run's folder.
      stage_cfgs: ``{stage: stage config}`` from :func:`jaxgan_lth.pipeline.validate_config`.
    """

    def __init__(self, config, workdir: str, stage_cfgs: dict):
        self.config = config
        self.workdir = workdir
        self.stage_cfgs = stage_cfgs
        self.patterns = tuple(config.sparsity.prunable)
        self.nets = pruned_nets(config)
        # where the IMP lives: this workdir, or a shared one (ticket.imp_workdir)
        src = imp_source_config(config)
        self.imp_dir = config.ticket.imp_workdir if src is not None else workdir
        self.mask_ckpt = checkpointing.Checkpointer(os.path.join(self.imp_dir, "masks"),
                                                    keep=10_000)
        self.two_chains = config.sparsity.get("mask_chains", "one") == "two"  # + DIR/masks_ema
        self.ema_ckpt = checkpointing.Checkpointer(os.path.join(
            self.imp_dir, "masks_ema"), keep=10_000) if self.two_chains else None
        self.imp_runs = imp_runs(config, stage_cfgs)
        self._engines: dict[str, loop.Engine] = {}

    def engine(self, stage: str) -> loop.Engine:
        """Data, models and step functions of ``stage`` (built once)."""
        if stage not in self._engines:
            cfg = self.stage_cfgs.get(stage) or stage_config(self.config, stage)
            self._engines[stage] = loop.build_engine(cfg, self.workdir)
        return self._engines[stage]

    def round_dir(self, r: int) -> str:
        """``DIR/imp/round_XX`` (DIR = ``ticket.imp_workdir`` when set)."""
        return os.path.join(self.imp_dir, "imp", f"round_{r:02d}")

    def _round0(self) -> checkpointing.Checkpointer:
        return checkpointing.Checkpointer(os.path.join(self.round_dir(0), "checkpoints"))

    def theta0(self, step: int = 0) -> list[Pytree]:
        """theta_0 of every IMP run (``step > 0``: round 0's state at that step).

        Read from round 0's Orbax checkpoint into a ``jax.eval_shape`` target; before round 0
        has started, the runs' initial states.

        Raises:
          ValueError: ``step > 0`` is not among round 0's checkpoints.
        """
        engine = self.engine("imp")
        k = len(self.imp_runs)
        ck = self._round0()
        try:
            steps = ck.all_steps()
            if step not in steps:
                if step == 0 and not steps:
                    return [loop.initial_state(engine, r.seed) for r in self.imp_runs]
                raise ValueError(
                    f"rewinding to step {step} needs round 0's checkpoint at that step; steps "
                    f"present in {ck.directory}: {steps} (imp.rewind_step must be a multiple "
                    "of checkpoint_every, and checkpoints beyond keep_checkpoints are deleted).")
            stacked, _ = ck.restore(step, loop.abstract_state(engine, k))
        finally:
            ck.close()
        return [parallel.replicate(s, engine.mesh) for s in run_axis.unstack(stacked, k)]

    def rewind_states(self, trained_d=None) -> list[Pytree]:
        """The start states of a round, one per IMP run.

        theta_0 (or round 0's step ``imp.rewind_step``) with fresh optimizers and the step
        counter at 0; D from ``trained_d`` when given.
        """
        out = []
        base = self.theta0(0)
        late = self.theta0(self.config.imp.rewind_step) if self.config.imp.rewind_step else None
        for i, s in enumerate(base):
            s = dict(s)
            if late is not None:
                s["g"], s["d"], s["ema"] = late[i]["g"], late[i]["d"], late[i]["g"]
            if trained_d is not None:
                s["d"] = trained_d[i]
            out.append(s)
        return out

    def load_masks(self, r: int, like: Pytree, ckpt=None) -> list[dict]:
        """Masks m_r of every run stored in ``ckpt`` (default: this workdir's).

        Raises:
          ValueError: the round does not exist (rounds available named) or the stored masks do
            not match the model (first mismatching path named).
        """
        ckpt = ckpt or self.mask_ckpt
        steps = ckpt.all_steps()
        if r not in steps:
            raise ValueError(
                f"IMP round {r} does not exist in {ckpt.directory}; available rounds: {steps}.")
        k = len(ckpt.metadata(r).get("runs") or [None])
        target = run_axis.stack([{n: masks_lib.ones_like(like[n]["params"]) for n in NETS}] * k)
        try:
            stacked, _ = ckpt.restore(r, target)
        except checkpointing.CheckpointError as e:
            raise ValueError(f"masks of round {r} in {ckpt.directory} do not match the "
                             f"model: {e}") from e
        masks = [jax.tree.map(lambda m: np.asarray(m, bool), m)
                 for m in run_axis.unstack(jax.device_get(stacked), k)]
        for m in masks:
            for n in NETS:
                pruning.check_mask(m[n], like[n]["params"], name=f"mask {n!r} of round {r}")
        return masks

    def prune(self, trained, masks, g_weights=None) -> dict:
        """m_{r+1} of one run from its trained weights (G's or the EMA G's magnitudes).

        ``g_weights``: G's weights to prune on instead (the two chains' ticket chain).
        """
        fn = (pruning.global_magnitude_prune if self.config.sparsity.method == "global"
              else pruning.layerwise_magnitude_prune)
        source = {"g": trained["ema" if self.config.sparsity.get("magnitudes", "g") == "ema"
                               else "g"], "d": trained["d"]}
        if g_weights is not None:
            source["g"] = {"params": g_weights}
        out = {}
        for n in NETS:
            if n in self.nets:
                out[n] = fn(source[n]["params"], masks[n], self.config.sparsity[f"{n}_ratio"],
                            self.patterns)
            else:
                out[n] = jax.tree.map(lambda m: np.asarray(m, bool), masks[n])
        return out

    def _write_densities(self, folder, masks, title) -> None:
        os.makedirs(folder, exist_ok=True)
        rows = {n: pruning.density_table(masks[n], self.patterns) for n in NETS}
        if parallel.is_main_process():
            io_utils.write_json(os.path.join(folder, "densities.json"), rows)
        for n in NETS:
            logging.info("\n%s", pruning.format_density_table(rows[n],
                                                              f"{title}: {n.upper()} masks"))

    def run_imp(self) -> list[dict]:
        """Runs (or resumes) ``imp.rounds`` IMP rounds; returns one summary row per round."""
        engine = self.engine("imp")
        cfg = self.stage_cfgs["imp"]
        runs = self.imp_runs
        names = [r.name for r in runs]
        like = jax.eval_shape(engine.fns.init, jax.random.key(0))
        for ck in [self.mask_ckpt] + ([self.ema_ckpt] if self.two_chains else []):
            if 0 not in ck.all_steps():
                dense = jax.tree.map(lambda m: np.asarray(m, bool), loop.dense_masks(like))
                ck.save(0, run_axis.stack([dense] * len(runs)), {"round": 0, "runs": names})
        rows = []
        trained_d = None
        for r in range(self.config.imp.rounds):
            folder = self.round_dir(r)
            result_path = os.path.join(folder, "result.json")
            if (r + 1) in self.mask_ckpt.all_steps() and os.path.exists(result_path):
                rows.append(io_utils.read_json(result_path))
                if not self.config.imp.reset_d:  # the next round starts from this trained D
                    ck = checkpointing.Checkpointer(os.path.join(folder, "checkpoints"))
                    final, _ = ck.restore(self.config.imp.num_steps,
                                          loop.abstract_state(engine, len(runs)))
                    ck.close()
                    trained_d = [s["d"] for s in run_axis.unstack(final, len(runs))]
                continue
            masks = self.load_masks(r, like)
            self._write_densities(folder, masks[0], f"IMP round {r}")
            td = trained_d
            final, summary = loop.train_runs(
                engine, folder, runs=runs,
                init_states=lambda td=td, masks=masks: [
                    _apply_masks(s, m) for s, m in zip(self.rewind_states(td), masks)],
                masks=masks, num_steps=int(cfg.train.num_steps), strategy=strategy(self.config),
                meta={"round": r}, log_prefix=f"imp/round_{r:02d}/",
                evaluator=loop.make_evaluator(cfg, self.workdir, engine),
                run_info=[{"stage": "imp", "round": r,
                           **density_summary(m, self.patterns, self.nets)} for m in masks])
            if not self.config.imp.reset_d:
                trained_d = [s["d"] for s in final]
            new_masks = [self.prune(jax.device_get(s), m) for s, m in zip(final, masks)]
            row = {"stage": "imp", "round": r, "steps": summary["steps"],
                   "wall_time_s": summary["wall_time_s"],
                   **density_summary(masks[0], self.patterns, self.nets),
                   "next_round_density": {
                       n: round(pruning.density(new_masks[0][n], self.patterns), 6)
                       for n in NETS},
                   **result_fields(summary)}
            if parallel.is_main_process():
                io_utils.write_json(result_path, row)
            if self.two_chains and (r + 1) not in self.ema_ckpt.all_steps():
                # the ticket's chain a_{r+1} (EMA-G magnitudes on a_r), saved before m_{r+1}
                chain = [{**nm, "g": self.prune(jax.device_get(s), a, pruning.ema_chain_weights(
                    s["ema"]["params"], m["g"], w["g"]["params"]))["g"]}
                    for s, nm, m, a, w in zip(final, new_masks, masks, self.load_masks(
                        r, like, self.ema_ckpt), self.rewind_states(td))]
                self.ema_ckpt.save(r + 1, run_axis.stack(chain), {"round": r + 1, "runs": names})
            if (r + 1) not in self.mask_ckpt.all_steps():
                self.mask_ckpt.save(r + 1, run_axis.stack(new_masks),
                                    {"round": r + 1, "runs": names})
            rows.append(row)
        return rows

    def ticket_masks(self, like) -> tuple[list[dict], dict]:
        """The masks of the IMP runs the ticket stage trains, and where they came from.

        Raises:
          ValueError: the chosen round does not exist, a mask source workdir has no masks, or
            its masks do not match the model.
        """
        tc = self.config.ticket
        source = self.ema_ckpt if self.two_chains else self.mask_ckpt  # the ticket's chain
        if tc.mask_workdir:
            mdir = os.path.join(tc.mask_workdir, "masks_ema" if self.two_chains else "masks")
            if not os.path.isdir(mdir) or not checkpointing.Checkpointer(mdir).all_steps():
                raise ValueError(
                    f"config.ticket.mask_workdir={tc.mask_workdir!r} holds no masks (expected "
                    f"IMP masks in {mdir}); run the imp stage there first.")
            source = checkpointing.Checkpointer(mdir, keep=10_000)
        if tc.mask_type == "dense":
            return [loop.dense_masks(like)], {"mask_type": "dense"}
        if tc.mask_type == "small_dense":  # like: the narrower G of the ticket's engine
            return [loop.dense_masks(like)], baselines.small_dense_width(self.config)[1]
        if tc.mask_type == "slimming":  # from the slimming stage's dense run
            return baselines.slimming_masks(
                self.config, self.engine("slimming"), get("slimming").folder(self.workdir),
                len(self.imp_runs), baselines.ticket_density(self.config))
        rounds, r = resolve_round(self.config, self.workdir, source.directory,
                                  source.all_steps())
        if tc.target_sparsity:
            dens = {}
            for r in rounds:
                m = self.load_masks(r, like, source)[0]
                dens[r] = 1.0 - np.mean([pruning.density(m[n], self.patterns) for n in self.nets])
            r = min(rounds, key=lambda q: (abs(dens[q] - tc.target_sparsity), q))
        masks = self.load_masks(r, like, source)
        info = {"mask_type": tc.mask_type, "round": r, "mask_source": source.directory}
        if tc.mask_type == "imp":
            return masks, info
        theta0 = self.theta0(0) if tc.mask_type in ("random_global", "omp") else None
        trained = None
        if tc.mask_type == "omp":  # one shot from the weights trained densely in round 0
            ck = self._round0()
            step = self.config.imp.num_steps
            if step not in ck.all_steps():
                raise ValueError(
                    "config.ticket.mask_type='omp' needs the dense round-0 training of this "
                    f"workdir (checkpoint step {step} in {ck.directory}).")
            stacked, _ = ck.restore(step, loop.abstract_state(self.engine("imp"),
                                                              len(self.imp_runs)))
            ck.close()
            trained = run_axis.unstack(jax.device_get(stacked), len(self.imp_runs))
        out = []
        for i, mask in enumerate(masks):
            new = {}
            for n in NETS:
                if n not in self.nets:
                    new[n] = mask[n]
                    continue
                sp = 1.0 - pruning.density(mask[n], self.patterns)
                if tc.mask_type == "random_like":
                    new[n] = pruning.random_prune_like(self.config.seed + 1, mask[n],
                                                       self.patterns)
                elif tc.mask_type == "random_global":
                    new[n] = pruning.random_prune_global(
                        self.config.seed + 1, jax.device_get(theta0[i][n]["params"]), sp,
                        self.patterns)
                else:
                    new[n] = pruning.one_shot_magnitude_prune(trained[i][n]["params"], sp,
                                                              self.patterns)
            out.append(new)
        return out, info

    def _imp_index(self, seed: int, k_masks: int) -> int:
        if k_masks == 1:
            return 0
        seeds = [r.seed for r in self.imp_runs]
        if seed not in seeds or len(seeds) != k_masks:
            raise ValueError(
                f"the ticket run with seed {seed} has no IMP run of its own: the masks hold "
                f"{k_masks} runs (IMP seeds {seeds}).")
        return seeds.index(seed)

    def run_ticket(self) -> dict:
        """Trains the chosen ticket (one run or a sweep) from the rewound weights."""
        engine = self.engine("ticket")
        cfg = self.stage_cfgs["ticket"]
        runs = runs_of(self.config, "ticket", cfg)
        like = jax.eval_shape(engine.fns.init, jax.random.key(0))
        imp_masks, info = self.ticket_masks(like)
        idx = [self._imp_index(r.seed, len(imp_masks)) for r in runs]
        masks = [imp_masks[i] for i in idx]
        folder = os.path.join(self.workdir, "ticket")
        self._write_densities(folder, masks[0], "Ticket")

        def starts():
            rewound = self.rewind_states()
            out = []
            for r, i, m in zip(runs, idx, masks):
                s = dict(loop.initial_state(engine, r.seed))  # fresh optimizers, parts, rng
                if info["mask_type"] == "small_dense":  # its own width: its own theta_0
                    out.append(s)
                    continue
                src = rewound[min(i, len(rewound) - 1)]
                s["g"], s["d"], s["ema"] = src["g"], src["d"], src["ema"]
                out.append(_apply_masks(s, m))
            return out

        _, summary = loop.train_runs(
            engine, folder, runs=runs, init_states=starts, masks=masks,
            num_steps=int(cfg.train.num_steps), strategy=strategy(self.config), meta=info,
            log_prefix="ticket/", evaluator=loop.make_evaluator(cfg, self.workdir, engine),
            run_info=[{"stage": "ticket", **info, **density_summary(m, self.patterns, self.nets)}
                      for m in masks])
        row = {"stage": "ticket", **info, "steps": summary["steps"],
               "wall_time_s": summary["wall_time_s"],
               **density_summary(masks[0], self.patterns, self.nets),
               **result_fields(summary)}
        if parallel.is_main_process():
            io_utils.write_json(os.path.join(folder, "result.json"), row)
        return row


def lottery_of(ctx: Context) -> Lottery:
    """The pipeline's one :class:`Lottery` (built on first use, shared by its stages)."""
    return ctx.get("lottery", lambda: Lottery(ctx.config, ctx.workdir, ctx.stage_cfgs))
