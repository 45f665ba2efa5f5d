"""Checkpoints: the one module of jaxgan_lth that talks to Orbax.

A checkpoint directory holds numbered steps (G iterations). Each step stores two items:

* ``state``: the training-state pytree (parameters, batch statistics, optimizer states, EMA
  generator, step counter), written with ``ocp.args.StandardSave``;
* ``meta``: a small JSON dict (for example the IMP round or the mask density).

Step 0 (the initial parameters, theta_0 of the lottery-ticket papers) is always kept; of the
other steps the latest ``keep`` are kept. IMP rewinding reads step 0 (or a later step k for
"late rewinding") back from here.

Own code here is a thin wrapper: it fixes the keep policy, turns Orbax's errors on unreadable
directories into messages that name the directory and the step, and restores into an abstract
target so arrays come back with the caller's shapes, dtypes and shardings.

Verified steps: after Orbax has finalised a step, the SHA-256 (``hashlib``) of every file of the
step folder is written to ``<step>/sha256.json``; every restore first checks them. Orbax's own
CRC-32C covers only its b-tree files, so a flipped byte in an array data file was restored
silently before. A step that fails its check raises :class:`CorruptCheckpointError` (naming the
step and the files); :meth:`Checkpointer.restore_latest` (resume) then moves that step aside
(``corrupt_<step>``, kept for inspection, ignored by Orbax) and falls back to the newest good
step with a warning. A step without ``sha256.json`` (written before checksums, or a kill between
Orbax's atomic finalisation and the checksum file) is restored with a warning.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import threading
import time
import weakref
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as cm

#: name of the checksum file inside a step folder ({relative path: SHA-256 hex digest})
CHECKSUM_FILE = "sha256.json"

_OPEN: weakref.WeakSet = weakref.WeakSet()  # Checkpointers not yet closed (see close_all)
_ON_SUCCESS: list[Callable[[], None]] = []  # one-shot callbacks (see on_first_success)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the expected state."""


class CorruptCheckpointError(CheckpointError):
    """A step's files differ from the SHA-256 checksums written with it (or are missing)."""


def _digests(step_dir: str) -> dict[str, str]:
    """``{path relative to step_dir: SHA-256 hex}`` of every file but the checksum file."""
    out = {}
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel in (CHECKSUM_FILE, f".{CHECKSUM_FILE}.tmp"):  # ours, not Orbax's
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
    return dict(sorted(out.items()))


def steps_in(directory: str) -> list[int]:
    """Sorted steps saved in ``directory``; ``[]`` when it does not exist (nothing is created)."""
    if not os.path.isdir(directory):
        return []
    ck = Checkpointer(directory, keep=10_000)
    try:
        return ck.all_steps()
    finally:
        ck.close()


def close_all(timeout_s: float = 60.0) -> None:
    """Closes every Checkpointer of this process still open and waits for Orbax's threads.

    Called when a run ends (also by an error), so Orbax's background threads end (waited for up
    to ``timeout_s`` seconds) before the error is printed and the interpreter shuts down;
    otherwise their tracebacks print after, and hide, the error that ended the run.
    """
    for ck in list(_OPEN):
        try:
            ck.close()
        except Exception as e:  # noqa: BLE001  (the run's own error matters, not this one)
            logging.warning("closing the checkpoints in %s: %s", ck.directory, e)
    # after a failed write Orbax's worker threads go on failing (and printing) for a while:
    # let them end now, so that their output comes before the error that ended the run
    deadline = time.monotonic() + timeout_s
    for t in threading.enumerate():
        if t is not threading.current_thread() and type(t).__module__.startswith("orbax"):
            try:  # Orbax's threads re-raise their own failure from join()
                t.join(max(0.0, deadline - time.monotonic()))
            except Exception as e:  # noqa: BLE001  (the run's own error matters, not this one)
                logging.warning("an Orbax thread of a failed write: %s: %s", type(e).__name__, e)
    gc.collect()  # their unfinished coroutines are finalised now, not at interpreter shutdown


@contextlib.contextmanager
def on_first_success(callback: Callable[[], None]):
    """Calls ``callback()`` once, after the block's first successful checkpoint save/restore.

    The pipeline's commit of a new or changed ``config.json`` (:mod:`jaxgan_lth.pipeline`).
    """
    _ON_SUCCESS.append(callback)
    try:
        yield
    finally:
        if callback in _ON_SUCCESS:
            _ON_SUCCESS.remove(callback)


def _succeeded() -> None:
    while _ON_SUCCESS:
        _ON_SUCCESS.pop(0)()


class Checkpointer:
    """Saves and restores ``(state, meta)`` pairs under ``directory``.

    Args:
      directory: folder of this run's checkpoints (created if missing).
      keep: how many of the latest steps to keep besides step 0 (>= 1).

    Raises:
      ValueError: ``keep < 1``.
    """

    def __init__(self, directory: str, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}.")
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(
                [cm.LatestN(keep), cm.CustomSteps([0])]
            ),
            create=True,
            enable_async_checkpointing=False,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )
        self._verified: set[int] = set()
        self._unverified: set[int] = set()
        self._closed = False
        _OPEN.add(self)

    def step_dir(self, step: int) -> str:
        """The folder of ``step``."""
        return os.path.join(self.directory, str(step))

    def verify(self, step: int) -> bool:
        """Checks ``step``'s files against the SHA-256 checksums written with it.

        Returns:
          True when verified; False when the step has no checksum file (written before
          checksums existed, or a kill right after Orbax finalised it): a warning is logged.

        Raises:
          CorruptCheckpointError: a file differs, is missing or was added (named).
        """
        if step in self._verified:
            return True
        folder = self.step_dir(step)
        path = os.path.join(folder, CHECKSUM_FILE)
        if not os.path.exists(path):
            if step in self._unverified:
                return False
            self._unverified.add(step)
            logging.warning("checkpoint step %d in %s has no %s: restored unverified.", step,
                            self.directory, CHECKSUM_FILE)
            return False
        try:
            with open(path) as f:
                want = json.load(f)
        except (OSError, ValueError) as e:
            raise CorruptCheckpointError(
                f"checkpoint step {step} in {self.directory}: unreadable {CHECKSUM_FILE} "
                f"({e}).") from e
        got = _digests(folder)
        bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        if bad:
            raise CorruptCheckpointError(
                f"checkpoint step {step} in {self.directory} is corrupt: {len(bad)} file(s) "
                f"differ from the SHA-256 written with it ({', '.join(bad[:4])}"
                f"{', ...' if len(bad) > 4 else ''}).")
        self._verified.add(step)
        return True

    def all_steps(self) -> list[int]:
        """Sorted steps present on disk."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest saved step, or None when the directory has none."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict | None = None) -> None:
        """Writes ``state`` (a pytree of arrays) and ``meta`` (JSON-able dict) as ``step``.

        Blocks until the files are complete, so a kill right after returns leaves a
        readable checkpoint. Saving a step that already exists is a no-op. Then writes the
        SHA-256 of every file of the step to ``<step>/sha256.json``.

        Raises:
          CheckpointError: the write failed (full disk, file size limit, permissions), naming
            the step, the directory and the cause.
        """
        if step in self._manager.all_steps():
            return
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    meta=ocp.args.JsonSave(dict(meta or {})),
                ),
                force=True,
            )
            self._manager.wait_until_finished()
        except Exception as e:  # a full disk, a size limit, permissions: Orbax wraps them
            prev = self.latest_step()
            raise CheckpointError(
                f"writing checkpoint step {step} in {self.directory} failed "
                f"({type(e).__name__}: {e}). Nothing of this step is used; once the cause is "
                "fixed, the same command " + (f"resumes from step {prev}." if prev is not None
                                              else "starts this stage again.")
            ) from e
        if jax.process_index() == 0:  # one writer on a shared file system
            digests = _digests(self.step_dir(step))
            tmp = os.path.join(self.step_dir(step), f".{CHECKSUM_FILE}.tmp")
            with open(tmp, "w") as f:
                json.dump(digests, f, indent=1)
            os.replace(tmp, os.path.join(self.step_dir(step), CHECKSUM_FILE))
            self._verified.add(step)
        _succeeded()

    def restore(self, step: int, target: Any) -> tuple[Any, dict]:
        """Reads ``step`` into the structure, shapes, dtypes and shardings of ``target``.

        Args:
          step: the step to read.
          target: a pytree of arrays (or ``jax.ShapeDtypeStruct``) with the expected layout.

        Returns:
          ``(state, meta)``.

        Raises:
          CorruptCheckpointError: the step's files fail their SHA-256 check (step and files
            named).
          CheckpointError: the step is absent, or its (intact) files do not match ``target``
            (the message names the directory and step).
        """
        if step not in self._manager.all_steps():
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; "
                f"steps present: {self.all_steps()}."
            )
        verified = self.verify(step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:  # Orbax raises many types for damaged files.
            what = ("does not match the model/config of this run (its files pass their "
                    "SHA-256 check: they are intact)" if verified else
                    "is corrupt or does not match the model/config of this run")
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} {what} ({type(e).__name__}: {e})."
                " Use the config that wrote it, or a new --workdir."
            ) from e
        _succeeded()
        return restored["state"], dict(restored["meta"] or {})

    def latest_verified_step(self) -> int | None:
        """The newest step whose files pass their checksum check, or None.

        The step a resume with :meth:`restore_latest` starts from; corrupt steps are only
        skipped here (not moved).
        """
        for step in reversed(self.all_steps()):
            try:
                self.verify(step)
            except CorruptCheckpointError:
                continue
            return step
        return None

    def restore_latest(self, target: Any) -> tuple[int, Any, dict] | None:
        """Restores the newest step that passes its checksum check (a resume).

        A corrupt step is moved aside to ``corrupt_<step>`` (kept, ignored by Orbax) with a
        warning naming it, and the next older step is tried.

        Returns:
          ``(step, state, meta)``, or None when the directory holds no (good) step.

        Raises:
          CheckpointError: an intact step does not match ``target``.
        """
        for step in reversed(self.all_steps()):
            try:
                state, meta = self.restore(step, target)
            except CorruptCheckpointError as e:
                aside = self._move_aside(step)
                logging.warning("%s Moved it to %s; falling back to the previous step.", e,
                                aside)
                continue
            return step, state, meta
        return None

    def _move_aside(self, step: int) -> str:
        dest = os.path.join(self.directory, f"corrupt_{step}")
        i = 1
        while os.path.exists(dest):
            dest, i = os.path.join(self.directory, f"corrupt_{step}_{i}"), i + 1
        if jax.process_index() == 0:
            os.replace(self.step_dir(step), dest)
        self._manager.reload()
        return dest

    def metadata(self, step: int) -> dict:
        """The JSON ``meta`` saved with ``step`` (the state is not read).

        Raises:
          CorruptCheckpointError: the step's files fail their SHA-256 check.
          CheckpointError: the step is absent or its meta file unreadable.
        """
        if step not in self._manager.all_steps():
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; "
                f"steps present: {self.all_steps()}."
            )
        self.verify(step)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # Orbax raises many types for damaged files.
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory}: unreadable meta "
                f"({type(e).__name__}: {e})."
            ) from e
        return dict(restored["meta"] or {})

    def close(self) -> None:
        """Waits for pending writes and releases the manager (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        _OPEN.discard(self)
        self._manager.wait_until_finished()
        self._manager.close()
