"""The stage interface, the registry of stages and what the stages share.

Every stage of the pipeline (``train``, ``imp``, ``ticket``, ``dst`` and network slimming's
dense run ``slimming``) is a subclass of :class:`Stage` registered by name with
:func:`register` (the name -> class registry of scenic's model and dataset registries).
:mod:`jaxgan_lth.pipeline`, :mod:`jaxgan_lth.evaluate` and :mod:`jaxgan_lth.report` iterate over
:data:`REGISTRY` and call the interface; none of them names a stage.

A stage says:

* ``name``: its name in ``config.stages`` and the key of its row in ``DIR/summary.json``;
* :meth:`Stage.validate`: checks its config sections (called for every registered stage by the
  pipeline's whole-config validation, before any stage runs or any folder is written);
* :meth:`Stage.config_for`: the run config it trains with (its ``num_steps``, its part
  sections, its step options);
* :meth:`Stage.folder` / :meth:`Stage.run_folders` / :meth:`Stage.owns`: where its outputs and
  its runs' checkpoints live (what ``evaluate --stage`` and the report read);
* :meth:`Stage.requires`: stages that must run before it in this pipeline (the ticket's
  network-slimming mask needs the ``slimming`` stage's dense run);
* :meth:`Stage.check_workdir`: inputs it needs from disk, checked before anything is written;
* :meth:`Stage.run`: runs (or resumes) it and returns its summary row.

The stage modules register themselves when imported; ``jaxgan_lth/stages/__init__.py`` imports
them all, so the registry is complete once any ``jaxgan_lth.stages`` module has been imported.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import os
from typing import Any, Callable, ClassVar, Sequence

import ml_collections

from jaxgan_lth.sparsity import pruning
from jaxgan_lth.training import loop
from jaxgan_lth.training import sweep as sweep_lib

NETS = ("g", "d")


@dataclasses.dataclass
class Context:
    """What the stages of one pipeline run share.

    Attributes:
      config: the full run config (validated).
      workdir: the run's folder.
      stage_cfgs: ``{stage: stage config}`` of the stages that run (``pipeline.validate_config``).
      shared: objects built once and shared by several stages (e.g. the lottery's IMP state,
        :func:`jaxgan_lth.stages.lottery.lottery_of`), filled by :meth:`get`.
    """

    config: ml_collections.ConfigDict
    workdir: str
    stage_cfgs: dict
    shared: dict = dataclasses.field(default_factory=dict)

    def get(self, key: str, build: Callable[[], Any]) -> Any:
        """``shared[key]``, built with ``build()`` on first use."""
        if key not in self.shared:
            self.shared[key] = build()
        return self.shared[key]

    def stage_config(self, name: str) -> ml_collections.ConfigDict:
        """The config of stage ``name`` (validated one when it runs here)."""
        return self.stage_cfgs.get(name) or stage_config(self.config, name)


class Stage(abc.ABC):
    """One stage of the pipeline (see the module docstring for the interface).

    Subclasses set :attr:`name` (and :attr:`folder_name` when the folder differs), implement
    :meth:`run` and override what differs from the defaults; they are stateless (what stages
    share lives in the :class:`Context`).
    """

    #: the stage's name in ``config.stages`` and in ``summary.json``
    name: ClassVar[str] = ""
    #: its folder under the workdir ("" = :attr:`name`)
    folder_name: ClassVar[str] = ""

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """Checks the stage's config sections (whether or not the stage runs).

        Raises:
          ValueError: a bad value, naming its key and what is accepted.
        """

    def config_for(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """The run config the stage trains with; default: a copy of ``config``."""
        cfg = copy.deepcopy(config)
        cfg.unlock()
        return cfg

    def folder(self, workdir: str) -> str:
        """The stage's folder, ``workdir/<folder_name or name>``."""
        return os.path.join(workdir, self.folder_name or self.name)

    def run_folders(self, config: ml_collections.ConfigDict) -> list[str]:
        """The run folders, relative to the workdir (``/``-separated), in training order.

        The last one is the stage's result (what ``evaluate --stage=<name>`` restores).
        """
        return [self.folder_name or self.name]

    def owns(self, rel: str) -> bool:
        """Whether ``rel`` (relative to the workdir) is one of this stage's run folders."""
        return rel == (self.folder_name or self.name)

    def requires(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        """Stages that must run before this one in the same pipeline (default: none)."""
        del config
        return ()

    def check_workdir(self, config: ml_collections.ConfigDict, workdir: str,
                      stages: Sequence[str]) -> None:
        """Checks inputs the stage reads from disk, before anything is written (default: none).

        Args:
          config: the full config.
          workdir: the run's folder.
          stages: the stages this pipeline runs (:func:`plan`).
        """

    def runs(self, config: ml_collections.ConfigDict,
             stage_cfg: ml_collections.ConfigDict) -> list[sweep_lib.RunSpec]:
        """The stage's runs: one run, or the swept grid (``config.sweep``)."""
        if self.name not in sweep_lib.stages_of(config):
            return sweep_lib.single_run(config)
        return sweep_lib.parse_runs(config, stage_cfg)

    @abc.abstractmethod
    def run(self, ctx: Context) -> dict:
        """Runs (or resumes) the stage in ``ctx.workdir``; returns its row of ``summary.json``."""


#: name -> stage class, in registration order (the order stages are listed in errors).
REGISTRY: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator adding a :class:`Stage` subclass to :data:`REGISTRY` under its name.

    Raises:
      ValueError: no name, or the name is taken by another class.
    """
    if not cls.name:
        raise ValueError(f"stage class {cls.__name__} has no name.")
    if REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"stage name {cls.name!r} is registered twice "
                         f"({REGISTRY[cls.name].__name__} and {cls.__name__}).")
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> Stage:
    """The registered stage ``name``.

    Raises:
      ValueError: an unknown name (the registered ones listed).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown stage {name!r}; accepted: {tuple(REGISTRY)}.")
    return REGISTRY[name]()


def parse_stages(config: ml_collections.ConfigDict) -> list[str]:
    """``config.stages`` ("imp,ticket") as a list, checked against :data:`REGISTRY`.

    Raises:
      ValueError: an unknown stage name (accepted ones listed) or an empty list.
    """
    stages = [s.strip() for s in str(config.stages).split(",") if s.strip()]
    bad = [s for s in stages if s not in REGISTRY]
    if bad or not stages:
        raise ValueError(
            f"config.stages = {config.stages!r}: unknown stage(s) {bad}; accepted: "
            f"comma-separated names from {tuple(REGISTRY)}.")
    return stages


def plan(config: ml_collections.ConfigDict) -> list[str]:
    """The stages the pipeline runs, in order.

    ``config.stages`` with each stage's :meth:`Stage.requires` inserted before it (once).

    Raises:
      ValueError: as :func:`parse_stages`.
    """
    out: list[str] = []

    def add(name):
        for dep in get(name).requires(config):
            if dep not in out:
                add(dep)
        if name not in out:
            out.append(name)

    for name in parse_stages(config):
        add(name)
    return out


def stage_config(config: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
    """The run config one stage sees (:meth:`Stage.config_for` of the registered stage)."""
    return get(stage).config_for(config)


def runs_of(config, stage: str, stage_cfg) -> list[sweep_lib.RunSpec]:
    """The runs of one stage: one run, one per seed (``imp``) or the swept grid."""
    return get(stage).runs(config, stage_cfg)


def pruned_nets(config) -> tuple[str, ...]:
    """The pruned networks of ``config.sparsity.prune`` ("g", "d" or "gd") as a tuple."""
    return tuple(n for n in NETS if n in config.sparsity.prune)


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
