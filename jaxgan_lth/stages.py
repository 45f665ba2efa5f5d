"""What every stage of the pipeline shares: stage names, each stage's config, its runs.

Kept apart from :mod:`jaxgan_lth.pipeline` (which runs the stages) so that the stage modules
(:mod:`jaxgan_lth.lottery`, :mod:`jaxgan_lth.dst_stage`) and the pipeline use one definition
without importing each other.
"""

from __future__ import annotations

import copy

import ml_collections

from jaxgan_lth import baselines, loop
from jaxgan_lth import parts as parts_lib
from jaxgan_lth import sweep as sweep_lib
from jaxgan_lth.sparsity import pruning

NETS = ("g", "d")
STAGES = ("train", "imp", "ticket", "dst")


def parse_stages(config: ml_collections.ConfigDict) -> list[str]:
    """``config.stages`` ("imp,ticket") as a list, checked against :data:`STAGES`.

    Raises:
      ValueError: an unknown stage name (accepted ones listed) or an empty list.
    """
    stages = [s.strip() for s in str(config.stages).split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ValueError(
            f"config.stages = {config.stages!r}: unknown stage(s) {bad}; accepted: "
            f"comma-separated names from {STAGES}.")
    return stages


def stage_config(config: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
    """The run config one stage sees.

    ``imp`` / ``ticket``: their ``num_steps`` copied into ``train``; the ticket also takes the
    part sections it has (``ticket.diffaug``, ``ticket.advaug``, ...) in place of the top-level
    ones, so augmentations can be switched on for the ticket only. ``dst``: ``dst.num_steps``
    and the step's ``train.mask_grads`` (``dst.inactive_moments == "zero"``) and ``train.sema``
    (``dst.sema``), the keys :func:`jaxgan_lth.step.make_step_fns` reads (absent elsewhere:
    masked gradients, plain masked EMA).
    """
    cfg = copy.deepcopy(config)
    cfg.unlock()
    if stage in ("imp", "ticket"):
        section = cfg.imp if stage == "imp" else cfg.ticket
        cfg.train.num_steps = section.num_steps
    if stage == "dst":  # sparse from scratch (jaxgan_lth/dst_stage.py); top-level parts
        cfg.train.num_steps = cfg.dst.num_steps
        # the step's sparse-update options (jaxgan_lth/updates.py masked_update, ema_update)
        cfg.train.mask_grads = cfg.dst.get("inactive_moments", "dense") == "zero"
        cfg.train.sema = bool(cfg.dst.get("sema", True))
    if stage == "ticket":
        for cls in parts_lib.REGISTRY.values():
            if cls.section in cfg and cls.section in cfg.ticket:
                cfg[cls.section] = copy.deepcopy(cfg.ticket[cls.section])
        if cfg.ticket.mask_type == "small_dense":  # the parameter-matched narrower G
            cfg.model.g_channels = baselines.small_dense_width(config)[0]
    return cfg


def pruned_nets(config) -> tuple[str, ...]:
    """The pruned networks of ``config.sparsity.prune`` ("g", "d" or "gd") as a tuple."""
    return tuple(n for n in NETS if n in config.sparsity.prune)


def runs_of(config, stage: str, stage_cfg) -> list[sweep_lib.RunSpec]:
    """The runs of one stage: one run, one per seed (``imp``) or the swept grid."""
    if stage not in sweep_lib.stages_of(config):
        return sweep_lib.single_run(config)
    if stage == "imp":
        return sweep_lib.seed_runs(config)
    return sweep_lib.parse_runs(config, stage_cfg)


def strategy(config) -> str:
    """How a sweep's runs execute (``config.sweep.strategy``; "loop" without a sweep)."""
    return config.sweep.strategy if "sweep" in config else "loop"


def density_summary(masks, patterns, nets) -> dict:
    """``{g,d}_density``, ``_sparsity`` and ``_pruned`` of one run's masks (its run info)."""
    out = {}
    for n in NETS:
        d = pruning.density(masks[n], patterns)
        out[f"{n}_density"] = round(d, 6)
        out[f"{n}_sparsity"] = round(1.0 - d, 6)
        out[f"{n}_pruned"] = n in nets
    return out


EVAL_KEYS = loop.EVAL_KEYS


def result_fields(summary: dict) -> dict:
    """Evaluation fields and last metrics of a one-run summary, or per run of a sweep."""
    if "runs" in summary:
        return {"num_runs": summary["num_runs"],
                "runs": {n: {"seed": s["seed"], "swept": s["swept"],
                             **{k: s[k] for k in EVAL_KEYS if k in s},
                             "diverged_at_step": s["diverged_at_step"]}
                         for n, s in summary["runs"].items()}}
    return {**{k: summary[k] for k in EVAL_KEYS if k in summary},
            "last_metrics": summary["last_metrics"]}
