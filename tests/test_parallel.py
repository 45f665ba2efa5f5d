"""Data parallelism over a `Mesh` of fake CPU devices, and multi-host start-up (one process)."""

import re

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxgan_lth import parallel
from jaxgan_lth.training import loop


def test_conftest_gives_four_fake_devices():
    assert jax.device_count() == 4, "tests/conftest.py should force 4 host devices"


# ---- 1 device vs 4 devices ------------------------------------------------------------------


def _three_steps(config, workdir, devices, state0=None):
    with parallel.use_devices(devices):
        setup = loop.build_engine(config, workdir)
    assert setup.mesh.devices.size == len(devices)
    # theta_0 does not depend on the mesh: initialise once (one compile less) and place it.
    if state0 is None:
        state0 = jax.device_get(loop.initial_state(setup, config.seed))  # host copy: donated
    state = parallel.replicate(state0, setup.mesh)
    masks = parallel.replicate(loop.dense_masks(state), setup.mesh)
    hparams = parallel.replicate(setup.fns.hparams, setup.mesh)
    # The compiled iteration of one run, as the loop's RunAxis builds it for K = 1.
    iteration = jax.jit(setup.fns.iteration, donate_argnums=(0,))
    losses = []
    for _ in range(3):
        state, metrics = iteration(state, masks, setup.data, hparams)
        losses.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    return setup, state0, jax.device_get(state), losses


@pytest.mark.slow
def test_three_steps_on_four_devices_equal_one_device_with_batch_norm(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=12, size=20, channels=1)
    config = helpers.tiny_config(folder)  # dcgan: G has batch norm; D batch 4, G batch 8
    config.train.n_dis = 1  # one D and one G step per iteration: a quicker compile
    devices = jax.devices()
    one, state0, s1, l1 = _three_steps(config, str(tmp_path / "w1"), devices[:1])
    four, _, s4, l4 = _three_steps(config, str(tmp_path / "w4"), devices, state0)
    # The 4-device setup really splits its batch and replicates data and state.
    assert four.data["images"].sharding.is_fully_replicated
    assert len(four.data["images"].sharding.device_set) == 4
    assert set(s1["g"]["batch_stats"]) == {"bn1", "bn2"}
    for a, b in zip(l1, l4):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    flat1 = jax.tree_util.tree_flatten_with_path(s1)[0]
    for (path, x), y in zip(flat1, jax.tree.leaves(s4)):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5,
            err_msg=jax.tree_util.keystr(path),
        )
    assert int(s4["step"]) == 3


def test_sampled_batch_is_split_without_communication():
    mesh = parallel.create_mesh()
    data = parallel.replicate(jnp.arange(100 * 8.0).reshape(100, 8), mesh)

    def sample(key, data, mesh):
        idx = jax.random.randint(key, (16,), 0, 100)
        z = jax.random.normal(key, (16, 4))
        return parallel.shard_batch(data[idx], mesh), parallel.shard_batch(z, mesh)

    key = jax.random.key(0)
    fn = jax.jit(lambda k, d: sample(k, d, mesh))
    x, z = fn(key, data)
    x1, z1 = jax.jit(lambda k, d: sample(k, d, None))(key, data)
    assert x.sharding.spec == P("data") and z.sharding.spec == P("data")
    # The global batch is the single-device batch (partitionable threefry RNG) ...
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x1))
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z1))
    # ... and every device draws and gathers only its own rows: no collective at all.
    hlo = fn.lower(key, data).compile().as_text()
    assert not re.search(r"all-gather|all-reduce|all-to-all|collective-permute", hlo)
    # Under vmap (multi-run) each run's batch is split: [K, B, ...] as P(None, 'data').
    keys = jax.random.split(key, 3)
    xv, _ = jax.jit(jax.vmap(lambda k, d: sample(k, d, mesh), in_axes=(0, None)))(keys, data)
    assert xv.shape == (3, 16, 8) and xv.sharding.spec == P(None, "data")


# ---- bad input -------------------------------------------------------------------------------


def test_global_batch_not_divisible_by_device_count_is_refused(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=4, size=20, channels=1)
    config = helpers.tiny_config(folder)
    config.train.d_batch_size = 6
    with pytest.raises(ValueError, match=r"train\.d_batch_size 6 is not divisible by the 4 dev"):
        loop.build_engine(config, str(tmp_path / "w"))
    with parallel.use_devices(jax.devices()[:2]):  # 6 is fine on 2 devices
        assert loop.build_engine(config, str(tmp_path / "w")).mesh.devices.size == 2
    mesh = parallel.create_mesh(jax.devices()[:3])
    with pytest.raises(ValueError, match="multiple of 3"):
        parallel.check_batch_divisible(64, mesh, "train.g_batch_size")


def test_use_devices_scopes_the_default_mesh():
    assert parallel.create_mesh().devices.size == 4
    with parallel.use_devices(jax.devices()[1:3]):
        mesh = parallel.create_mesh()
        assert list(mesh.devices.flat) == jax.devices()[1:3]
        assert mesh.axis_names == ("data",)
    assert parallel.create_mesh().devices.size == 4
    with pytest.raises(ValueError, match="at least one device"):
        with parallel.use_devices([]):
            pass


def test_host_local_values_become_global_replicated_arrays():
    mesh = parallel.create_mesh()
    host = np.arange(12.0).reshape(3, 4)
    out = parallel._host_to_global(host, parallel.replicated(mesh))  # the multi-process path
    assert out.sharding.is_fully_replicated and len(out.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(out), host)
    tree = parallel.replicate({"a": host, "b": jnp.ones(2)}, mesh)
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(tree))


# ---- multi-host start-up -------------------------------------------------------------------


@pytest.fixture
def no_init(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    return calls


def test_initialize_distributed_is_a_noop_in_one_process(no_init, monkeypatch):
    for var in ("JAXGAN_DISTRIBUTED", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_NTASKS",
                "OMPI_COMM_WORLD_SIZE", "JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES",
                "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.initialize_distributed() is False
    # A one-task SLURM step or a one-host TPU is one process too.
    single = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n1", "SLURM_PROCID": "0",
              "SLURM_NTASKS": "1", "TPU_WORKER_HOSTNAMES": "localhost"}
    assert parallel.initialize_distributed(single) is False
    assert no_init == []
    # The real call in this (single) process: still a no-op, devices unchanged.
    monkeypatch.undo()
    assert parallel.initialize_distributed() is False
    assert parallel.process_info()["process_count"] == 1
    assert parallel.is_main_process()


@pytest.mark.parametrize(
    "env,launcher",
    [
        ({"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_PROCID": "1",
          "SLURM_NTASKS": "8"}, "slurm"),
        ({"SLURM_STEP_NODELIST": "n1", "SLURM_PROCID": "0", "SLURM_NTASKS": "8",
          "SLURM_STEP_NUM_TASKS": "1"}, None),  # a one-task step inside an 8-task job
        ({"OMPI_COMM_WORLD_SIZE": "2"}, "ompi"),
        ({"TPU_WORKER_HOSTNAMES": "w0,w1"}, "tpu"),
        ({"JAXGAN_DISTRIBUTED": "1"}, "explicit"),
        ({"JAXGAN_DISTRIBUTED": "0", "OMPI_COMM_WORLD_SIZE": "2"}, None),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2",
          "JAX_PROCESS_ID": "1"}, "manual"),
    ],
)
def test_launcher_detection(env, launcher, no_init):
    assert parallel.detect_launcher(env) == launcher
    assert parallel.initialize_distributed(env) is (launcher is not None)
    if launcher == "manual":
        assert no_init == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 2,
                            "process_id": 1}]
    elif launcher:
        assert no_init == [{}]  # JAX reads the cluster's own variables


def test_bad_distributed_settings_are_named(no_init):
    with pytest.raises(ValueError, match="JAXGAN_DISTRIBUTED='maybe'"):
        parallel.detect_launcher({"JAXGAN_DISTRIBUTED": "maybe"})
    with pytest.raises(RuntimeError, match="JAX_PROCESS_ID"):
        parallel.initialize_distributed(
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"})
    assert no_init == []


def test_initialize_after_devices_are_in_use_says_what_to_do(monkeypatch):
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    jax.devices()  # the backend is up, as in any test process
    with pytest.raises(RuntimeError, match="at program start"):
        parallel.initialize_distributed({"OMPI_COMM_WORLD_SIZE": "2"})


def test_broadcast_wire_format_is_exact_and_single_process_is_identity():
    result = {"fid": 0.1 + 0.2, "kid": np.float32(1.5e-7), "kid_std": float("nan"),
              "coverage_hist": np.array([0.25, 0.75]), "skip": True, "big": jnp.float32(3.0),
              "steps": [np.int64(2), 3]}
    data = parallel.encode_for_broadcast(result)
    assert data.dtype == np.uint8 and data.ndim == 1
    back = parallel.decode_broadcast(jnp.asarray(data))  # as broadcast_one_to_all returns it
    assert back["fid"] == 0.30000000000000004  # float64 bit-exact, not through float32
    assert back["kid"] == float(np.float32(1.5e-7)) and np.isnan(back["kid_std"])
    assert back["coverage_hist"] == [0.25, 0.75] and back["skip"] is True
    assert back["big"] == 3.0 and back["steps"] == [2, 3]
    assert parallel.broadcast_from_main(result) is result  # one process: nothing is sent
    with pytest.raises(TypeError):
        parallel.encode_for_broadcast({"x": object()})
