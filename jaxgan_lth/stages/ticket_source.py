"""Which IMP round a ticket trains, and the check that its IMP is finished.

The ``ticket`` stage trains the mask m_r of one IMP round (Chen et al., NeurIPS 2021,
``../shared/seeds/001_*.txt`` Sec. 3.2: the ticket of the last round R = ``imp.rounds``).
``ticket.round = -1`` and ``ticket.target_sparsity`` both need the masks of a *finished* IMP:
m_0 .. m_R, where R is ``imp.rounds`` of the config that ran the IMP. Without this check a
ticket started after a killed IMP silently trained the last mask on disk (an earlier round).

Mask m_{r+1} is written after round r's ``result.json``, so a mask on disk marks its round as
finished; an explicit ``ticket.round = r`` needs only m_r.
"""

from __future__ import annotations

import os

import ml_collections

from jaxgan_lth import checkpointing, io_utils

#: mask types whose masks come from the IMP (the others need no IMP masks).
IMP_MASK_TYPES = ("imp", "random_like", "random_global", "omp")


def source_rounds(config: ml_collections.ConfigDict, workdir: str, mask_dir: str) -> int:
    """R = ``imp.rounds`` of the IMP whose masks are in ``mask_dir``.

    The config's own ``imp.rounds`` when ``mask_dir`` is ``workdir/masks``, else that of the
    ``config.json`` next to ``mask_dir`` (``ticket.mask_workdir`` or ``ticket.imp_workdir``).

    Raises:
      ValueError: another workdir's masks without a readable ``config.json`` beside them.
    """
    if os.path.abspath(mask_dir) == os.path.abspath(os.path.join(workdir, "masks")):
        return int(config.imp.rounds)
    path = os.path.join(os.path.dirname(os.path.abspath(mask_dir)), "config.json")
    cfg = io_utils.read_json(path)
    if not cfg or "imp" not in cfg or "rounds" not in cfg["imp"]:
        raise ValueError(
            f"the masks in {mask_dir} have no config.json with imp.rounds beside them ({path}), "
            "so it is unknown whether their IMP finished; give ticket.round >= 0 explicitly.")
    return int(cfg["imp"]["rounds"])


def resolve_round(config: ml_collections.ConfigDict, workdir: str, mask_dir: str,
                  steps: list[int]) -> tuple[list[int], int | None]:
    """The rounds a ticket may choose from and the round it asks for.

    Args:
      config: the full run config (``ticket.round``, ``ticket.target_sparsity``).
      workdir: this run's folder.
      mask_dir: the folder of the IMP masks (Orbax steps = rounds).
      steps: the rounds present in ``mask_dir``.

    Returns:
      ``(rounds, r)``: with ``ticket.round >= 0``, ``(steps, ticket.round)``; otherwise the
      finished IMP's rounds ``[0 .. R]`` and ``r = R`` (None with ``target_sparsity``, whose
      nearest round the caller picks among ``rounds``).

    Raises:
      ValueError: ``ticket.round = -1`` or ``target_sparsity`` and the IMP is not finished
        (the missing rounds named, and how to finish it).
    """
    tc = config.ticket
    if tc.round >= 0 and not tc.target_sparsity:
        return list(steps), int(tc.round)
    big_r = source_rounds(config, workdir, mask_dir)
    missing = [r for r in range(big_r + 1) if r not in steps]
    if missing:
        key = ("ticket.target_sparsity" if tc.target_sparsity else "ticket.round=-1 (the last "
               "round, imp.rounds)")
        raise ValueError(
            f"{key} needs the masks of a finished IMP of {big_r} rounds (m_0..m_{big_r}) in "
            f"{mask_dir}; masks present: {list(steps)}, missing: {missing}. The IMP there is "
            "unfinished: run imp first (--config.stages=imp,ticket resumes it), or choose an "
            "existing mask with --config.ticket.round=r.")
    return list(range(big_r + 1)), (None if tc.target_sparsity else big_r)


def check_before_writing(config: ml_collections.ConfigDict, workdir: str,
                         stages: list[str]) -> None:
    """Refuses a ``ticket`` stage without the IMP masks it needs, before anything is written.

    Only when this run does not produce them itself (``imp`` not in ``stages``) and the mask
    type takes IMP masks (:data:`IMP_MASK_TYPES`). Reads the mask folder without creating it.

    Raises:
      ValueError: no finished IMP (or not the asked round) in this workdir or the mask source,
        naming the folder, the rounds found and "run imp first".
    """
    tc = config.ticket
    if "ticket" not in stages or "imp" in stages or tc.mask_type not in IMP_MASK_TYPES:
        return
    src = tc.mask_workdir or tc.get("imp_workdir", "") or workdir
    mask_dir = os.path.join(src, "masks")
    steps = checkpointing.steps_in(mask_dir)
    if not steps:
        raise ValueError(
            f"config.stages={config.stages!r} trains a ticket, but {src!r} holds no IMP masks "
            f"({mask_dir} is missing or empty): run imp first (--config.stages=imp,ticket), or "
            "take masks from another workdir with --config.ticket.mask_workdir / imp_workdir.")
    _, r = resolve_round(config, workdir, mask_dir, steps)
    if r is not None and r not in steps:
        raise ValueError(
            f"config.ticket.round={tc.round} does not exist in {mask_dir}; available rounds: "
            f"{steps}.")
