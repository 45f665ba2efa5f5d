"""Command-line entry point: ``python -m jaxgan_lth.main --config=configs/X.py --workdir=DIR``.

Kept short on purpose (Flax examples convention): flags -> :func:`pipeline.train_and_evaluate`.
Override config values with ``--config.<section>.<key>=value``; unknown keys are rejected.
Re-running the same command after an interruption resumes from the latest checkpoint.
"""

import logging as pylogging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples, logs and summaries.")
flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume a workdir whose config.json differs from --config (default: refuse).",
)
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file with get_config().", lock_config=True
)
flags.mark_flags_as_required(["config", "workdir"])


class _DropLibraryInfo(pylogging.Filter):
    """Hides INFO lines of Orbax (several per checkpoint), keeping warnings and errors."""

    def filter(self, record):
        return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    """Runs the pipeline of ``--config`` in ``--workdir`` (resuming when it exists).

    Then writes ``--workdir/report/report.md`` (:mod:`jaxgan_lth.report`). A failed run ends
    with its error as the last line of stderr and exit status 1
    (:func:`jaxgan_lth.io_utils.exit_with_error`).
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for handler in pylogging.getLogger().handlers + pylogging.getLogger("absl").handlers:
        handler.addFilter(_DropLibraryInfo())
    from jaxgan_lth.training import summaries

    # clu's writers import TF when both are installed; keep TF off the accelerators.
    summaries.hide_accelerators_from_tensorflow()
    import jax

    from jaxgan_lth import parallel, pipeline
    from jaxgan_lth.training import precision

    parallel.initialize_distributed()  # no-op unless launched as several processes
    logging.info("JAX devices: %s", jax.devices())
    try:
        # before anything compiles: JAX opens its persistent cache at the first compilation
        cache = precision.set_compilation_cache(FLAGS.config, FLAGS.workdir)
        if cache:
            logging.info("Persistent compilation cache: %s", cache)
        pipeline.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                    allow_config_change=FLAGS.allow_config_change)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001  (reported, then exit 1)
        from jaxgan_lth import checkpointing, io_utils

        checkpointing.close_all()
        io_utils.exit_with_error(e)
    if parallel.is_main_process():
        from jaxgan_lth import report

        out = os.path.join(FLAGS.workdir, "report")
        report.write_report([FLAGS.workdir], out)
        logging.info("Report: %s", os.path.join(out, "report.md"))


if __name__ == "__main__":
    app.run(main)
