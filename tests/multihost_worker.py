"""One process of the multi-host test (tests/test_multihost.py); not collected by pytest.

    python tests/multihost_worker.py FOLDER WORKDIR

Reads the manual-launch variables (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``) and ``XLA_FLAGS`` (local fake CPU devices) from the environment, starts
``jax.distributed`` exactly as ``python -m jaxgan_lth.main`` does and trains the tiny test config
on FOLDER in WORKDIR (stage ``train``, Orbax checkpoints written by all processes).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

jax.config.update("jax_platforms", "cpu")

import helpers  # noqa: E402

from jaxgan_lth import parallel, pipeline  # noqa: E402


def tiny_multihost_config(folder: str):
    """The tiny test config used by both the 2-process and the 1-process run."""
    config = helpers.tiny_config(folder)
    config.train.n_dis = 1
    config.train.num_steps = 3
    config.checkpoint_every = 3
    config.sample_every = 3
    return config


def main(folder: str, workdir: str) -> None:
    assert parallel.initialize_distributed(), "the multi-process launch was not detected"
    assert jax.process_count() == int(os.environ["JAX_NUM_PROCESSES"])
    pipeline.train_and_evaluate(tiny_multihost_config(folder), workdir)
    print(f"process {jax.process_index()} of {jax.process_count()}: "
          f"{jax.local_device_count()} local / {jax.device_count()} global devices, done",
          flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
