"""CIFAR-10/100 from the official "python version" tarballs, without TensorFlow.

`SETS` names two data sets for ``config.data.name``: ``cifar10_python`` and ``cifar100_python``.
``config.data.folder`` is a folder holding the tarball as distributed on
https://www.cs.toronto.edu/~kriz/cifar.html (``cifar-10-python.tar.gz`` /
``cifar-100-python.tar.gz``, read in place) or its unpacked folder (``cifar-10-batches-py/`` /
``cifar-100-python/``). Splits: "train" (50,000) and "test" (10,000), with tfds's slicing syntax
("test[:500]", "train[10%:]", parts joined with "+"; percent boundaries rounded to the closest
index as tfds's default). Labels: CIFAR-10's 10 classes; CIFAR-100's 100 fine labels (tfds's
``label``).

Order: the files' order (``data_batch_1`` .. ``data_batch_5`` for CIFAR-10 train). tfds's
``cifar10`` orders examples differently (by a hash of their keys), so a "first N" subset of
``cifar10_python`` holds other images than one of ``cifar10``; FID statistics of a whole split do
not depend on the order.

Why an own unpickler: each batch file is a Python 2 pickle (cPickle, protocol 2) of a dict
``{b"data": uint8 array [N, 3072], b"labels" or b"fine_labels": list of int, b"filenames",
b"batch_label"}``. Unpickling runs whatever callables the file names, so ``pickle.load`` of a
downloaded file can execute arbitrary code. `SafeCifarUnpickler` allows exactly the three globals
a pickled numpy array needs (``numpy.core.multiarray._reconstruct`` - or ``numpy._core`` as
numpy 2 writes it -, ``numpy.ndarray``, ``numpy.dtype``) and refuses every other one. Even these
are not numpy's: ``find_class`` hands out inert stand-ins that accept only a uint8 dtype in its
standard state and an array state ``(1, shape, dtype, fortran, raw bytes)``, from which the
array is made with ``np.frombuffer``. Numpy's own ``__setstate__`` never sees the file's data
(a dtype state can set internal flags numpy trusts). No library reads these files without
either unpickling them (torchvision, keras) or TensorFlow (tfds), hence this module.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import tarfile
from collections.abc import Callable

import numpy as np

#: Largest batch file read (bytes); the official ones are about 31 MB (CIFAR-100 train 155 MB).
MAX_MEMBER_BYTES = 256 * 2**20

_SIDE = 32
_PIXELS = _SIDE * _SIDE * 3


@dataclasses.dataclass(frozen=True)
class CifarLayout:
    """Where one data set's batches are and what they hold.

    Attributes:
        tarball: the official tarball's file name.
        folder: the folder it unpacks to (member name prefix inside the tarball).
        splits: split name -> batch file names (in that order).
        label_key: the batch dict's label list (``labels``, CIFAR-100 ``fine_labels``).
        num_classes: classes of that label.
    """

    tarball: str
    folder: str
    splits: dict[str, tuple[str, ...]]
    label_key: str
    num_classes: int


#: The data set names `config.data.name` accepts here, and their files.
SETS: dict[str, CifarLayout] = {
    "cifar10_python": CifarLayout(
        "cifar-10-python.tar.gz", "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        "labels", 10),
    "cifar100_python": CifarLayout(
        "cifar-100-python.tar.gz", "cifar-100-python",
        {"train": ("train",), "test": ("test",)}, "fine_labels", 100),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A batch file names a global that a CIFAR batch does not need (the file is refused)."""


class _Sealed:
    """Base of the stand-ins ``find_class`` hands out: pickle BUILD on them is refused."""

    def __setstate__(self, state):
        raise UnsafePickleError(f"BUILD on {type(self).__name__} is not allowed")


class _NdarrayClass(_Sealed):
    """Stand-in for ``numpy.ndarray`` (only passed to `_Reconstruct`)."""


class _Dtype:
    """Stand-in for a ``numpy.dtype('u1')`` with its standard pickled state."""

    _STATE = (3, "|", None, None, None, -1, -1, 0)

    def __init__(self):
        self.state_ok = False

    def __setstate__(self, state):
        norm = tuple(v.decode("ascii") if isinstance(v, bytes) else v for v in tuple(state))
        if self.state_ok or norm != self._STATE:
            raise UnsafePickleError(f"unexpected uint8 dtype state {state!r}")
        self.state_ok = True


class _DtypeFactory(_Sealed):
    """Stand-in for ``numpy.dtype``: ``dtype("u1", align, copy)`` only."""

    def __call__(self, name, align=False, copy=True):
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if name != "u1":
            raise UnsafePickleError(f"dtype {name!r} refused; a CIFAR batch holds uint8 only")
        return _Dtype()


class _Array:
    """An array being unpickled; `array` is set by its (checked) state."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5:
            raise UnsafePickleError("unexpected array state")
        version, shape, dtype, fortran, raw = state
        if (version != 1 or not isinstance(dtype, _Dtype) or not dtype.state_ok
                or not isinstance(raw, (bytes, bytearray)) or not isinstance(shape, tuple)
                or not all(isinstance(d, int) and d >= 0 for d in shape)
                or int(np.prod(shape, dtype=np.int64)) != len(raw)):
            raise UnsafePickleError(f"unexpected uint8 array state (shape {shape!r})")
        flat = np.frombuffer(bytes(raw), dtype=np.uint8)
        self.array = flat.reshape(shape, order="F" if fortran else "C")


class _Reconstruct(_Sealed):
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b"b")``."""

    def __call__(self, cls, shape, typecode):
        if not isinstance(cls, _NdarrayClass):
            raise UnsafePickleError("_reconstruct of something other than numpy.ndarray")
        return _Array()


_ALLOWED: dict[tuple[str, str], Callable[[], object]] = {
    ("numpy.core.multiarray", "_reconstruct"): _Reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _Reconstruct,
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy", "dtype"): _DtypeFactory,
}


class SafeCifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch dict; every global but the numpy-array three is refused.

    Strings of the Python 2 pickle come back as bytes (``encoding="bytes"``); arrays come back
    as `_Array` stand-ins, converted by `read_batch`.
    """

    def __init__(self, file):
        super().__init__(file, encoding="bytes")

    def find_class(self, module, name):
        """A fresh inert stand-in for an allowed global; raises `UnsafePickleError` otherwise."""
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise UnsafePickleError(
                f"global {module}.{name} refused: a CIFAR batch needs only numpy's array "
                f"reconstruction ({sorted(f'{m}.{n}' for m, n in _ALLOWED)})")
        return factory()


def read_batch(data: bytes, label_key: str, num_classes: int, where: str):
    """Decodes one batch file's bytes with `SafeCifarUnpickler`.

    Args:
        data: the pickle's bytes.
        label_key: ``labels`` or ``fine_labels``.
        num_classes: labels must lie in [0, num_classes).
        where: the file's name, for messages.

    Returns:
        (uint8 images [N, 32, 32, 3] NHWC, int64 labels [N]).

    Raises:
        UnsafePickleError: a global or state a CIFAR batch does not have.
        ValueError: not a dict, a missing key, wrong array shape/dtype or label out of range.
    """
    import io

    try:
        batch = SafeCifarUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{where}: {error}") from error
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise ValueError(f"{where} is not a CIFAR python batch ({type(error).__name__}: "
                         f"{error}).") from error
    if not isinstance(batch, dict):
        raise ValueError(f"{where} holds a {type(batch).__name__}, not a CIFAR batch dict.")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", label_key):
        if key not in batch:
            raise ValueError(f"{where} has no {key!r} entry (keys: {sorted(batch)}).")
    images = batch["data"].array if isinstance(batch["data"], _Array) else None
    if images is None or images.ndim != 2 or images.shape[1] != _PIXELS:
        raise ValueError(f"{where}: 'data' must be a uint8 array [N, {_PIXELS}].")
    labels = batch[label_key]
    if (not isinstance(labels, list) or len(labels) != len(images)
            or not all(isinstance(v, int) and 0 <= v < num_classes for v in labels)):
        raise ValueError(f"{where}: {label_key!r} must be {len(images)} integers in "
                         f"[0, {num_classes}).")
    # rows: 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane
    nhwc = images.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(nhwc), np.asarray(labels, dtype=np.int64)


def _source(name: str, folder: str) -> tuple[CifarLayout, str]:
    """The layout and the path to read (tarball or unpacked folder)."""
    layout = SETS[name]
    folder = os.fspath(folder or "")
    tarball = os.path.join(folder, layout.tarball)
    unpacked = os.path.join(folder, layout.folder)
    if folder and os.path.isfile(tarball):
        return layout, tarball
    if folder and os.path.isdir(unpacked):
        return layout, unpacked
    raise FileNotFoundError(
        f"data.name={name!r} reads data.folder={folder!r}, which holds neither "
        f"{layout.tarball} nor {layout.folder}/; put the official tarball there (CIFAR's "
        "'python version', https://www.cs.toronto.edu/~kriz/cifar.html).")


def check_folder(name: str, folder: str) -> None:
    """Checks that `folder` holds the set's tarball or unpacked folder (reads nothing).

    Raises:
        FileNotFoundError: naming the folder and the file expected there.
    """
    _source(name, folder)


def _read_files(path: str, layout: CifarLayout, files: list[str]) -> dict[str, bytes]:
    """The named batch files' bytes, from the tarball (one pass) or the unpacked folder."""
    out: dict[str, bytes] = {}
    if os.path.isdir(path):
        for f in files:
            with open(os.path.join(path, f), "rb") as handle:
                out[f] = handle.read(MAX_MEMBER_BYTES + 1)
    else:
        wanted = {f"{layout.folder}/{f}": f for f in files}
        with tarfile.open(path, "r:*") as tar:
            for member in tar:  # in archive order: one pass through the compressed stream
                if member.name in wanted and member.isreg():
                    out[wanted[member.name]] = tar.extractfile(member).read(MAX_MEMBER_BYTES + 1)
        missing = sorted(set(files) - set(out))
        if missing:
            raise FileNotFoundError(f"{path} has no regular file(s) "
                                    f"{[f'{layout.folder}/{m}' for m in missing]}.")
    for f, data in out.items():
        if len(data) > MAX_MEMBER_BYTES:
            raise ValueError(f"{path}: {f} is larger than {MAX_MEMBER_BYTES} bytes; refused.")
    return out


_PART = re.compile(r"^\s*([A-Za-z_]+)\s*(?:\[\s*([^:\]]*?)\s*:\s*([^\]]*?)\s*\])?\s*$")


def _boundary(text: str, n: int, split: str) -> int | None:
    if not text:
        return None
    match = re.fullmatch(r"(-?\d+)(%?)", text)
    if match is None or (match.group(2) and abs(int(match.group(1))) > 100):
        raise ValueError(f"split {split!r}: slice boundary {text!r} is not accepted; accepted: "
                         "an integer or a percentage in [-100%, 100%].")
    value = int(match.group(1))
    return int(round(value * n / 100)) if match.group(2) else value


def parse_split(split: str, sizes: dict[str, int]) -> list[tuple[str, slice]]:
    """tfds-style split syntax -> (split name, index slice) parts.

    Args:
        split: ``name``, ``name[start:stop]`` (integers or percentages), parts joined by "+".
        sizes: examples per split name.

    Returns:
        One (name, slice) per "+"-joined part, in order.

    Raises:
        ValueError: a malformed part or a split name not in `sizes` (accepted ones named).
    """
    parts = []
    for text in str(split).split("+"):
        match = _PART.match(text)
        if match is None or match.group(1) not in sizes:
            raise ValueError(f"split {split!r}: part {text!r} is not accepted; accepted: "
                             f"{sorted(sizes)} with an optional [start:stop] slice.")
        name, start, stop = match.group(1), match.group(2) or "", match.group(3) or ""
        n = sizes[name]
        parts.append((name, slice(_boundary(start, n, split), _boundary(stop, n, split))))
    return parts


def load_split(name: str, folder: str, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Reads a split of ``cifar10_python`` / ``cifar100_python`` from `folder`.

    Args:
        name: a key of `SETS`.
        folder: holds the official tarball or its unpacked folder.
        split: "train", "test", with tfds slicing ("test[:500]") and "+" joins.

    Returns:
        (uint8 images [N, 32, 32, 3] NHWC in file order, int64 labels [N], num_classes).

    Raises:
        FileNotFoundError: no tarball/folder, or a batch file missing in it.
        ValueError: a bad split, a file that is not a CIFAR batch or has a wrong shape/label.
        UnsafePickleError: a batch file naming a global other than numpy's array rebuild.
    """
    layout, path = _source(name, folder)
    # syntax and names first (before reading); boundaries once the split sizes are known
    needed = sorted({s for s, _ in parse_split(split, dict.fromkeys(layout.splits, 0))})
    raw = _read_files(path, layout, [f for s in needed for f in layout.splits[s]])
    whole = {}
    for s in needed:
        batches = [read_batch(raw[f], layout.label_key, layout.num_classes,
                              f"{path}:{layout.folder}/{f}") for f in layout.splits[s]]
        whole[s] = (np.concatenate([b[0] for b in batches]),
                    np.concatenate([b[1] for b in batches]))
    parts = parse_split(split, {s: len(whole[s][1]) for s in needed})
    images = np.concatenate([whole[s][0][sl] for s, sl in parts])
    labels = np.concatenate([whole[s][1][sl] for s, sl in parts])
    if len(images) == 0:
        raise ValueError(f"split {split!r} of {name} is empty.")
    return images, labels, layout.num_classes
