"""Multi-host data parallelism for real: 2 processes x 2 CPU devices vs 1 process x 4 devices.

Two worker processes (tests/multihost_worker.py) start ``jax.distributed`` through the manual
launch variables, exactly as ``python -m jaxgan_lth.main`` does under a launcher, and train the
tiny config together on one global 4-device mesh: every process holds the replicated training
set and state, each device samples and gathers its own rows of every batch, and Orbax writes
the checkpoints cooperatively. The same config trained in this (4-device) process must give the
same checkpoint, losses within float tolerance.

Evaluation is on in the 2-process run (at G steps 2 and 3, a cheap stand-in for the Inception
network, see tests/multihost_worker.py): each process perturbs its own FIDs so that on its own
it would take the opposite ``best/`` decision at step 3 to the other process, and a collective
Orbax save entered by one process alone hangs (the workers are killed after 300 s). Both
processes must report process 0's FIDs and best step, and ``best/`` holds that step.
"""

import json
import os
import socket
import subprocess
import sys

import helpers
import jax
import multihost_worker
import numpy as np
import pytest

from jaxgan_lth import checkpointing, pipeline
from jaxgan_lth.training import loop

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _final_state(config, workdir):
    engine = loop.build_engine(config, None)
    state, step = loop.load_run_state(engine, os.path.join(workdir, "train"), "latest")
    return step, jax.device_get(state)


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_the_same_global_devices(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=12, size=20, channels=1)
    config = multihost_worker.tiny_multihost_config(folder)
    multi_dir, single_dir = str(tmp_path / "multi"), str(tmp_path / "single")
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
                   JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid), TF_CPP_MIN_LOG_LEVEL="3")
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(HERE, "multihost_worker.py"), folder, multi_dir,
             "eval"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=300)
        finally:
            for q in procs:
                if q.poll() is None and p.returncode is None:
                    q.kill()
        outs.append(out)
    for pid, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"worker {pid} failed:\n{out[-4000:]}"
        assert f"process {pid} of 2: 2 local / 4 global devices, done" in out
    evals = [json.loads(next(x for x in out.splitlines() if x.startswith("EVAL "))[5:])
             for out in outs]
    assert evals[0] == evals[1], evals  # both processes hold process 0's results
    # Process 0's offsets: +0 at step 2, +1e6 at step 3 -> best stays at step 2 (process 1's
    # own offsets, +1e6 then +0, would have made step 3 the best and saved it).
    assert evals[0]["best_step"] == 2 and evals[0]["final_fid"] >= 1e6 > evals[0]["best_fid"]
    with open(os.path.join(multi_dir, "train", "eval.json")) as f:
        history = json.load(f)["history"]
    assert [h["step"] for h in history] == [2, 3]
    assert [h["fid"] for h in history] == [evals[0]["best_fid"], evals[0]["final_fid"]]
    best = checkpointing.Checkpointer(os.path.join(multi_dir, "train", "best"))
    assert best.all_steps() == [2]
    best.close()

    pipeline.train_and_evaluate(config, single_dir)  # this process: 4 local devices
    step_m, multi = _final_state(config, multi_dir)
    step_s, single = _final_state(config, single_dir)
    assert step_m == step_s == 3
    flat_s = jax.tree_util.tree_flatten_with_path(single)[0]
    for (path, a), b in zip(flat_s, jax.tree.leaves(multi)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
    # The params really moved, so the comparison is not between two copies of theta_0.
    init = jax.device_get(loop.initial_state(loop.build_engine(config, None), config.seed))
    moved = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))),
                         init["g"]["params"], single["g"]["params"])
    assert max(jax.tree.leaves(moved)) > 1e-4
    # Metrics and samples come from process 0 only, one copy each.
    with open(os.path.join(multi_dir, "summary.json")) as f:
        summary_m = json.load(f)
    with open(os.path.join(single_dir, "summary.json")) as f:
        summary_s = json.load(f)
    assert summary_m["stages"].keys() == summary_s["stages"].keys() == {"train"}
    assert sorted(os.listdir(os.path.join(multi_dir, "train", "samples"))) == \
        sorted(os.listdir(os.path.join(single_dir, "train", "samples")))
