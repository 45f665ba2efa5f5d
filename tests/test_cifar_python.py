"""CIFAR-10/100 from the official python tarballs without TensorFlow (issue 31, item 6).

The tarballs are made here in the official layout (``cifar-10-batches-py/data_batch_1..5``,
``test_batch``; ``cifar-100-python/train``, ``test``) with batch files written opcode by opcode
as Python 2's cPickle (protocol 2) writes them. That these bytes are a valid numpy pickle is
checked against plain ``pickle.loads(..., encoding="bytes")`` (what CIFAR's page suggests), and
the expected images are built from the row layout by explicit indexing, not by the module's
reshape.
"""

import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile

import helpers
import numpy as np
import pytest

from configs import default
from jaxgan_lth import data as data_lib
from jaxgan_lth.data import cifar_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_DTYPE_U1 = (b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
             b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")


def _py2_pickle(obj, dtype_code=_DTYPE_U1):
    """``obj`` as Python 2's cPickle.dump(obj, f, 2) writes it (str -> BINSTRING)."""
    out = bytearray(b"\x80\x02")

    def string(b):
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else
                   b"T" + struct.pack("<i", len(b)) + b)

    def emit(o):
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, tuple):
            out.extend(b"(")
            for v in o:
                emit(v)
            out.extend(b"t")
        elif isinstance(o, (bytes, str)):
            string(o if isinstance(o, bytes) else o.encode())
        elif isinstance(o, int):
            out.extend(b"K" + bytes([o]) if 0 <= o < 256 else
                       b"M" + struct.pack("<H", o) if 0 <= o < 65536 else
                       b"J" + struct.pack("<i", o))
        elif isinstance(o, np.ndarray):  # numpy's __reduce__: _reconstruct + BUILD
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                       b"K\x00\x85U\x01b\x87R(K\x01")
            emit(tuple(o.shape))
            out.extend(dtype_code + b"\x89")
            string(o.tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


def make_config(**overrides):
    """``config.data`` of configs/default.py with ``overrides``."""
    config = default.get_config().data
    config.update(overrides)
    return config


def _batch(rng, n, label_key, num_classes, label="batch"):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, n)]
    return {"batch_label": label, label_key: labels, "data": data,
            "filenames": [f"img_{i}.png" for i in range(n)]}


def _expected_nhwc(data):
    """[N, 3072] CIFAR rows -> [N, 32, 32, 3]: pixel (r, c) of channel ch at ch*1024 + r*32 + c."""
    out = np.zeros((len(data), 32, 32, 3), np.uint8)
    for ch in range(3):
        for r in range(32):
            out[:, r, :, ch] = data[:, ch * 1024 + r * 32: ch * 1024 + r * 32 + 32]
    return out


def _write(tmp_path, name, batches, tarball=True):
    """The set in its official layout: a tarball in tmp_path/name, or the unpacked folder."""
    layout = cifar_python.SETS[name]
    folder = tmp_path / name
    folder.mkdir()
    if tarball:
        with tarfile.open(folder / layout.tarball, "w:gz") as tar:
            for fname, batch in batches.items():
                blob = _py2_pickle(batch)
                info = tarfile.TarInfo(f"{layout.folder}/{fname}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        (folder / layout.folder).mkdir()
        for fname, batch in batches.items():
            (folder / layout.folder / fname).write_bytes(_py2_pickle(batch))
    return str(folder)


@pytest.fixture
def cifar10(tmp_path):
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": _batch(rng, 3, "labels", 10) for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, 2, "labels", 10)
    batches["batches.meta"] = {"label_names": ["airplane"] * 10}
    return batches


def test_py2_pickle_is_what_plain_pickle_reads(cifar10):
    batch = cifar10["data_batch_1"]
    plain = pickle.loads(_py2_pickle(batch), encoding="bytes")  # trusted: made here
    np.testing.assert_array_equal(plain[b"data"], batch["data"])
    assert plain[b"labels"] == batch["labels"] and plain[b"data"].dtype == np.uint8


@pytest.mark.parametrize("tarball", [True, False])
def test_cifar10_splits_in_file_order(tmp_path, cifar10, tarball):
    folder = _write(tmp_path, "cifar10_python", cifar10, tarball)
    images, labels, classes = cifar_python.load_split("cifar10_python", folder, "train")
    train = [cifar10[f"data_batch_{i}"] for i in range(1, 6)]
    expected = _expected_nhwc(np.concatenate([b["data"] for b in train]))
    np.testing.assert_array_equal(images, expected)
    assert labels.tolist() == sum((b["labels"] for b in train), []) and classes == 10
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    test_images, _, _ = cifar_python.load_split("cifar10_python", folder, "test")
    np.testing.assert_array_equal(test_images, _expected_nhwc(cifar10["test_batch"]["data"]))
    # tfds slicing: 15 train images, 50% -> round(7.5) = 8 (tfds's "closest" rounding)
    mixed, mixed_labels, _ = cifar_python.load_split("cifar10_python", folder,
                                                     "train[:2]+test[-1:]+train[50%:52%]")
    np.testing.assert_array_equal(mixed, np.concatenate([images[:2], test_images[-1:],
                                                         images[8:8]]))
    assert len(mixed_labels) == 3
    half, _, _ = cifar_python.load_split("cifar10_python", folder, "train[-40%:]")
    np.testing.assert_array_equal(half, images[9:])


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    batches = {"train": _batch(rng, 4, "fine_labels", 100), "test": _batch(rng, 2, "fine_labels",
                                                                          100)}
    batches["train"]["coarse_labels"] = [0, 1, 2, 3]
    folder = _write(tmp_path, "cifar100_python", batches)
    images, labels, classes = cifar_python.load_split("cifar100_python", folder, "train")
    assert classes == 100 and labels.tolist() == batches["train"]["fine_labels"]
    np.testing.assert_array_equal(images, _expected_nhwc(batches["train"]["data"]))


def test_through_config_and_resized(tmp_path, cifar10):
    folder = _write(tmp_path, "cifar10_python", cifar10)
    config = make_config(name="cifar10_python", folder=folder, resolution=16, channels=1,
                         split="test", subset_fraction=1.0, subset_count=0)
    data_lib.validate_config(config)
    images, labels, classes = data_lib.load_split(config, "test")
    assert images.shape == (2, 16, 16, 1) and classes == 10
    assert labels.tolist() == cifar10["test_batch"]["labels"]
    assert -1.0 <= images.min() and images.max() <= 1.0
    data_lib.check_split("cifar10_python", "test[:500]")
    with pytest.raises(ValueError, match="does not have"):
        data_lib.check_split("cifar10_python", "validation")
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        data_lib.validate_config(make_config(name="cifar10_python", folder=str(tmp_path / "no"),
                                             resolution=32, channels=3))
    with pytest.raises(ValueError, match="'cifar10_python'"):  # listed among accepted names
        data_lib.validate_config(make_config(name="cifar_10", resolution=32, channels=3))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_unsafe_pickles_are_refused(tmp_path, cifar10, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = pickle.dumps({"data": _Evil(), "labels": []}, protocol=2)
    with pytest.raises(cifar_python.UnsafePickleError, match="refused"):
        cifar_python.read_batch(evil, "labels", 10, "evil")
    assert not (tmp_path / "pwned").exists()
    batch = cifar10["test_batch"]
    object_dtype = _DTYPE_U1.replace(b"U\x02u1", b"U\x02O8")
    with pytest.raises(cifar_python.UnsafePickleError, match="dtype 'O8' refused"):
        cifar_python.read_batch(_py2_pickle(batch, object_dtype), "labels", 10, "obj")
    flags = _DTYPE_U1.replace(b"K\x00tb", b"K\x3ftb")  # dtype flags as an object dtype has
    with pytest.raises(cifar_python.UnsafePickleError, match="dtype state"):
        cifar_python.read_batch(_py2_pickle(batch, flags), "labels", 10, "flags")
    with pytest.raises(ValueError, match="integers in"):
        bad = dict(batch, labels=[10, 0])
        cifar_python.read_batch(_py2_pickle(bad), "labels", 10, "labels")
    # a refused batch inside a tarball names the member
    cifar10["data_batch_3"] = {"data": 1, "labels": []}
    folder = _write(tmp_path, "cifar10_python", cifar10)
    with pytest.raises(ValueError, match="data_batch_3: 'data' must be a uint8 array"):
        cifar_python.load_split("cifar10_python", folder, "train")


def test_loads_without_tensorflow(tmp_path, cifar10):
    folder = _write(tmp_path, "cifar10_python", cifar10)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        helpers.import_blocker_source(("tensorflow", "tensorflow_datasets", "clu")))
    code = ("import sys\nfrom test_cifar_python import make_config\nfrom jaxgan_lth import data\n"
            f"c = make_config(name='cifar10_python', folder={folder!r}, resolution=32,"
            " channels=3)\n"
            "x, y, k = data.load_split(c, 'train')\n"
            "assert 'tensorflow' not in sys.modules\nprint(x.shape, k)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), ROOT,
                                                       os.path.join(ROOT, "tests")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(15, 32, 32, 3) 10")
