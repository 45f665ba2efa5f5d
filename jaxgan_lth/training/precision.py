"""Run-wide numerics and compilation: matmul precision, compute dtype, compilation cache.

Four config keys, all defaulting to the behaviour before they existed (float32 everywhere, no
cache), are read here or by the modules named:

* ``train.matmul_precision`` (:data:`MATMUL_PRECISIONS`): JAX's default precision of float32
  matmuls and convolutions (``jax.default_matmul_precision``) while the run's programs are
  traced: the training iteration, sample grids, and the generator and discriminator calls of
  evaluation. :func:`pipeline.train_and_evaluate <jaxgan_lth.pipeline.train_and_evaluate>` and
  :func:`evaluate.evaluate_run <jaxgan_lth.evaluate.evaluate_run>` run inside
  :func:`matmul_precision`. The option is part of the trace context, so each precision gets
  its own compiled programs; an op given an explicit ``precision`` keeps it (the FID Inception
  network takes ``eval.precision``). JAX's "Matmul precision" guide: by default float32 dot
  products may use reduced-precision arithmetic internally (TF32 on NVIDIA Ampere and newer
  GPUs, one bfloat16 pass on TPUs); ``"high"`` is TF32 on those GPUs and three bfloat16 passes
  on TPUs; ``"highest"`` is full float32 (six passes on TPUs). CPUs compute float32 either way.
  ``"default"`` leaves JAX's own setting (``JAX_DEFAULT_MATMUL_PRECISION``) untouched.
* ``model.dtype`` (:data:`jaxgan_lth.models.registry.COMPUTE_DTYPES`): the compute dtype of
  every model (``"float32"`` or ``"bfloat16"``), with float32 parameters, optimizer state,
  batch-norm statistics and spectral-norm state (:mod:`jaxgan_lth.models.layers`); checked by
  :func:`validate_config`, applied by the model builders.
* ``eval.precision``: the FID Inception network's convolution precision
  (:class:`jaxgan_lth.evaluation.features.FeatureExtractor`; checked with ``config.eval``).
* ``train.compilation_cache_dir``: JAX's persistent compilation cache
  (``jax_compilation_cache_dir``), set by :func:`set_compilation_cache` in
  :mod:`jaxgan_lth.main` before anything compiles: ``""`` = off, ``"workdir"`` =
  ``WORKDIR/jax_cache``, any other string = that folder. A rerun (a resumed run, the next
  stage's engines, a second run of one config) reads its compiled programs instead of
  compiling them. JAX writes only programs whose compilation took at least
  ``jax_persistent_cache_min_compile_time_secs`` (default 1 s, settable by the environment
  variable ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``; 0 caches every program). JAX reads
  the folder once, at its first compilation: a later change of the folder in the same process
  takes effect only after :func:`set_compilation_cache` resets JAX's cache (it does). JAX's
  warning applies: the cache is trusted code, so the folder must not be writable by others.

Own code, not a library: a few lines that map the config onto JAX's own options.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ContextManager

import jax

#: Accepted ``train.matmul_precision`` values (JAX's precision names; "default" = JAX's own).
MATMUL_PRECISIONS = ("default", "high", "highest")
#: ``train.compilation_cache_dir`` value that puts the cache in ``WORKDIR/jax_cache``.
CACHE_IN_WORKDIR = "workdir"
#: Folder of the cache inside the workdir (``train.compilation_cache_dir = "workdir"``).
CACHE_SUBDIR = "jax_cache"


def _train_key(config: Any, key: str, default: Any) -> Any:
    """``config.train[key]``, or ``default`` for a config written before the key existed."""
    train = config.train
    return train.get(key, default) if hasattr(train, "get") else getattr(train, key, default)


def check_matmul_precision(value: Any) -> str:
    """Returns ``value`` when it is one of :data:`MATMUL_PRECISIONS`.

    Raises:
      ValueError: naming the value and the accepted ones.
    """
    if not isinstance(value, str) or value not in MATMUL_PRECISIONS:
        raise ValueError(f"config.train.matmul_precision = {value!r} is not accepted; accepted: "
                         f"{MATMUL_PRECISIONS} (JAX's default precision of float32 matmuls and "
                         "convolutions).")
    return value


def validate_config(config: Any) -> None:
    """Checks ``train.matmul_precision``, ``train.compilation_cache_dir`` and ``model.dtype``.

    Keys missing from an older config take their defaults ("default", "", "float32").

    Raises:
      ValueError: naming the key, the bad value and what is accepted.
    """
    from jaxgan_lth.models.registry import COMPUTE_DTYPES

    check_matmul_precision(_train_key(config, "matmul_precision", "default"))
    cache = _train_key(config, "compilation_cache_dir", "")
    if not isinstance(cache, str):
        raise ValueError(f"config.train.compilation_cache_dir = {cache!r} is not accepted; "
                         f"accepted: '' (off), {CACHE_IN_WORKDIR!r} (WORKDIR/{CACHE_SUBDIR}) or "
                         "a folder path.")
    model = config.model
    dtype = model.get("dtype", "float32") if hasattr(model, "get") else "float32"
    if not isinstance(dtype, str) or dtype not in COMPUTE_DTYPES:
        raise ValueError(f"config.model.dtype = {dtype!r} is not accepted; accepted: "
                         f"{tuple(COMPUTE_DTYPES)} (the compute dtype; parameters and optimizer "
                         "state stay float32).")


def matmul_precision(config: Any) -> ContextManager:
    """The context in which a run's programs are traced: ``train.matmul_precision``.

    Returns:
      ``jax.default_matmul_precision(value)`` for ``"high"`` / ``"highest"``; a no-op context
      for ``"default"`` (and for a config without the key), so JAX's own setting stays.

    Raises:
      ValueError: an unknown value (named).
    """
    value = check_matmul_precision(_train_key(config, "matmul_precision", "default"))
    if value == "default":
        return contextlib.nullcontext()
    return jax.default_matmul_precision(value)


def compilation_cache_dir(config: Any, workdir: str) -> str | None:
    """The persistent compilation cache folder of ``train.compilation_cache_dir``.

    Returns:
      None for ``""`` (off), ``WORKDIR/jax_cache`` for ``"workdir"``, else the given path with
      ``~`` expanded, made absolute.

    Raises:
      ValueError: a value that is not a string (named).
    """
    value = _train_key(config, "compilation_cache_dir", "")
    if not isinstance(value, str):
        raise ValueError(f"config.train.compilation_cache_dir = {value!r} is not accepted; "
                         f"accepted: '' (off), {CACHE_IN_WORKDIR!r} or a folder path.")
    if not value:
        return None
    if value == CACHE_IN_WORKDIR:
        return os.path.abspath(os.path.join(workdir, CACHE_SUBDIR))
    return os.path.abspath(os.path.expanduser(value))


def set_compilation_cache(config: Any, workdir: str) -> str | None:
    """Points JAX's persistent compilation cache at :func:`compilation_cache_dir`.

    Call it before anything compiles (:mod:`jaxgan_lth.main` does). With the key off (``""``)
    JAX's settings are left as they are. JAX creates the folder at its first compilation.

    Returns:
      The folder, or None when the cache is off.

    Raises:
      ValueError: a bad ``train.compilation_cache_dir`` (named).
    """
    path = compilation_cache_dir(config, workdir)
    if path is None:
        return None
    if jax.config.jax_compilation_cache_dir != path:
        from jax.experimental.compilation_cache import compilation_cache

        jax.config.update("jax_compilation_cache_dir", path)
        # JAX opens its cache once, at the first compilation: a process that compiled before
        # (another cache folder or none) would otherwise keep writing where it started.
        compilation_cache.reset_cache()
    return path
