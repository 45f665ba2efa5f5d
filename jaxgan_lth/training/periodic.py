"""Periodic actions of the training loop: checkpoint, log, sample grid, evaluate, mask update.

The loop (:func:`jaxgan_lth.training.loop.train_runs`) is a short driver: after every iteration of
the
K runs it calls each action with the G step and the :class:`Runs` (the shape of
``clu.periodic_actions``: ``action(step, ...)`` fires at every multiple of ``every_steps``
and at ``on_steps``). :class:`Runs` keeps the states and metrics on the device and fetches
them to the host only when an action asks (:meth:`Runs.host_metrics`, :meth:`Runs.per_run`),
so the iterations where no action fires are dispatched without a device-to-host transfer,
with either run strategy.

Actions, in the order the driver calls them at one step:

* :class:`MaskUpdate` -- a stage's ``hook(step, states, masks) -> (states, masks)`` (DST);
* :class:`LogMetrics` -- ``metrics.jsonl``, summaries, the progress line, the NaN guard;
* :class:`SampleGrid` -- ``samples/step_XXXXXX.png`` of the EMA generator on fixed noise;
* :class:`Checkpoint` -- the stacked ``[K, ...]`` state in ``<stage>/checkpoints``;
* :class:`Evaluate` -- FID/KID, ``eval.json`` and the best checkpoint by FID (``best/``).
"""

from __future__ import annotations

import abc
import os
import time
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxgan_lth import checkpointing, io_utils, parallel
from jaxgan_lth.training import summaries as summary_writers

Pytree = Any

#: Keys of the class-coverage diagnostic in an evaluation result (summary: ``final_<key>``).
COVERAGE_KEYS = ("coverage_classes", "coverage_confidence", "coverage_hist")


class PeriodicAction(abc.ABC):
    """An action the loop calls after every iteration; it fires on some steps.

    The shape of ``clu.periodic_actions.PeriodicAction`` (``every_steps``, ``on_steps``,
    ``__call__(step, ...) -> bool``), reduced to what the loop needs. Own code, not clu's class:
    ``clu.periodic_actions`` imports ``clu.metric_writers`` and with it TensorFlow, and the
    runtime must work without clu (see :mod:`jaxgan_lth.training.summaries`); clu's actions also
    take no
    context, while ours take the :class:`Runs`. There is no ``every_secs``: a firing step must
    not depend on wall time, so a resumed run repeats its actions exactly.

    Args:
      every_steps: fires when ``step % every_steps == 0``; 0 or None: never on that account.
      on_steps: further G steps where it fires (e.g. the last step).
    """

    def __init__(self, *, every_steps: int | None = None, on_steps: Iterable[int] = ()):
        self.every_steps = int(every_steps or 0)
        self.on_steps = frozenset(int(s) for s in on_steps)

    def fires(self, step: int) -> bool:
        """Whether the action fires at G step ``step``."""
        return bool(self.every_steps and step % self.every_steps == 0) or step in self.on_steps

    def __call__(self, step: int, runs: Runs) -> bool:
        """Applies the action when it fires at ``step``; returns whether it fired."""
        if not self.fires(step):
            return False
        self.apply(step, runs)
        return True

    @abc.abstractmethod
    def apply(self, step: int, runs: Runs) -> None:
        """The action itself (each subclass defines it)."""


class Runs:
    """The K runs between iterations: states, masks and the last metrics, kept on the device.

    This module imports nothing of the step or the run axis (it sits below them in the layers
    of ``tests/test_sweep.py``); the axis is taken as it comes.

    Args:
      axis: a :class:`jaxgan_lth.training.run_axis.RunAxis` (its ``join``, ``split``, ``stacked``,
        ``host_metrics`` and the call of one iteration).
      states: K per-run states (replicated on ``mesh``).
      masks: K mask trees ``{"g": ..., "d": ...}`` (bool, or 0/1 arrays).
      hparams: K dicts of traced strengths (float32 scalars).
      mesh: the device mesh the masks are replicated on.
    """

    def __init__(self, axis, states: Sequence[Pytree], masks: Sequence[Pytree],
                 hparams: Sequence[dict], mesh):
        self.axis = axis
        self.mesh = mesh
        self._hparams = axis.join(hparams)
        self._states = axis.join(states)
        self.replace_masks(masks)
        self._metrics = None
        self._per_run: list | None = None
        self._host: dict | None = None

    def replace_masks(self, masks: Sequence[Pytree]) -> None:
        """Places K new mask trees on the mesh (bool), as the run axis takes them."""
        self.masks = [parallel.replicate(jax.tree.map(lambda m: jnp.asarray(m, bool), m),
                                         self.mesh) for m in masks]
        self._masks_in = self.axis.join(self.masks)

    def iterate(self, data) -> None:
        """One iteration of every run (asynchronous: nothing comes to the host)."""
        self._states, self._metrics = self.axis(self._states, self._masks_in, data,
                                                self._hparams)
        self._per_run = self._host = None

    def per_run(self) -> list[Pytree]:
        """The K per-run states (device arrays; split once per step)."""
        if self._per_run is None:
            self._per_run = self.axis.split(self._states)
        return self._per_run

    def stacked(self) -> Pytree:
        """The ``[K, ...]`` stacked state (what is checkpointed)."""
        return self.axis.stacked(self._states)

    def replace(self, states: Sequence[Pytree], masks: Sequence[Pytree]) -> None:
        """New per-run states and masks (same structures, so nothing recompiles)."""
        self._states = self.axis.join(states)
        self._per_run = None
        self.replace_masks(masks)

    def host_metrics(self) -> dict[str, np.ndarray]:
        """``{name: [K]}`` numpy metrics of the last iteration (fetched once, on demand).

        Raises:
          RuntimeError: no iteration has run yet.
        """
        if self._metrics is None:
            raise RuntimeError("no iteration has run yet: there are no metrics to fetch.")
        if self._host is None:
            self._host = self.axis.host_metrics(self._metrics)
        return self._host


class RunRecords:
    """What the K runs write: folders, summary writers, last logged metrics, diverged runs.

    A resumed session keeps what earlier ones logged: ``last_metrics`` and
    ``diverged_at_step`` come from each run's ``summary.json``, and each ``metrics.jsonl`` is
    cut back to the lines up to ``start`` (the resumed checkpoint's step).

    Args:
      run_dirs: the K run folders (existing).
      names: the K run names.
      log_prefix: prefix of metric names and log lines (e.g. ``"imp/round_01/"``).
      start: the G step training resumes from (0: a fresh start).
    """

    def __init__(self, run_dirs: Sequence[str], names: Sequence[str], *, log_prefix: str,
                 start: int):
        self.run_dirs = list(run_dirs)
        self.names = list(names)
        self.k = len(self.names)
        self.prefix = log_prefix
        self.main = parallel.is_main_process()
        self.writers = [summary_writers.create_writer(d, just_logging=not self.main)
                        for d in self.run_dirs]
        self.diverged: dict[str, int] = {}
        self.last: list[dict] = [{} for _ in self.names]
        for i, d in enumerate(self.run_dirs):
            old = io_utils.read_json(os.path.join(d, "summary.json")) or {}
            self.last[i] = old.get("last_metrics") or {}
            if old.get("diverged_at_step") is not None:
                self.diverged[self.names[i]] = int(old["diverged_at_step"])
        self.jsonl = [os.path.join(d, "metrics.jsonl") for d in self.run_dirs]
        if self.main:
            for path in self.jsonl:
                io_utils.truncate_jsonl(path, start)

    def label(self, i: int) -> str:
        """``"<run name> "`` in a sweep's log lines, ``""`` for a single run."""
        return f"{self.names[i]} " if self.k > 1 else ""

    def write_scalars(self, i: int, step: int, values: dict) -> None:
        """Scalars of run ``i`` at G step ``step`` to its summary writer (names prefixed)."""
        self.writers[i].write_scalars(step, {self.prefix + m: v for m, v in values.items()})

    def close(self) -> None:
        """Flushes and closes the summary writers."""
        for w in self.writers:
            w.flush()
            w.close()


class MaskUpdate(PeriodicAction):
    """A stage's ``hook(step, states, masks) -> (states, masks)`` (the DST mask updates).

    Called with the per-run lists; what it returns replaces the states and masks (same
    structures, so nothing recompiles). The hook saves what a resume needs (the masks) itself.
    """

    def __init__(self, hook: Callable[[int, list, list], tuple[list, list]], *, every_steps: int):
        super().__init__(every_steps=every_steps)
        self.hook = hook

    def apply(self, step: int, runs: Runs) -> None:
        """Calls the hook and places its states and masks."""
        states, masks = self.hook(step, runs.per_run(), runs.masks)
        runs.replace(states, masks)


class LogMetrics(PeriodicAction):
    """One line ``{"step", metric: value}`` per run in ``metrics.jsonl``, summaries, progress.

    The NaN guard: a run whose logged values hold nan/inf is marked diverged at that step
    (logged no further, skipped by evaluation); a single run raises at once.

    Args:
      records: the runs' :class:`RunRecords`.
      every_steps: ``config.log_every``; it also fires at ``num_steps``.
      num_steps: the last G step of the stage.
      start: the G step this session started from (for the it/s and ETA of the progress line).
      diagnostic: optional ``(state, masks) -> {name: float}`` merged into every run's values
        (the evaluator's D-accuracy diagnostic); not called for diverged runs.

    Raises (when applied):
      FloatingPointError: a single run's, or every run's, losses became nan/inf.
    """

    def __init__(self, records: RunRecords, *, every_steps: int, num_steps: int, start: int,
                 diagnostic: Callable[[Pytree, Pytree], dict] | None = None):
        super().__init__(every_steps=every_steps, on_steps=(num_steps,))
        self.records = records
        self.num_steps = num_steps
        self.start = start
        self.diagnostic = diagnostic
        self.t0 = time.time()

    def apply(self, step: int, runs: Runs) -> None:
        """Fetches the metrics, guards them and writes them; logs the progress line."""
        rec = self.records
        host = runs.host_metrics()
        for i, name in enumerate(rec.names):
            vals = {m: float(v[i]) for m, v in host.items()}
            if self.diagnostic is not None and name not in rec.diverged:
                vals.update(self.diagnostic(runs.per_run()[i], runs.masks[i]))
            self._guard(step, name, vals)
            if name not in rec.diverged:
                rec.last[i] = vals
                rec.write_scalars(i, step, vals)
                if rec.main:
                    io_utils.append_jsonl(rec.jsonl[i], {"step": step, **vals})
        if len(rec.diverged) == rec.k:
            raise FloatingPointError(f"every run's losses became nan/inf ({rec.diverged}).")
        rate = (step - self.start) / max(time.time() - self.t0, 1e-9)
        logging.info(
            "%sstep %d/%d%s  d_loss %.4f  g_loss %.4f  D(real) %.3f  D(fake) %.3f  "
            "%.2f it/s  ETA %s", rec.prefix, step, self.num_steps,
            f"  {rec.k} runs ({len(rec.diverged)} diverged), means" if rec.k > 1 else "",
            float(np.nanmean(host["d_loss"])), float(np.nanmean(host["g_loss"])),
            float(np.nanmean(host["d_real"])), float(np.nanmean(host["d_fake"])), rate,
            io_utils.fmt_eta((self.num_steps - step) / max(rate, 1e-9)))

    def _guard(self, step: int, name: str, vals: dict) -> None:
        rec = self.records
        # process 0's verdict on all processes (the runs must agree on who diverged)
        bad = parallel.broadcast_from_main([m for m, v in vals.items() if not np.isfinite(v)])
        if bad and name not in rec.diverged:
            if rec.k == 1:
                raise FloatingPointError(f"{', '.join(bad)} became nan/inf at step {step}.")
            rec.diverged[name] = step
            logging.warning("%srun %s became nan/inf at step %d.", rec.prefix, name, step)


class SampleGrid(PeriodicAction):
    """``samples/step_XXXXXX.png`` (and a summary image) of each run's EMA generator.

    Every process runs the (SPMD) sampling program; process 0 writes the grids.

    Args:
      records: the runs' :class:`RunRecords`.
      sample: ``(g_vars, z, y) -> images [N, H, W, C] in [-1, 1]`` (jitted).
      noise: the fixed ``(z [N, latent], y [N] or None)`` of every grid.
      every_steps: ``config.sample_every``; it also fires at ``num_steps``.
      num_steps: the last G step of the stage.
    """

    def __init__(self, records: RunRecords, sample: Callable, noise: tuple, *,
                 every_steps: int, num_steps: int):
        super().__init__(every_steps=every_steps, on_steps=(num_steps,))
        self.records = records
        self.sample = sample
        self.z, self.y = noise

    def apply(self, step: int, runs: Runs) -> None:
        """Samples and writes one grid per run."""
        rec = self.records
        for i, s in enumerate(runs.per_run()):
            grid = io_utils.image_grid(
                np.asarray(jax.device_get(self.sample(s["ema"], self.z, self.y))))
            if rec.main:
                io_utils.save_png(grid, os.path.join(rec.run_dirs[i], "samples",
                                                     f"step_{step:06d}.png"))
            rec.writers[i].write_images(step, {rec.prefix + "samples_ema": grid[None]})


class Checkpoint(PeriodicAction):
    """The stacked ``[K, ...]`` state with ``meta`` (JSON) in the stage's checkpointer.

    Args:
      checkpointer: the stage's :class:`~jaxgan_lth.checkpointing.Checkpointer`.
      meta: JSON dict stored with every checkpoint.
      every_steps: ``config.checkpoint_every``; it also fires at ``num_steps``.
      num_steps: the last G step of the stage.
    """

    def __init__(self, checkpointer: checkpointing.Checkpointer, meta: dict, *,
                 every_steps: int, num_steps: int):
        super().__init__(every_steps=every_steps, on_steps=(num_steps,))
        self.checkpointer = checkpointer
        self.meta = meta

    def apply(self, step: int, runs: Runs) -> None:
        """Saves the state of every run at ``step``."""
        self.checkpointer.save(step, runs.stacked(), self.meta)


def coverage_line(result: dict) -> str:
    """``"  classes covered: 9/10, confidence 0.870"`` of an evaluation result ("" without)."""
    if "coverage_classes" not in result:
        return ""
    return (f"  classes covered: {result['coverage_classes']}/{len(result['coverage_hist'])}"
            f", confidence {result['coverage_confidence']:.3f}")


class EvalLog:
    """FID/KID history of one run (``eval.json``) and its best checkpoint by FID (``best/``)."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, "eval.json")
        self.history = (io_utils.read_json(self.path) or {}).get("history", [])
        self.best_ckpt = checkpointing.Checkpointer(os.path.join(run_dir, "best"), keep=1)

    def has(self, step: int) -> bool:
        """Whether G step ``step`` was evaluated (in this session or an earlier one)."""
        return any(h["step"] == step for h in self.history)

    def best(self) -> dict | None:
        """The entry with the lowest FID (the earlier step on a tie); None before any."""
        return min(self.history, key=lambda h: (h["fid"], h["step"])) if self.history else None

    def add(self, step: int, result: dict, state, protocol: dict, kimg: float) -> None:
        """Records ``result`` at ``step``; saves ``state`` to ``best/`` when its FID is best."""
        previous = self.best()
        self.history.append({"step": int(step), "kimg": round(float(kimg), 6), **result,
                             "protocol": protocol})
        if parallel.broadcast_from_main(previous is None or result["fid"] < previous["fid"]):
            self.best_ckpt.save(step, state, {"fid": result["fid"]})
        if parallel.is_main_process():
            io_utils.write_json(self.path, {"history": self.history, "best": self.best()})

    def summary(self) -> dict:
        """``final_fid``, ``final_kid``, ``final_kid_std``, ``best_fid``, ``best_step``, ..."""
        if not self.history:
            return {}
        final = max(self.history, key=lambda h: h["step"])
        best = self.best()
        out = {"final_fid": final["fid"], "final_kid": final["kid"],
               "final_kid_std": final["kid_std"], "best_fid": best["fid"],
               "best_step": best["step"], "fid_protocol": final.get("protocol")}
        for key in COVERAGE_KEYS:  # the class-coverage diagnostic (Fashion-MNIST)
            if key in final:
                out[f"final_{key}"] = final[key]
        return out

    def close(self) -> None:
        """Closes the ``best/`` checkpointer."""
        self.best_ckpt.close()


class Evaluate(PeriodicAction):
    """FID/KID of every run not yet evaluated at the step and not diverged; keeps the best.

    Each run's result goes to its ``eval.json`` (with the G step, kimg and protocol) and
    summaries; a run's state is saved to its ``best/`` when its FID is the lowest so far.
    The loop also calls :meth:`apply` once after the last iteration (the final evaluation,
    skipped where that step was evaluated already).

    Args:
      records: the runs' :class:`RunRecords`.
      evaluate: ``state -> {"fid", "kid", "kid_std", ...}`` of one run's state.
      protocol: ``() -> JSON dict``, the evaluator's protocol stored with every result.
      images_per_step: real images shown to D per G step (``n_dis * d_batch_size``); a
        result's ``kimg`` is ``step * images_per_step / 1000`` (StyleGAN's unit of length).
      every_steps: ``config.eval.every`` (0: only the final evaluation).
    """

    def __init__(self, records: RunRecords, evaluate: Callable[[Pytree], dict],
                 protocol: Callable[[], dict], *, images_per_step: int, every_steps: int):
        super().__init__(every_steps=every_steps)
        self.records = records
        self.evaluate = evaluate
        self.protocol = protocol
        self.images_per_step = int(images_per_step)
        self.logs = [EvalLog(d) for d in records.run_dirs]

    def apply(self, step: int, runs: Runs) -> None:
        """Evaluates the runs at ``step``."""
        rec = self.records
        for i, s in enumerate(runs.per_run()):
            # Process 0's skip decision and result on all processes (each one samples and
            # extracts features itself; a save of best/ is collective, so all must agree).
            if parallel.broadcast_from_main(self.logs[i].has(step) or
                                            rec.names[i] in rec.diverged):
                continue
            t_eval = time.time()
            result = parallel.broadcast_from_main(self.evaluate(s))
            rec.write_scalars(i, step, {m: v for m, v in result.items() if np.ndim(v) == 0})
            logging.info("%s%sstep %d: FID %.3f  KID %.5f +- %.5f%s  (%.0f s)", rec.prefix,
                         rec.label(i), step, result["fid"], result["kid"], result["kid_std"],
                         coverage_line(result), time.time() - t_eval)
            self.logs[i].add(step, result, s, self.protocol(),
                             step * self.images_per_step / 1000)

    def close(self) -> None:
        """Closes the runs' ``best/`` checkpointers."""
        for log in self.logs:
            log.close()
