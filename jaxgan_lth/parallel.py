"""Device mesh: the one module of jaxgan_lth that decides how arrays are laid over devices.

Data parallelism uses ``jax.jit`` over a 1-D ``Mesh`` with axis ``data`` and ``NamedSharding``
(the successor of ``jax.pmap``, which is in maintenance mode since JAX 0.8): parameters,
optimizer states, masks and the (small) limited training set are replicated; each sampled batch
is split along its first axis over the ``data`` axis. Because the train steps are written over
the global batch, XLA inserts the gradient all-reduce and batch-norm statistics are computed
over the global batch, exactly as single-device training.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def create_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices of all hosts) with axis ``data``.

    Uses ``jax.sharding.Mesh`` (auto axis type), so un-annotated inputs are accepted.
    """
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits axis 0 (the batch) over the ``data`` axis of ``mesh``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh, name: str = "batch size") -> None:
    """Raises ValueError unless ``batch_size`` is a multiple of the mesh's device count."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"{name} {batch_size} is not divisible by the {n} devices of the mesh; use a "
            f"multiple of {n} (e.g. {max(n, batch_size // n * n)})."
        )


def shard_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Inside a jitted function: constrain a ``[B, ...]`` array to be split over ``data``."""
    if mesh is None or mesh.devices.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every array of ``tree`` on all devices of ``mesh`` (host -> device copy)."""
    return jax.device_put(tree, replicated(mesh))
