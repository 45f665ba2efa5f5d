"""Device mesh: the one module of jaxgan_lth that decides how arrays are laid over devices.

Data parallelism uses ``jax.jit`` over a 1-D ``Mesh`` with axis ``data`` and ``NamedSharding``
(the successor of ``jax.pmap``, which is in maintenance mode since JAX 0.8): parameters,
optimizer states, masks and the (small) limited training set are replicated; each sampled batch
is split along its first axis over the ``data`` axis. Because the train steps are written over
the global batch, XLA inserts the gradient all-reduce and batch-norm statistics are computed
over the global batch, exactly as single-device training.

Multi-host (several processes, e.g. one per GPU node or per TPU VM worker):

* Every process calls :func:`initialize_distributed` first (a no-op in a single process), then
  runs the *same* program: :func:`create_mesh` spans the devices of all processes
  (``jax.devices()``), so every jitted step is one SPMD program over the global mesh.
* Every process loads the same limited training set and :func:`replicate` puts a full copy of
  it (and of the state and masks) on each of its local devices.
* How each host gets its part of a batch: the real batch is *sampled inside* the jitted step
  from the replicated PRNG key (``fold_in(base_key, step)``, identical on every host) and the
  replicated training set, and :func:`shard_batch` constrains the sampled global ``[B, ...]``
  array to ``P('data')``. XLA's SPMD partitioner then has every device compute only its own
  ``B / num_devices`` rows: it draws the random indices of those rows (the threefry RNG is
  partitionable, ``jax_threefry_partitionable`` is on by default) and gathers them from its
  local copy of the training set, with no communication (checked on the compiled HLO of a
  4-device CPU mesh: a per-device gather of ``B/4`` rows and no collective). So the global
  batch is exactly the batch a single device would draw with the same key, whatever the
  number of hosts; no per-host keys are needed, and adding per-host keys would make results
  depend on the host count. (Per-host keys and ``jax.make_array_from_process_local_data``
  are needed only for host-side input pipelines, which this project does not use.)
* The global batch sizes must be divisible by the *global* device count
  (:func:`check_batch_divisible`).
* Evaluation results and every decision a collective depends on (evaluate or skip, save
  ``best/`` or not, a run diverged) are process 0's, sent to all by :func:`broadcast_from_main`.
* Metric files are written by process 0 only (the other processes' clu writers just log;
  :mod:`jaxgan_lth.training.loop` also writes sample grids and summaries on process 0 only);
  Orbax writes checkpoints of the global arrays cooperatively from all processes.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"

# Devices that create_mesh() uses when called without devices (see use_devices).
_DEFAULT_DEVICES: list | None = None


# ------------------------------------------------------------------------------------------------
# Multi-host start-up
# ------------------------------------------------------------------------------------------------

_FALSE = ("0", "false", "no", "off")
_TRUE = ("1", "true", "yes", "on")


def detect_launcher(environ: dict | None = None) -> str | None:
    """Names the multi-process launcher found in the environment, or None for one process.

    Checked in this order:

    * ``JAXGAN_DISTRIBUTED=0`` / ``=1``: explicit off / on (on: JAX auto-detects the cluster,
      e.g. the Cloud TPU VM metadata of a pod slice, or uses the variables below).
    * ``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` > 1 (and ``JAX_PROCESS_ID``):
      a manual launch (``"manual"``).
    * SLURM ``srun`` step with more than one task (``SLURM_STEP_NODELIST``, ``SLURM_PROCID``
      and ``SLURM_STEP_NUM_TASKS`` or ``SLURM_NTASKS`` > 1): ``"slurm"``. The batch script
      itself (outside ``srun``) is one process and is not detected.
    * Open MPI (``OMPI_COMM_WORLD_SIZE`` > 1): ``"ompi"``.
    * Cloud TPU on GKE (``TPU_WORKER_HOSTNAMES`` listing more than one worker, or
      ``MEGASCALE_COORDINATOR_ADDRESS``): ``"tpu"``.

    Args:
      environ: the environment to read (default ``os.environ``).

    Returns:
      ``"explicit"``, ``"manual"``, ``"slurm"``, ``"ompi"``, ``"tpu"`` or None.
    """
    env = os.environ if environ is None else environ
    flag = env.get("JAXGAN_DISTRIBUTED", "").strip().lower()
    if flag in _FALSE:
        return None
    if flag in _TRUE:
        return "explicit"
    if flag:
        raise ValueError(
            f"JAXGAN_DISTRIBUTED={env['JAXGAN_DISTRIBUTED']!r}: use 1 (on) or 0 (off)."
        )

    def count(name: str) -> int:
        try:
            return int(env.get(name, "1"))
        except ValueError:
            return 1

    if env.get("JAX_COORDINATOR_ADDRESS") and count("JAX_NUM_PROCESSES") > 1:
        return "manual"
    slurm_tasks = count("SLURM_STEP_NUM_TASKS") if "SLURM_STEP_NUM_TASKS" in env else count(
        "SLURM_NTASKS"
    )
    if "SLURM_STEP_NODELIST" in env and "SLURM_PROCID" in env and slurm_tasks > 1:
        return "slurm"
    if count("OMPI_COMM_WORLD_SIZE") > 1:
        return "ompi"
    if "," in env.get("TPU_WORKER_HOSTNAMES", "") or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    return None


def initialize_distributed(environ: dict | None = None, **kwargs) -> bool:
    """Starts ``jax.distributed`` when this process is one of several; else does nothing.

    Call it at program start, before anything touches a JAX device (``jax.devices()``, any
    computation): JAX refuses to initialise the distributed system afterwards. After it,
    ``jax.devices()`` lists the devices of all processes and :func:`create_mesh` spans them.

    The launcher is found by :func:`detect_launcher`. SLURM, Open MPI and Cloud TPU set
    everything JAX needs (coordinator address, process count and id; on SLURM GPUs one device
    per task, so launch one task per GPU). A manual launch sets ``JAX_COORDINATOR_ADDRESS``
    (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` on every
    process. Source: ``jax.distributed.initialize`` documentation, JAX multi-process guide.

    Args:
      environ: the environment to read (default ``os.environ``; tests pass a dict).
      **kwargs: passed on to ``jax.distributed.initialize`` (e.g. ``local_device_ids``,
        ``initialization_timeout``).

    Returns:
      True if the distributed system is (now or already) initialised, False in a single
      process (nothing was done).

    Raises:
      RuntimeError: a multi-process launch was detected but JAX devices were already in use
        (the message says to call this first), or ``jax.distributed.initialize`` failed.
      ValueError: ``JAXGAN_DISTRIBUTED`` has a value other than 0/1.
    """
    if jax.distributed.is_initialized():
        return True
    env = os.environ if environ is None else environ
    launcher = detect_launcher(env)
    if launcher is None:
        return False
    if launcher == "manual":
        kwargs.setdefault("coordinator_address", env["JAX_COORDINATOR_ADDRESS"])
        kwargs.setdefault("num_processes", int(env["JAX_NUM_PROCESSES"]))
        if "JAX_PROCESS_ID" not in env:
            raise RuntimeError(
                "JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES are set but JAX_PROCESS_ID is "
                "not; set it to this process's id in [0, JAX_NUM_PROCESSES)."
            )
        kwargs.setdefault("process_id", int(env["JAX_PROCESS_ID"]))
    logging.info("Multi-process launch detected (%s): jax.distributed.initialize().", launcher)
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        raise RuntimeError(
            f"jax.distributed.initialize() failed for the {launcher!r} launch ({e}). Call "
            "parallel.initialize_distributed() at program start, before jax.devices() or any "
            "computation; set JAXGAN_DISTRIBUTED=0 to run this process alone."
        ) from e
    logging.info(
        "Process %d of %d, %d local / %d global devices.",
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
    )
    return True


def process_info() -> dict:
    """Process index and count, local and global device counts, backend (for logs)."""
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "global_devices": jax.device_count(),
        "backend": jax.default_backend(),
    }


def is_main_process() -> bool:
    """True on process 0, the one that writes logs, sample grids and summaries."""
    return jax.process_index() == 0


def _jsonable(x):
    a = np.asarray(x)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"cannot broadcast {type(x).__name__} {x!r}: not a number or array.")
    return a.tolist()  # numpy / JAX scalars and arrays -> Python numbers, lists


def broadcast_from_main(obj: Any) -> Any:
    """Process 0's value of ``obj`` on every process (``obj`` itself in a single process).

    Used wherever processes must take the same decision: a collective (an Orbax save, a
    jitted program on the global mesh) entered by some processes and skipped by others hangs,
    and values computed separately per process (an FID from each process's own features) can
    differ by round-off. ``obj`` is encoded as JSON (NumPy/JAX numbers and arrays become
    Python numbers and lists; nan/inf survive) and sent as bytes with two
    ``jax.experimental.multihost_utils.broadcast_one_to_all`` calls (length, then data), so
    floats arrive bit-exact, unlike a float64 leaf sent through float32 JAX arrays.

    Args:
      obj: a JSON-serialisable tree of dicts, lists, strings, bools, numbers and NumPy/JAX
        arrays; only process 0's value matters, but every process must call this function at
        the same point of the program (it is a collective).

    Returns:
      With one process, ``obj`` unchanged; else process 0's ``obj`` after the JSON round trip
      (on process 0 too, so that every process holds the same Python values).

    Raises:
      TypeError: on process 0, ``obj`` holds something JSON cannot encode.
    """
    if jax.process_count() == 1:
        return obj
    from jax.experimental import multihost_utils

    main = is_main_process()
    data = encode_for_broadcast(obj) if main else np.zeros(0, np.uint8)
    n = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buf = data if main else np.zeros(n, np.uint8)
    return decode_broadcast(multihost_utils.broadcast_one_to_all(buf))


def encode_for_broadcast(obj: Any) -> np.ndarray:
    """``obj`` as JSON bytes, ``uint8 [n]`` (:func:`broadcast_from_main`'s wire format)."""
    return np.frombuffer(json.dumps(obj, default=_jsonable).encode(), np.uint8)


def decode_broadcast(data) -> Any:
    """Inverse of :func:`encode_for_broadcast` (``data``: ``uint8 [n]``, any array type)."""
    return json.loads(np.asarray(data, np.uint8).tobytes().decode())


# ------------------------------------------------------------------------------------------------
# Meshes and shardings
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def use_devices(devices: Sequence | None) -> Iterator[None]:
    """Within the block, :func:`create_mesh` without arguments uses ``devices``.

    Lets a caller (tests, benchmarks) build a whole training engine
    (``loop.build_engine``) on a subset of the devices, e.g. ``jax.devices()[:1]`` for a
    single-device reference. ``None`` leaves the default (all devices) unchanged.

    Raises:
      ValueError: ``devices`` is empty.
    """
    global _DEFAULT_DEVICES
    if devices is not None and len(devices) == 0:
        raise ValueError("use_devices() needs at least one device.")
    previous = _DEFAULT_DEVICES
    _DEFAULT_DEVICES = list(devices) if devices is not None else previous
    try:
        yield
    finally:
        _DEFAULT_DEVICES = previous


def create_mesh(devices: Sequence | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` with axis ``data``.

    Args:
      devices: the devices; default those set by :func:`use_devices`, else all devices of all
        processes (``jax.devices()``).

    Uses ``jax.sharding.Mesh`` (auto axis type), so un-annotated inputs are accepted.
    """
    if devices is None:
        devices = _DEFAULT_DEVICES if _DEFAULT_DEVICES is not None else jax.devices()
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits axis 0 (the batch) over the ``data`` axis of ``mesh``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh, name: str = "batch size") -> None:
    """Raises ValueError unless ``batch_size`` is a multiple of the mesh's device count.

    The count is global (all processes): each device holds ``batch_size / count`` rows.
    """
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"{name} {batch_size} is not divisible by the {n} devices of the mesh; use a "
            f"multiple of {n} (e.g. {max(n, batch_size // n * n)})."
        )


def shard_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Inside a jitted function: constrain a ``[B, ...]`` array to be split over ``data``.

    Under ``jax.vmap`` (multi-run training) the constraint applies to the per-run batch: a
    stacked ``[K, B, ...]`` array is laid out as ``P(None, 'data')``.
    """
    if mesh is None or mesh.devices.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))


def _host_to_global(x: Any, sharding: NamedSharding) -> jax.Array:
    """A host-local value (numpy or single-process jax array) as a global replicated array.

    Every process must pass the same value (they do: same config, seed and data). Arrays that
    already span other processes are resharded with ``jax.device_put``.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every array of ``tree`` on all devices of ``mesh`` (host -> device copy).

    In a single process this is ``jax.device_put``; with several processes each one builds
    its local shards from its own (identical) host copy.
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _host_to_global(x, sharding), tree)
