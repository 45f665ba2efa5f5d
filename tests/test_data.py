"""Tests of jaxgan_lth.data: subsets, the indices record, image folders, tfds sets.

Expected values are computed independently of the library: numpy's legacy global RNG for the
DiffAugment draw, hand-written pixels and the x / 127.5 - 1 formula for folders, Pillow's
documented luma weights, and the raw Debian idx files for Fashion-MNIST.
"""

import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import socket
import time

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxgan_lth import data as data_lib
from jaxgan_lth.data import fashion_mnist_offline
from jaxgan_lth.data import images as images_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBAMA_DIR = os.environ.get(
    "JAXGAN_OBAMA_DIR",
    os.path.join(REPO_ROOT, "..", "shared", "data", "few-shot", "100-shot-obama"),
)


def _default_data_config():
    spec = importlib.util.spec_from_file_location(
        "default_config", os.path.join(REPO_ROOT, "configs", "default.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config().data


def make_config(**overrides) -> ml_collections.ConfigDict:
    """`config.data` of configs/default.py with `overrides` applied."""
    config = _default_data_config()
    for key, value in overrides.items():
        config[key] = value
    return config


def folder_config(folder, **overrides) -> ml_collections.ConfigDict:
    settings = dict(
        name="folder",
        folder=str(folder),
        resolution=8,
        channels=3,
        subset_fraction=0.0,
        subset_count=0,
        allow_folder_subset=True,  # these tests exercise the subset rules on small folders
    )
    settings.update(overrides)
    return make_config(**settings)


def to_unit(x) -> np.ndarray:
    """Independent reference of the value mapping: uint8 -> [-1, 1]."""
    return np.asarray(x, np.float64) / 127.5 - 1.0


def write_png(path, array) -> None:
    array = np.asarray(array, np.uint8)
    mode = "L" if array.ndim == 2 else "RGB"
    Image.fromarray(array, mode=mode).save(path, format="PNG")


@pytest.fixture
def small_folder(tmp_path):
    """Ten 8x8 RGB PNGs, image i filled with the value 20 * i."""
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(10):
        write_png(folder / f"img_{i:02d}.png", np.full((8, 8, 3), 20 * i, np.uint8))
    return folder


@pytest.fixture
def block_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ---- subset selection --------------------------------------------------------------------------


def test_select_first_takes_leading_images():
    np.testing.assert_array_equal(
        data_lib.select_subset(100, fraction=0.1, count=0, selection="first", seed=5),
        np.arange(10),
    )
    np.testing.assert_array_equal(
        data_lib.select_subset(100, fraction=0.0, count=7, selection="first", seed=0),
        np.arange(7),
    )
    # k = int(N * fraction), truncating as the lottery-ticket code does.
    assert data_lib.select_subset(999, fraction=0.1, count=0, selection="first", seed=0).size == 99
    assert (
        data_lib.select_subset(60000, fraction=0.1, count=0, selection="first", seed=0).size == 6000
    )
    idx = data_lib.select_subset(50, fraction=1.0, count=0, selection="first", seed=0)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, np.arange(50))


def test_select_both_zero_is_whole_split():
    for selection in ("first", "random"):
        np.testing.assert_array_equal(
            data_lib.select_subset(30, fraction=0.0, count=0, selection=selection, seed=3),
            np.arange(30),
        )


def test_select_random_matches_diffaugment_draw():
    state = np.random.get_state()
    try:
        np.random.seed(3)  # DiffAugment: np.random.seed(seed); np.random.choice(N, k, False)
        expected = np.random.choice(1000, 50, replace=False)
    finally:
        np.random.set_state(state)
    got = data_lib.select_subset(1000, fraction=0.05, count=0, selection="random", seed=3)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int64
    # Deterministic, no duplicates, in range, same with count instead of fraction.
    again = data_lib.select_subset(1000, fraction=0.0, count=50, selection="random", seed=3)
    np.testing.assert_array_equal(again, got)
    assert np.unique(got).size == 50
    assert got.min() >= 0 and got.max() < 1000
    other = data_lib.select_subset(1000, fraction=0.0, count=50, selection="random", seed=4)
    assert not np.array_equal(other, got)
    # The global numpy RNG is not touched.
    before = np.random.get_state()[1].copy()
    data_lib.select_subset(1000, fraction=0.5, count=0, selection="random", seed=9)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fraction=1.5, count=0), r"subset_fraction.*\(0, 1\].*1\.5"),
        (dict(fraction=-0.1, count=0), r"subset_fraction.*-0\.1"),
        (dict(fraction=float("nan"), count=0), r"subset_fraction"),
        (dict(fraction=0.0, count=-3), r"subset_count.*>= 0.*-3"),
        (dict(fraction=0.1, count=5), r"both set"),
        (dict(fraction=0.0, count=101), r"101.*100"),
        (dict(fraction=0.001, count=0), r"selects 0 images"),
        (dict(fraction=0.1, count=0, selection="last"), r"'first', 'random'.*'last'"),
        (dict(fraction=0.1, count=0, seed=-1), r"subset_seed"),
    ],
)
def test_select_rejects_bad_parameters(kwargs, match):
    kwargs = {"selection": "first", "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        data_lib.select_subset(100, **kwargs)


# ---- indices record ----------------------------------------------------------------------------


def test_indices_file_written_then_reused(small_folder, tmp_path):
    workdir = tmp_path / "run"
    config = folder_config(small_folder, subset_count=4, subset_selection="random", subset_seed=1)
    first = data_lib.load_training_set(config, workdir=str(workdir))

    path = workdir / "subset_indices.json"
    saved = json.loads(path.read_text())
    expected = np.random.RandomState(1).choice(10, 4, replace=False)
    np.testing.assert_array_equal(first.indices, expected)
    assert saved["indices"] == expected.tolist()
    assert saved["name"] == "folder" and saved["split"] == "train"
    assert saved["subset_count"] == 4 and saved["subset_selection"] == "random"
    assert saved["subset_seed"] == 1 and saved["subset_fraction"] == 0.0
    assert saved["num_examples"] == 10
    # images[i] is split image indices[i] (image j is filled with 20 * j).
    np.testing.assert_allclose(first.images[:, 0, 0, 0], to_unit(20 * expected), atol=1e-6)

    # The saved indices win over recomputation: edit them and load again.
    saved["indices"] = [9, 0, 5, 2]
    path.write_text(json.dumps(saved))
    reused = data_lib.load_training_set(config, workdir=str(workdir))
    np.testing.assert_array_equal(reused.indices, [9, 0, 5, 2])
    np.testing.assert_allclose(reused.images[:, 0, 0, 0], to_unit([180, 0, 100, 40]), atol=1e-6)


def test_indices_file_mismatch_raises_and_keeps_file(small_folder, tmp_path):
    workdir = tmp_path / "run"
    data_lib.load_training_set(
        folder_config(small_folder, subset_count=4, subset_selection="random", subset_seed=1),
        workdir=str(workdir),
    )
    path = workdir / "subset_indices.json"
    before = path.read_text()
    changed = folder_config(small_folder, subset_count=5, subset_selection="first", subset_seed=1)
    with pytest.raises(ValueError) as error:
        data_lib.load_training_set(changed, workdir=str(workdir))
    message = str(error.value)
    assert "subset_count" in message and "subset_selection" in message
    assert "subset_seed" not in message
    assert path.read_text() == before


def test_no_workdir_writes_nothing(small_folder, tmp_path):
    config = folder_config(small_folder, subset_fraction=0.5)
    result = data_lib.load_training_set(config)
    np.testing.assert_array_equal(result.indices, np.arange(5))
    assert not any(p.name == "subset_indices.json" for p in tmp_path.rglob("*"))


# ---- image folders -----------------------------------------------------------------------------


def test_folder_exact_values_png(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    pixels[0, 0] = 0
    pixels[0, 1] = 255
    write_png(tmp_path / "a.png", pixels)
    images, labels, num_classes = data_lib.load_split(folder_config(tmp_path), "train")
    assert images.shape == (1, 8, 8, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images[0], to_unit(pixels), rtol=0, atol=1e-6)
    assert images.min() == -1.0 and images.max() == 1.0
    assert labels.dtype == np.int32 and labels.tolist() == [0]
    assert num_classes == 0


def test_folder_grayscale_and_rgb_conversion(tmp_path):
    gray_values = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
    # RGB image whose pixels are gray (R = G = B): luma must equal that value exactly.
    write_png(tmp_path / "a_gray_rgb.png", np.repeat(gray_values[..., None], 3, axis=-1))
    # A coloured image: Pillow's documented luma L = R*299/1000 + G*587/1000 + B*114/1000.
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 200, 100, 50
    write_png(tmp_path / "b_colour.png", colour)
    # A grayscale ("L") PNG read as RGB repeats its channel.
    write_png(tmp_path / "c_l_mode.png", gray_values)

    gray, _, _ = data_lib.load_split(folder_config(tmp_path, channels=1), "train")
    assert gray.shape == (3, 8, 8, 1)
    np.testing.assert_allclose(gray[0, ..., 0], to_unit(gray_values), atol=1e-6)
    luma = 200 * 0.299 + 100 * 0.587 + 50 * 0.114
    np.testing.assert_allclose(gray[1], to_unit(luma), atol=1.0 / 127.5 + 1e-6)
    np.testing.assert_allclose(gray[2, ..., 0], to_unit(gray_values), atol=1e-6)

    rgb, _, _ = data_lib.load_split(folder_config(tmp_path, channels=3), "train")
    assert rgb.shape == (3, 8, 8, 3)
    for c in range(3):
        np.testing.assert_allclose(rgb[2, ..., c], to_unit(gray_values), atol=1e-6)
    np.testing.assert_allclose(rgb[1, 0, 0], to_unit([200, 100, 50]), atol=1e-6)


def test_folder_resize(tmp_path):
    write_png(tmp_path / "a_const.png", np.full((16, 24, 3), (10, 128, 250), np.uint8))
    rng = np.random.default_rng(1)
    pattern = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    write_png(tmp_path / "b_pattern.png", pattern)
    images, _, _ = data_lib.load_split(folder_config(tmp_path, resolution=8), "train")
    assert images.shape == (2, 8, 8, 3)
    # A constant image stays constant (non-square input is stretched to 8x8).
    np.testing.assert_allclose(
        images[0], np.broadcast_to(to_unit([10, 128, 250]), (8, 8, 3)), atol=1e-6
    )
    # Documented filter: Pillow's Lanczos.
    reference = np.asarray(
        Image.fromarray(pattern).resize((8, 8), resample=Image.Resampling.LANCZOS)
    )
    np.testing.assert_allclose(images[1], to_unit(reference), atol=1e-6)
    # Upscaling works too.
    up, _, _ = data_lib.load_split(folder_config(tmp_path, resolution=32), "train")
    assert up.shape == (2, 32, 32, 3)
    assert up.min() >= -1.0 and up.max() <= 1.0


def test_folder_sorted_and_filtered(tmp_path):
    colours = {"A.PNG": 30, "b.png": 90, "c.jpeg": 150, "d.JPG": 210}
    for name, value in colours.items():
        image = Image.fromarray(np.full((8, 8, 3), value, np.uint8))
        image.save(
            tmp_path / name,
            format="JPEG" if name.lower().endswith(("jpg", "jpeg")) else "PNG",
            quality=95,
        )
    (tmp_path / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "e.gif")
    (tmp_path / "f.png").mkdir()  # A directory with an image-like name is skipped.
    (tmp_path / "sub").mkdir()
    write_png(tmp_path / "sub" / "0.png", np.zeros((8, 8, 3), np.uint8))  # Not recursive.

    result = data_lib.load_training_set(folder_config(tmp_path))
    assert result.images.shape == (4, 8, 8, 3)
    # Sorted by name: "A.PNG" < "b.png" < "c.jpeg" < "d.JPG".
    means = (result.images.mean(axis=(1, 2, 3)) + 1.0) * 127.5
    np.testing.assert_allclose(means, [30, 90, 150, 210], atol=2.0)
    np.testing.assert_array_equal(result.indices, np.arange(4))
    assert result.labels.dtype == np.int32 and not result.labels.any()
    assert result.num_classes == 0
    assert result.name == tmp_path.name


# ---- bad inputs ----------------------------------------------------------------------------------


def test_unknown_dataset_name_lists_accepted():
    with pytest.raises(ValueError, match=r"'mnist_typo'.*cifar10.*cifar100.*fashion_mnist.*folder"):
        data_lib.load_training_set(make_config(name="mnist_typo"))


def test_folder_missing(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        data_lib.load_training_set(folder_config(missing))
    with pytest.raises(FileNotFoundError, match="data.folder is empty"):
        data_lib.load_training_set(folder_config(""))


def test_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no image files.*\.jpg.*\.jpeg.*\.png") as error:
        data_lib.load_training_set(folder_config(tmp_path))
    assert repr(str(tmp_path)) in str(error.value)  # the folder is named


def test_unreadable_image_names_file(tmp_path):
    write_png(tmp_path / "good.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png.*not a decodable image"):
        data_lib.load_training_set(folder_config(tmp_path))


def write_truncated_jpeg(path, size=32, seed=0) -> None:
    """A valid JPEG (Pillow) with the second half of its bytes cut off."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_jpeg_names_file(tmp_path, monkeypatch):
    write_png(tmp_path / "a_good.png", np.zeros((8, 8, 3), np.uint8))
    write_truncated_jpeg(tmp_path / "b_cut.jpg")
    pattern = r"cannot read image file '.*b_cut\.jpg'.*truncated"
    with pytest.raises(ValueError, match=pattern):
        data_lib.load_training_set(folder_config(tmp_path))
    with pytest.raises(ValueError, match=pattern):
        data_lib.load_split(folder_config(tmp_path, resolution=16, channels=1), "train")
    # Still an error when another library (tfds does) lets Pillow load truncated images; the
    # process-wide flag is left as it was.
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ValueError, match=pattern):
        data_lib.load_training_set(folder_config(tmp_path))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_dangling_link_names_file(tmp_path):
    write_png(tmp_path / "a_good.png", np.zeros((8, 8, 3), np.uint8))
    os.symlink(tmp_path / "gone.png", tmp_path / "b_link.png")
    with pytest.raises(ValueError, match=r"b_link\.png.*cannot be opened"):
        data_lib.load_training_set(folder_config(tmp_path))


def test_image_reader_native_size_and_recursive_listing(tmp_path):
    write_png(tmp_path / "b.png", np.full((6, 10), 77, np.uint8))  # "L" PNG, 10 wide
    (tmp_path / "sub").mkdir()
    write_png(tmp_path / "sub" / "a.png", np.full((8, 8, 3), 5, np.uint8))
    flat = images_lib.list_image_files(tmp_path)
    deep = images_lib.list_image_files(tmp_path, recursive=True)
    assert flat == [str(tmp_path / "b.png")]
    assert deep == [str(tmp_path / "b.png"), str(tmp_path / "sub" / "a.png")]
    native = list(images_lib.iter_image_files(deep))  # RGB at native size (the FID side)
    assert native[0].shape == (6, 10, 3) and native[0].dtype == np.uint8
    assert (native[0] == 77).all() and native[1].shape == (8, 8, 3)
    gray = images_lib.read_image_file(deep[1], resolution=8, channels=1)
    assert gray.shape == (8, 8, 1) and (gray == 5).all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*no image files.*sub-folders"):
        images_lib.list_image_files(tmp_path / "empty", recursive=True)


@pytest.mark.parametrize("fraction", [1.5, -0.25])
def test_fraction_outside_unit_interval(small_folder, fraction):
    with pytest.raises(ValueError, match=r"subset_fraction.*\(0, 1\]"):
        data_lib.load_training_set(folder_config(small_folder, subset_fraction=fraction))


def test_count_larger_than_split(small_folder):
    with pytest.raises(ValueError, match=r"subset_count \(11\).*holds 10 images"):
        data_lib.load_training_set(folder_config(small_folder, subset_count=11))


def test_negative_count(small_folder):
    with pytest.raises(ValueError, match=r"subset_count.*-1"):
        data_lib.load_training_set(folder_config(small_folder, subset_count=-1))


def test_fraction_and_count_both_set(small_folder):
    with pytest.raises(ValueError, match="both set"):
        data_lib.load_training_set(folder_config(small_folder, subset_fraction=0.5, subset_count=2))


def test_unknown_selection(small_folder):
    with pytest.raises(ValueError, match=r"subset_selection.*'first', 'random'.*'middle'"):
        data_lib.load_training_set(folder_config(small_folder, subset_selection="middle"))


@pytest.mark.parametrize("channels", [2, 4, 0])
def test_bad_channels(small_folder, channels):
    with pytest.raises(ValueError, match=rf"channels must be 1.*or 3.*got {channels}"):
        data_lib.load_training_set(folder_config(small_folder, channels=channels))


def test_resolution_too_small(small_folder):
    with pytest.raises(ValueError, match=r"resolution must be an integer >= 8, got 4"):
        data_lib.load_training_set(folder_config(small_folder, resolution=4))


def test_folder_has_only_train_split(small_folder):
    with pytest.raises(ValueError, match=r"single split.*'test'"):
        data_lib.load_split(folder_config(small_folder), "test")


# ---- config validation (no data loaded) ----------------------------------------------------------


def test_validate_config_accepts_defaults_without_loading(small_folder, monkeypatch):
    def refuse(*args):
        raise AssertionError("validate_config must not load data")

    for name in data_lib.TFDS_LOADERS:
        monkeypatch.setitem(data_lib.TFDS_LOADERS, name, refuse)
    data_lib.validate_config(make_config())  # configs/default.py: fashion_mnist, 10%
    data_lib.validate_config(make_config(name="cifar10", split="train[:50%]", channels=3))
    data_lib.validate_config(folder_config(small_folder, subset_count=3))


@pytest.mark.parametrize(
    "key,value,accepted",
    [
        ("name", "mnist_typo", "fashion_mnist"),
        ("resolution", 4, ">= 8"),
        ("channels", 2, r"1 \(grayscale\) or 3"),
        ("subset_fraction", 1.5, r"\(0, 1\]"),
        ("subset_count", -1, ">= 0"),
        ("subset_selection", "middle", "'first', 'random'"),
        ("subset_seed", -3, r"\[0, 2\*\*32\)"),
        ("split", "validation", r"\['train', 'test'\]"),
        ("split", "train[:10%]+valid", r"\['train', 'test'\]"),
    ],
)
def test_validate_config_names_bad_key(key, value, accepted):
    overrides = {key: value}
    if key == "subset_count":
        overrides["subset_fraction"] = 0.0
    with pytest.raises(ValueError) as error:
        data_lib.validate_config(make_config(**overrides))
    message = str(error.value)
    assert f"data.{key}" in message and str(value) in message
    assert re.search(accepted, message), message


def test_validate_config_folder(tmp_path, small_folder):
    with pytest.raises(ValueError, match=r"single split.*data.split='test'.*accepted: 'train'"):
        data_lib.validate_config(folder_config(small_folder, split="test"))
    with pytest.raises(FileNotFoundError, match="nope"):
        data_lib.validate_config(folder_config(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*no image files"):
        data_lib.validate_config(folder_config(tmp_path / "empty"))


def test_check_split_known_sets_and_slicing():
    assert data_lib.KNOWN_SPLITS["fashion_mnist"] == ("train", "test")
    for split in ("train", "test[:500]", "train[10%:]", "train[:50%] + test", "test[5:10]"):
        data_lib.check_split("cifar10", split, "eval.reference_split")
    data_lib.check_split("celeb_a", "validation[:100]", "eval.reference_split")  # not known
    data_lib.check_split("folder", "train", "eval.reference_split")
    with pytest.raises(ValueError, match=r"eval.reference_split='valid\[:5\]'.*'valid'"):
        data_lib.check_split("cifar100", "valid[:5]", "eval.reference_split")
    with pytest.raises(ValueError, match="non-empty"):
        data_lib.check_split("cifar10", "", "data.split")


def test_load_split_refuses_unknown_split_before_tfds(monkeypatch):
    def refuse(*args):
        raise AssertionError("tfds must not be read for a split the set does not have")

    monkeypatch.setitem(data_lib.TFDS_LOADERS, "fashion_mnist", refuse)
    with pytest.raises(ValueError, match=r"'validation'.*accepted splits"):
        data_lib.load_split(make_config(), "validation[:500]")


# ---- real few-shot folder ----------------------------------------------------------------------


def test_obama_folder_at_32(tmp_path):
    if not os.path.isdir(OBAMA_DIR):
        pytest.skip(f"100-shot-obama images not found at {OBAMA_DIR} (set JAXGAN_OBAMA_DIR)")
    config = folder_config(
        OBAMA_DIR, resolution=32, subset_count=10, subset_selection="random", subset_seed=0
    )
    result = data_lib.load_training_set(config, workdir=str(tmp_path))
    assert result.images.shape == (10, 32, 32, 3) and result.images.dtype == np.float32
    assert -1.0 <= result.images.min() < -0.5 and 0.5 < result.images.max() <= 1.0
    assert result.name == "100-shot-obama"
    np.testing.assert_array_equal(result.indices, np.random.RandomState(0).choice(100, 10, False))

    images, labels, num_classes = data_lib.load_split(config, "train")
    assert images.shape == (100, 32, 32, 3) and num_classes == 0 and not labels.any()
    # Sorted names: 0.jpg, 1.jpg, 10.jpg, ...: position 2 is 10.jpg.
    names = sorted(os.listdir(OBAMA_DIR))
    assert names[2] == "10.jpg"
    with Image.open(os.path.join(OBAMA_DIR, "10.jpg")) as image:
        reference = np.asarray(
            image.convert("RGB").resize((32, 32), resample=Image.Resampling.LANCZOS)
        )
    np.testing.assert_allclose(images[2], to_unit(reference), atol=1e-6)
    np.testing.assert_array_equal(result.images, images[result.indices])


# ---- tfds: CIFAR-10 (mocked) and unavailable sets ----------------------------------------------


@pytest.mark.slow
def test_cifar10_named_path_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        images, labels, num_classes = data_lib.load_split(
            make_config(name="cifar10", resolution=32, channels=3), "train"
        )
        gray, _, _ = data_lib.load_split(
            make_config(name="cifar10", resolution=16, channels=1), "test"
        )
        subset = data_lib.load_training_set(
            make_config(
                name="cifar10",
                resolution=32,
                channels=3,
                subset_fraction=0.0,
                subset_count=5,
                subset_selection="first",
            )
        )
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.1
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() <= 9
    assert num_classes == 10
    assert gray.shape == (12, 16, 16, 1)
    assert subset.images.shape == (5, 32, 32, 3) and subset.num_classes == 10
    np.testing.assert_array_equal(subset.images, images[:5])  # Mocked splits are identical.
    assert subset.name == "cifar10"


def test_cifar10_unavailable_offline_is_clear(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def offline(self, *args, **kwargs):
        raise ConnectionError("simulated: no route to host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(data_lib.DatasetUnavailableError) as error:
        data_lib.load_split(
            make_config(name="cifar10", resolution=32, channels=3, tfds_data_dir=str(tmp_path)),
            "train",
        )
    message = str(error.value)
    assert "'cifar10'" in message and str(tmp_path) in message
    assert "internet" in message and "prepared" in message


def test_missing_tfds_dependency_is_reported(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def missing_module(self, *args, **kwargs):
        raise ModuleNotFoundError(
            "No module named 'importlib_resources'", name="importlib_resources"
        )

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", missing_module)
    with pytest.raises(ImportError, match="pip install importlib_resources"):
        data_lib.load_split(
            make_config(name="cifar100", resolution=32, channels=3, tfds_data_dir=str(tmp_path)),
            "train",
        )


# ---- Fashion-MNIST -----------------------------------------------------------------------------


def _read_raw_idx(path, header_bytes):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=header_bytes)


def _raw_fashion_mnist(split):
    """Independent reader of the Debian idx files: (images [N, 784], labels [N])."""
    directory = fashion_mnist_offline.source_dir()
    prefix = "train" if split == "train" else "t10k"
    images = _read_raw_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), 16)
    labels = _read_raw_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), 8)
    return images.reshape(-1, 784), labels


def _have_debian_files():
    return all(
        os.path.isfile(p)
        for p in fashion_mnist_offline.source_files(fashion_mnist_offline.source_dir())
    )


@pytest.fixture(scope="module")
def fmnist_data_dir(tmp_path_factory):
    """A tfds data_dir with fashion_mnist prepared from the Debian files, network blocked."""
    if not _have_debian_files():
        pytest.skip(
            "Fashion-MNIST idx files not found in "
            f"{fashion_mnist_offline.source_dir()} (apt-get install dataset-fashion-mnist)"
        )
    data_dir = tmp_path_factory.mktemp("tfds")

    def refuse(*args, **kwargs):
        raise OSError("network access attempted while building Fashion-MNIST offline")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        start = time.perf_counter()
        images, labels, num_classes = data_lib.load_split(
            make_config(tfds_data_dir=str(data_dir), resolution=28, channels=1), "test"
        )
        print(f"offline Fashion-MNIST build + test split load: {time.perf_counter() - start:.1f}s")
    return data_dir, (images, labels, num_classes)


@pytest.mark.slow
def test_fashion_mnist_offline_build(fmnist_data_dir):
    import tensorflow_datasets as tfds

    data_dir, (images, labels, num_classes) = fmnist_data_dir
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.float32
    assert images.min() == -1.0 and images.max() == 1.0
    assert labels.dtype == np.int32 and num_classes == 10
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [1000] * 10)

    # Same images and labels as the raw Debian files (tfds reorders them).
    raw_images, raw_labels = _raw_fashion_mnist("test")
    uint8 = np.rint((images.reshape(-1, 784).astype(np.float64) + 1.0) * 127.5).astype(np.uint8)

    def fingerprints(imgs, labs):
        return sorted(
            hashlib.sha1(image.tobytes()).hexdigest() + str(int(label))
            for image, label in zip(imgs, labs, strict=True)
        )

    assert fingerprints(uint8, labels) == fingerprints(raw_images, raw_labels)

    # An ordinary prepared tfds copy: the stock builder reads it without preparing.
    builder = tfds.builder("fashion_mnist", data_dir=str(data_dir))
    assert builder.is_prepared()
    assert builder.info.splits["train"].num_examples == 60000
    assert builder.info.splits["test"].num_examples == 10000
    assert builder.info.features["label"].names[0] == "T-shirt/top"


@pytest.mark.slow
def test_fashion_mnist_train_split_and_default_subset(fmnist_data_dir, tmp_path, monkeypatch):
    data_dir, _ = fmnist_data_dir

    def no_rebuild(self, *args, **kwargs):
        raise AssertionError("the prepared copy must be reused")

    monkeypatch.setattr(
        fashion_mnist_offline.DebianFashionMNIST, "download_and_prepare", no_rebuild
    )
    config = make_config(tfds_data_dir=str(data_dir))  # default: 10% "first" of train, 28x28x1
    result = data_lib.load_training_set(config, workdir=str(tmp_path))
    assert result.images.shape == (6000, 28, 28, 1)
    np.testing.assert_array_equal(result.indices, np.arange(6000))
    assert result.num_classes == 10 and result.name == "fashion_mnist"
    assert result.labels.min() == 0 and result.labels.max() == 9

    images, labels, _ = data_lib.load_split(config, "train")
    assert images.shape == (60000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(result.images, images[:6000])
    raw_images, raw_labels = _raw_fashion_mnist("train")
    assert raw_images.shape[0] == 60000 and set(raw_labels.tolist()) == set(range(10))
    saved = json.loads((tmp_path / "subset_indices.json").read_text())
    assert saved["name"] == "fashion_mnist" and saved["num_examples"] == 60000


@pytest.mark.slow
def test_fashion_mnist_resized_rgb(fmnist_data_dir):
    data_dir, (images28, _, _) = fmnist_data_dir
    images, _, _ = data_lib.load_split(
        make_config(tfds_data_dir=str(data_dir), resolution=32, channels=3), "test"
    )
    assert images.shape == (10000, 32, 32, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(images[..., 0], images[..., 1])
    np.testing.assert_array_equal(images[..., 0], images[..., 2])
    raw = np.rint((images28[7, ..., 0].astype(np.float64) + 1.0) * 127.5).astype(np.uint8)
    reference = np.asarray(
        Image.fromarray(raw, mode="L").resize((32, 32), resample=Image.Resampling.LANCZOS)
    )
    np.testing.assert_allclose(images[7, ..., 0], to_unit(reference), atol=1e-6)


def test_fashion_mnist_without_sources_needs_apt_or_internet(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    empty = tmp_path / "no_debian_files"
    empty.mkdir()
    monkeypatch.setenv(fashion_mnist_offline.SOURCE_DIR_ENV, str(empty))

    def offline(self, *args, **kwargs):
        raise ConnectionError("simulated: no route to host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    data_dir = tmp_path / "tfds"
    with pytest.raises(data_lib.DatasetUnavailableError) as error:
        data_lib.load_split(make_config(tfds_data_dir=str(data_dir)), "train")
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(data_dir) in message and "internet" in message


def test_fashion_mnist_incomplete_sources(tmp_path, monkeypatch, block_network):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0" * 16))
    monkeypatch.setenv(fashion_mnist_offline.SOURCE_DIR_ENV, str(partial))
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte.gz"):
        data_lib.load_split(make_config(tfds_data_dir=str(tmp_path / "tfds")), "train")


def test_offline_builder_rejects_wrong_counts(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    header = np.array([2051, 5, 28, 28], ">u4").tobytes()
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + b"\0" * 5 * 784))
    with pytest.raises(ValueError, match=r"t10k-images.*\(2051, 5, 28, 28\).*10000"):
        fashion_mnist_offline.read_split(str(bad), "test")


# ---- array conversion --------------------------------------------------------------------------


def test_convert_images_channels():
    gray = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8, 1)
    rgb = images_lib.convert_images(gray, 8, 3)
    assert rgb.shape == (2, 8, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray[..., 0])
    assert images_lib.convert_images(gray, 8, 1) is gray  # Nothing to do: no resampling.
    colour = np.zeros((1, 8, 8, 3), np.uint8)
    colour[...] = (0, 255, 0)
    luma = images_lib.convert_images(colour, 8, 1)
    assert abs(int(luma[0, 0, 0, 0]) - round(255 * 0.587)) <= 1
