"""Config checks: value validation and the ``DIR/config.json`` guard against silent changes.

Unknown keys given on the command line (``--config.train.nonexistent=1``) are rejected by
``ml_collections.config_flags`` (the config is locked); this module checks the *values*.
"""

from __future__ import annotations

import json
import math
import os

import ml_collections

from jaxgan_lth.io_utils import write_json
from jaxgan_lth.training import precision

_CHOICES = {
    ("train", "loss"): ("hinge", "nonsaturating"),
    ("data", "subset_selection"): ("first", "random"),
    ("data", "channels"): (1, 3),
}
_POSITIVE_INT = [
    ("train", "num_steps"), ("train", "n_dis"), ("train", "g_batch_size"),
    ("train", "d_batch_size"), ("log_every",), ("sample_every",), ("checkpoint_every",),
    ("keep_checkpoints",), ("num_samples",),
]

# Keys that may change between a run and its resumption without invalidating checkpoints.
RESUMABLE_CHANGES = (
    "train.num_steps", "ticket.num_steps", "log_every", "sample_every", "checkpoint_every",
    "keep_checkpoints", "train.compilation_cache_dir",
)

# Keys added after runs were started, with the value that reproduces the behaviour before them:
# a workdir's config.json without such a key compares as if it held this value, so the run
# resumes (issue 31's numerics keys, jaxgan_lth/training/precision.py).
ADDED_KEYS = {
    "model.dtype": "float32", "train.matmul_precision": "default",
    "train.compilation_cache_dir": "", "eval.precision": "highest",
}


def _get(config, path):
    node = config
    for key in path:
        node = node[key]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks value ranges and choices of a run config.

    Includes the numerics keys ``train.matmul_precision``, ``train.compilation_cache_dir`` and
    ``model.dtype`` (:func:`jaxgan_lth.training.precision.validate_config`).

    Raises:
      ValueError: naming the key, the bad value and what is accepted.
    """
    for path, choices in _CHOICES.items():
        value = _get(config, path)
        if value not in choices:
            raise ValueError(
                f"config.{'.'.join(path)} = {value!r} is not accepted; choose one of {choices}."
            )
    for path in _POSITIVE_INT:
        value = _get(config, path)
        if int(value) < 1:
            raise ValueError(f"config.{'.'.join(path)} = {value!r} must be a positive integer.")
    for name in ("g_lr", "d_lr"):
        if config.train[name] <= 0:
            raise ValueError(f"config.train.{name} = {config.train[name]} must be > 0.")
    for name in ("g_betas", "d_betas"):
        betas = tuple(config.train[name])
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(
                f"config.train.{name} = {betas} must be two Adam betas in [0, 1)."
            )
    if not 0.0 <= config.train.ema_decay < 1.0:
        raise ValueError(f"config.train.ema_decay = {config.train.ema_decay} must be in [0, 1).")
    precision.validate_config(config)
    check_finite(config)


def check_finite(config: ml_collections.ConfigDict) -> None:
    """Refuses nan and +-inf anywhere in the config (floats, and floats inside tuples/lists).

    A ``train.g_lr=nan`` used to pass validation, fail only at the first logged step with a
    FloatingPointError and leave ``"g_lr": NaN`` in ``config.json``.

    Raises:
      ValueError: naming the first non-finite key and its value.
    """
    for key, value in flatten(config.to_dict()).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"config.{key} = {value!r} is not a finite number; accepted: "
                                 "a finite float (nan and inf are refused).")


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested dict as ``{"a.b.c": value}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def to_dict(config: ml_collections.ConfigDict) -> dict:
    """The config as a JSON-compatible dict (tuples become lists)."""
    return json.loads(config.to_json_best_effort())


def write_or_check(
    config: ml_collections.ConfigDict, workdir: str, allow_changes: bool = False
) -> None:
    """Writes ``workdir/config.json``; if one exists, checks that the new config matches it.

    A re-run of the same command resumes; a different config in the same workdir would mix two
    experiments, so it is refused unless only keys in :data:`RESUMABLE_CHANGES` differ (or
    ``allow_changes``). A key of :data:`ADDED_KEYS` missing from the workdir's file counts as
    its listed value. The file is then rewritten with the new values. (The pipeline calls
    :func:`check_against_workdir` and writes only once the run's first checkpoint loads.)

    Raises:
      ValueError: naming every differing key with its old and new value.
    """
    write_json(os.path.join(workdir, "config.json"),
               check_against_workdir(config, workdir, allow_changes))


def check_against_workdir(
    config: ml_collections.ConfigDict, workdir: str, allow_changes: bool = False
) -> dict:
    """The check of :func:`write_or_check` without the write; returns the dict to write.

    Raises:
      ValueError: naming every differing key with its old and new value.
    """
    path = os.path.join(workdir, "config.json")
    new = to_dict(config)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        a, b = flatten(old), flatten(new)
        for key, value in ADDED_KEYS.items():  # written before the key existed
            a.setdefault(key, value)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        bad = [k for k in diff if k not in RESUMABLE_CHANGES]
        if bad and not allow_changes:
            details = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in bad)
            raise ValueError(
                f"{workdir} holds a run with a different config ({details}). Use a new "
                "--workdir, or pass --allow_config_change to resume with the new values."
            )
    return new
