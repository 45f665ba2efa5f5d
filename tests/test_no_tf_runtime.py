"""Training runs without TensorFlow, tensorflow-datasets and clu (issue 31, item 1).

A bare accelerator image has none of the three. ``python -m jaxgan_lth.main`` runs a short
folder training in a subprocess whose ``sitecustomize`` blocks them (``helpers.
import_blocker_source``); the config file itself first checks that importing each one fails
inside that process, so the test cannot pass with a blocker that does not block. The run must
then write what a user reads: ``metrics.jsonl`` (one line per G step), the sample grids, the
checkpoints, ``summary.json`` and the report, and no TensorBoard event file (clu is absent).
"""

import json
import os
import subprocess
import sys

import helpers
import numpy as np
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


def get_config():
    config = helpers.tiny_config({folder!r}, num_steps={steps})
    config.sample_every = 2
    config.checkpoint_every = 2
    return config
"""


def test_folder_training_without_tf_tfds_clu(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "images", n=8, size=28, channels=1)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(helpers.import_blocker_source(BLOCKED))
    cfg = tmp_path / "cfg.py"
    cfg.write_text(CONFIG.format(blocked=BLOCKED, marker_dir=str(tmp_path), folder=folder,
                                 steps=STEPS))
    workdir = tmp_path / "wd"
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(site), ROOT, os.path.join(ROOT, "tests")]),
               JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-m", "jaxgan_lth.main", f"--config={cfg}",
                          f"--workdir={workdir}"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
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
    assert json.loads((stage / "summary.json").read_text())["steps"] == STEPS
    assert (workdir / "report" / "report.md").exists()
    events = [f for _, _, fs in os.walk(workdir) for f in fs if "tfevents" in f]
    assert not events, events  # clu absent: no TensorBoard files, and no crash for it
