"""The lottery-ticket pipeline: IMP with rewinding (stage ``imp``), then ticket training.

Chen et al., NeurIPS 2021 (``../shared/seeds/001_*.txt`` Sec. 3.2, App. A2.2), following the
released code (seed_repos.md sections 0 and 1.2):

* round r (r = 0 .. R-1) trains G and D from the initial parameters theta_0 under mask m_r
  (m_0 dense) with fresh optimizers, then prunes ``sparsity.g_ratio`` (and/or ``d_ratio``) of the
  remaining prunable weights by global magnitude to get m_{r+1}; density(m_r) = 0.8^r;
* rewinding goes to step 0 of round 0 (theta_0, the Orbax checkpoint ``imp/round_00`` step 0),
  or to step k of round 0 ("late rewinding", ``imp.rewind_step = k``);
* D is reset to its initial weights every round (``imp.reset_d``; False keeps the trained D);
* stage ``ticket`` trains mask m_R (or the round nearest ``ticket.target_sparsity``, or a mask
  from another workdir, or a pruning baseline) from the rewound parameters, with its own
  augmentation sections.

Workdir layout::

    DIR/config.json, DIR/subset_indices.json, DIR/summary.json
    DIR/masks/            Orbax steps r = 0..R: mask m_r ({"g": ..., "d": ...})
    DIR/imp/round_XX/     checkpoints/, samples/, densities.json, result.json
    DIR/ticket/           checkpoints/, samples/, densities.json, result.json

Every step is resumable: a finished round is marked by its mask m_{r+1} on disk, a round
interrupted mid-way resumes from its latest checkpoint, and pruning is deterministic, so a
re-run after a kill at any point ends with the same masks and results.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxgan_lth import checkpointing, config_lib, parallel
from jaxgan_lth import train as train_lib
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.sparsity import pruning

NETS = ("g", "d")
MASK_TYPES = ("imp", "random_like", "omp", "random_global", "dense")


def _pruned_nets(config) -> tuple[str, ...]:
    prune = config.sparsity.prune
    if prune not in ("g", "d", "gd"):
        raise ValueError(f"sparsity.prune = {prune!r}; accepted: 'g', 'd', 'gd'.")
    return tuple(n for n in NETS if n in prune)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the ``sparsity``, ``imp`` and ``ticket`` sections.

    Raises:
      ValueError: a pruning ratio outside (0, 1), an unknown pruning method or mask type, a
        negative number of rounds, a bad target sparsity.
    """
    _pruned_nets(config)
    for net in NETS:
        r = config.sparsity[f"{net}_ratio"]
        if not 0.0 < r < 1.0:
            raise ValueError(f"sparsity.{net}_ratio = {r} must be in (0, 1).")
    if config.sparsity.method not in ("global", "layerwise"):
        raise ValueError(
            f"sparsity.method = {config.sparsity.method!r}; accepted: 'global', 'layerwise'."
        )
    if config.imp.rounds < 0:
        raise ValueError(f"imp.rounds = {config.imp.rounds} must be >= 0.")
    if config.imp.rewind_step < 0 or config.imp.rewind_step > config.imp.num_steps:
        raise ValueError(
            f"imp.rewind_step = {config.imp.rewind_step} must be in [0, imp.num_steps="
            f"{config.imp.num_steps}]."
        )
    if config.ticket.mask_type not in MASK_TYPES:
        raise ValueError(
            f"ticket.mask_type = {config.ticket.mask_type!r}; accepted: {MASK_TYPES}."
        )
    ts = config.ticket.target_sparsity
    if ts and not 0.0 < ts < 1.0:
        raise ValueError(f"ticket.target_sparsity = {ts} must be in (0, 1) (0 = unused).")


def stage_config(config: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
    """The run config seen by one stage: ``imp`` or ``ticket`` settings copied into ``train``.

    The ``ticket`` stage also takes its ``diffaug`` / ``advaug`` sections (when the config has
    them) in place of the top-level ones, so augmentations can be switched on for the ticket
    only.
    """
    cfg = copy.deepcopy(config)
    cfg.unlock()
    section = cfg.imp if stage == "imp" else cfg.ticket
    cfg.train.num_steps = section.num_steps
    if stage == "ticket":
        for aug in ("diffaug", "advaug"):
            if aug in cfg and aug in cfg.ticket:
                cfg[aug] = copy.deepcopy(cfg.ticket[aug])
    return cfg


def _masks_like(state) -> dict:
    return {n: masks_lib.ones_like(state[n]["params"]) for n in NETS}


def _to_device_bool(mask):
    return jax.tree.map(lambda m: np.asarray(m, bool), mask)


def _density_rows(masks, patterns):
    return {n: pruning.density_table(masks[n], patterns) for n in NETS}


def _density_summary(masks, patterns, nets) -> dict:
    out = {}
    for n in NETS:
        d = pruning.density(masks[n], patterns)
        out[f"{n}_density"] = round(d, 6)
        out[f"{n}_sparsity"] = round(1.0 - d, 6)
        out[f"{n}_pruned"] = n in nets
    return out


def _eval_fields(summary: dict) -> dict:
    keys = ("final_fid", "final_kid", "final_kid_std", "best_fid", "best_step")
    return {k: summary[k] for k in keys if k in summary}


class Lottery:
    """Runs and resumes the ``imp`` and ``ticket`` stages of one workdir.

    Args:
      config: the full run config (``stages`` contains ``imp`` and/or ``ticket``).
      workdir: the run's folder.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        validate(config)
        self.config = config
        self.workdir = workdir
        self.patterns = tuple(config.sparsity.prunable)
        self.nets = _pruned_nets(config)
        self.mask_ckpt = checkpointing.Checkpointer(
            os.path.join(workdir, "masks"), keep=10_000
        )
        self._setups: dict[str, train_lib.Setup] = {}

    # -- helpers ---------------------------------------------------------------------------

    def setup(self, stage: str) -> train_lib.Setup:
        """Data, models and compiled iteration of ``stage`` (built once)."""
        if stage not in self._setups:
            self._setups[stage] = train_lib.build(stage_config(self.config, stage), self.workdir)
        return self._setups[stage]

    def theta0(self) -> Any:
        """The initial state (parameters theta_0 and fresh optimizers) of this workdir."""
        return train_lib.initial_state(self.setup("imp"))

    def round_dir(self, r: int) -> str:
        return os.path.join(self.workdir, "imp", f"round_{r:02d}")

    def load_mask(self, r: int, like: Any, ckpt=None) -> dict:
        """Mask m_r of this workdir (or of ``ckpt``'s workdir).

        Raises:
          ValueError: the round does not exist (names the rounds available) or the stored
            mask does not match the model (names the first mismatching path).
        """
        ckpt = ckpt or self.mask_ckpt
        steps = ckpt.all_steps()
        if r not in steps:
            raise ValueError(
                f"IMP round {r} does not exist in {ckpt.directory}; available rounds: {steps}."
            )
        target = {n: masks_lib.ones_like(like[n]["params"]) for n in NETS}
        try:
            mask, _ = ckpt.restore(r, target)
        except checkpointing.CheckpointError as e:
            raise ValueError(f"mask of round {r} in {ckpt.directory} does not match the "
                             f"model: {e}") from e
        for n in NETS:
            pruning.check_mask(mask[n], like[n]["params"], name=f"mask {n!r} of round {r}")
        return mask

    def rewind_state(self, setup, theta0, trained_d=None) -> Any:
        """theta_0 (or step ``imp.rewind_step`` of round 0) with fresh optimizers.

        D is taken from ``trained_d`` instead when ``imp.reset_d`` is False.
        """
        state = theta0
        k = self.config.imp.rewind_step
        if k:
            ck = checkpointing.Checkpointer(os.path.join(self.round_dir(0), "checkpoints"))
            if k not in ck.all_steps():
                raise ValueError(
                    f"late rewinding to step {k} needs round 0's checkpoint at that step; "
                    f"steps present: {ck.all_steps()}."
                )
            late, _ = ck.restore(k, theta0)
            state = dict(theta0)
            state["g"] = late["g"]
            state["d"] = late["d"]
            state["ema"] = late["g"]
        state = dict(state)
        if trained_d is not None:
            state["d"] = trained_d
        state["step"] = theta0["step"] * 0
        return parallel.replicate(state, setup.mesh)

    @staticmethod
    def _apply_masks(state, masks) -> Any:
        masks = jax.device_get(masks)  # host copies combine with arrays on any devices
        state = dict(state)
        for n in NETS:
            state[n] = dict(state[n])
            state[n]["params"] = masks_lib.apply(state[n]["params"], masks[n])
        state["ema"] = dict(state["ema"])
        state["ema"]["params"] = masks_lib.apply(state["ema"]["params"], masks["g"])
        return state

    def prune(self, trained, masks) -> dict:
        """m_{r+1} from the trained (non-EMA) weights, as the reference code."""
        fn = (pruning.global_magnitude_prune if self.config.sparsity.method == "global"
              else pruning.layerwise_magnitude_prune)
        out = {}
        for n in NETS:
            if n in self.nets:
                ratio = self.config.sparsity[f"{n}_ratio"]
                out[n] = fn(trained[n]["params"], masks[n], ratio, self.patterns)
            else:
                out[n] = _to_device_bool(masks[n])
        return out

    def _write_densities(self, folder, masks, title) -> None:
        os.makedirs(folder, exist_ok=True)
        rows = _density_rows(masks, self.patterns)
        config_lib.write_json(os.path.join(folder, "densities.json"), rows)
        for n in NETS:
            logging.info(
                "\n%s", pruning.format_density_table(rows[n], f"{title}: {n.upper()} masks")
            )

    # -- stages ----------------------------------------------------------------------------

    def run_imp(self) -> list[dict]:
        """Runs (or resumes) ``imp.rounds`` IMP rounds; returns one summary row per round."""
        setup = self.setup("imp")
        theta0 = self.theta0()
        if 0 not in self.mask_ckpt.all_steps():
            self.mask_ckpt.save(0, _masks_like(theta0), {"round": 0})
        rows = []
        trained_d = None
        for r in range(self.config.imp.rounds):
            folder = self.round_dir(r)
            result_path = os.path.join(folder, "result.json")
            done = (r + 1) in self.mask_ckpt.all_steps() and os.path.exists(result_path)
            if done:
                with open(result_path) as f:
                    rows.append(json.load(f))
                if not self.config.imp.reset_d:  # the next round starts from this trained D
                    ck = checkpointing.Checkpointer(os.path.join(folder, "checkpoints"))
                    final, _ = ck.restore(self.config.imp.num_steps, theta0)
                    trained_d = final["d"]
                continue
            masks = self.load_mask(r, theta0)
            start = self.rewind_state(setup, theta0, trained_d)
            start = self._apply_masks(start, masks)
            self._write_densities(folder, masks, f"IMP round {r}")
            final, summary = train_lib.run_stage(
                setup, folder, init_state=start, masks=masks,
                num_steps=self.config.imp.num_steps, meta={"round": r},
                log_prefix=f"imp/round_{r:02d}/",
                evaluator=train_lib.make_evaluator(self.config, self.workdir, setup),
            )
            if not self.config.imp.reset_d:
                trained_d = final["d"]
            new_masks = self.prune(final, masks)
            row = {"stage": "imp", "round": r, "steps": summary["steps"],
                   "wall_time_s": summary["wall_time_s"],
                   **_density_summary(masks, self.patterns, self.nets),
                   "next_round_density": {
                       n: round(pruning.density(new_masks[n], self.patterns), 6) for n in NETS},
                   **_eval_fields(summary),
                   "last_metrics": summary["last_metrics"]}
            config_lib.write_json(result_path, row)
            if (r + 1) not in self.mask_ckpt.all_steps():
                self.mask_ckpt.save(r + 1, new_masks, {"round": r + 1})
            rows.append(row)
        return rows

    def ticket_masks(self, theta0) -> tuple[dict, dict]:
        """The mask the ticket stage trains, and a JSON description of where it came from.

        Raises:
          ValueError: the chosen round does not exist, a mask source workdir has no masks, or
            its masks do not match the model.
        """
        tc = self.config.ticket
        source = self.mask_ckpt
        if tc.mask_workdir:
            mdir = os.path.join(tc.mask_workdir, "masks")
            if not os.path.isdir(mdir) or not checkpointing.Checkpointer(mdir).all_steps():
                raise ValueError(
                    f"ticket.mask_workdir={tc.mask_workdir!r} holds no masks (expected IMP "
                    f"masks in {mdir}); run the imp stage there first."
                )
            source = checkpointing.Checkpointer(mdir, keep=10_000)
        rounds = source.all_steps()
        if tc.mask_type == "dense":
            return _masks_like(theta0), {"mask_type": "dense"}
        if tc.target_sparsity:
            dens = {}
            for r in rounds:
                m = self.load_mask(r, theta0, source)
                dens[r] = 1.0 - np.mean([pruning.density(m[n], self.patterns) for n in self.nets])
            r = min(rounds, key=lambda k: (abs(dens[k] - tc.target_sparsity), k))
        else:
            r = tc.round if tc.round >= 0 else (rounds[-1] if rounds else 0)
        mask = self.load_mask(r, theta0, source)
        info = {"mask_type": tc.mask_type, "round": r, "mask_source": source.directory}
        if tc.mask_type == "imp":
            return mask, info
        out = {}
        for n in NETS:
            if n not in self.nets:
                out[n] = mask[n]
                continue
            sp = 1.0 - pruning.density(mask[n], self.patterns)
            if tc.mask_type == "random_like":
                out[n] = pruning.random_prune_like(self.config.seed + 1, mask[n], self.patterns)
            elif tc.mask_type == "random_global":
                out[n] = pruning.random_prune_global(
                    self.config.seed + 1, theta0[n]["params"], sp, self.patterns)
            else:  # omp: one shot from the weights trained densely in round 0
                ck = checkpointing.Checkpointer(os.path.join(self.round_dir(0), "checkpoints"))
                step = self.config.imp.num_steps
                if step not in ck.all_steps():
                    raise ValueError(
                        "ticket.mask_type='omp' needs the dense round-0 training of this "
                        f"workdir (checkpoint step {step} in {ck.directory}).")
                trained, _ = ck.restore(step, theta0)
                out[n] = pruning.one_shot_magnitude_prune(
                    trained[n]["params"], sp, self.patterns)
        return out, info

    def run_ticket(self) -> dict:
        """Trains the chosen ticket from the rewound parameters (resumable)."""
        setup = self.setup("ticket")
        theta0 = train_lib.initial_state(setup)
        masks, info = self.ticket_masks(theta0)
        folder = os.path.join(self.workdir, "ticket")
        self._write_densities(folder, masks, "Ticket")
        start = self._apply_masks(self.rewind_state(setup, theta0), masks)
        _, summary = train_lib.run_stage(
            setup, folder, init_state=start, masks=masks,
            num_steps=self.config.ticket.num_steps, meta=info, log_prefix="ticket/",
            evaluator=train_lib.make_evaluator(self.config, self.workdir, setup),
        )
        row = {"stage": "ticket", **info, "steps": summary["steps"],
               "wall_time_s": summary["wall_time_s"],
               **_density_summary(masks, self.patterns, self.nets),
               **_eval_fields(summary),
               "last_metrics": summary["last_metrics"]}
        config_lib.write_json(os.path.join(folder, "result.json"), row)
        return row
