"""Limited-data subsets: which images of a split are used for training, and their record.

Two selection rules, both from the papers this project reproduces:

* ``"first"``: the first k images of the split, ``np.arange(k)``, with
  ``k = int(N * fraction)``: the lottery-ticket code (Chen et al., "Data-Efficient GAN Training
  Beyond (Just) Augmentations: A Lottery Ticket Perspective", NeurIPS 2021; VITA-Group's
  ``ImageDatasetLess`` uses ``Subset(dataset, np.arange(int(len(dataset) * ratio)))``).
* ``"random"``: k images drawn without replacement by numpy's legacy generator seeded with
  ``seed``: DiffAugment's CIFAR loader (Zhao et al., NeurIPS 2020) does
  ``np.random.seed(seed); np.random.choice(N, k, replace=False)``;
  ``np.random.RandomState(seed).choice`` draws the same indices in the same order without
  touching numpy's global state. The draw order is kept (indices are not sorted) so the images
  come out in the same order as in DiffAugment.

Indices are positions in the full split in the order the loader returns it: tfds's
deterministic order (``shuffle_files=False``) for tfds sets, sorted file names for folders.

The chosen indices are written to ``{workdir}/subset_indices.json`` together with the
parameters that produced them, and reused from there, so that every later stage of a run
(IMP rounds, evaluation, resumes) trains on exactly the same images. This small JSON record is
project code because no library keeps such a record; it is plain JSON so it can be read and
audited by hand.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

#: Accepted values of ``data.subset_selection``.
SELECTIONS = ("first", "random")

#: File name of the subset record inside a workdir.
INDICES_FILENAME = "subset_indices.json"

_FORMAT_VERSION = 1


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_subset_params(*, fraction, count, selection, seed) -> None:
    """Validates subset parameters that do not depend on the split size.

    Args:
        fraction: ``data.subset_fraction``; 0 or a number in (0, 1].
        count: ``data.subset_count``; an integer >= 0.
        selection: ``data.subset_selection``; one of `SELECTIONS`.
        seed: ``data.subset_seed``; an integer in [0, 2**32) (numpy's legacy seed range).

    Raises:
        ValueError: naming the bad value and what would be accepted, for a fraction outside
            (0, 1] (other than 0), a negative or non-integer count, both fraction and count set,
            an unknown selection, or a bad seed.
    """
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float, np.integer, np.floating))
        or not math.isfinite(fraction)
        or not 0.0 <= fraction <= 1.0
    ):
        raise ValueError(
            f"data.subset_fraction must be in (0, 1], or 0 to use data.subset_count; "
            f"got {fraction!r}."
        )
    if not _is_int(count):
        raise ValueError(f"data.subset_count must be an integer >= 0, got {count!r}.")
    if count < 0:
        raise ValueError(
            f"data.subset_count must be >= 0 (0 = use data.subset_fraction), got {count}."
        )
    if fraction > 0 and count > 0:
        raise ValueError(
            f"data.subset_fraction ({fraction}) and data.subset_count ({count}) are both set; "
            "set one of them and the other to 0 (both 0 = the whole split)."
        )
    if selection not in SELECTIONS:
        raise ValueError(
            f"data.subset_selection must be one of {list(SELECTIONS)}, got {selection!r}."
        )
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ValueError(f"data.subset_seed must be an integer in [0, 2**32), got {seed!r}.")


def select_subset(
    num_examples: int, *, fraction: float, count: int, selection: str, seed: int
) -> np.ndarray:
    """Chooses the training images of a split.

    Exactly one of `fraction` and `count` may be positive; both 0 selects the whole split
    (``np.arange(num_examples)``, whatever `selection` is).

    Args:
        num_examples: N, the number of images in the full split (> 0).
        fraction: share of the split in (0, 1]; k = int(N * fraction), as the lottery-ticket
            code. 0 = use `count`.
        count: number of images k in [1, N]; 0 = use `fraction`.
        selection: "first" (``np.arange(k)``, lottery-ticket code) or "random"
            (``np.random.RandomState(seed).choice(N, k, replace=False)``, DiffAugment; draw
            order kept, not sorted).
        seed: seed of the "random" selection (ignored by "first").

    Returns:
        int64 [k] positions in the full split, without duplicates.

    Raises:
        ValueError: for any parameter rejected by `check_subset_params`, an empty split, a count
            larger than the split (both numbers named), or a fraction that selects no image.
    """
    check_subset_params(fraction=fraction, count=count, selection=selection, seed=seed)
    if not _is_int(num_examples) or num_examples <= 0:
        raise ValueError(f"the split must hold at least one image, got {num_examples!r}.")
    if count > 0:
        if count > num_examples:
            raise ValueError(
                f"data.subset_count ({count}) is larger than the split, which holds "
                f"{num_examples} images; use a count <= {num_examples}."
            )
        k = int(count)
    elif fraction > 0:
        k = int(num_examples * fraction)
        if k == 0:
            raise ValueError(
                f"data.subset_fraction {fraction} of a split of {num_examples} images selects "
                f"0 images; use a fraction >= {1.0 / num_examples:.3g} or data.subset_count."
            )
    else:
        return np.arange(num_examples, dtype=np.int64)
    if selection == "first":
        return np.arange(k, dtype=np.int64)
    rng = np.random.RandomState(int(seed))
    return rng.choice(num_examples, k, replace=False).astype(np.int64)


def subset_record(
    *,
    name: str,
    split: str,
    folder: str,
    num_examples: int,
    fraction: float,
    count: int,
    selection: str,
    seed: int,
) -> dict:
    """The parameters that determine a subset, as saved in (and compared with) the record.

    `folder` is stored as an absolute path for image folders and as "" for tfds sets.
    """
    return {
        "name": str(name),
        "split": str(split),
        "folder": os.path.abspath(folder) if folder else "",
        "num_examples": int(num_examples),
        "subset_fraction": float(fraction),
        "subset_count": int(count),
        "subset_selection": str(selection),
        "subset_seed": int(seed),
    }


def _check_saved_indices(indices, num_examples: int, path: str) -> np.ndarray:
    if not isinstance(indices, list) or not indices:
        raise ValueError(f"{path}: 'indices' must be a non-empty list of integers.")
    if not all(_is_int(i) for i in indices):
        raise ValueError(f"{path}: 'indices' must hold integers only.")
    array = np.asarray(indices, dtype=np.int64)
    if array.min() < 0 or array.max() >= num_examples:
        raise ValueError(
            f"{path}: indices must lie in [0, {num_examples}), found "
            f"[{array.min()}, {array.max()}]."
        )
    if np.unique(array).size != array.size:
        raise ValueError(f"{path}: 'indices' holds duplicates.")
    return array


def load_or_save_indices(workdir: str, record: dict, compute) -> np.ndarray:
    """Reuses ``{workdir}/subset_indices.json`` or writes it.

    Args:
        workdir: run directory (created if missing).
        record: parameters from `subset_record`.
        compute: zero-argument callable returning the int64 indices, called only when no record
            exists yet.

    Returns:
        int64 [k] indices: the saved ones when the file exists, otherwise `compute()`.

    Raises:
        ValueError: if the saved parameters differ from `record` (the message names every
            differing key with both values; the file is left untouched), or the file is
            malformed.
    """
    path = os.path.join(workdir, INDICES_FILENAME)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            try:
                saved = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(saved, dict):
            raise ValueError(f"{path} must hold a JSON object.")
        differing = [key for key in record if saved.get(key) != record[key]]
        if differing:
            details = "; ".join(
                f"{key}: saved {saved.get(key)!r}, config {record[key]!r}" for key in differing
            )
            raise ValueError(
                f"{path} was written for other data settings ({details}). Use the saved "
                "settings, or a new workdir (deleting the file changes the training images of "
                "this run)."
            )
        return _check_saved_indices(saved.get("indices"), record["num_examples"], path)

    indices = np.asarray(compute(), dtype=np.int64)
    os.makedirs(workdir, exist_ok=True)
    content = {"format_version": _FORMAT_VERSION, **record, "indices": indices.tolist()}
    tmp_path = f"{path}.tmp.{os.getpid()}"
    with open(tmp_path, "w", encoding="utf-8") as f:
        json.dump(content, f)
        f.write("\n")
    os.replace(tmp_path, path)  # Atomic: a reader never sees a half-written file.
    return indices
