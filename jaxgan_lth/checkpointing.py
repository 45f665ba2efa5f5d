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
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the expected state."""


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

    def all_steps(self) -> list[int]:
        """Sorted steps present on disk."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest saved step, or None when the directory has none."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict | None = None) -> None:
        """Writes ``state`` (a pytree of arrays) and ``meta`` (JSON-able dict) as ``step``.

        Blocks until the files are complete, so a kill right after returns leaves a
        readable checkpoint. Saving a step that already exists is a no-op.
        """
        if step in self._manager.all_steps():
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave(dict(meta or {})),
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, step: int, target: Any) -> tuple[Any, dict]:
        """Reads ``step`` into the structure, shapes, dtypes and shardings of ``target``.

        Args:
          step: the step to read.
          target: a pytree of arrays (or ``jax.ShapeDtypeStruct``) with the expected layout.

        Returns:
          ``(state, meta)``.

        Raises:
          CheckpointError: the step is absent, or its files are unreadable or do not match
            ``target`` (the message names the directory and step).
        """
        if step not in self._manager.all_steps():
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; "
                f"steps present: {self.all_steps()}."
            )
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
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} is corrupt or does not match "
                f"the model/config of this run ({type(e).__name__}: {e}). Delete that step "
                f"folder to fall back to an earlier step, or use a new --workdir."
            ) from e
        return restored["state"], dict(restored["meta"] or {})

    def metadata(self, step: int) -> dict:
        """The JSON ``meta`` saved with ``step`` (the state is not read).

        Raises:
          CheckpointError: the step is absent or its meta file unreadable.
        """
        if step not in self._manager.all_steps():
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; "
                f"steps present: {self.all_steps()}."
            )
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
        """Waits for pending writes and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
