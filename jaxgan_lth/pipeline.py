"""The pipeline of stages: ``train`` (dense), ``imp`` (find tickets), ``ticket`` (train one), ...

This module sits on top of the stages (:mod:`jaxgan_lth.stages`, one interface and a registry)
and the one loop (:mod:`jaxgan_lth.training.loop`): it validates the whole config before anything
runs
or any folder is written (:func:`validate_config`, which calls every registered stage's
``validate``) and runs the stages of :func:`jaxgan_lth.stages.plan` in order, each as one run or
as a sweep of K runs (``config.sweep``, :mod:`jaxgan_lth.training.sweep`). It names no stage: each
stage's config, folder, workdir checks and run come from the stage.

The lottery-ticket stages follow Chen et al., NeurIPS 2021 (``../shared/seeds/001_*.txt``
Sec. 3.2, App. A2.2) and the released code (seed_repos.md sections 0 and 1.2):

* IMP round r (r = 0 .. R-1) trains G and D from theta_0 under mask m_r (m_0 dense) with fresh
  optimizers, then prunes ``sparsity.g_ratio`` (and/or ``d_ratio``) of the remaining prunable
  weights by magnitude (of the trained G, or of the EMA G with ``sparsity.magnitudes="ema"``,
  as UDEG SNGAN's stage 2) to get m_{r+1}; density(m_r) = 0.8^r.
* Rewinding restores theta_0 from round 0's step-0 Orbax checkpoint (or step k of round 0,
  "late rewinding", ``imp.rewind_step = k``) into a target built with ``jax.eval_shape``:
  the initial weights are read back, never recomputed. D is reset every round
  (``imp.reset_d``; False keeps the trained D).
* Stage ``ticket`` trains m_R (or the round nearest ``ticket.target_sparsity``, a mask from
  another workdir, or a baseline mask) from the rewound weights with its own augmentation
  sections.

A swept ``imp`` stage runs one IMP per seed (one mask per run); a swept ``ticket`` stage trains
K tickets under the IMP mask (of the IMP run with its seed), e.g. 3 seeds x 3 AdvAug strengths.

Workdir layout::

    DIR/config.json, DIR/subset_indices.json, DIR/summary.json
    DIR/train/            the dense stage (one run) or train/runs/<name>/ (a sweep)
    DIR/masks/            Orbax steps r = 0..R: masks m_r stacked over the IMP runs [K, ...]
    DIR/imp/round_XX/     checkpoints/, samples/, densities.json, result.json
    DIR/ticket/           checkpoints/, samples/, densities.json, result.json; runs/, sweep.md
    DIR/dst/              the dst stage (masks/, densities.json, result.json)
    DIR/ticket_slimming/  network slimming's dense run (stage slimming, before such a ticket)

Every step is resumable: a finished round is marked by its mask on disk, an interrupted
stage resumes from its latest checkpoint, and pruning is deterministic.
"""

from __future__ import annotations

import os
import time

import ml_collections

from jaxgan_lth import checkpointing, config_lib, io_utils, parallel, workdir_lock
from jaxgan_lth import models as models_lib
from jaxgan_lth import parts as parts_lib
from jaxgan_lth import stages as stages_lib
from jaxgan_lth.training import precision
from jaxgan_lth.training import step as step_lib
from jaxgan_lth.training import sweep as sweep_lib

# ------------------------------------------------------------------------------------------------
# Config validation
# ------------------------------------------------------------------------------------------------


def validate_config(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """Validates the whole config before any stage runs or any folder is written.

    Calls each module's own validator with its own constants: training values
    (:func:`config_lib.validate`), the step (:func:`step.validate_config`), data
    (:func:`data.validate_config`), evaluation against the data source
    (:func:`evaluation.validate_config`), the model name, every registered stage's sections
    (:meth:`jaxgan_lth.stages.Stage.validate`, whether or not it runs), every part (top-level
    sections and the ticket's), each running stage's config and the sweep.

    Returns:
      ``{stage: stage config}`` of the stages that will run (:func:`jaxgan_lth.stages.plan`:
      ``config.stages`` and the stages they require).

    Raises:
      ValueError: the first bad value, naming its key and what is accepted.
    """
    from jaxgan_lth import data as data_lib
    from jaxgan_lth import evaluation

    stages = stages_lib.plan(config)
    config_lib.validate(config)
    step_lib.validate_config(config)
    data_lib.validate_config(config.data)
    if config.eval.enabled:
        evaluation.validate_config(config)
    if config.model.name not in models_lib.available_models():
        raise ValueError(f"config.model.name = {config.model.name!r}; accepted: "
                         f"{tuple(models_lib.available_models())}.")
    model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
    models_lib.get_model(  # checks the model's own keys; builds no parameters
        config.model.name, resolution=config.data.resolution, channels=config.data.channels,
        num_classes=10 if config.model.conditional else 0, **model_kwargs)
    mesh = parallel.create_mesh()  # the batch is split over the devices (loop.build_engine)
    for key in ("d_batch_size", "g_batch_size"):
        parallel.check_batch_divisible(config.train[key], mesh, f"train.{key}")
    if config.data.name == "folder":
        from jaxgan_lth.data import datasets as datasets_lib

        n = datasets_lib.folder_training_size(config.data)
        if n < config.train.d_batch_size:
            raise ValueError(
                f"data.folder={config.data.folder!r} gives {n} training images, fewer than one "
                f"D batch (train.d_batch_size={config.train.d_batch_size}); accepted: a batch "
                f"of at most {n}, or a folder with more images.")
    for cls in stages_lib.REGISTRY.values():
        cls().validate(config)
    parts_lib.validate_config(config)
    parts_lib.validate_config(config.ticket, prefix="ticket.")
    stage_cfgs = {s: stages_lib.stage_config(config, s) for s in stages}
    for s, sc in stage_cfgs.items():
        step_lib.validate_config(sc)
    sweep_lib.validate_config(config, stage_cfgs)
    return stage_cfgs


# ------------------------------------------------------------------------------------------------


def _check_writable(workdir: str) -> None:
    """Refuses a workdir this process cannot write, before any work.

    For a new workdir its nearest existing parent is checked. (A read-only workdir gave a raw
    OSError on ``config.json.tmp``.)
    """
    path = os.path.abspath(workdir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise ValueError(f"--workdir={workdir!r}: {path} is a file, not a folder.")
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(
            f"--workdir={workdir!r}: {path} is not writable by this user (read-only file "
            "system or permissions); a run writes its config, checkpoints and logs there. Use a "
            "writable --workdir (copy the folder to resume it elsewhere).")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       allow_config_change: bool = False) -> dict:
    """Validates the config, then runs its stages in ``workdir``; returns the summary.

    ``workdir/summary.json`` is rewritten after every stage, so it is useful while a long
    pipeline runs (it keeps the stages of earlier sessions). Re-running the same command after
    a kill resumes where the run stopped.

    Order: the whole config is validated, the workdir checked (writable; a ``ticket`` stage's
    inputs each stage reads present, :meth:`jaxgan_lth.stages.Stage.check_workdir`) and locked
    (:class:`workdir_lock.WorkdirLock`: a second process is refused). ``config.json`` (new or
    changed with ``allow_config_change``) and ``summary.json`` are written only once the first
    checkpoint of the run has been saved or restored, so a config that fails on the workdir's
    checkpoints or masks (e.g. another model) leaves the workdir as it was.

    The stages run inside :func:`jaxgan_lth.training.precision.matmul_precision`
    (``train.matmul_precision``:
    training, sample grids, evaluation's generator). The persistent compilation cache
    (``train.compilation_cache_dir``) is set by :mod:`jaxgan_lth.main` before anything compiles;
    a caller of this function sets it with
    :func:`jaxgan_lth.training.precision.set_compilation_cache`.

    Raises:
      ValueError: invalid config values (before anything is written), a workdir holding a run
        with a different config, bad data or mask inputs (messages name the bad value).
      PermissionError: the workdir is not writable.
      workdir_lock.WorkdirLockedError: another process runs in ``workdir``.
    """
    stage_cfgs = validate_config(config)
    stages = list(stage_cfgs)
    for name in stages:
        stages_lib.get(name).check_workdir(config, workdir, stages)
    main = parallel.is_main_process()
    if main:
        _check_writable(workdir)
    pending = (config_lib.check_against_workdir(config, workdir, allow_config_change)
               if os.path.isdir(workdir) and main else config_lib.to_dict(config))
    os.makedirs(workdir, exist_ok=True)
    lock = workdir_lock.WorkdirLock(workdir)
    if main:  # one writer (and one lock holder) on a shared file system
        lock.acquire()
    summary_path = os.path.join(workdir, "summary.json")
    old = (io_utils.read_json(summary_path) or {}) if main else {}
    result: dict = {"stages": dict(old.get("stages") or {})}
    committed = [False]

    def commit():  # the run's first checkpoint loaded: the new config.json may be written
        if main and not committed[0]:
            io_utils.write_json(os.path.join(workdir, "config.json"), pending)
        committed[0] = True

    t0 = time.time()
    ctx = stages_lib.Context(config, workdir, stage_cfgs)
    try:
        # every program of the stages is traced under train.matmul_precision
        with checkpointing.on_first_success(commit), precision.matmul_precision(config):
            for name in stages:
                result["stages"][name] = stages_lib.get(name).run(ctx)
                result["wall_time_s"] = round(time.time() - t0, 2)
                if main and committed[0]:
                    io_utils.write_json(summary_path, result)
        commit()
        if main:
            io_utils.write_json(summary_path, result)
    finally:
        checkpointing.close_all()  # Orbax's threads end now, not in the interpreter's shutdown
        lock.release()
    return result
