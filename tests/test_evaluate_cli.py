"""`python -m jaxgan_lth.evaluate`: restore a run's checkpoint, save images, clear errors."""

import os

import helpers
import numpy as np
import pytest
from PIL import Image

from jaxgan_lth import evaluate, pipeline

pytestmark = pytest.mark.slow  # every test needs a trained run (the module's fixture)


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


def test_grid_tiles_the_saved_images(run, tmp_path):
    out, grid = str(tmp_path / "gen"), str(tmp_path / "grid.png")
    result = evaluate.evaluate_run(run, num_samples=5, save_images=out, fid=False, grid=grid)
    assert result["grid"] == grid and result["saved_images"] == 5
    g = np.asarray(Image.open(grid))
    assert g.shape == (2 * 28, 3 * 28)  # 5 images: ceil(sqrt(5)) = 3 columns, 2 rows
    for i in range(5):
        r, c = divmod(i, 3)
        want = np.asarray(Image.open(os.path.join(out, f"{i:06d}.png")))
        np.testing.assert_array_equal(g[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28], want)
    assert (g[28:, 56:] == 0).all()  # the sixth cell is empty: black
    with pytest.raises(ValueError, match="--grid=.*exists"):
        evaluate.evaluate_run(run, num_samples=5, fid=False, grid=grid)
    np.testing.assert_array_equal(np.asarray(Image.open(grid)), g)  # not overwritten


def test_noise_mode_is_refused_for_models_without_noise_and_checked(run, tmp_path):
    with pytest.raises(ValueError, match="--noise_mode='none' is for model.name='stylegan2'"):
        evaluate.evaluate_run(run, fid=False, grid=str(tmp_path / "g.png"), noise_mode="none")
    with pytest.raises(ValueError, match="--noise_mode='off'; accepted: random, const, none"):
        evaluate.evaluate_run(run, fid=False, grid=str(tmp_path / "g.png"), noise_mode="off")


def test_stylegan2_noise_modes(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=8, size=32, channels=3)
    config = helpers.tiny_config(folder, resolution=32, channels=3, num_steps=2)
    helpers.use_model(config, "stylegan2")
    config.model.channel_base = 128
    config.model.mapping_layers = 1
    config.model.style_mixing_prob = 0.0
    config.train.loss = "nonsaturating"
    config.train.n_dis = 1
    config.train.g_batch_size = 4
    config.train.g_lr = 0.05  # two Adam steps move every noise strength away from 0 by ~0.1
    workdir = str(tmp_path / "run")
    pipeline.train_and_evaluate(config, workdir)
    grids = {}
    for mode in ("random", "const", "none", "none"):
        path = str(tmp_path / f"{mode}_{len(grids)}.png")
        result = evaluate.evaluate_run(workdir, fid=False, grid=path, noise_mode=mode)
        assert result["noise_mode"] == mode
        grids[path] = np.asarray(Image.open(path)).astype(int)
    random, const, none, none2 = grids.values()
    np.testing.assert_array_equal(none, none2)  # no noise: deterministic
    assert np.abs(random - none).max() > 0 and np.abs(const - none).max() > 0
    assert np.abs(random - const).max() > 0
