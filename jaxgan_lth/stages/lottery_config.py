"""The lottery sections' validation: ``sparsity``, ``imp``, ``ticket`` and a shared IMP.

Kept apart from :mod:`jaxgan_lth.stages.lottery` (which runs IMP and the ticket) so that the
``imp`` and ``ticket`` stages validate their sections with the module that also reads a shared
IMP's config (:func:`imp_source_config`) without importing the runner. The rules follow Chen
et al., NeurIPS 2021 (``../shared/seeds/001_*.txt`` Sec. 3.2, App. A2.2): global or layerwise
magnitude pruning of G and/or D by a ratio per round, rewinding to theta_0 or round 0's step k.
"""

from __future__ import annotations

import os

import ml_collections

from jaxgan_lth import config_lib, io_utils
from jaxgan_lth import parts as parts_lib
from jaxgan_lth.stages.base import NETS, parse_stages, stage_config
from jaxgan_lth.training import sweep as sweep_lib

MASK_TYPES = ("imp", "random_like", "omp", "random_global", "dense", "slimming", "small_dense")
PRUNE_NETS = ("g", "d", "gd")
PRUNE_METHODS = ("global", "layerwise")
MAGNITUDES = ("g", "ema")
#: sparsity.mask_chains: "one" chain, or "two" (the released SNGAN IMP: the rounds' chain on G's
#: magnitudes, the ticket's in DIR/masks_ema on the EMA G's; pruning.ema_chain_weights)
MASK_CHAINS = ("one", "two")


def validate_lottery(config: ml_collections.ConfigDict) -> None:
    """Checks the ``sparsity``, ``imp`` and ``ticket`` sections (the two functions below).

    Raises:
      ValueError: as :func:`validate_imp_sections` and :func:`validate_ticket_section`.
    """
    validate_imp_sections(config)
    validate_ticket_section(config)


def validate_imp_sections(config: ml_collections.ConfigDict) -> None:
    """Checks the ``sparsity`` and ``imp`` sections (the ``imp`` stage's).

    Raises:
      ValueError: a pruning ratio outside (0, 1), an unknown pruned network, method, magnitude
        source or mask chains (or two chains with magnitudes other than "g"), a negative number
        of rounds, ``imp.num_steps`` < 1, a rewind step outside [0, imp.num_steps].
    """
    sp = config.sparsity
    if sp.prune not in PRUNE_NETS:
        raise ValueError(f"config.sparsity.prune = {sp.prune!r}; accepted: {PRUNE_NETS}.")
    for net in NETS:
        r = sp[f"{net}_ratio"]
        if not 0.0 < r < 1.0:
            raise ValueError(f"config.sparsity.{net}_ratio = {r} must be in (0, 1).")
    if sp.method not in PRUNE_METHODS:
        raise ValueError(f"config.sparsity.method = {sp.method!r}; accepted: {PRUNE_METHODS}.")
    if sp.get("magnitudes", "g") not in MAGNITUDES:
        raise ValueError(
            f"config.sparsity.magnitudes = {sp.magnitudes!r}; accepted: {MAGNITUDES}.")
    chains, mags = sp.get("mask_chains", "one"), sp.get("magnitudes", "g")
    if chains not in MASK_CHAINS or (chains == "two" and mags != "g"):
        raise ValueError(f"config.sparsity.mask_chains = {chains!r} (magnitudes {mags!r}); "
                         f"accepted: {MASK_CHAINS}, 'two' with magnitudes 'g' (rounds pruned "
                         "on G, the ticket's chain on the EMA G).")
    if config.imp.rounds < 0:
        raise ValueError(f"config.imp.rounds = {config.imp.rounds} must be >= 0.")
    if int(config.imp.num_steps) < 1:
        raise ValueError(f"config.imp.num_steps = {config.imp.num_steps} must be >= 1.")
    if config.imp.rewind_step < 0 or config.imp.rewind_step > config.imp.num_steps:
        raise ValueError(
            f"config.imp.rewind_step = {config.imp.rewind_step} must be in [0, imp.num_steps="
            f"{config.imp.num_steps}].")


def validate_ticket_section(config: ml_collections.ConfigDict) -> None:
    """Checks the ``ticket`` section's lottery keys (the ``ticket`` stage's).

    Raises:
      ValueError: ``ticket.num_steps`` < 1, an unknown mask type, a target sparsity outside
        (0, 1) (0 = unused).
    """
    if int(config.ticket.num_steps) < 1:
        raise ValueError(f"config.ticket.num_steps = {config.ticket.num_steps} must be >= 1.")
    if config.ticket.mask_type not in MASK_TYPES:
        raise ValueError(
            f"config.ticket.mask_type = {config.ticket.mask_type!r}; accepted: {MASK_TYPES}.")
    ts = config.ticket.target_sparsity
    if ts and not 0.0 < ts < 1.0:
        raise ValueError(f"config.ticket.target_sparsity = {ts} must be in (0, 1) (0 = unused).")


#: Sections of the ``imp`` stage config that must equal those of ``ticket.imp_workdir``'s, so its
#: theta_0 checkpoint, masks and round-0 weights are the ones this config would have made.
IMP_SOURCE_SECTIONS = ("seed", "data", "model", "sparsity", "imp", "train")


def imp_source_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict | None:
    """The config stored in ``ticket.imp_workdir`` (None when that key is empty).

    Raises:
      ValueError: the folder holds no finished IMP (no ``config.json`` or no ``masks/``).
    """
    src = config.ticket.get("imp_workdir", "")
    if not src:
        return None
    cfg = io_utils.read_json(os.path.join(src, "config.json"))
    if cfg is None or not os.path.isdir(os.path.join(src, "masks")):
        raise ValueError(
            f"config.ticket.imp_workdir={src!r} is not a workdir with IMP masks (expected "
            f"{os.path.join(src, 'config.json')} and {os.path.join(src, 'masks')}); run "
            "--config.stages=imp there first.")
    return ml_collections.ConfigDict(cfg)


def validate_imp_source(config: ml_collections.ConfigDict, stages: list[str]) -> None:
    """Checks ``ticket.imp_workdir`` (a shared IMP for several ticket runs) before training.

    The ticket then takes its masks, theta_0 (rewinding) and, for ``mask_type="omp"``, round 0's
    trained weights from that workdir, whose IMP stage config must equal this config's
    (sections :data:`IMP_SOURCE_SECTIONS` and those of the parts switched on in either config):
    otherwise its theta_0 is not this config's initialisation.

    Raises:
      ValueError: ``imp_workdir`` set together with ``mask_workdir`` or with the ``imp`` stage,
        no IMP there, or differing keys (each named with both values).
    """
    if not config.ticket.get("imp_workdir", ""):
        return
    if config.ticket.mask_workdir:
        raise ValueError("config.ticket.imp_workdir and config.ticket.mask_workdir are both set; "
                         "imp_workdir already supplies the masks: set only one.")
    if "imp" in stages:
        raise ValueError(f"config.stages={config.stages!r} runs imp here while "
                         f"config.ticket.imp_workdir={config.ticket.imp_workdir!r} names another "
                         "IMP; drop 'imp' from stages or clear imp_workdir.")
    if "ticket" not in stages:
        return
    src = imp_source_config(config)
    mine, theirs = stage_config(config, "imp"), stage_config(src, "imp")
    # a part's section counts when the part is on in either config: a section the source's
    # (older) config lacks is equivalent to that part switched off
    sections = IMP_SOURCE_SECTIONS + tuple(
        c.section for c in parts_lib.REGISTRY.values()
        if c.enabled(mine) or (c.section in theirs and c.enabled(theirs)))
    a = config_lib.flatten({k: config_lib.to_dict(mine)[k] for k in sections if k in mine})
    b = config_lib.flatten({k: config_lib.to_dict(theirs).get(k) for k in sections if k in mine})
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        details = "; ".join(f"{k}: {b.get(k)!r} there, {a.get(k)!r} here" for k in diff[:8])
        raise ValueError(
            f"config.ticket.imp_workdir={config.ticket.imp_workdir!r} ran IMP with another "
            f"config ({details}); its masks and theta_0 do not belong to this config.")


def imp_runs(config: ml_collections.ConfigDict, stages) -> list[sweep_lib.RunSpec]:
    """The runs of the IMP a ticket (or slimming's dense run) takes its theta_0 from.

    One run per seed when that IMP is swept (``sweep.stages`` has ``imp`` and it runs), else
    one run; the IMP is ``ticket.imp_workdir``'s when set (its stored config decides), else
    this config's (``stages``: the stages this pipeline runs).

    Raises:
      ValueError: as :func:`imp_source_config`.
    """
    src = imp_source_config(config)
    if src is not None:
        swept = "imp" in sweep_lib.stages_of(src) and "imp" in parse_stages(src)
    else:
        src = config
        swept = "imp" in sweep_lib.stages_of(config) and "imp" in stages
    return sweep_lib.seed_runs(src) if swept else sweep_lib.single_run(src)
