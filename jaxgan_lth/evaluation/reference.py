"""Cached FID/KID reference statistics of a full data split."""

from __future__ import annotations

import os
import re
import warnings
from typing import Any, Optional, Union

from jaxgan_lth.evaluation import metrics as metrics_lib

__all__ = ["DEFAULT_KID_FEATURES", "reference_statistics", "reference_statistics_path"]

#: Feature vectors kept in a reference file for KID (a seeded random subset of the split;
#: 10,000 x 2048 float32 = 82 MB). KID uses subsets of at most 1,000.
DEFAULT_KID_FEATURES = 10_000


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def _precision_of(extractor: Any) -> str:
    """The Inception precision of an extractor (``"highest"`` for one without the attribute)."""
    return str(getattr(extractor, "precision", "highest"))


def _dataset_name(data_config: Any) -> str:
    name = str(_get(data_config, "name", "") or "")
    if name == "folder":
        folder = str(_get(data_config, "folder", "") or "")
        if not folder:
            raise ValueError("data_config.name == 'folder' but data_config.folder is empty")
        name = os.path.basename(os.path.normpath(folder))
    if not name:
        raise ValueError("data_config.name is empty")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def reference_statistics_path(data_config: Any, split: str,
                              cache_dir: Union[str, os.PathLike]) -> str:
    """``{cache_dir}/fid_stats_{name}_{split}_{resolution}_c{channels}.npz`` for a data config.

    ``name`` is ``data_config.name``, or the folder's basename when it is ``"folder"``;
    ``resolution`` and ``channels`` are ``data_config``'s (an RGB folder read as grayscale
    has other statistics than read as RGB, so both are in the name).
    """
    resolution = int(_get(data_config, "resolution"))
    channels = int(_get(data_config, "channels", 3))
    split_tag = re.sub(r"[^A-Za-z0-9._-]+", "_", str(split))
    return os.path.join(os.fspath(cache_dir),
                        f"fid_stats_{_dataset_name(data_config)}_{split_tag}_{resolution}_c{channels}.npz")


def reference_statistics(data_config: Any, split: str, cache_dir: Union[str, os.PathLike],
                         extractor: Optional[Any] = None, *, batch_size: int = 50,
                         kid_features: Optional[int] = DEFAULT_KID_FEATURES,
                         overwrite: bool = False,
                         write: bool = True) -> metrics_lib.FIDStatistics:
    """FID statistics (and KID features) of the FULL ``split``, cached as ``.npz``.

    For an image folder (``data_config.name == "folder"``) the only split is ``"train"``, the
    whole folder (the few-shot ``fid5k-train`` protocol: FID against the training images).

    On a cache miss, loads every image of the split with
    ``jaxgan_lth.data.load_split(data_config, split) -> (images [N, H, W, C] float32 in [-1, 1],
    labels, num_classes)`` (the training subset options of the config are not applied by FID:
    the reference is the whole split), quantises them to uint8, extracts Inception features,
    and writes ``mu``/``sigma`` (float64) plus up to ``kid_features`` feature vectors (float32)
    to :func:`reference_statistics_path`. Metadata records the data set, split, resolution,
    image count, the SHA-1 of the Inception weights and, unless it is ``"highest"``, the
    network's precision (``FeatureExtractor.precision``). The file is written atomically
    (:func:`~jaxgan_lth.evaluation.metrics.save_statistics`: temporary file, then rename).

    Multi-process runs: every process calls this (the evaluation is collective), but only the
    one with ``write=True`` (process 0, see the evaluator) writes the file; the others compute
    the same statistics from the same images and only read a cache file that exists, so no two
    processes write one file on a shared file system, and no process waits for another's file
    (a host-local cache folder works as well).

    Args:
        data_config: the ``config.data`` ConfigDict (or a dict) with ``name``, ``folder`` and
            ``resolution`` (plus what ``load_split`` needs).
        split: split name, e.g. ``"train"`` or ``"test[:500]"`` (tfds slicing); ``"train"``
            for an image folder.
        cache_dir: directory of the cache files (created if needed).
        extractor: a :class:`~jaxgan_lth.evaluation.features.FeatureExtractor`; None = the
            default one, created only on a cache miss. When given, a cached file computed with
            other weights (SHA-1 mismatch) or at another precision is recomputed, with a
            warning.
        batch_size: images per jitted Inception call.
        kid_features: feature vectors kept for KID (seeded random subset); None = all.
        overwrite: recompute even if the cache file exists.
        write: write the computed statistics to the cache file (False: compute and return only).

    Returns:
        :class:`~jaxgan_lth.evaluation.metrics.FIDStatistics` with ``features`` set.

    Raises:
        FileNotFoundError: when the Inception weights are missing (see
            :class:`~jaxgan_lth.evaluation.features.FeatureExtractor`).
        ValueError: for a config without name/resolution, an empty split, a split the data
            set does not have (for a folder, anything but ``"train"``), or an unreadable image
            (file named).
    """
    path = reference_statistics_path(data_config, split, cache_dir)
    if os.path.isfile(path) and not overwrite:
        stats = metrics_lib.load_statistics(path)
        cached_sha1 = stats.metadata.get("weights_sha1")
        cached_precision = stats.metadata.get("precision", "highest")
        if extractor is None or (cached_sha1 in (None, extractor.weights_sha1)
                                 and cached_precision == _precision_of(extractor)):
            return stats
        warnings.warn(f"{path} was computed with Inception weights {cached_sha1} at precision "
                      f"{cached_precision!r}, not {extractor.weights_sha1} at "
                      f"{_precision_of(extractor)!r}; recomputing it")

    from jaxgan_lth import data as data_lib  # lazy: the data package may need tfds/TensorFlow
    from jaxgan_lth.evaluation.features import get_feature_extractor

    load_split = data_lib.load_split
    # A split the data set does not have fails here, before the Inception weights are loaded.
    data_lib.check_split(_get(data_config, "name"), split, "split")
    if extractor is None:
        extractor = get_feature_extractor()
    images, _labels, _num_classes = load_split(data_config, split)
    if len(images) < 2:
        raise ValueError(f"split {split!r} of {_dataset_name(data_config)} has {len(images)} "
                         "images; FID statistics need at least 2")
    features = extractor.features(images, batch_size=batch_size)
    stats = metrics_lib.compute_statistics(
        features, keep_features=True if kid_features is None else int(kid_features))
    stats.metadata = {
        "dataset": _dataset_name(data_config),
        "split": str(split),
        "resolution": str(int(_get(data_config, "resolution"))),
        "num_images": str(features.shape[0]),
        "weights_sha1": extractor.weights_sha1,
        "protocol": "uint8-quantised images, TF-style bilinear resize to 299, TF Inception pool3",
    }
    if _precision_of(extractor) != "highest":  # float32 convolutions are not named (as before)
        stats.metadata["precision"] = _precision_of(extractor)
    if write:
        metrics_lib.save_statistics(path, stats)
    return stats
