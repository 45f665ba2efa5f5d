"""Class-coverage diagnostic: a small Fashion-MNIST classifier over generated samples.

A *diagnostic*, not a headline metric: Inception FID/KID stays the measure of sample quality.
FID on few samples hides mode collapse badly (a generator that only draws tops can have the
same FID as one that draws every class), so every evaluation of a Fashion-MNIST run also
classifies ``eval.coverage_samples`` EMA-generator samples and reports

* ``coverage_hist``: the fraction of samples predicted as each of the 10 classes;
* ``coverage_classes``: how many classes hold at least ``eval.coverage_min_fraction`` (2%) of
  the samples, the mode-coverage count of Metz et al. (unrolled GANs, 2017) and Srivastava et
  al. (VEEGAN, 2017), who count the modes a GAN covers with a pretrained classifier;
* ``coverage_confidence``: the mean of the classifier's top softmax probability, a crude
  "recognisability" score (the Inception Score's per-sample confidence, Salimans et al. 2016).

The classifier (:class:`CoverageClassifier`) is a 3-conv CNN of about 93k parameters trained by
``python -m jaxgan_lth.evaluation.train_classifier`` on the 60,000 Fashion-MNIST training
images; its weights ship in the package (``fashion_mnist_classifier.npz``, about 370 KB,
read with ``numpy.load(allow_pickle=False)``) with its test accuracy recorded inside.
It applies only to 28x28 grayscale Fashion-MNIST (:func:`applies`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

#: The 10 Fashion-MNIST classes, in label order (Xiao et al. 2017, Table 1).
CLASS_NAMES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
               "sneaker", "bag", "ankle boot")
NUM_CLASSES = len(CLASS_NAMES)

#: The shipped weights (written by :mod:`jaxgan_lth.evaluation.train_classifier`).
WEIGHTS_PATH = os.path.join(os.path.dirname(__file__), "fashion_mnist_classifier.npz")

#: Image format the classifier takes: ``[N, 28, 28, 1]`` in [-1, 1].
IMAGE_SHAPE = (28, 28, 1)


class CoverageClassifier(nn.Module):
    """Fashion-MNIST classifier: three 3x3 conv-ReLU-maxpool blocks, a ReLU dense layer, logits.

    ``[N, 28, 28, 1]`` in [-1, 1] -> conv 32 -> pool -> [14, 14, 32] -> conv 64 -> pool ->
    [7, 7, 64] -> conv 64 -> pool -> [3, 3, 64] -> dense 64 -> dense 10 (logits ``[N, 10]``).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``[N, 10]`` of images ``[N, 28, 28, 1]`` in [-1, 1] (float32)."""
        for i, width in enumerate((32, 64, 64)):
            x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=f"conv{i}")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(64, name="dense0")(x))
        return nn.Dense(NUM_CLASSES, name="logits")(x)


def applies(data_config: Any) -> bool:
    """Whether the classifier fits the data: Fashion-MNIST at 28x28 with one channel."""
    get = data_config.get if isinstance(data_config, dict) else (
        lambda k, d=None: getattr(data_config, k, d))
    return (get("name") == "fashion_mnist" and int(get("resolution", 0)) == 28
            and int(get("channels", 0)) == 1)


def params_to_arrays(params: Any) -> dict[str, np.ndarray]:
    """Flattens a params tree to ``{"conv0/kernel": array, ...}`` (the ``.npz`` layout)."""
    return {k: np.asarray(v, np.float32)
            for k, v in traverse_util.flatten_dict(params, sep="/").items()}


def arrays_to_params(arrays: dict[str, np.ndarray]) -> dict:
    """The inverse of :func:`params_to_arrays` (nested dicts of float32 arrays)."""
    return traverse_util.unflatten_dict(
        {k: np.asarray(v, np.float32) for k, v in arrays.items()}, sep="/")


@functools.lru_cache(maxsize=4)
def load_weights(path: str = WEIGHTS_PATH) -> tuple[dict, dict]:
    """``(params, info)`` of a classifier ``.npz``; ``info`` holds its recorded test accuracy.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: the file lacks a weight the model needs, or has a wrong shape.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"coverage classifier weights not found at {path}; rebuild "
                                "them with `python -m jaxgan_lth.evaluation.train_classifier`.")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("info/")}
        info = {k[len("info/"):]: f[k].item() for k in f.files if k.startswith("info/")}
    params = arrays_to_params(arrays)
    want = jax.eval_shape(CoverageClassifier().init, jax.random.key(0),
                          jnp.zeros((1, *IMAGE_SHAPE), jnp.float32))["params"]
    want_flat = {k: v.shape for k, v in traverse_util.flatten_dict(want, sep="/").items()}
    got_flat = {k: v.shape for k, v in arrays.items()}
    if want_flat != got_flat:
        raise ValueError(f"{path} does not hold CoverageClassifier's weights: expected "
                         f"{want_flat}, found {got_flat}.")
    return params, info


@jax.jit
def _probs(params, images):
    return jax.nn.softmax(CoverageClassifier().apply({"params": params}, images), axis=-1)


def predict_proba(images: np.ndarray, params: dict | None = None,
                  batch_size: int = 500) -> np.ndarray:
    """Class probabilities ``[N, 10]`` (float32, rows sum to 1) of ``[N, 28, 28, 1]`` images.

    Args:
      images: float images in [-1, 1] (values outside are clipped), ``[N, 28, 28, 1]``.
      params: classifier parameters; None = the shipped weights.
      batch_size: images per jitted call (the last batch is padded, so one program serves all).

    Raises:
      ValueError: images of another shape.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"the coverage classifier takes [N, 28, 28, 1] images, got shape "
                         f"{images.shape}.")
    params = load_weights()[0] if params is None else params
    out = []
    for i in range(0, images.shape[0], batch_size):
        chunk = np.clip(images[i:i + batch_size], -1.0, 1.0)
        n = chunk.shape[0]
        if n < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - n, *IMAGE_SHAPE), np.float32)])
        out.append(np.asarray(_probs(params, chunk))[:n])
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)


def coverage_from_probs(probs: np.ndarray, min_fraction: float = 0.02) -> dict[str, Any]:
    """Class histogram, covered-class count and mean confidence of classifier outputs.

    Args:
      probs: ``[N, K]`` class probabilities (N >= 1); each sample counts for its argmax class.
      min_fraction: a class is *covered* when at least this fraction of the N samples is
        predicted as it (0.02 = 2%).

    Returns:
      ``{"coverage_hist": [K] fractions (list of floats, summing to 1), "coverage_classes":
      int number of classes with fraction >= min_fraction, "coverage_confidence": mean over
      samples of max_k probs (float in [1/K, 1])}``.

    Raises:
      ValueError: ``probs`` not ``[N, K]`` with N >= 1, or ``min_fraction`` outside (0, 1].
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1:
        raise ValueError(f"probs must be [N, K] with N >= 1, got shape {probs.shape}.")
    if not 0.0 < float(min_fraction) <= 1.0:
        raise ValueError(f"min_fraction={min_fraction!r} is not accepted; accepted: (0, 1].")
    counts = np.bincount(np.argmax(probs, axis=1), minlength=probs.shape[1])
    hist = counts / probs.shape[0]
    return {"coverage_hist": [round(float(h), 6) for h in hist],
            "coverage_classes": int(np.sum(hist >= float(min_fraction) - 1e-12)),
            "coverage_confidence": round(float(np.mean(np.max(probs, axis=1))), 6)}
