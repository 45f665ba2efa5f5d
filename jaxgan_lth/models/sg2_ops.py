"""StyleGAN2 layers in pure JAX/Flax: FIR resampling, equalized-lr layers, modulated convolution.

Re-derived from NVIDIA's stylegan2-ada-pytorch (``torch_utils/ops/upfirdn2d.py``: the reference
path ``_upfirdn2d_ref``; ``torch_utils/ops/conv2d_resample.py``; ``torch_utils/ops/bias_act.py``;
``training/networks.py``: ``FullyConnectedLayer``, ``Conv2dLayer``, ``modulated_conv2d``,
``SynthesisLayer``, ``ToRGBLayer``, ``MinibatchStdLayer``), written for NHWC arrays and flax
kernels ``[kh, kw, Cin, Cout]``. No custom kernels: the FIR filter is a sum of shifted slices
(``upfirdn2d``), which XLA fuses on CPUs and GPUs alike, and the convolutions are
``jax.lax.conv_general_dilated``.

Conventions (all from the reference unless marked "ours"):

* Equalized learning rate (Karras et al., ProGAN 2018, sec. 4.1; StyleGAN2 keeps it): weights are
  stored ``N(0, 1) / lr_mul`` and multiplied at run time by ``lr_mul / sqrt(fan_in)``; biases are
  multiplied by ``lr_mul``. The modulated 3x3 convs of the synthesis network store ``N(0, 1)``
  and use no runtime gain: demodulation divides any constant scale out (reference
  ``SynthesisLayer``).
* Activations: leaky ReLU with slope 0.2 times the gain ``sqrt(2)``, or linear (gain 1)
  (``bias_act.activation_funcs``); a layer's extra ``gain`` multiplies the activation's output.
* FIR filter ``[1, 3, 3, 1]`` (outer product, normalised to sum 1) for every up/downsampling.
* Convolutions are correlations (flax/XLA). The reference's upsampling layers use a true
  convolution (``flip_weight=False``); for weights trained from scratch the two are the same
  family (a spatial flip of the kernel), so only loading NVIDIA weights would need the flip.
* No ``conv_clamp`` (the reference sets it only with fp16 layers; the fp32 configs use None).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgan_lth.models import conv_ops

Array = jax.Array

#: The resampling filter taps of StyleGAN2 (``resample_filter=[1,3,3,1]`` in networks.py).
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)
#: Leaky-ReLU slope and gain of ``bias_act``'s ``lrelu``.
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
#: Epsilon of demodulation, ``normalize_2nd_moment`` and the minibatch stddev (reference 1e-8).
EPS = 1e-8


def fir_filter(taps: Sequence[float] = FIR_TAPS) -> np.ndarray:
    """The separable 1-D filter whose outer product is the normalised 2-D FIR filter.

    ``upfirdn2d.setup_filter`` normalises the 2-D filter ``outer(t, t)`` to sum 1; its separable
    factor is ``t / sum(t)`` (``[1, 3, 3, 1] / 8``).

    Returns:
        float32 ``[K]``.
    """
    t = np.asarray(taps, np.float32)
    return t / t.sum()


def _parse_pad(pad) -> tuple[int, int, int, int]:
    """``pad`` as ``(x0, x1, y0, y1)`` from an int, ``(px, py)`` or ``(x0, x1, y0, y1)``."""
    if isinstance(pad, int):
        return pad, pad, pad, pad
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return pad[0], pad[0], pad[1], pad[1]
    if len(pad) == 4:
        return pad
    raise ValueError(f"pad must be an int, (px, py) or (x0, x1, y0, y1); got {pad!r}")


def _fir_axis(x: Array, f: np.ndarray, axis: int, up: int, down: int, p0: int, p1: int) -> Array:
    """One axis of :func:`upfirdn2d`: zero insertion, pad/crop, convolution with ``f``, stride."""
    if up > 1:
        zeros = jnp.zeros(x.shape + (up - 1,), x.dtype)
        x = jnp.concatenate([x[..., None], zeros], axis=-1)  # each sample then up-1 zeros
        x = jnp.moveaxis(x, -1, axis + 1)
        shape = list(x.shape)
        x = x.reshape(shape[:axis] + [shape[axis] * up] + shape[axis + 2:])
    widths = [(0, 0)] * x.ndim
    widths[axis] = (max(p0, 0), max(p1, 0))
    x = jnp.pad(x, widths)
    n = x.shape[axis]
    x = jax.lax.slice_in_dim(x, max(-p0, 0), n - max(-p1, 0), axis=axis)
    k = len(f)
    length = x.shape[axis] - k + 1
    if length < 1:
        raise ValueError(f"upfirdn2d: the padded axis ({x.shape[axis]}) is shorter than the "
                         f"filter ({k}); pad more.")
    n_out = (length - 1) // down + 1
    out = None
    for j in range(k):  # convolution = correlation with the flipped filter
        s = jax.lax.slice_in_dim(x, j, j + (n_out - 1) * down + 1, stride=down, axis=axis)
        term = s * jnp.asarray(f[k - 1 - j], x.dtype)
        out = term if out is None else out + term
    return out


def upfirdn2d(x: Array, f: np.ndarray | Sequence[float], up: int = 1, down: int = 1,
              pad=0, gain: float = 1.0) -> Array:
    """Upsample by zero insertion, pad, FIR-filter, downsample (``upfirdn2d._upfirdn2d_ref``).

    Per spatial axis: insert ``up - 1`` zeros after every sample, pad with zeros (a negative pad
    crops), convolve with the 1-D filter ``f`` (the 2-D filter is the separable ``outer(f, f)``;
    "valid" convolution, no further padding), keep every ``down``-th sample starting at 0, and
    multiply the result by ``gain``. Output size per axis:
    ``(n * up + p0 + p1 - len(f)) // down + 1``.

    Own code rather than ``jax.lax.conv`` with a depthwise kernel: a sum of ``len(f)`` shifted
    (strided) slices per axis, which XLA fuses into one elementwise loop; depthwise convolutions
    with many channels are slow on XLA:CPU.

    Args:
        x: ``[B, H, W, C]``.
        f: 1-D separable filter ``[K]`` (e.g. :func:`fir_filter`).
        up: integer upsampling factor >= 1.
        down: integer downsampling factor >= 1.
        pad: padding w.r.t. the upsampled image: int, ``(px, py)`` or ``(x0, x1, y0, y1)``
            (the reference's order: x = width first).
        gain: overall scale (``up ** 2`` keeps the mean when upsampling).

    Returns:
        ``[B, H', W', C]`` in ``x``'s dtype.

    Raises:
        ValueError: a bad ``pad``, non-positive factors, or a padded axis shorter than ``f``.
    """
    if up < 1 or down < 1:
        raise ValueError(f"upfirdn2d: up and down must be >= 1, got up={up}, down={down}")
    f = np.asarray(f, np.float32)
    if f.ndim != 1:
        raise ValueError(f"upfirdn2d takes the separable 1-D filter, got shape {f.shape}")
    x0, x1, y0, y1 = _parse_pad(pad)
    x = _fir_axis(x, f, 2, up, down, x0, x1)
    x = _fir_axis(x, f, 1, up, down, y0, y1)
    return x * jnp.asarray(gain, x.dtype) if gain != 1.0 else x


def upsample2d(x: Array, f: np.ndarray, up: int = 2) -> Array:
    """2x (``up``) FIR upsampling to ``[B, up*H, up*W, C]`` (``upfirdn2d.upsample2d``)."""
    k = len(f)
    p = ((k + up - 1) // 2, (k - up) // 2)
    return upfirdn2d(x, f, up=up, pad=(p[0], p[1], p[0], p[1]), gain=up * up)


def downsample2d(x: Array, f: np.ndarray, down: int = 2) -> Array:
    """FIR downsampling to ``[B, H/down, W/down, C]`` (``upfirdn2d.downsample2d``)."""
    k = len(f)
    p = ((k - down + 1) // 2, (k - down) // 2)
    return upfirdn2d(x, f, down=down, pad=(p[0], p[1], p[0], p[1]))


def conv2d(x: Array, w: Array, stride: int = 1, padding=0) -> Array:
    """Plain NHWC correlation with an HWIO kernel (``padding``: int or XLA pad pairs).

    Computed by :func:`jaxgan_lth.models.conv_ops.conv2d` (CPU-tuned kernel gradient).
    """
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    return conv_ops.conv2d(x, w.astype(x.dtype), (stride, stride), padding)


def conv2d_resample(x: Array, w: Array, f: np.ndarray, up: int = 1, down: int = 1) -> Array:
    """Convolution with a ``k x k`` kernel, "same" padding ``k // 2``, and 2x up/downsampling.

    The paths of ``conv2d_resample.py`` (padding ``k // 2`` w.r.t. the upsampled image):

    * ``up > 1``: FIR upsampling with padding (``k//2 + (K+up-1)//2``, ``k//2 + (K-up)//2``)
      and gain ``up**2``, then a "valid" convolution (the reference's generic path; its
      transposed-conv fast path computes the same function).
    * ``down > 1``, ``k == 1``: FIR downsampling (padding ``(K-down+1)//2``, ``(K-down)//2``),
      then the 1x1 convolution.
    * ``down > 1``, ``k > 1``: FIR filtering with padding ``k//2 + (K-down+1)//2`` /
      ``k//2 + (K-down)//2``, then a stride-``down`` "valid" convolution.

    Args:
        x: ``[B, H, W, Cin]``.
        w: ``[k, k, Cin, Cout]`` (already scaled).
        f: 1-D FIR filter ``[K]``.
        up: 1 or 2.
        down: 1 or 2 (not together with ``up``).

    Returns:
        ``[B, H * up / down, W * up / down, Cout]``.
    """
    k, fk = w.shape[0], len(f)
    p = k // 2
    if up > 1:
        a, b = p + (fk + up - 1) // 2, p + (fk - up) // 2
        x = upfirdn2d(x, f, up=up, pad=(a, b, a, b), gain=up * up)
        return conv2d(x, w)
    if down > 1:
        a, b = p + (fk - down + 1) // 2, p + (fk - down) // 2
        if k == 1:
            return conv2d(upfirdn2d(x, f, down=down, pad=(a, b, a, b)), w)
        return conv2d(upfirdn2d(x, f, pad=(a, b, a, b)), w, stride=down)
    return conv2d(x, w, padding=p)


def bias_act(x: Array, b: Array | None, act: str, gain: float = 1.0) -> Array:
    """``act(x + b) * def_gain(act) * gain`` (``bias_act.bias_act`` without clamping).

    Args:
        x: ``[..., C]``.
        b: bias ``[C]`` or None.
        act: ``"lrelu"`` (slope 0.2, gain sqrt(2)) or ``"linear"`` (gain 1).
        gain: extra gain.
    """
    if b is not None:
        x = x + b.astype(x.dtype)
    if act == "lrelu":
        x = jax.nn.leaky_relu(x, LRELU_SLOPE)
        gain = gain * LRELU_GAIN
    elif act != "linear":
        raise ValueError(f"bias_act: act must be 'lrelu' or 'linear', got {act!r}")
    return x * jnp.asarray(gain, x.dtype) if gain != 1.0 else x


def normalize_2nd_moment(x: Array, eps: float = EPS) -> Array:
    """``x * rsqrt(mean(x**2, -1) + eps)``: unit second moment per row (the mapping's input)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def modulated_conv2d(x: Array, weight: Array, styles: Array, *, demodulate: bool = True,
                     up: int = 1, f: np.ndarray | None = None, eps: float = EPS) -> Array:
    """StyleGAN2's modulated (and demodulated) convolution (Karras et al. 2020, eqs. 1-3).

    Per sample b, the convolution uses ``w'[k, i, o] = w[k, i, o] * s[b, i]`` and, with
    demodulation, ``w''[k, i, o] = w'[k, i, o] / sqrt(sum_{k, i} w'[k, i, o]**2 + eps)``.
    Computed as the reference's non-fused path (``fused_modconv=False``, the one it trains
    with): scale the input channels by ``s``, convolve with the shared ``w``, scale the output
    channels by the demodulation coefficients. That is one ordinary convolution of the whole
    batch, which XLA runs at full speed on CPUs and GPUs; the fused alternative (one grouped
    convolution with ``B`` per-sample kernels, ``feature_group_count=B``) builds ``B`` kernels
    and runs as ``B`` small convolutions on XLA:CPU. Both compute the same function (tested).

    Args:
        x: ``[B, H, W, Cin]``.
        weight: ``[k, k, Cin, Cout]``.
        styles: ``[B, Cin]``.
        demodulate: divide by the per-sample, per-output-channel norm of ``w'``.
        up: 1, or 2 for the upsampling conv (see :func:`conv2d_resample`).
        f: FIR filter for ``up > 1``.
        eps: demodulation epsilon (reference 1e-8).

    Returns:
        ``[B, H * up, W * up, Cout]`` in ``x``'s dtype.
    """
    styles32 = styles.astype(jnp.float32)
    w32 = weight.astype(jnp.float32)
    x = x * styles[:, None, None, :].astype(x.dtype)
    x = conv2d_resample(x, weight, f if f is not None else fir_filter(), up=up)
    if demodulate:
        wsq = jnp.sum(jnp.square(w32), axis=(0, 1))  # [Cin, Cout]
        dcoefs = jax.lax.rsqrt(jnp.square(styles32) @ wsq + eps)  # [B, Cout]
        x = x * dcoefs[:, None, None, :].astype(x.dtype)
    return x


def minibatch_std(x: Array, group_size: int, num_features: int, train: bool) -> Array:
    """Appends the minibatch standard deviation features (Karras et al., ProGAN 2018, sec. 3).

    Groups of ``G`` samples; per group the std over the group of each feature, averaged over
    the ``C / num_features`` channels of each of the ``num_features`` channel groups and over
    H and W, broadcast to ``[B, H, W, num_features]`` and concatenated (``MinibatchStdLayer``).

    Grouping (ours): groups are *consecutive* samples (``reshape(B/G, G, ...)``), where the
    reference takes samples ``B/G`` apart (``reshape(G, B/G, ...)``). The step concatenates
    reals and fakes into one D batch ``[2B]``, and consecutive groups never mix the two when
    ``G`` divides ``B``; for i.i.d. samples within each half the statistic is the same.

    Args:
        x: ``[B, H, W, C]``, ``C`` divisible by ``num_features``.
        group_size: G (reference 4); ``min(G, B)`` is used, as the reference.
        num_features: F (reference 1).
        train: in train mode ``B`` must be a multiple of ``min(G, B)`` (the reference asserts
            it); in eval mode the group is the largest divisor of ``B`` not above it (ours, so
            that odd evaluation batches work).

    Returns:
        ``[B, H, W, C + F]``.

    Raises:
        ValueError: train mode with ``B`` not a multiple of the group size.
    """
    b, h, w, c = x.shape
    g = min(group_size, b)
    if b % g:
        if train:
            raise ValueError(
                f"minibatch stddev: the D batch ({b}) must be a multiple of the group size "
                f"{g} (model.mbstd_group); set train.d_batch_size / g_batch_size to multiples "
                f"of {g}")
        g = max(d for d in range(1, g + 1) if b % d == 0)
    y = x.astype(jnp.float32).reshape(b // g, g, h, w, num_features, c // num_features)
    y = y - jnp.mean(y, axis=1, keepdims=True)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=1) + EPS)  # [B/G, H, W, F, c]
    y = jnp.mean(y, axis=(1, 2, 4))  # [B/G, F]
    y = jnp.repeat(y, g, axis=0)[:, None, None, :]  # [B, 1, 1, F]
    y = jnp.broadcast_to(y, (b, h, w, num_features)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """``min(channel_base // res, channel_max)``: feature maps at resolution ``res``."""
    return min(channel_base // res, channel_max)


def _normal(scale: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype) * scale

    return init


class EqualizedDense(nn.Module):
    """Fully connected layer with equalized learning rate (``FullyConnectedLayer``).

    ``y = act(x @ (W * lr_mul / sqrt(fan_in)) + b * lr_mul)``, ``W`` stored ``N(0, 1/lr_mul^2)``,
    ``b`` initialised to ``bias_init``.

    Attributes:
        features: output size.
        activation: ``"linear"`` or ``"lrelu"``.
        lr_mul: learning-rate multiplier (0.01 in the mapping network).
        bias_init: initial bias (1 for the style affines, so styles start near 1).
        dtype: compute dtype.
    """

    features: int
    activation: str = "linear"
    lr_mul: float = 1.0
    bias_init: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, fan_in] -> [B, features]``."""
        fan_in = x.shape[-1]
        kernel = self.param("kernel", _normal(1.0 / self.lr_mul), (fan_in, self.features))
        bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
        w = (kernel * (self.lr_mul / math.sqrt(fan_in))).astype(self.dtype)
        y = x.astype(self.dtype) @ w
        return bias_act(y, bias * self.lr_mul, self.activation)


class EqualizedConv(nn.Module):
    """Convolution with equalized learning rate and optional 2x FIR downsampling (``Conv2dLayer``).

    ``y = act(conv(x, W / sqrt(Cin k^2)) + b) * gain``, ``W`` ``[k, k, Cin, Cout]`` ~ N(0, 1),
    ``b`` = 0.

    Attributes:
        features: Cout.
        kernel_size: k.
        down: 1 or 2 (see :func:`conv2d_resample`).
        activation: ``"linear"`` or ``"lrelu"``.
        use_bias: add a bias.
        dtype: compute dtype.
    """

    features: int
    kernel_size: int = 3
    down: int = 1
    activation: str = "lrelu"
    use_bias: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, gain: float = 1.0) -> Array:
        """``[B, H, W, Cin] -> [B, H/down, W/down, features]``."""
        k, cin = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", _normal(1.0), (k, k, cin, self.features))
        bias = (self.param("bias", nn.initializers.zeros, (self.features,))
                if self.use_bias else None)
        w = (kernel / math.sqrt(cin * k * k)).astype(self.dtype)
        y = conv2d_resample(x.astype(self.dtype), w, fir_filter(), down=self.down)
        return bias_act(y, bias, self.activation, gain)
