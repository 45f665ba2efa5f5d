"""Training runs without TensorFlow, tensorflow-datasets and clu (issue 31, item 1).

A bare accelerator image has none of the three. ``python -m jaxgan_lth.main`` runs a short
folder training in a subprocess whose ``sitecustomize`` blocks them (``helpers.
import_blocker_source``); the config file itself first checks that importing each one fails
inside that process, so the test cannot pass with a blocker that does not block. The run must
then write what a user reads: ``metrics.jsonl`` (one line per G step), the sample grids, the
checkpoints, an evaluation (``eval.json``, ``best/``; FID with ``helpers.FakeExtractor`` in
place of the Inception network, whose weights take longer to load than the whole run),
``summary.json`` and the report, and no TensorBoard event file (clu is absent). A second test
imports the FID, evaluation, report and data modules (the real Inception network included)
under the same blocker.
"""

import json
import os
import subprocess
import sys

import helpers
import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ("tensorflow", "tensorflow_datasets", "clu")
STEPS = 3

CONFIG = """
import os

import helpers

for name in {blocked!r}:
    try:
        __import__(name)
    except ModuleNotFoundError as e:
        assert "blocked" in str(e), e
    else:
        raise AssertionError(name + " imported: the import hook does not block it")
open(os.path.join({marker_dir!r}, "blocked_ok"), "w").close()

from jaxgan_lth.evaluation import features  # noqa: E402

features.FeatureExtractor = helpers.FakeExtractor


def get_config():
    config = helpers.tiny_config({folder!r}, num_steps={steps})
    config.sample_every = 2
    config.checkpoint_every = 2
    config.eval.enabled = True  # at the end of the stage; reference: the folder itself
    config.eval.num_samples = 4
    config.eval.batch_size = 4
    config.eval.reference_split = "train"
    config.eval.diagnostic_samples = 4
    return config
"""


def _env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(helpers.import_blocker_source(BLOCKED))
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(site), ROOT, os.path.join(ROOT, "tests")]),
               JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    env.pop("XLA_FLAGS", None)
    return env


def test_fid_report_and_data_modules_import_without_tf_tfds_clu(tmp_path):
    modules = ["jaxgan_lth.fid", "jaxgan_lth.evaluate", "jaxgan_lth.report",
               "jaxgan_lth.data", "jaxgan_lth.training.summaries",
               "jaxgan_lth.evaluation.evaluator",
               "jaxgan_lth.evaluation.features", "jaxgan_lth.evaluation.inception",
               "jaxgan_lth.evaluation.reference", "jaxgan_lth.evaluation.torchscript_reader"]
    code = (f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
            "from jaxgan_lth.training import summaries\n"
            "assert not summaries.clu_available()\n"
            "assert not summaries.hide_accelerators_from_tensorflow()\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}]\n"
            "assert not bad, bad\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


@pytest.mark.slow
def test_folder_training_without_tf_tfds_clu(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "images", n=8, size=28, channels=1)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(CONFIG.format(blocked=BLOCKED, marker_dir=str(tmp_path), folder=folder,
                                 steps=STEPS))
    workdir = tmp_path / "wd"
    out = subprocess.run([sys.executable, "-m", "jaxgan_lth.main", f"--config={cfg}",
                          f"--workdir={workdir}"], env=_env(tmp_path), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "blocked_ok").exists()  # the hook blocked all three in that process
    stage = workdir / "train"
    lines = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, STEPS + 1))  # log_every = 1
    for x in lines:
        assert np.isfinite(x["d_loss"]) and np.isfinite(x["g_loss"])
    pngs = sorted(os.listdir(stage / "samples"))
    assert pngs == ["step_000002.png", "step_000003.png"], pngs
    grid = np.asarray(Image.open(stage / "samples" / pngs[-1]))
    assert grid.ndim >= 2 and grid.std() > 0
    steps = sorted(int(d) for d in os.listdir(stage / "checkpoints") if d.isdigit())
    assert steps[0] == 0 and steps[-1] == STEPS, steps
    summary = json.loads((stage / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["best_step"] == STEPS
    history = json.loads((stage / "eval.json").read_text())["history"]
    assert [h["step"] for h in history] == [STEPS] and np.isfinite(history[0]["fid"])
    assert history[0]["fid"] == summary["final_fid"] > 0
    assert os.listdir(stage / "best")  # the best checkpoint by FID
    assert (workdir / "fid_stats").is_dir()  # the folder's reference statistics
    assert (workdir / "report" / "report.md").exists()
    events = [f for _, _, fs in os.walk(workdir) for f in fs if "tfevents" in f]
    assert not events, events  # clu absent: no TensorBoard files, and no crash for it
