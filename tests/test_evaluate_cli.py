"""`python -m jaxgan_lth.evaluate`: restore a run's checkpoint, save images, clear errors."""

import os

import helpers
import numpy as np
import pytest
from PIL import Image

from jaxgan_lth import evaluate, pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrun")
    folder = helpers.make_image_folder(root / "imgs", n=8, size=20, channels=1)
    config = helpers.tiny_config(folder, num_steps=2)
    workdir = str(root / "run")
    pipeline.train_and_evaluate(config, workdir)
    return workdir


def test_saves_generated_images_from_the_latest_checkpoint(run, tmp_path):
    out = str(tmp_path / "gen")
    result = evaluate.evaluate_run(run, num_samples=5, save_images=out, fid=False)
    assert result == {"stage": "train", "step": 2, "saved_images": 5}
    files = sorted(os.listdir(out))
    assert files == [f"{i:06d}.png" for i in range(5)]
    img = np.asarray(Image.open(os.path.join(out, files[0])))
    assert img.shape == (28, 28) and img.dtype == np.uint8


def test_bad_inputs_are_named(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate.evaluate_run(str(tmp_path), fid=False)
    with pytest.raises(ValueError, match="--stage='nope'"):
        evaluate.evaluate_run(run, stage="nope", fid=False)
    with pytest.raises(FileNotFoundError, match="ticket"):
        evaluate.evaluate_run(run, stage="ticket", fid=False)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="not empty"):
        evaluate.evaluate_run(run, save_images=str(full), fid=False)
    assert (full / "keep.png").read_bytes() == b"x"
