"""Training sets from `config.data`: whole splits and limited-data subsets in host memory.

Keys read from `config.data` (see configs/default.py): name, folder, split, resolution,
channels, subset_fraction, subset_count, subset_selection, subset_seed, tfds_data_dir.
(``random_flip`` and ``heldout_split`` are used by the training loop and the evaluation, not
here.) `validate_config` checks these keys without loading anything.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from jaxgan_lth.data import cifar_python
from jaxgan_lth.data import images as images_lib
from jaxgan_lth.data import subset as subset_lib
from jaxgan_lth.data.tfds_sets import TFDS_LOADERS

#: `data.name` value that reads an image folder instead of a tfds set.
FOLDER = "folder"

#: The single split an image folder has.
FOLDER_SPLIT = "train"

#: Split names of the named sets (the tfds ones in `TFDS_LOADERS` and the CIFAR python
#: tarballs of `cifar_python.SETS`). A split value may add tfds slicing ("test[:500]",
#: "train[10%:]") and join parts with "+"; the name before "[" of each part must be listed here.
#: Used by `load_split` and by the config validators (data and eval).
KNOWN_SPLITS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    **{name: tuple(layout.splits) for name, layout in cifar_python.SETS.items()},
}


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingSet:
    """The images a GAN is trained on.

    Attributes:
        images: float32 [N, H, W, C] in [-1, 1] (x / 127.5 - 1 of uint8 x), NHWC,
            H = W = data.resolution, C = data.channels.
        labels: int32 [N] class labels; all zeros for image folders.
        num_classes: number of classes of the data set; 0 for image folders.
        indices: int64 [N] positions of these images in the full split (tfds's deterministic
            order, or sorted file names for folders); ``images[i]`` is split image
            ``indices[i]``.
        name: data set name: the tfds name, or the folder's base name for image folders.

    Instances compare by identity (``eq=False``): element-wise array comparison has no single
    truth value.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    indices: np.ndarray
    name: str


def _get(data_config, key: str, default):
    """``data_config.key`` (ConfigDict or any attribute object), `default` when absent."""
    return getattr(data_config, key, default)


def _check_name(name) -> None:
    accepted = sorted(TFDS_LOADERS) + sorted(cifar_python.SETS) + [FOLDER]
    if name not in accepted:
        raise ValueError(f"unknown data set data.name={name!r}; accepted: {accepted}.")


def split_names(split: str) -> list[str]:
    """Base split names of a tfds split value, without slicing: "train[:10%]+test" -> [train, test].

    Args:
        split: a split in tfds syntax: ``name``, ``name[slice]``, parts joined with "+".

    Returns:
        The names before "[" of each "+"-joined part, stripped (an empty name stays "").
    """
    return [part.split("[", 1)[0].strip() for part in str(split).split("+")]


def check_split(name, split, key: str = "split") -> None:
    """Checks a split value against the data set, without loading anything.

    Image folders have one split, `FOLDER_SPLIT` ("train", the whole folder). For the tfds sets
    of `KNOWN_SPLITS`, every base split name (see `split_names`) must be a known split; tfds
    slicing is allowed. Other names are not checked here (tfds reports their splits).

    Args:
        name: ``data.name``.
        split: the split value.
        key: the config key the value comes from, named in the message (e.g. "data.split").

    Raises:
        ValueError: naming `key`, the value and the accepted splits.
    """
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"{key} must be a non-empty split name, got {split!r}.")
    if name == FOLDER:
        if split != FOLDER_SPLIT:
            raise ValueError(
                f"image folders have a single split, {FOLDER_SPLIT!r} (the whole folder); got "
                f"{key}={split!r}; accepted: {FOLDER_SPLIT!r}."
            )
        return
    known = KNOWN_SPLITS.get(name)
    if known is None:
        return
    for base in split_names(split):
        if base not in known:
            raise ValueError(
                f"{key}={split!r} names split {base!r}, which data set {name!r} does not have; "
                f"accepted splits: {list(known)}, optionally with tfds slicing such as "
                f"'{known[-1]}[:500]' or '{known[0]}[10%:]'."
            )


def validate_config(data_config) -> None:
    """Checks `config.data` without loading images or tfds (cheap; run before training).

    Checks: data.name (a `TFDS_LOADERS` or `cifar_python.SETS` name, or "folder"),
    data.resolution and data.channels
    (`images.check_image_format`), the subset keys (`subset.check_subset_params`; for a tfds
    set, fraction and count both 0 is refused: the whole split is ``subset_fraction=1``), data.split
    (`check_split`), and for folders that data.folder exists and holds JPEG/PNG files, and that
    the subset keys keep the whole folder (unless data.allow_folder_subset); for the CIFAR python
    sets that data.folder holds the tarball or its unpacked folder.
    data.heldout_split is checked by `jaxgan_lth.evaluation.validate_config` (it is used only by
    the evaluation's diagnostic).

    Args:
        data_config: `config.data` (ConfigDict or any attribute object).

    Raises:
        ValueError: naming the bad key, its value and what is accepted.
        FileNotFoundError: data.folder empty, missing, or without JPEG/PNG files (folder named);
            for a CIFAR python set, data.folder without the tarball or its unpacked folder.
    """
    name = _get(data_config, "name", None)
    _check_name(name)
    images_lib.check_image_format(
        _get(data_config, "resolution", None), _get(data_config, "channels", None)
    )
    subset_lib.check_subset_params(**_subset_params(data_config))
    p = _subset_params(data_config)
    if name != FOLDER and p["fraction"] == 0 and p["count"] == 0:
        # each key's 0 means "use the other one": both 0 chose the whole split without a word
        raise ValueError(
            f"data.subset_fraction=0 and data.subset_count=0 are both 0 for data.name={name!r}"
            " (0 = use the other key); accepted: data.subset_fraction in (0, 1] (1.0 = the "
            "whole split) or data.subset_count >= 1.")
    check_split(name, _get(data_config, "split", FOLDER_SPLIT), "data.split")
    if name in cifar_python.SETS:
        cifar_python.check_folder(name, _get(data_config, "folder", ""))
    if name == FOLDER:
        n = len(images_lib.list_image_files(_get(data_config, "folder", "")))
        p = _subset_params(data_config)
        k = folder_training_size(data_config)
        if k < n and not _get(data_config, "allow_folder_subset", False):
            key, value = (("subset_count", p["count"]) if p["count"] > 0
                          else ("subset_fraction", p["fraction"]))
            raise ValueError(
                f"data.{key}={value!r} would keep {k} of the {n} images of data.folder="
                f"{_get(data_config, 'folder', '')!r}; an image folder is the whole training "
                "set (the few-shot protocol, FID against the same images): set "
                "--config.data.subset_fraction=0 --config.data.subset_count=0, or "
                "--config.data.allow_folder_subset=True to train on part of it.")


def folder_training_size(data_config) -> int:
    """Images of an image folder's training set after the subset keys (a cheap file count).

    Raises:
      FileNotFoundError: data.folder missing or without JPEG/PNG files.
    """
    n = len(images_lib.list_image_files(_get(data_config, "folder", "")))
    p = _subset_params(data_config)
    return p["count"] if p["count"] > 0 else int(n * p["fraction"]) if p["fraction"] > 0 else n


def _subset_params(data_config) -> dict:
    return dict(
        fraction=_get(data_config, "subset_fraction", 0.0),
        count=_get(data_config, "subset_count", 0),
        selection=_get(data_config, "subset_selection", "first"),
        seed=_get(data_config, "subset_seed", 0),
    )


@dataclasses.dataclass(frozen=True)
class _Source:
    """A split before decoding/resizing: its size, labels and a reader for chosen images."""

    num_examples: int
    labels: np.ndarray  # int32 [N]
    num_classes: int
    read: Callable[[np.ndarray | None], np.ndarray]  # indices (None = all) -> float32 NHWC


def _open_split(data_config, split: str) -> _Source:
    """Validates the config and opens `split`; images are converted only when read."""
    name = _get(data_config, "name", None)
    _check_name(name)
    resolution = _get(data_config, "resolution", None)
    channels = _get(data_config, "channels", None)
    images_lib.check_image_format(resolution, channels)

    check_split(name, split)
    if name == FOLDER:
        paths = images_lib.list_image_files(_get(data_config, "folder", ""))

        def read_files(indices):
            chosen = paths if indices is None else [paths[i] for i in indices]
            return images_lib.to_float(images_lib.load_image_files(chosen, resolution, channels))

        return _Source(len(paths), np.zeros(len(paths), np.int32), 0, read_files)

    if name in cifar_python.SETS:
        raw, labels, num_classes = cifar_python.load_split(
            name, _get(data_config, "folder", ""), split)
    else:
        data_dir = _get(data_config, "tfds_data_dir", "") or None
        raw, labels, num_classes = TFDS_LOADERS[name](split, data_dir)

    def read_arrays(indices):
        chosen = raw if indices is None else raw[indices]
        return images_lib.to_float(images_lib.convert_images(chosen, resolution, channels))

    return _Source(raw.shape[0], labels.astype(np.int32), int(num_classes), read_arrays)


def load_split(data_config, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Loads a whole split at the configured resolution and channels.

    Args:
        data_config: `config.data` (reads name, folder, resolution, channels, tfds_data_dir).
        split: tfds split name ("train", "test", or tfds slicing syntax such as "train[:10%]").
            Image folders have a single split, "train" (the whole folder). The CIFAR python sets
            take the same syntax (`cifar_python.parse_split`).

    Returns:
        (images, labels, num_classes): images float32 [N, H, W, C] in [-1, 1] with
        H = W = data.resolution and C = data.channels (Lanczos resize, Pillow luma / channel
        repeat, see `jaxgan_lth.data.images`); labels int32 [N] (zeros for folders);
        num_classes (0 for folders).

    Raises:
        ValueError: unknown data.name (accepted names listed), channels not in {1, 3},
            resolution < 8, unreadable image (file and cause named), a split other than "train"
            for a folder, or a split name not in `KNOWN_SPLITS` (or unknown to tfds).
        FileNotFoundError: image folder missing or without JPEG/PNG files; no CIFAR python
            tarball (or a batch file missing in it) in data.folder; incomplete
            Fashion-MNIST source directory.
        DatasetUnavailableError: a tfds set that is neither prepared nor downloadable.
        ImportError: a module tfds needs to prepare a set is missing.
        cifar_python.UnsafePickleError: a CIFAR batch file naming a pickle global other than
            numpy's array rebuild (the file is not trusted).
    """
    source = _open_split(data_config, split)
    return source.read(None), source.labels, source.num_classes


def load_training_set(data_config, workdir: str | None = None) -> TrainingSet:
    """Loads the (limited) training set: a subset of `data.split` chosen by the subset keys.

    Subset rules (see `jaxgan_lth.data.subset.select_subset`): data.subset_fraction in (0, 1]
    takes k = int(N * fraction) images, data.subset_count > 0 takes that many, both 0 the whole
    split; data.subset_selection "first" takes the first k (lottery-ticket code), "random" a
    seeded draw without replacement with data.subset_seed (DiffAugment).

    With `workdir`, the chosen indices and the parameters that produced them are saved to
    ``{workdir}/subset_indices.json``; if that file exists, its indices are reused, so IMP
    rounds, evaluation and resumes all train on the same images.

    Only the chosen images are decoded (folders) or resized/converted (tfds sets), so a 10%
    subset costs about a tenth of a whole-split load after the tfds read.

    Args:
        data_config: `config.data`.
        workdir: run directory for the indices record; None = do not save or reuse.

    Returns:
        `TrainingSet` with float32 [k, H, W, C] images in [-1, 1], int32 labels, int64 indices.

    Raises:
        ValueError: every error of `load_split`; fraction outside (0, 1], negative count, both
            fraction and count set, unknown selection, count larger than the split (both numbers
            named); a saved record whose parameters differ from the config (differing keys
            named; the file is not overwritten).
        FileNotFoundError, DatasetUnavailableError: as `load_split`.
    """
    validate_config(data_config)  # Fail before loading a large split.
    name = _get(data_config, "name", None)
    params = _subset_params(data_config)
    split = _get(data_config, "split", "train")
    folder = _get(data_config, "folder", "") if name == FOLDER else ""

    source = _open_split(data_config, split)

    def compute() -> np.ndarray:
        return subset_lib.select_subset(source.num_examples, **params)

    if workdir is None:
        indices = compute()
    else:
        record = subset_lib.subset_record(
            name=name, split=split, folder=folder, num_examples=source.num_examples, **params
        )
        indices = subset_lib.load_or_save_indices(workdir, record, compute)

    display_name = os.path.basename(os.path.normpath(folder)) if name == FOLDER else name
    return TrainingSet(
        # Only the chosen images are decoded (folders) or resized/converted (tfds).
        images=source.read(indices),
        labels=source.labels[indices],
        num_classes=source.num_classes,
        indices=indices,
        name=display_name,
    )
