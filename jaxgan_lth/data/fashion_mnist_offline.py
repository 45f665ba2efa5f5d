"""Builds tfds's ``fashion_mnist`` offline from Debian's ``dataset-fashion-mnist`` files.

Why this exists: tfds's ``fashion_mnist`` builder downloads the four idx ``.gz`` files and
checks them against registered checksums. Debian's package ``dataset-fashion-mnist`` installs
the same four files (``/usr/share/datasets/fashion-mnist/``), but recompressed, so the checksums
do not match and machines without internet cannot use the stock builder.

`DebianFashionMNIST` subclasses tfds's own ``FashionMNIST`` builder (same name
``fashion_mnist``, version, features, class names and example keys) and only replaces where the
idx files come from: its split generators read the local ``.gz`` files with Python's ``gzip``
instead of downloading. It is created with ``skip_registration=True``, so tfds's registry still
maps ``fashion_mnist`` to the stock builder. After ``download_and_prepare()`` the data_dir holds
an ordinary prepared ``fashion_mnist/<version>`` that ``tfds.builder("fashion_mnist",
data_dir=...)`` / ``tfds.load`` read like a downloaded copy (same example keys, hence the same
tfds example order). No network access happens on this path.

The idx headers are checked (magic numbers, 60,000 train / 10,000 test items, 28x28 images),
labels must lie in 0..9, and the decompressed sizes must match the headers.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.image_classification import mnist as tfds_mnist

#: Default location of the Debian package's files; override with `SOURCE_DIR_ENV`.
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

#: Environment variable naming another directory holding the four idx ``.gz`` files.
SOURCE_DIR_ENV = "JAXGAN_FASHION_MNIST_DIR"

#: The four files, per split: (images, labels, number of examples).
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}

_IMAGE_MAGIC = 2051  # idx3, unsigned bytes
_LABEL_MAGIC = 2049  # idx1, unsigned bytes
_SIZE = 28
_NUM_CLASSES = 10


def source_dir() -> str:
    """The directory searched for the idx files: ``$JAXGAN_FASHION_MNIST_DIR`` or `DEBIAN_DIR`."""
    return os.environ.get(SOURCE_DIR_ENV) or DEBIAN_DIR


def source_files(directory: str) -> list[str]:
    """All four idx file paths inside `directory` (whether or not they exist)."""
    return [
        os.path.join(directory, name)
        for images, labels, _ in SPLIT_FILES.values()
        for name in (images, labels)
    ]


def _read_idx(path: str, magic: int, count: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Reads one gzip-compressed idx file into uint8 [count, *item_shape], checking its header."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    header_dims = 1 + len(item_shape)
    header_size = 4 * (1 + header_dims)
    header = np.frombuffer(data[:header_size], dtype=">u4")
    expected = (magic, count, *item_shape)
    if tuple(int(v) for v in header) != expected:
        raise ValueError(
            f"{path}: idx header {tuple(int(v) for v in header)} != expected "
            f"(magic, count, dims) {expected}."
        )
    body = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    if body.size != count * int(np.prod(item_shape, dtype=np.int64)):
        raise ValueError(f"{path}: {body.size} data bytes do not match the header {expected}.")
    return body.reshape((count, *item_shape))


def read_split(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split from the idx files in `directory`, in file order.

    Args:
        directory: folder with the four Fashion-MNIST idx ``.gz`` files.
        split: "train" or "test".

    Returns:
        (images uint8 [N, 28, 28, 1], labels int64 [N] in 0..9); N = 60,000 or 10,000.

    Raises:
        ValueError: a header, size or label that does not match Fashion-MNIST.
        FileNotFoundError: a missing file.
    """
    images_name, labels_name, count = SPLIT_FILES[split]
    images = _read_idx(os.path.join(directory, images_name), _IMAGE_MAGIC, count, (_SIZE, _SIZE))
    labels = _read_idx(os.path.join(directory, labels_name), _LABEL_MAGIC, count, ())
    if labels.max() >= _NUM_CLASSES:
        raise ValueError(
            f"{os.path.join(directory, labels_name)}: labels must lie in 0..9, found "
            f"{int(labels.max())}."
        )
    return images[..., None], labels.astype(np.int64)


class DebianFashionMNIST(tfds_mnist.FashionMNIST, skip_registration=True):
    """tfds's ``FashionMNIST`` builder reading local idx files instead of downloading them.

    Usage::

        DebianFashionMNIST(source_dir="/usr/share/datasets/fashion-mnist",
                           data_dir=data_dir).download_and_prepare()
        tfds.builder("fashion_mnist", data_dir=data_dir)  # now prepared
    """

    name = "fashion_mnist"  # Same name as the stock builder (not derived from the class name).

    # tfds derives `code_path` (used only to look for a registered checksums file next to the
    # builder's code) through `importlib_resources`, which tfds 4.9.10 imports without declaring
    # it (tensorflow/datasets#11212). This builder downloads nothing, so a plain path suffices:
    # there is no checksums file next to this module, hence no URL checks.
    code_path = epath.Path(__file__)

    def __init__(self, *, source_dir: str, **kwargs):
        """Creates the builder.

        Args:
            source_dir: folder with the four Fashion-MNIST idx ``.gz`` files.
            **kwargs: tfds builder arguments (``data_dir``, ...).
        """
        self._source_dir = source_dir
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        """Same splits and generator arguments as the stock builder, from local files."""
        del dl_manager  # Nothing is downloaded.
        return [
            tfds.core.SplitGenerator(name=split, gen_kwargs=dict(split=split))
            for split in (tfds.Split.TRAIN, tfds.Split.TEST)
        ]

    def _generate_examples(self, split):
        """Yields (index in file, example), the same keys as the stock builder."""
        images, labels = read_split(self._source_dir, str(split))
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield index, {"image": image, "label": label}


def prepare(data_dir: str | None, directory: str) -> None:
    """Prepares ``fashion_mnist`` in `data_dir` (None = tfds default) from idx files, offline."""
    DebianFashionMNIST(source_dir=directory, data_dir=data_dir).download_and_prepare()
