"""The one training loop: K runs (K = 1 is an ordinary run) of one stage, every stage.

:func:`build_engine` loads the limited training set, builds the models and the composed step
(:mod:`jaxgan_lth.training.step`); :func:`train_runs` trains K runs that differ in seed, traced
strengths and masks, with one of two strategies of the run axis:

* ``"vmap"``: ``jax.jit(jax.vmap(iteration))``, all K runs in one batched program (states,
  masks and strengths stacked ``[K, ...]``, the training set shared); pays off on an
  accelerator that one small run leaves idle;
* ``"loop"``: the single-run compiled iteration called once per run; on CPUs, where one run
  fills the cores and XLA's grouped convolutions of a vmapped program are slow.

Both give the results of K separate runs. The state is checkpointed stacked ``[K, ...]`` in
``<stage>/checkpoints`` (step 0 always kept) whatever the strategy, so a stage resumes under
either. Outputs of a run (``metrics.jsonl``, TensorBoard summaries when clu is importable,
``samples/step_*.png``, ``eval.json``, ``best/`` by FID, ``summary.json``) go to the stage
folder itself when K = 1 and to ``<stage>/runs/<run name>/`` otherwise, with the table of all
runs in ``<stage>/sweep.json`` and ``<stage>/sweep.md``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxgan_lth import checkpointing, io_utils, parallel
from jaxgan_lth import data as data_lib
from jaxgan_lth import models as models_lib
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.training import periodic
from jaxgan_lth.training import step as step_lib
from jaxgan_lth.training import sweep as sweep_lib
from jaxgan_lth.training.run_axis import RunAxis, stack, unstack
from jaxgan_lth.training.sweep import RunSpec

Pytree = Any
NETS = ("g", "d")


@dataclasses.dataclass
class Engine:
    """Data, models and step functions of one stage config (everything but the masks)."""

    config: ml_collections.ConfigDict
    train_set: data_lib.TrainingSet
    data: dict
    generator: Any
    discriminator: Any
    fns: step_lib.StepFns
    mesh: Any
    num_classes: int

    @property
    def cond_classes(self) -> int:
        """Classes the model is conditioned on (0 = unconditional)."""
        return self.num_classes if self.config.model.conditional else 0


def build_engine(config: ml_collections.ConfigDict, workdir: str | None) -> Engine:
    """Loads the limited training set, builds the models and the step functions.

    Raises:
      ValueError: bad data, a conditional model without labels, a batch not divisible by the
        device count.
    """
    train_set = data_lib.load_training_set(config.data, workdir)
    num_classes = train_set.num_classes
    if config.model.conditional and num_classes < 1:
        raise ValueError(
            f"model.conditional=True needs class labels, but data set {train_set.name!r} has "
            "none; set model.conditional=False.")
    mesh = parallel.create_mesh()
    parallel.check_batch_divisible(config.train.d_batch_size, mesh, "train.d_batch_size")
    parallel.check_batch_divisible(config.train.g_batch_size, mesh, "train.g_batch_size")
    model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
    pair = models_lib.get_model(
        config.model.name, resolution=config.data.resolution, channels=config.data.channels,
        num_classes=num_classes if config.model.conditional else 0, **model_kwargs)
    fns = step_lib.make_step_fns(
        config, pair.generator, pair.discriminator,
        image_shape=tuple(train_set.images.shape[1:]), num_classes=num_classes, mesh=mesh,
        num_real=int(train_set.images.shape[0]))
    data = parallel.replicate(
        {"images": jnp.asarray(train_set.images), "labels": jnp.asarray(train_set.labels)}, mesh)
    return Engine(config, train_set, data, pair.generator, pair.discriminator, fns, mesh,
                  num_classes)


def initial_state(engine: Engine, seed: int) -> Pytree:
    """The step-0 state of a run with ``seed`` (theta_0, fresh optimizers), replicated."""
    state = jax.jit(engine.fns.init)(jax.random.key(seed))
    return parallel.replicate(state, engine.mesh)


def abstract_state(engine: Engine, k: int | None = None) -> Pytree:
    """Shapes, dtypes and (replicated) shardings of a state, ``[K, ...]`` when ``k`` is given.

    A restore target built with ``jax.eval_shape`` (nothing is computed).
    """
    shapes = jax.eval_shape(engine.fns.init, jax.random.key(0))
    sharding = parallel.replicated(engine.mesh)
    lead = () if k is None else (k,)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(lead + tuple(s.shape), s.dtype, sharding=sharding), shapes)


def run_rng(seed: int) -> jax.Array:
    """The ``state["rng"]`` a run with ``seed`` starts from (as ``init(key(seed))`` sets it)."""
    return jax.random.key_data(jax.random.split(jax.random.key(seed), 3)[2])


def dense_masks(state: Pytree) -> dict:
    """All-True masks ``{"g": ..., "d": ...}`` of a (single-run) state."""
    return {n: masks_lib.ones_like(state[n]["params"]) for n in NETS}


#: Evaluation fields of a run's summary that the stages copy into their ``result.json`` and the
#: workdir's ``summary.json`` (the coverage ones only on Fashion-MNIST).
EVAL_KEYS = ("final_fid", "final_kid", "final_kid_std", "best_fid", "best_step",
             *(f"final_{k}" for k in periodic.COVERAGE_KEYS))


def fixed_noise(config, latent_dim: int, num_classes: int):
    """The fixed ``(z, y)`` of every sample grid of a run (derived from ``config.seed``)."""
    key = jax.random.fold_in(jax.random.key(config.seed), 0x5A3)
    z, y = step_lib.sample_latent(key, config.num_samples, latent_dim, num_classes)
    if num_classes:  # class-sorted rows are easier to read
        y = jnp.arange(config.num_samples, dtype=jnp.int32) % num_classes
    return z, y


def make_evaluator(config: ml_collections.ConfigDict, workdir: str, engine: Engine):
    """An :class:`~jaxgan_lth.evaluation.evaluator.Evaluator` when ``eval.enabled``, else None."""
    if not config.eval.enabled:
        return None
    from jaxgan_lth.evaluation.evaluator import Evaluator

    return Evaluator(config, workdir, latent_dim=engine.generator.latent_dim,
                     num_classes=engine.cond_classes, train_images=engine.train_set.images,
                     train_labels=engine.train_set.labels)


class _RunFns:
    """Jitted per-run functions the evaluator and the sample grids call."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sample = jax.jit(engine.fns.sample)
        self.d_logits = jax.jit(engine.fns.d_logits)
        self._fakes = jax.jit(self._fakes_fn, static_argnums=(2,))

    def _fakes_fn(self, state, masks, n, y):
        g = self.engine.generator
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), 0xD1A6)
        z = jax.random.normal(key, (n, g.latent_dim), jnp.float32)
        g_vars = {"params": masks_lib.apply(state["g"]["params"], masks["g"]),
                  "batch_stats": state["g"]["batch_stats"]}
        return self.engine.fns.sample(g_vars, z, y)

    def evaluate(self, evaluator, state) -> dict:
        return evaluator.evaluate(lambda z, y, key: self.sample(state["ema"], z, y, key),
                                  lambda z, y, key: self.sample(state["g"], z, y, key))

    def diagnostic(self, evaluator, state, masks) -> dict:
        d_vars = {"params": masks_lib.apply(state["d"]["params"], masks["d"]),
                  "batch_stats": state["d"]["batch_stats"]}
        cond = bool(self.engine.cond_classes)
        return evaluator.diagnostic(
            lambda x, y: self.d_logits(d_vars, x, y if cond else None),
            lambda n, y: self._fakes(state, masks, n, y if cond else None))


def train_runs(
    engine: Engine,
    stage_dir: str,
    *,
    runs: Sequence[RunSpec],
    init_states: Callable[[], Sequence[Pytree]],
    masks: Sequence[Pytree],
    num_steps: int,
    strategy: str = "loop",
    meta: dict | None = None,
    log_prefix: str = "",
    evaluator=None,
    run_info: Sequence[dict] | None = None,
    hook: Callable[[int, list[Pytree], list[Pytree]], tuple[list, list]] | None = None,
    hook_every: int = 0,
) -> tuple[list[Pytree], dict]:
    """Trains K runs from step 0 (or the latest checkpoint in ``stage_dir``) to ``num_steps``.

    A short driver: one iteration of the K runs, then the periodic actions of
    :mod:`jaxgan_lth.training.periodic` in this order: the mask update (``hook``), logging with the
    NaN
    guard (every ``config.log_every``), the sample grids (``config.sample_every``), the
    checkpoint (``config.checkpoint_every``; all three also at ``num_steps``) and the
    evaluation (``config.eval.every``, and once at the end). Metrics and states come to the
    host only at the steps where an action needs them.

    Args:
      engine: from :func:`build_engine`.
      stage_dir: the stage's folder (created).
      runs: the K runs (names, seeds, swept strengths).
      init_states: ``() -> K step-0 states``, called only when no checkpoint exists yet.
      masks: K mask trees ``{"g": ..., "d": ...}`` (all True when dense).
      num_steps: G iterations to reach.
      strategy: ``"vmap"`` or ``"loop"`` (K = 1 always runs as one program).
      meta: JSON dict stored with every checkpoint.
      log_prefix: prefix of metric names and log lines (e.g. ``"imp/round_01/"``).
      evaluator: optional evaluator: FID/KID every ``eval.every`` steps and at the end, the
        D-accuracy diagnostic at every log step.
      run_info: optional K JSON dicts merged into the runs' summaries (e.g. the stage, the
        mask's G and D densities), so that ``summary.json`` describes a run on its own.
      hook: optional ``hook(step, states, masks) -> (states, masks)`` called with the per-run
        lists after the iteration that reaches every multiple ``step`` of ``hook_every`` (before
        that step's logging, samples and checkpoint); what it returns replaces the states and
        masks (same structures, so nothing recompiles). Used by the ``dst`` stage's mask
        updates; the hook saves what a resume needs (the masks) itself.
      hook_every: G steps between hook calls (0 = never).

    Every run's folder receives ``summary.json`` (the run summary below plus ``run_info``),
    ``metrics.jsonl`` (one line ``{"step", metric: value}`` per log step: losses, D outputs,
    the D-accuracy diagnostic) and, with an evaluator, ``eval.json`` (every FID/KID with its
    G step, kimg and protocol).

    Returns:
      ``(final per-run states, summary)``. With K = 1 the summary is the run's (``steps``,
      ``wall_time_s``, ``steps_per_s``, ``last_metrics`` and with an evaluator ``final_fid``,
      ``final_kid``, ``best_fid``, ``best_step``); otherwise ``{"num_runs", "steps",
      "wall_time_s", "iterations_per_s", "runs": {name: run summary}}`` (see
      :func:`jaxgan_lth.training.sweep.sweep_summary`).

    Raises:
      FloatingPointError: every run's losses became nan/inf (a single run: at once).
      ValueError: the checkpoints in ``stage_dir`` belong to other runs; not one mask tree
        and one initial state per run.
    """
    k = len(runs)
    names = [r.name for r in runs]
    if len(masks) != k:
        raise ValueError(f"{k} runs {names} but {len(masks)} mask trees: give one per run.")
    if run_info is not None and len(run_info) != k:
        raise ValueError(f"{k} runs {names} but {len(run_info)} run_info dicts.")
    run_dirs = ([stage_dir] if k == 1 else [os.path.join(stage_dir, "runs", n) for n in names])
    for d in run_dirs:
        os.makedirs(os.path.join(d, "samples"), exist_ok=True)
    axis = RunAxis(engine.fns, k, strategy)
    meta = {**(meta or {}), "runs": names}
    ckpt = checkpointing.Checkpointer(os.path.join(stage_dir, "checkpoints"),
                                      keep=engine.config.keep_checkpoints)
    states, start = _restore_or_init(engine, ckpt, stage_dir, names, init_states, meta,
                                     log_prefix)
    base = {n: float(v) for n, v in engine.fns.hparams.items()}
    hparams = [parallel.replicate({n: jnp.float32(r.hparams.get(n, base[n])) for n in base},
                                  engine.mesh) for r in runs]
    state = periodic.Runs(axis, states, masks, hparams, engine.mesh)
    records = periodic.RunRecords(run_dirs, names, log_prefix=log_prefix, start=start)
    actions = _actions(engine, records, ckpt, meta, evaluator=evaluator, hook=hook,
                       hook_every=hook_every, num_steps=num_steps, start=start)
    t0 = time.time()
    for step in range(start + 1, num_steps + 1):
        state.iterate(engine.data)
        for action in actions:
            action(step, state)
    final = state.per_run()
    evaluate = next((a for a in actions if isinstance(a, periodic.Evaluate)), None)
    if evaluate is not None:  # the final evaluation (skipped where done already)
        evaluate.apply(num_steps, state)
    wall = time.time() - t0
    ckpt.close()
    records.close()
    summaries = _write_summaries(runs, records, evaluate, run_info, num_steps=num_steps,
                                 done=num_steps - start, wall=wall)
    if evaluate is not None:
        evaluate.close()
    if k == 1:
        return final, summaries[names[0]]
    return final, sweep_lib.sweep_summary(stage_dir, summaries, strategy=axis.strategy,
                                          num_steps=num_steps, done=num_steps - start,
                                          wall=wall)


def _restore_or_init(engine: Engine, ckpt: checkpointing.Checkpointer, stage_dir: str,
                     names: list[str], init_states: Callable[[], Sequence[Pytree]], meta: dict,
                     log_prefix: str) -> tuple[list[Pytree], int]:
    """The K per-run states to train from and their G step.

    The newest checkpoint that passes its checksum check (a corrupt one is moved aside, warned),
    else ``init_states()``, saved as step 0.

    Raises:
      ValueError: the checkpoints belong to other runs; ``init_states()`` gave not K states.
    """
    k = len(names)
    found = ckpt.restore_latest(abstract_state(engine, k)) if ckpt.all_steps() else None
    if found is None:
        # Copies: the compiled iteration donates its state buffers, the caller keeps its own.
        states = [jax.tree.map(jnp.copy, s) for s in init_states()]
        if len(states) != k:
            raise ValueError(f"{k} runs {names} but init_states() gave {len(states)} states.")
        ckpt.save(0, stack(states), meta)
        return states, 0
    latest, stacked, old = found
    if old.get("runs", names) != names:
        raise ValueError(f"{stage_dir} holds checkpoints of runs {old.get('runs')}, not "
                         f"{names}; use a new --workdir.")
    states = [parallel.replicate(s, engine.mesh) for s in unstack(stacked, k)]
    logging.info("%sresumed %s from step %d.", log_prefix, stage_dir, latest)
    return states, int(np.asarray(jax.device_get(states[0]["step"])))


def _actions(engine: Engine, records: periodic.RunRecords, ckpt: checkpointing.Checkpointer,
             meta: dict, *, evaluator, hook, hook_every: int, num_steps: int,
             start: int) -> list[periodic.PeriodicAction]:
    """The periodic actions of a stage, in the order the loop applies them at one step."""
    config = engine.config
    fns = _RunFns(engine)
    actions: list[periodic.PeriodicAction] = []
    if hook is not None and hook_every:
        actions.append(periodic.MaskUpdate(hook, every_steps=hook_every))
    diagnostic = None
    if evaluator is not None and config.eval.diagnostic:
        def diagnostic(state, masks):
            return fns.diagnostic(evaluator, state, masks)
    actions += [
        periodic.LogMetrics(records, every_steps=config.log_every, num_steps=num_steps,
                            start=start, diagnostic=diagnostic),
        periodic.SampleGrid(records, fns.sample,
                            fixed_noise(config, engine.generator.latent_dim, engine.cond_classes),
                            every_steps=config.sample_every, num_steps=num_steps),
        periodic.Checkpoint(ckpt, meta, every_steps=config.checkpoint_every,
                            num_steps=num_steps)]
    if evaluator is not None:
        actions.append(periodic.Evaluate(
            records, lambda s: fns.evaluate(evaluator, s), evaluator.protocol,
            images_per_step=int(config.train.n_dis) * int(config.train.d_batch_size),
            every_steps=int(config.eval.every)))
    return actions


def _write_summaries(runs: Sequence[RunSpec], records: periodic.RunRecords,
                     evaluate: periodic.Evaluate | None, run_info: Sequence[dict] | None, *,
                     num_steps: int, done: int, wall: float) -> dict[str, dict]:
    """``{run name: run summary}``; each run's ``summary.json`` (with its ``run_info``)."""
    summaries = {}
    for i, r in enumerate(runs):
        s = {"seed": r.seed, "swept": dict(r.hparams), "steps": int(num_steps),
             "steps_this_session": int(done), "wall_time_s": round(wall, 2),
             "steps_per_s": round(done / wall, 3) if done else None,
             "last_metrics": records.last[i], "diverged_at_step": records.diverged.get(r.name)}
        if evaluate is not None:
            s.update(evaluate.logs[i].summary())
        summaries[r.name] = s
        if records.main:
            io_utils.write_json(os.path.join(records.run_dirs[i], "summary.json"),
                                {"run": r.name, **s, **(run_info[i] if run_info else {})})
    return summaries


def load_run_state(engine: Engine, stage_dir: str, checkpoint: str = "latest",
                   run: int | str = 0) -> tuple[Pytree, int]:
    """Restores one run's state of a stage: ``(state, step)``.

    Args:
      engine: the stage's engine (restore target from ``jax.eval_shape``).
      stage_dir: ``DIR/train``, ``DIR/ticket``, ``DIR/imp/round_XX``.
      checkpoint: ``"latest"``, ``"best"`` (by FID) or a step number.
      run: index or name of the run (sweeps); 0 for a single run.

    Raises:
      ValueError: no checkpoint there, an unknown run or step.
    """
    ck = checkpointing.Checkpointer(os.path.join(stage_dir, "checkpoints"))
    steps = ck.all_steps()
    if not steps:
        raise ValueError(f"{stage_dir} holds no checkpoints.")
    meta = ck.metadata(steps[-1])
    names = (meta or {}).get("runs")
    k = len(names) if names else 1
    if isinstance(run, str):
        if not names or run not in names:
            raise ValueError(f"run {run!r} is not in {stage_dir}; runs: {names}.")
        run = names.index(run)
    if not 0 <= run < k:
        raise ValueError(f"run {run} is not in {stage_dir}; it holds {k} run(s): {names}.")
    if checkpoint == "best":
        d = stage_dir if k == 1 else os.path.join(stage_dir, "runs", names[run])
        bk = checkpointing.Checkpointer(os.path.join(d, "best"))
        if bk.latest_step() is None:
            raise ValueError(f"{d}/best holds no checkpoint (evaluation was off?).")
        state, _ = bk.restore(bk.latest_step(), abstract_state(engine))
        bk.close()
        return state, int(bk.latest_step())
    step = steps[-1] if checkpoint == "latest" else int(checkpoint)
    if step not in steps:
        raise ValueError(f"step {step} is not in {stage_dir}/checkpoints; steps: {steps}.")
    stacked, _ = ck.restore(step, abstract_state(engine, k))
    ck.close()
    return unstack(stacked, k)[run], step
