"""Sweeps: K runs of one stage that differ in seed and/or traced strengths.

Config section ``sweep`` (``configs/default.py``)::

    config.sweep.stages = "ticket"          # stages run as sweeps ("" = none; e.g. "imp,ticket":
                                            # imp sweeps the seeds only, one ticket per seed)
    config.sweep.seeds = (0, 1, 2)          # tuple/list of ints or "0,1,2"; () = config.seed
    config.sweep.hparams = "adv_step_size=0,0.01,0.05"   # or {"adv_step_size": [0, 0.01, 0.05]}
    config.sweep.product = True             # every combination (seeds outer) vs zipped lists
    config.sweep.strategy = "loop"          # "vmap" (one batched program) or "loop"

``hparams`` as a string is ``"name=v1,v2,...; name2=w1,w2,..."``; as a dict, name -> list.
Names are the traced strengths of the parts the stage switches on (``adv_step_size``,
``adv_lam``, ``lecam_weight``, ...) and ``ema_decay``. With ``product = False`` the lists are
zipped: lists longer than one must share one length K; one-entry lists are shared by all runs.
Runs are named ``seed<s>`` followed by ``_<name><value>`` for every swept name, e.g.
``seed0_adv_step_size0.01``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Mapping
from typing import Any, Sequence

import ml_collections
import numpy as np

from jaxgan_lth import io_utils, parallel
from jaxgan_lth import parts as parts_lib

STRATEGIES = ("vmap", "loop")
SWEEPABLE_STAGES = ("train", "imp", "ticket", "dst")
#: Traced strengths owned by the step itself (not by a part), with their ranges.
STEP_HPARAMS = {"ema_decay": parts_lib.HParam("ema_decay", 0.0, 1.0, high_open=True)}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a stage.

    Attributes:
      name: folder name under ``<stage>/runs/`` (e.g. ``seed0_adv_step_size0.01``).
      seed: PRNG seed of the run.
      hparams: the swept strengths with this run's values (others keep the config's).
    """

    name: str
    seed: int
    hparams: dict


def parse_seeds(seeds: Any, default: int) -> list[int]:
    """``(0, 1)``, ``[0, 1]``, ``0``, ``"0,1"`` as ints; empty -> ``[default]``.

    Raises:
      ValueError: an entry that is not an integer (named).
    """
    if isinstance(seeds, str):
        items = [s.strip() for s in seeds.split(",") if s.strip()]
    elif isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        items = [seeds]
    else:
        items = list(seeds or ())
    out = []
    for s in items:
        try:
            value = int(s)
        except (TypeError, ValueError):
            value = None
        if value is None or isinstance(s, bool) or (isinstance(s, float) and s != value):
            raise ValueError(f"config.sweep.seeds = {seeds!r}: {s!r} is not an integer seed.")
        out.append(value)
    return out or [int(default)]


def parse_hparams(spec: Any, known: Sequence[str]) -> dict[str, list[float]]:
    """``"a=1,2; b=3"`` or ``{"a": [1, 2], "b": 3}`` as ``{"a": [1.0, 2.0], "b": [3.0]}``.

    Raises:
      ValueError: an item without ``=``, an unknown or repeated name (accepted names listed), a
        value that is not a finite number, or an empty value list.
    """
    items: list[tuple[str, Any]] = []
    if isinstance(spec, Mapping) or isinstance(spec, ml_collections.ConfigDict):
        items = [(str(k), v) for k, v in dict(spec).items()]
    else:
        for item in str(spec or "").split(";"):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise ValueError(
                    f"config.sweep.hparams item {item!r} must look like 'name=v1,v2,...'.")
            name, values = (s.strip() for s in item.split("=", 1))
            if any(n == name for n, _ in items):
                raise ValueError(f"config.sweep.hparams names {name!r} twice.")
            items.append((name, [v for v in values.split(",") if v.strip()]))
    out: dict[str, list[float]] = {}
    for name, values in items:
        if name not in known:
            raise ValueError(
                f"config.sweep.hparams: unknown or inactive strength {name!r}; accepted here: "
                f"{tuple(known)}.")
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        try:
            vals = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(
                f"config.sweep.hparams: {name}={values!r} holds a value that is not a number."
            ) from None
        if not vals or not all(math.isfinite(v) for v in vals):
            raise ValueError(f"config.sweep.hparams: {name} needs one or more finite numbers.")
        out[name] = vals
    return out


def run_name(seed: int, hparams: dict) -> str:
    """``seed0_adv_step_size0.01``: the seed, then every swept strength and value."""
    return f"seed{seed}" + "".join(f"_{k}{format(v, 'g')}" for k, v in hparams.items())


def stages_of(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The stages ``config.sweep.stages`` runs as sweeps."""
    if "sweep" not in config:
        return ()
    return tuple(s.strip() for s in str(config.sweep.stages).split(",") if s.strip())


def known_hparams(stage_config: ml_collections.ConfigDict) -> dict[str, tuple]:
    """``{name: (owner, HParam)}`` of the strengths a stage's config can sweep.

    ``ema_decay`` and those of the parts it switches on (AdvAug: only those its mode reads).
    """
    out = {n: ("train", hp) for n, hp in STEP_HPARAMS.items()}
    for part in parts_lib.build(stage_config):
        used = part.used_hparams() if hasattr(part, "used_hparams") else tuple(part.HPARAMS)
        for n in used:
            out[n] = (part.section, part.HPARAMS[n])
    return out


def parse_runs(config: ml_collections.ConfigDict, stage_config=None) -> list[RunSpec]:
    """The K runs of a swept stage (in the fixed order of the run axis).

    Args:
      config: the full config (its ``sweep`` section and ``seed``).
      stage_config: the stage's config (which parts are on); default ``config``.

    Raises:
      ValueError: lists of different lengths (both named), a bad seed or strength, a value out
        of its range, an unknown strategy, two identical runs.
    """
    stage_config = stage_config or config
    sc = config.sweep
    if sc.strategy not in STRATEGIES:
        raise ValueError(f"config.sweep.strategy = {sc.strategy!r}; accepted: {STRATEGIES}.")
    seeds = parse_seeds(sc.seeds, config.seed)
    known = known_hparams(stage_config)
    lists = parse_hparams(sc.hparams, tuple(known))
    for name, vals in lists.items():
        for v in vals:
            known[name][1].check(name, v, "config.sweep.hparams")
    if "adv_radius" in lists and not float(stage_config.advaug.radius) > 0:
        raise ValueError(
            "config.sweep sweeps adv_radius but advaug.radius = 0 compiles the step without "
            "projection; set advaug.radius > 0 to enable it.")
    names = list(lists)
    if sc.product:
        combos = itertools.product(seeds, *(lists[n] for n in names))
        runs = [RunSpec(run_name(c[0], dict(zip(names, c[1:]))), c[0], dict(zip(names, c[1:])))
                for c in combos]
    else:
        entries = [("seeds", seeds)] + [(n, lists[n]) for n in names]
        long = [(n, len(v)) for n, v in entries if len(v) > 1]
        k = long[0][1] if long else 1
        for n, size in long[1:]:
            if size != k:
                raise ValueError(
                    f"config.sweep: {long[0][0]} has {k} entries but {n} has {size}; lists with "
                    "more than one entry must share one length K (one-entry lists are shared), "
                    "or set config.sweep.product=True for every combination.")
        full = {n: (v * k if len(v) == 1 else v) for n, v in entries}
        runs = []
        for i in range(k):
            hp = {n: full[n][i] for n in names}
            runs.append(RunSpec(run_name(full["seeds"][i], hp), full["seeds"][i], hp))
    dup = sorted({r.name for r in runs if sum(q.name == r.name for q in runs) > 1})
    if dup:
        raise ValueError(f"config.sweep describes identical runs {dup}: give every run a "
                         "different seed or value.")
    return runs


def seed_runs(config: ml_collections.ConfigDict) -> list[RunSpec]:
    """One run per distinct seed of ``config.sweep``: the runs of a swept ``imp`` stage.

    Each seed finds its own ticket; strengths are swept in the ticket stage, which takes the
    mask of the IMP run with its seed.
    """
    seeds = list(dict.fromkeys(parse_seeds(config.sweep.seeds, config.seed)))
    return [RunSpec(f"seed{s}", s, {}) for s in seeds]


def single_run(config: ml_collections.ConfigDict) -> list[RunSpec]:
    """The one run of an unswept stage (``config.seed``, no swept strengths)."""
    return [RunSpec(f"seed{int(config.seed)}", int(config.seed), {})]


def validate_config(config: ml_collections.ConfigDict, stage_configs: dict) -> None:
    """Checks the ``sweep`` section against the stages that will run.

    Args:
      config: the full config.
      stage_configs: ``{stage: its config}`` of the stages in ``config.stages``.

    Raises:
      ValueError: a swept stage that does not run or cannot be swept, a strategy, seed or
        strength the stage cannot take, ``imp`` swept without ``ticket`` swept.
    """
    stages = stages_of(config)
    if stages and config.sweep.strategy not in STRATEGIES:
        raise ValueError(f"config.sweep.strategy = {config.sweep.strategy!r}; accepted: "
                         f"{STRATEGIES}.")
    for s in stages:
        if s not in SWEEPABLE_STAGES:
            raise ValueError(
                f"config.sweep.stages = {config.sweep.stages!r}: {s!r} cannot be swept; "
                f"accepted: {SWEEPABLE_STAGES}.")
        if s not in stage_configs:
            raise ValueError(
                f"config.sweep.stages names {s!r} but config.stages = {config.stages!r} does "
                "not run it.")
        if s == "imp":  # one run per seed; strengths are swept by the ticket stage
            seed_runs(config)
        else:
            parse_runs(config, stage_configs[s])
    if "imp" in stages and "ticket" in stage_configs and "ticket" not in stages:
        raise ValueError(
            "config.sweep.stages sweeps 'imp' (one mask per run) but not 'ticket': add ticket "
            "to config.sweep.stages so each run trains its own ticket.")


def write_sweep_table(stage_dir: str, rows: dict[str, dict]) -> None:
    """``sweep.json`` and ``sweep.md``: one row per run (seed, strengths, steps, FID/KID)."""
    io_utils.write_json(os.path.join(stage_dir, "sweep.json"), rows)
    swept = sorted({k for r in rows.values() for k in r.get("swept", {})})
    head = ["run", "seed", *swept, "steps", "final FID", "final KID", "best FID", "diverged"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name, str(r.get("seed"))] + [format(r["swept"].get(k, ""), "g")
                                              if k in r["swept"] else "" for k in swept]

        def f(key, fmt):
            return fmt.format(r[key]) if r.get(key) is not None else "-"

        cells += [str(r.get("steps")), f("final_fid", "{:.2f}"), f("final_kid", "{:.4f}"),
                  f("best_fid", "{:.2f}"), str(r.get("diverged_at_step") or "")]
        lines.append("| " + " | ".join(cells) + " |")
    with open(os.path.join(stage_dir, "sweep.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def sweep_summary(stage_dir: str, runs: dict[str, dict], *, strategy: str, num_steps: int,
                  done: int, wall: float) -> dict:
    """The summary of a swept stage; process 0 also writes its table (:func:`write_sweep_table`).

    Args:
      stage_dir: the stage's folder (``sweep.json`` and ``sweep.md`` go there).
      runs: ``{run name: run summary}`` in the order of the run axis.
      strategy: the run-axis strategy that ran (``"vmap"`` or ``"loop"``).
      num_steps: the G step the runs reached.
      done: G steps trained in this session (0 when the runs were already complete).
      wall: seconds this session took.

    Returns:
      ``{"num_runs", "strategy", "steps", "wall_time_s", "iterations_per_s", "runs"}``
      (``iterations_per_s``: iterations of all K runs per second; None when ``done`` is 0).
    """
    if parallel.is_main_process():
        write_sweep_table(stage_dir, runs)
    return {"num_runs": len(runs), "strategy": strategy, "steps": int(num_steps),
            "wall_time_s": round(wall, 2),
            "iterations_per_s": round(done / wall, 3) if done else None, "runs": runs}
