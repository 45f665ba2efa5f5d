"""Multi-run training: K GAN runs trained together in one compiled program with ``jax.vmap``.

K runs that differ in their seed and/or in traced hyper-parameters (AdvAug strength
``adv_step_size``, ``adv_lam``, ``adv_radius``, ``adv_noise_scale``, the EMA decay
``ema_decay``) share one compiled step::

    step = jax.jit(jax.vmap(fns.iteration, in_axes=(0, 0, None, 0)), donate_argnums=(0,))
    states, metrics = step(states, masks, data, hparams)

``states``, ``masks`` and ``hparams`` carry a leading run axis ``[K, ...]`` (every state has
its own ``rng``, so each run draws its own batches); the limited training set ``data`` is
shared. The vmapped program composes with the data mesh of :mod:`jaxgan_lth.parallel`: the
stacked state is replicated and the batch of every run is split over the ``data`` axis
(``[K, B, ...]`` laid out as ``P(None, 'data')``), so batch-norm statistics stay per run and
over the run's global batch. Small models that leave an accelerator idle (the default
config, SNGAN at CIFAR size) get several runs for little more than the time of one; see
``benchmarks/multirun_throughput.py``.

Config (``config.multirun``, see ``configs/advaug_sweep.py`` for :func:`multirun_config`)::

    config.stages = "multirun"
    config.multirun.seeds = (0, 1, 2, 3)               # tuple of ints or "0,1,2,3"
    config.multirun.hparams = "adv_step_size=0.0,0.01,0.05,0.1"
    config.multirun.product = False
    config.multirun.strategy = "vmap"                  # or "loop" (CPUs: see make_multi_iteration)

``hparams`` is ``"name=v1,v2,...; name2=w1,w2,..."`` (``;`` between hyper-parameters, ``,``
between values; ``""`` = none). With ``product = False`` the lists are zipped: every list
with more than one entry must have the same length K, and one-entry lists (a single seed, a
single value) are used by all K runs; a mismatch raises a ValueError naming both lengths.
With ``product = True`` the runs are every combination (seeds outer, then the hyper-
parameters in the order written). Hyper-parameters not named keep the config's values.
Runs are named ``seed<s>`` followed by ``_<name><value>`` for every named hyper-parameter,
e.g. ``seed0_adv_step_size0.01``.

Workdir layout::

    DIR/config.json, DIR/summary.json (written by train.train_and_evaluate)
    DIR/runs/checkpoints/          Orbax steps of the stacked [K, ...] state (step 0 kept)
    DIR/runs/summary.json          all runs: seeds, hyper-parameters, last metrics, speed,
                                   final FID/KID of each run (with config.eval.enabled)
    DIR/runs/<name>/               per run: clu metrics (TensorBoard events), samples/*.png,
                                   summary.json

Re-running the same command resumes from the latest checkpoint of the stacked state and
reaches the same state as an uninterrupted run. A run whose losses become nan/inf is marked
``diverged_at_step`` in its summary (a warning is logged) while the others go on; if every run
diverges a FloatingPointError is raised. Outputs are written by process 0 only.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxgan_lth import checkpointing, config_lib, parallel
from jaxgan_lth import train as train_lib

Pytree = Any

STAGE = "multirun"
STRATEGIES = ("vmap", "loop")  # how the run axis is executed, see make_multi_iteration

# Which AdvAug modes read each traced hyper-parameter (None = every mode, incl. "none").
_USED_BY_MODES = {
    "adv_step_size": ("pgd",),
    "adv_radius": ("pgd",),
    "adv_lam": ("pgd", "noise"),
    "adv_noise_scale": ("noise",),
    "ema_decay": None,
}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a multi-run.

    Attributes:
      name: folder name under ``DIR/runs/``, e.g. ``seed0_adv_step_size0.01``.
      seed: PRNG seed of the run (initial parameters and every sampled batch).
      hparams: the hyper-parameters named in ``config.multirun.hparams`` with this run's
        values (the others keep the config's defaults).
    """

    name: str
    seed: int
    hparams: dict


# ------------------------------------------------------------------------------------------------
# Parsing the multirun section
# ------------------------------------------------------------------------------------------------


def parse_seeds(seeds: Any) -> list[int]:
    """``(0, 1)``, ``[0, 1]``, ``0`` or ``"0,1"`` as a list of ints.

    Raises:
      ValueError: an entry that is not an integer, or no seed at all.
    """
    if isinstance(seeds, str):
        items = [s.strip() for s in seeds.split(",") if s.strip()]
    elif isinstance(seeds, (int, np.integer)):
        items = [seeds]
    else:
        items = list(seeds)
    out = []
    for s in items:
        try:
            value = int(s)
        except (TypeError, ValueError):
            value = None
        if value is None or isinstance(s, bool) or (isinstance(s, float) and s != value):
            raise ValueError(f"config.multirun.seeds = {seeds!r}: {s!r} is not an integer seed.")
        out.append(value)
    if not out:
        raise ValueError(f"config.multirun.seeds = {seeds!r} holds no seed.")
    return out


def parse_hparams(spec: str, known: Sequence[str]) -> dict[str, list[float]]:
    """``"adv_step_size=0.0,0.01; adv_lam=0.5"`` as ``{"adv_step_size": [0.0, 0.01], ...}``.

    Args:
      spec: ``;``-separated ``name=v1,v2,...`` items; ``""`` = none.
      known: accepted names (the keys of :attr:`train.StepFns.hparams`).

    Raises:
      ValueError: an item without ``=``, an unknown or repeated name, a value that is not a
        finite number, or an empty value list (the message names the item).
    """
    out: dict[str, list[float]] = {}
    for item in str(spec).split(";"):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(
                f"config.multirun.hparams item {item!r} must look like 'name=v1,v2,...'."
            )
        name, values = (s.strip() for s in item.split("=", 1))
        if name not in known:
            raise ValueError(
                f"config.multirun.hparams: unknown hyper-parameter {name!r}; accepted: "
                f"{tuple(known)}."
            )
        if name in out:
            raise ValueError(f"config.multirun.hparams names {name!r} twice.")
        try:
            vals = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"config.multirun.hparams: {item!r} holds a value that is not a number."
            ) from None
        if not vals or not all(math.isfinite(v) for v in vals):
            raise ValueError(
                f"config.multirun.hparams: {item!r} needs one or more finite numbers."
            )
        out[name] = vals
    return out


def _fmt(value: float) -> str:
    return format(value, "g")


def run_name(seed: int, hparams: dict) -> str:
    """``seed0_adv_step_size0.01``: the seed, then every named hyper-parameter and value."""
    return f"seed{seed}" + "".join(f"_{k}{_fmt(v)}" for k, v in hparams.items())


def parse_runs(config: ml_collections.ConfigDict, known: Sequence[str]) -> list[RunSpec]:
    """The K runs described by ``config.multirun`` (see the module docstring).

    Args:
      config: a config with a ``multirun`` section (``seeds``, ``hparams``, ``product``).
      known: accepted hyper-parameter names.

    Returns:
      K :class:`RunSpec`, in a fixed order (the order of the stacked run axis).

    Raises:
      ValueError: no ``multirun`` section; lists of different lengths (both lengths named);
        a bad seed or hyper-parameter item; two runs with the same name; an unknown
        ``strategy``.
    """
    if "multirun" not in config:
        raise ValueError(
            "config has no 'multirun' section; add one (configs/advaug_sweep.py: "
            "multirun_config(seeds=..., hparams=...))."
        )
    mc = config.multirun
    if mc.get("strategy", "vmap") not in STRATEGIES:
        raise ValueError(
            f"config.multirun.strategy = {mc.strategy!r}; accepted: {STRATEGIES}."
        )
    seeds = parse_seeds(mc.seeds)
    lists = parse_hparams(mc.get("hparams", ""), known)
    names = list(lists)
    if mc.get("product", False):
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
                    f"config.multirun: {long[0][0]} has {k} entries but {n} has {size}; lists "
                    "with more than one entry must all have the same length K (one-entry lists "
                    "are shared by all runs), or set config.multirun.product=True for every "
                    "combination."
                )
        full = {n: (v * k if len(v) == 1 else v) for n, v in entries}
        runs = []
        for i in range(k):
            hp = {n: full[n][i] for n in names}
            runs.append(RunSpec(run_name(full["seeds"][i], hp), full["seeds"][i], hp))
    dup = sorted({r.name for r in runs if sum(q.name == r.name for q in runs) > 1})
    if dup:
        raise ValueError(
            f"config.multirun describes identical runs {dup}: give every run a different "
            "seed or hyper-parameter value."
        )
    return runs


def validate_runs(config: ml_collections.ConfigDict, runs: Sequence[RunSpec]) -> None:
    """Checks that every swept value is in range and changes something.

    Raises:
      ValueError: ``ema_decay`` outside [0, 1), ``adv_lam`` outside [0, 1], a negative AdvAug
        strength; an AdvAug hyper-parameter swept under an ``advaug.mode`` that ignores it
        (e.g. ``adv_step_size`` with mode ``"none"``); ``adv_radius`` swept while
        ``config.advaug.radius = 0`` turns the projection off when the step is compiled.
    """
    mode = config.advaug.mode
    swept = sorted({k for r in runs for k in r.hparams})
    for name in swept:
        modes = _USED_BY_MODES.get(name)
        if modes is not None and mode not in modes:
            raise ValueError(
                f"config.multirun sweeps {name} but config.advaug.mode = {mode!r} does not use "
                f"it (used by mode {' / '.join(repr(m) for m in modes)})."
            )
    if "adv_radius" in swept and not float(config.advaug.radius) > 0:
        raise ValueError(
            "config.multirun sweeps adv_radius but config.advaug.radius = 0 compiles the step "
            "without projection; set config.advaug.radius > 0 to enable it."
        )
    for r in runs:
        for name, v in r.hparams.items():
            if name == "ema_decay" and not 0.0 <= v < 1.0:
                raise ValueError(f"run {r.name}: ema_decay = {v} must be in [0, 1).")
            if name == "adv_lam" and not 0.0 <= v <= 1.0:
                raise ValueError(f"run {r.name}: adv_lam = {v} must be in [0, 1].")
            if name != "ema_decay" and v < 0:
                raise ValueError(f"run {r.name}: {name} = {v} must be >= 0.")


# ------------------------------------------------------------------------------------------------
# Stacking and the vmapped step
# ------------------------------------------------------------------------------------------------


def stack(trees: Sequence[Pytree]) -> Pytree:
    """K pytrees of equal structure -> one pytree with a leading run axis ``[K, ...]``."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Pytree, k: int) -> Pytree:
    """Run ``k`` of a stacked pytree (drops the run axis)."""
    return jax.tree.map(lambda x: x[k], tree)


def stack_hparams(defaults: dict, runs: Sequence[RunSpec]) -> dict:
    """Traced hyper-parameters of K runs: ``{name: float32 [K]}``, defaults where not swept."""
    return {
        name: jnp.asarray([r.hparams.get(name, float(v)) for r in runs], jnp.float32)
        for name, v in defaults.items()
    }


def check_run_axis(states: Pytree, masks: Pytree, hparams: dict) -> int:
    """The run count K shared by ``states``, ``masks`` and ``hparams``.

    Args:
      states: stacked states (``step`` is ``[K]``).
      masks: stacked masks (every leaf ``[K, ...]``).
      hparams: ``{name: [K]}``.

    Returns:
      K.

    Raises:
      ValueError: a leaf without a run axis or with another length (names the leaf and both
        lengths), e.g. a state of 3 runs with 4 hyper-parameter values.
    """
    step = states["step"]
    if np.ndim(step) != 1:
        raise ValueError(
            f"states have no run axis: state['step'] has shape {np.shape(step)}, expected [K]; "
            "stack the per-run states with multirun.stack."
        )
    k = int(np.shape(step)[0])
    for what, tree in (("hparams", hparams), ("masks", masks)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            shape = np.shape(leaf)
            if not shape or shape[0] != k:
                raise ValueError(
                    f"run axis mismatch: the states hold {k} runs but {what}"
                    f"{jax.tree_util.keystr(path)} has "
                    f"{'no run axis' if not shape else f'{shape[0]} entries'} (shape {shape})."
                )
    return k


def make_multi_iteration(
    fns: train_lib.StepFns, donate: bool = True, strategy: str = "vmap"
) -> Callable:
    """``step(states, masks, data, hparams) -> (states, metrics)`` over a run axis.

    ``strategy="vmap"`` (default): ``jax.jit(jax.vmap(fns.iteration, in_axes=(0, 0, None,
    0)))``, all K runs in one batched program; convolutions with per-run weights become
    grouped convolutions, which pay off on accelerators that one small run leaves idle.
    ``strategy="loop"``: the single-run compiled iteration called once per run from the host
    (slicing and re-stacking the run axis), i.e. exactly K separate runs; for CPUs, where one
    run already keeps the cores busy and XLA's grouped convolutions are slow (see
    ``benchmarks/multirun_throughput.py``). Both give the results of K separate runs.

    States, masks and hparams are ``[K, ...]``, ``data`` is shared; metrics come back as
    ``{name: [K]}``. The run axis is checked on the host before each call
    (:func:`check_run_axis`), so a mismatch raises a clear ValueError instead of vmap's size
    error.

    Args:
      fns: from :func:`train.make_step_fns` (its mesh shards each run's batch).
      donate: donate the state buffers (the caller must not reuse the passed states).
      strategy: ``"vmap"`` or ``"loop"``.

    Raises:
      ValueError: an unknown strategy.
    """
    donate_argnums = (0,) if donate else ()
    if strategy == "vmap":
        jitted = jax.jit(jax.vmap(fns.iteration, in_axes=(0, 0, None, 0)),
                         donate_argnums=donate_argnums)
    elif strategy == "loop":
        single = jax.jit(fns.iteration, donate_argnums=donate_argnums)
        take = jax.jit(lambda tree, i: jax.tree.map(lambda x: x[i], tree))
        restack = jax.jit(lambda *trees: stack(trees))

        def jitted(states, masks, data, hparams):
            k = int(np.shape(states["step"])[0])
            outs = [single(take(states, i), take(masks, i), data, take(hparams, i))
                    for i in range(k)]
            return restack(*(o[0] for o in outs)), restack(*(o[1] for o in outs))

    else:
        raise ValueError(f"multirun strategy {strategy!r}; accepted: {STRATEGIES}.")

    def step(states, masks, data, hparams):
        check_run_axis(states, masks, hparams)
        return jitted(states, masks, data, hparams)

    step.jitted = jitted
    return step


def initial_states(setup: train_lib.Setup, seeds: Sequence[int]) -> Pytree:
    """Stacked step-0 states of runs with ``seeds``, replicated on ``setup.mesh``.

    Each run's state is exactly :func:`train.initial_state` of its seed (the same theta_0 as
    a single run with that seed).
    """
    states = [jax.device_get(train_lib.initial_state(setup, s)) for s in seeds]
    return parallel.replicate(stack(states), setup.mesh)


def abstract_states(setup: train_lib.Setup, k: int) -> Pytree:
    """Shapes, dtypes and (replicated) shardings of K stacked states, without computing them.

    A restore target for the stacked checkpoints (``jax.eval_shape`` of the init: nothing is
    compiled or run).
    """
    shapes = jax.eval_shape(setup.fns.init, jax.random.key(0))
    sharding = parallel.replicated(setup.mesh)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct((k,) + tuple(s.shape), s.dtype, sharding=sharding), shapes
    )


def dense_masks(states: Pytree) -> dict:
    """All-True stacked masks ``{"g": [K, ...], "d": [K, ...]}`` for (abstract) stacked states."""
    return jax.tree.map(
        lambda x: jnp.ones(x.shape, bool), {n: states[n]["params"] for n in ("g", "d")}
    )


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


def _write_json(path: str, obj: Any) -> None:
    if parallel.is_main_process():
        config_lib.write_json(path, obj)


def _evaluate_runs(config, workdir, setup, state, names, step, writers, diverged) -> dict:
    """FID/KID of every run's EMA generator at ``step`` when ``config.eval.enabled``.

    Uses :func:`train.make_evaluator` (reference statistics computed once, shared by all
    runs). A run whose ``summary.json`` already holds its ``final_fid`` at ``step`` (a re-run
    of a finished multi-run) and diverged runs are skipped.

    Returns:
      ``{name: {"final_fid": ..., "final_kid": ..., "final_kid_std": ..., "eval_step": ...}}``.
    """
    if "eval" not in config or not config.eval.enabled:
        return {}
    evaluator = train_lib.make_evaluator(config, workdir, setup)
    if evaluator is None:
        return {}
    out = {}
    for i, name in enumerate(names):
        path = os.path.join(workdir, "runs", name, "summary.json")
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            if old.get("eval_step") == step and "final_fid" in old:
                out[name] = {k: old[k] for k in
                             ("final_fid", "final_kid", "final_kid_std", "eval_step")}
                continue
        if name in diverged:
            continue
        result = evaluator.evaluate(unstack(state, i))
        writers[i].write_scalars(step, result)
        logging.info("multirun %s step %d: FID %.3f  KID %.5f", name, step, result["fid"],
                     result["kid"])
        out[name] = {"final_fid": result["fid"], "final_kid": result["kid"],
                     "final_kid_std": result["kid_std"], "eval_step": int(step)}
    return out


def train_multirun(
    config: ml_collections.ConfigDict, workdir: str, *, devices: Sequence | None = None
) -> dict:
    """Trains the K runs of ``config.multirun`` together for ``config.train.num_steps``.

    Uses the plain-training sections of ``config`` (``train``, ``diffaug``, ``advaug``, ``data``,
    ``model``; ``eval`` for a final FID/KID per run), dense masks, and writes the layout of the
    module docstring. Resumes from ``DIR/runs/checkpoints`` when present.

    Args:
      config: full config with a ``multirun`` section.
      workdir: the run folder (``config.json`` is written or checked as by
        :func:`train.train_and_evaluate`).
      devices: devices of the data mesh (default: all devices of all processes).

    Returns:
      The stage summary: ``num_runs``, ``steps``, ``wall_time_s``, ``iterations_per_s``
      (multi-run iterations, each advancing all K runs), ``images_per_s`` (real images shown to
      D by all runs together) and ``runs`` (``{name: per-run summary}``; with
      ``eval.enabled``, ``final_fid`` / ``final_kid`` of each run's EMA generator at the end;
      ``eval.every`` is not used here).

    Raises:
      ValueError: invalid config values (including the multirun section, see
        :func:`parse_runs` / :func:`validate_runs`), a global batch not divisible by the
        device count, a workdir holding another config or other runs.
      FloatingPointError: every run's losses became nan/inf.
    """
    from clu import metric_writers

    config_lib.validate(config)
    os.makedirs(workdir, exist_ok=True)
    if parallel.is_main_process():  # one writer of config.json on a shared file system
        config_lib.write_or_check(config, workdir)
    with parallel.use_devices(devices):
        setup = train_lib.build(config, workdir)
    runs = parse_runs(config, tuple(setup.fns.hparams))
    validate_runs(config, runs)
    names = [r.name for r in runs]
    k = len(runs)
    logging.info("multirun: %d runs %s on %s", k, names, setup.mesh)
    root = os.path.join(workdir, "runs")
    main = parallel.is_main_process()
    for name in names:
        os.makedirs(os.path.join(root, name, "samples"), exist_ok=True)

    hparams = parallel.replicate(stack_hparams(setup.fns.hparams, runs), setup.mesh)
    target = abstract_states(setup, k)
    masks = parallel.replicate(dense_masks(target), setup.mesh)
    step_fn = make_multi_iteration(setup.fns, strategy=config.multirun.get("strategy", "vmap"))
    meta = {"runs": names, "seeds": [r.seed for r in runs],
            "hparams": [r.hparams for r in runs]}
    ckpt = checkpointing.Checkpointer(os.path.join(root, "checkpoints"),
                                      keep=config.keep_checkpoints)
    latest = ckpt.latest_step()
    if latest is None:
        state = initial_states(setup, [r.seed for r in runs])
        ckpt.save(0, state, meta)
    else:  # theta_0 is not needed (nor its init compiled) to resume
        state, old = ckpt.restore(latest, target)
        if old.get("runs") != names:
            raise ValueError(
                f"{root} holds checkpoints of runs {old.get('runs')}, not {names}; use a new "
                "--workdir."
            )
        state = parallel.replicate(state, setup.mesh)
        logging.info("multirun: resumed %s from step %d.", root, latest)

    writers = [
        metric_writers.create_default_writer(
            os.path.join(root, n), just_logging=not main, asynchronous=False
        )
        for n in names
    ]
    z_fixed, y_fixed = train_lib.fixed_noise(config, setup.generator.latent_dim,
                                             setup.num_classes)
    jit_sample = jax.jit(jax.vmap(setup.fns.sample, in_axes=(0, None, None)))
    num_steps = int(config.train.num_steps)
    start = int(np.asarray(jax.device_get(state["step"]))[0])
    images_per_it = int(config.train.n_dis) * int(config.train.d_batch_size)
    diverged: dict[str, int] = {}
    last: list[dict] = [{} for _ in runs]
    for i, name in enumerate(names):  # a resumed session keeps what earlier ones logged
        previous = os.path.join(root, name, "summary.json")
        if os.path.exists(previous):
            with open(previous) as f:
                old_summary = json.load(f)
            last[i] = old_summary.get("last_metrics") or {}
            if old_summary.get("diverged_at_step") is not None:
                diverged[name] = int(old_summary["diverged_at_step"])
    t0 = time.time()
    for step in range(start + 1, num_steps + 1):
        state, metrics = step_fn(state, masks, setup.data, hparams)
        if step % config.log_every == 0 or step == num_steps:
            host = {m: np.asarray(v) for m, v in jax.device_get(metrics).items()}
            for i, name in enumerate(names):
                vals = {m: float(v[i]) for m, v in host.items()}
                if name not in diverged and not all(np.isfinite(list(vals.values()))):
                    diverged[name] = step
                    logging.warning("multirun: run %s became nan/inf at step %d.", name, step)
                if name not in diverged:
                    last[i] = vals
                    writers[i].write_scalars(step, vals)
            if len(diverged) == k:
                raise FloatingPointError(
                    f"every run's losses became nan/inf (first steps: {diverged})."
                )
            rate = (step - start) / max(time.time() - t0, 1e-9)
            logging.info(
                "multirun step %d/%d  %d runs (%d diverged)  mean d_loss %.4f  g_loss %.4f  "
                "%.2f it/s  %.1f img/s",
                step, num_steps, k, len(diverged),
                float(np.nanmean(host["d_loss"])), float(np.nanmean(host["g_loss"])),
                rate, rate * k * images_per_it,
            )
        if step % config.sample_every == 0 or step == num_steps:
            imgs = np.asarray(jax.device_get(jit_sample(state["ema"], z_fixed, y_fixed)))
            for i, name in enumerate(names):
                grid = train_lib.image_grid(imgs[i])
                if main:
                    train_lib.save_png(
                        grid, os.path.join(root, name, "samples", f"step_{step:06d}.png"))
                writers[i].write_images(step, {"samples_ema": grid[None]})
        if step % config.checkpoint_every == 0 or step == num_steps:
            ckpt.save(step, state, meta)
    wall = time.time() - t0
    ckpt.close()
    evals = _evaluate_runs(config, workdir, setup, state, names, num_steps, writers, diverged)
    for w in writers:
        w.flush()
        w.close()
    done = num_steps - start
    it_s = done / wall if done else None
    per_run = {}
    for i, r in enumerate(runs):
        s = {
            "seed": r.seed,
            "hparams": {n: float(v[i]) for n, v in jax.device_get(hparams).items()},
            "swept": r.hparams,
            "steps": num_steps,
            "last_metrics": last[i],
            "diverged_at_step": diverged.get(r.name),
            **evals.get(r.name, {}),
        }
        per_run[r.name] = s
        _write_json(os.path.join(root, r.name, "summary.json"), s)
    summary = {
        "num_runs": k,
        "steps": num_steps,
        "steps_this_session": int(done),
        "wall_time_s": round(wall, 2),
        "iterations_per_s": round(it_s, 3) if it_s else None,
        "images_per_s": round(it_s * k * images_per_it, 1) if it_s else None,
        "devices": int(setup.mesh.devices.size),
        "runs": per_run,
    }
    _write_json(os.path.join(root, "summary.json"), summary)
    return summary
