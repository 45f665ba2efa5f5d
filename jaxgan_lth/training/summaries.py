"""TensorBoard summaries when clu is importable; a writer that only logs otherwise.

clu's ``metric_writers`` (and the TensorFlow it imports) are optional at run time: a bare
accelerator image has neither. Every metric the project reads back (``metrics.jsonl``,
``eval.json``, ``summary.json``, sample PNGs) is written by :mod:`jaxgan_lth.training.loop` itself,
so
without clu only the TensorBoard event files are missing; :func:`create_writer` then returns a
:class:`NullWriter` and logs once that summaries are off. Own code (no reference method).
"""

from __future__ import annotations

from typing import Any, Mapping

from absl import logging

_warned = False


class NullWriter:
    """The part of clu's ``MetricWriter`` interface the loop uses; it writes nothing."""

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Drops ``scalars`` (``{name: float}`` at G step ``step``)."""

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        """Drops ``images`` (``{name: uint8 [1, H, W, C]}`` at G step ``step``)."""

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to close."""


def clu_available() -> bool:
    """Whether ``clu.metric_writers`` imports (it needs TensorFlow)."""
    try:
        from clu import metric_writers  # noqa: F401
    except ImportError:
        return False
    return True


def create_writer(logdir: str, *, just_logging: bool):
    """A summary writer for ``logdir``: clu's default writer, or :class:`NullWriter`.

    Args:
      logdir: the run's folder; clu writes TensorBoard event files there.
      just_logging: True on processes other than 0 (clu then only logs; no files).

    Returns:
      clu's synchronous default writer when clu imports, else a :class:`NullWriter` (the
      metrics still go to ``metrics.jsonl``; a one-time INFO line says so).
    """
    global _warned
    try:
        from clu import metric_writers
    except ImportError as e:
        if not _warned:
            logging.info("clu is not importable (%s): no TensorBoard summaries; metrics go to "
                         "metrics.jsonl only.", e)
            _warned = True
        return NullWriter()
    return metric_writers.create_default_writer(logdir, just_logging=just_logging,
                                                asynchronous=False)


def hide_accelerators_from_tensorflow() -> bool:
    """Keeps TensorFlow, when installed, off the GPUs that JAX uses.

    clu's writers import TensorFlow, which would otherwise reserve GPU memory. Returns whether
    TensorFlow was found (False: nothing to hide, e.g. a bare accelerator image).
    """
    try:
        import tensorflow as tf
    except ImportError:
        return False
    tf.config.set_visible_devices([], "GPU")
    return True
