"""Evaluation: FID Inception-v3 in Flax (weights read without PyTorch), FID, KID, IS.

Public API::

    FeatureExtractor(weights_path=None, *, batch_size=50, precision="highest", micro_batch=None)
    inception_features(images, batch_size=50, weights_path=None) -> np.ndarray [N, 2048]
    compute_statistics(features, keep_features=False, seed=0) -> FIDStatistics
    frechet_distance(mu1, sigma1, mu2, sigma2, method="svd") -> float
    fid_from_features(features1, features2, method="svd") -> float
    kernel_inception_distance(features1, features2, num_subsets=100, max_subset_size=1000,
                              seed=0) -> (mean, std)
    inception_score(logits, splits=10) -> (mean, std)
    save_statistics(path, stats) / load_statistics(path) -> FIDStatistics
    reference_statistics(data_config, split, cache_dir, extractor=None, *, batch_size=50,
                         kid_features=10000, overwrite=False) -> FIDStatistics
    Evaluator(config, workdir, *, latent_dim, num_classes, train_images, train_labels)
        .generate(sample_fn, num, seed=0) / .fid_kid(sample_fn) / .evaluate(sample_fn,
        raw_sample_fn=None) / .diagnostic(d_fn, fake_fn)
    validate_config(config) -> None      config.eval against config.data, before training
    iter_folder_images(folder, recursive=True) / load_image_folder(folder, recursive=True)
        image folders at native size (the reader of jaxgan_lth.data.images)

Modules are imported lazily so that ``metrics`` (numpy/scipy only) does not pull in JAX/Flax.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FeatureExtractor": "features",
    "get_feature_extractor": "features",
    "inception_features": "features",
    "to_uint8": "features",
    "InceptionV3": "inception",
    "load_inception_weights": "inception_weights",
    "FIDStatistics": "metrics",
    "compute_statistics": "metrics",
    "fid_from_features": "metrics",
    "frechet_distance": "metrics",
    "inception_score": "metrics",
    "kernel_inception_distance": "metrics",
    "load_statistics": "metrics",
    "save_statistics": "metrics",
    "reference_statistics": "reference",
    "Evaluator": "evaluator",
    "validate_config": "evaluator",
    "reference_statistics_path": "reference",
    "UnsafePickleError": "torchscript_reader",
    "iter_folder_images": "folders",
    "load_image_folder": "folders",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
