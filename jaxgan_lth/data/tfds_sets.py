"""Named data sets read through tensorflow-datasets (tfds).

`TFDS_LOADERS` maps a data set name to a loader ``loader(split, data_dir) -> (images, labels,
num_classes)`` returning the whole split as uint8 [N, H, W, C] images (native size and
channels), int64 labels [N] and the number of classes. Add an entry to support another set.

Preparation: a set that is not prepared in ``data_dir`` is prepared with tfds's
``download_and_prepare`` (needs internet). Fashion-MNIST is first prepared offline from Debian's
``dataset-fashion-mnist`` files when they exist (see `fashion_mnist_offline`); the network is
then never used. Failures raise `DatasetUnavailableError` naming the set, the data_dir and what
is needed.

Split order: ``as_dataset(shuffle_files=False)``, tfds's deterministic order of a prepared set
(tfds orders examples by a hash of their keys when it writes them, so this is not the order of
the original files).

tensorflow_datasets (and TensorFlow, which it needs to read and write) is imported on first use
only, so image-folder runs do not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

#: A loader: (split, data_dir or None) -> (uint8 images NHWC, int64 labels, num_classes).
Loader = Callable[[str, "str | None"], "tuple[np.ndarray, np.ndarray, int]"]


_READ_BATCH = 4096  # Examples per tf.data batch while reading a split into memory.


class DatasetUnavailableError(RuntimeError):
    """A named data set is not prepared locally and could not be downloaded/prepared."""


def _data_dir_text(builder) -> str:
    return os.fspath(builder.data_dir_root)


def _read_split(builder, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Whole split of a prepared builder as numpy (deterministic tfds order)."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    num_classes = int(features["label"].num_classes)
    # Fixed-size batches, concatenated: tfds's `batch_size=-1` batches by the size of *all*
    # splits (or sys.maxsize when unknown, which aborts TensorFlow under `tfds.testing`).
    dataset = builder.as_dataset(split=split, batch_size=_READ_BATCH, shuffle_files=False)
    images, labels = [], []
    for batch in tfds.as_numpy(dataset):
        images.append(np.asarray(batch["image"], dtype=np.uint8))
        labels.append(np.asarray(batch["label"], dtype=np.int64))
    if not images:
        raise ValueError(f"split {split!r} of tfds data set {builder.name!r} is empty.")
    return np.concatenate(images), np.concatenate(labels), num_classes


def _download_and_prepare(builder, name: str, hint: str) -> None:
    """Runs tfds's download; any failure becomes a `DatasetUnavailableError` with `hint`."""
    try:
        builder.download_and_prepare()
    except ModuleNotFoundError as error:
        # tfds 4.9.10 imports `importlib_resources` in `download_and_prepare` without declaring
        # it as a dependency (tensorflow/datasets#11212).
        raise ImportError(
            f"preparing tfds data set {name!r} needs the Python module {error.name!r}, which is "
            f"not installed: `pip install {error.name}`. {hint}"
        ) from error
    except Exception as error:  # noqa: BLE001 - offline failures come in many types.
        raise DatasetUnavailableError(
            f"tfds data set {name!r} is not prepared in data_dir "
            f"{_data_dir_text(builder)!r} and preparing it failed "
            f"({type(error).__name__}: {error}). {hint}"
        ) from error


def make_tfds_loader(name: str) -> Loader:
    """A loader for a tfds image-classification set with "image" and "label" features.

    The set is prepared with tfds's normal download when missing, which needs internet; the
    error otherwise says so.
    """

    def load(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray, int]:
        import tensorflow_datasets as tfds

        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            _download_and_prepare(
                builder,
                name,
                "Preparing it needs internet access, or a prepared copy: put a prepared "
                f"tfds '{name}/{builder.version}' directory into that data_dir "
                "(config data.tfds_data_dir; '' = tfds default).",
            )
        return _read_split(builder, split)

    load.__doc__ = f"Loads a split of tfds {name!r} as (uint8 images, int64 labels, classes)."
    return load


def load_fashion_mnist(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Loads a Fashion-MNIST split, preparing it offline from Debian's files when needed.

    Order of attempts: (1) a prepared ``fashion_mnist`` in `data_dir`; (2) the four idx files in
    ``$JAXGAN_FASHION_MNIST_DIR`` or ``/usr/share/datasets/fashion-mnist`` (Debian package
    ``dataset-fashion-mnist``): prepared into `data_dir` without any network access; (3) tfds's
    normal download.

    Args:
        split: tfds split ("train" = 60,000, "test" = 10,000, or tfds slicing syntax).
        data_dir: tfds data_dir; None = tfds default.

    Returns:
        (uint8 [N, 28, 28, 1], int64 [N] labels in 0..9, 10).

    Raises:
        FileNotFoundError: the source directory holds only some of the four files.
        DatasetUnavailableError: no prepared copy, no Debian files and the download failed.
    """
    import tensorflow_datasets as tfds

    from jaxgan_lth.data import fashion_mnist_offline as offline

    builder = tfds.builder("fashion_mnist", data_dir=data_dir)
    if not builder.is_prepared():
        directory = offline.source_dir()
        files = offline.source_files(directory)
        present = [path for path in files if os.path.isfile(path)]
        if len(present) == len(files):
            offline.prepare(data_dir, directory)
            builder = tfds.builder("fashion_mnist", data_dir=data_dir)
        elif present:
            missing = sorted(set(files) - set(present))
            raise FileNotFoundError(
                f"Fashion-MNIST source directory {directory!r} is incomplete; missing: "
                f"{', '.join(missing)}. Reinstall it (apt-get install --reinstall "
                f"dataset-fashion-mnist) or point ${offline.SOURCE_DIR_ENV} at a directory "
                "with all four idx .gz files."
            )
        else:
            _download_and_prepare(
                builder,
                "fashion_mnist",
                f"Without internet, install the Debian package: `apt-get install "
                f"dataset-fashion-mnist` (files in {offline.DEBIAN_DIR}), or set "
                f"${offline.SOURCE_DIR_ENV} to a directory with the four idx .gz files "
                f"(searched: {directory!r}).",
            )
    return _read_split(builder, split)


#: Registry of named data sets: name -> loader. Add entries to support more tfds sets.
TFDS_LOADERS: dict[str, Loader] = {
    "fashion_mnist": load_fashion_mnist,
    "cifar10": make_tfds_loader("cifar10"),
    "cifar100": make_tfds_loader("cifar100"),
}
