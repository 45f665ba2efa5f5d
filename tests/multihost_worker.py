"""One process of the multi-host test (tests/test_multihost.py); not collected by pytest.

    python tests/multihost_worker.py FOLDER WORKDIR [eval]

Reads the manual-launch variables (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``) and ``XLA_FLAGS`` (local fake CPU devices) from the environment, starts
``jax.distributed`` exactly as ``python -m jaxgan_lth.main`` does and trains the tiny test config
on FOLDER in WORKDIR (stage ``train``, Orbax checkpoints written by all processes).

With ``eval``, evaluation runs at G steps 2 and 3 (:func:`with_tiny_eval`) with a cheap
stand-in for the Inception network (``helpers.FakeExtractor``; loading the real weights takes
longer than the whole test), and each process perturbs its own FIDs so that, left to itself,
it would take the opposite ``best/`` decision to the other one at step 3 (process 0 would skip
the save, process 1 would save): only process 0's broadcast result keeps the collective save
in step. Each process then prints its FID history and best step on one ``EVAL`` line.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

jax.config.update("jax_platforms", "cpu")

import helpers  # noqa: E402

from jaxgan_lth import parallel, pipeline  # noqa: E402
from jaxgan_lth.evaluation import evaluator as evaluator_lib  # noqa: E402
from jaxgan_lth.evaluation import features as features_lib  # noqa: E402

# Added to each process's own FID at its 1st and 2nd evaluation (process 0, process 1).
FID_OFFSETS = ((0.0, 1e6), (1e6, 0.0))


def tiny_multihost_config(folder: str):
    """The tiny test config used by both the 2-process and the 1-process run."""
    config = helpers.tiny_config(folder)
    config.train.n_dis = 1
    config.train.num_steps = 3
    config.checkpoint_every = 3
    config.sample_every = 3
    return config


def with_tiny_eval(config):
    """``config`` with evaluation at G steps 2 and 3: 4 samples against the training folder."""
    config.eval.enabled = True
    config.eval.every = 2
    config.eval.num_samples = 4
    config.eval.batch_size = 4
    config.eval.reference_split = "train"
    config.eval.diagnostic_samples = 4
    return config


def install_fake_evaluation():
    """helpers.FakeExtractor as the FID network; this process's FIDs offset by FID_OFFSETS."""
    features_lib.FeatureExtractor = helpers.FakeExtractor
    real = evaluator_lib.Evaluator.evaluate
    calls = []

    def evaluate(self, *args, **kwargs):
        out = dict(real(self, *args, **kwargs))
        out["fid"] += FID_OFFSETS[jax.process_index()][len(calls)]
        calls.append(out["fid"])
        return out

    evaluator_lib.Evaluator.evaluate = evaluate


def main(folder: str, workdir: str, mode: str = "") -> None:
    assert parallel.initialize_distributed(), "the multi-process launch was not detected"
    assert jax.process_count() == int(os.environ["JAX_NUM_PROCESSES"])
    config = tiny_multihost_config(folder)
    if mode == "eval":
        install_fake_evaluation()
        config = with_tiny_eval(config)
    summary = pipeline.train_and_evaluate(config, workdir)
    if mode == "eval":
        train = summary["stages"]["train"]
        print("EVAL " + json.dumps({k: train.get(k) for k in
                                    ("final_fid", "final_kid", "best_fid", "best_step")}),
              flush=True)
    print(f"process {jax.process_index()} of {jax.process_count()}: "
          f"{jax.local_device_count()} local / {jax.device_count()} global devices, done",
          flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
