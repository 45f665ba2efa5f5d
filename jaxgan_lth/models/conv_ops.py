"""NHWC 2-D convolution whose kernel gradient is a sum of matmuls on XLA:CPU, and fused convs.

The fused layers (:class:`ConvTranspose4s2`, :class:`UpsampleConv3x3`,
:class:`PoolableConv3x3`) are below :func:`conv2d`; :mod:`jaxgan_lth.models.layers` builds
them.

:func:`conv2d` is ``jax.lax.conv_general_dilated`` for NHWC inputs and HWIO kernels (no
dilation, one feature group) with the same forward value and input gradient, and a different
*kernel* gradient on CPU. The kernel gradient of a convolution is

    dW[i, j, :, :] = sum_{b, p, q} x_pad[b, s p + i, s q + j, :]^T  g[b, p, q, :]

(``s`` the stride, ``g`` the output cotangent ``[B, OH, OW, Cout]``): one matmul
``[Cin, B*OH*OW] @ [B*OH*OW, Cout]`` per kernel tap on a strided slice of the padded input.
The convolution XLA:CPU otherwise runs for ``dW`` is slower than these matmuls for large
outputs. Measured side by side on this project's 2-core CPU
(``benchmarks/results/conv_grad_cpu-2core.md``): a 1x1 kernel at batch 64, 32x32, 256 -> 256
channels takes 8.6x longer than the single matmul, 3x3 and 4x4/2 kernels with 16,384 to 65,536
output positions 1.1-2.2x longer than the matmuls, while 4,096 positions (8x8 at batch 64) are
faster as a convolution (0.63-0.65x). So the matmul form is used on CPU when the
kernel is 1x1 or the output has at least :data:`MATMUL_GRAD_MIN_ROWS` positions
``B * OH * OW`` and a tap's input slice is at most :data:`MATMUL_GRAD_MAX_SLICE_BYTES`; other
platforms (GPU/TPU: cuDNN/XLA's own kernels) keep XLA's gradient
(``jax.lax.platform_dependent``). Both forms compute the same sums in a different order: the
results agree to float32 round-off (``tests/test_models.py``).

A 1x1 stride-1 unpadded convolution is a matmul forward and backward on every platform.

Own code, not a library: the speed of the GAN step is this project's core, and neither Flax nor
JAX offers a CPU-tuned convolution gradient.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Initializer = Callable[..., Array]

#: Smallest ``B * OH * OW`` at which the CPU kernel gradient is computed with matmuls (below it
#: XLA's convolution was as fast or faster; ``benchmarks/conv_grad.py``).
MATMUL_GRAD_MIN_ROWS = 16384
#: Largest input slice (``B * OH * OW * Cin`` float32 bytes) the matmul form copies per tap;
#: above it XLA's gradient is kept. XLA:CPU may hold several taps' slices at once: at 256x256
#: (StyleGAN2, batch 16, 128 channels: 537 MB a slice) the compiled iteration needed 2.7x the
#: temporary memory of XLA's own gradient (76 vs 28 GB).
MATMUL_GRAD_MAX_SLICE_BYTES = 2**28
_DN = ("NHWC", "HWIO", "NHWC")


def _lax_conv(x: Array, w: Array, strides: tuple, pads: tuple, precision=None) -> Array:
    return jax.lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN,
                                        precision=precision)


def _is_pointwise(w_shape, strides, pads) -> bool:
    return tuple(w_shape[:2]) == (1, 1) and tuple(strides) == (1, 1) and all(
        p == (0, 0) for p in pads)


def _kernel_grad_matmul(x: Array, g: Array, w_shape, strides, pads, precision) -> Array:
    """``dW`` ``[kh, kw, Cin, Cout]`` as one matmul per tap (see the module docstring).

    The taps run in a ``fori_loop`` so that one input slice ``[B, OH, OW, Cin]`` is alive at a
    time (unrolled, XLA:CPU kept all of them: 2.7x the step's temporary memory). For a stride
    ``s`` the padded input is first split into its ``s x s`` phases (``x_pad[:, a::s, c::s]``),
    so that every tap is a contiguous ``dynamic_slice`` of one phase.
    """
    kh, kw, cin, cout = w_shape
    (sh, sw), ((pt, pb), (pl, pr)) = strides, pads
    b, oh, ow, _ = g.shape
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    # rows/columns a tap can read: < sh * (oh + (kh - 1) // sh); pad or crop to that size
    hn, wn = sh * (oh + (kh - 1) // sh), sw * (ow + (kw - 1) // sw)
    xp = jnp.pad(xp[:, :hn, :wn], ((0, 0), (0, max(0, hn - xp.shape[1])),
                                   (0, max(0, wn - xp.shape[2])), (0, 0)))
    phases = xp.reshape(b, hn // sh, sh, wn // sw, sw, cin).transpose(2, 4, 0, 1, 3, 5)
    phases = phases.reshape(sh * sw, b, hn // sh, wn // sw, cin)
    g2 = g.reshape(-1, cout)

    def tap(t, dw):
        i, j = t // kw, t % kw
        xs = jax.lax.dynamic_slice(phases[(i % sh) * sw + j % sw], (0, i // sh, j // sw, 0),
                                   (b, oh, ow, cin))
        return dw.at[t].set(jnp.matmul(xs.reshape(-1, cin).T, g2, precision=precision)
                            .astype(dw.dtype))

    dw = jax.lax.fori_loop(0, kh * kw, tap, jnp.zeros((kh * kw, cin, cout), x.dtype))
    return dw.reshape(kh, kw, cin, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x: Array, w: Array, strides: tuple, pads: tuple, precision) -> Array:
    if _is_pointwise(w.shape, strides, pads):
        return jnp.matmul(x, w[0, 0], precision=precision)
    return _lax_conv(x, w, strides, pads, precision)


def _conv_fwd(x, w, strides, pads, precision):
    return _conv(x, w, strides, pads, precision), (x, w)


def _conv_bwd(strides, pads, precision, res, g):
    x, w = res
    if _is_pointwise(w.shape, strides, pads):
        dx = jnp.matmul(g, w[0, 0].T, precision=precision)
        dw = jnp.matmul(x.reshape(-1, x.shape[-1]).T, g.reshape(-1, g.shape[-1]),
                        precision=precision)
        return dx, dw.reshape(w.shape).astype(w.dtype)
    dx = jax.vjp(lambda v: _lax_conv(v, w, strides, pads, precision), x)[1](g)[0]

    def xla_grad(x, g):
        return jax.vjp(lambda v: _lax_conv(x, v, strides, pads, precision), w)[1](g)[0]

    rows = g.shape[0] * g.shape[1] * g.shape[2]
    if rows < MATMUL_GRAD_MIN_ROWS or rows * x.shape[-1] * 4 > MATMUL_GRAD_MAX_SLICE_BYTES:
        return dx, xla_grad(x, g)
    dw = jax.lax.platform_dependent(
        x, g, cpu=lambda x, g: _kernel_grad_matmul(x, g, w.shape, strides, pads, precision),
        default=xla_grad)
    return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def _pads(padding, in_hw: Sequence[int], k_hw: Sequence[int], strides: Sequence[int]) -> tuple:
    if isinstance(padding, str):
        return tuple(tuple(p) for p in jax.lax.padtype_to_pads(in_hw, k_hw, strides, padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv2d(x: Array, kernel: Array, strides: Sequence[int] = (1, 1), padding="SAME",
           precision=None) -> Array:
    """A 2-D convolution of NHWC images with an HWIO kernel (CPU-tuned kernel gradient).

    Args:
        x: ``[B, H, W, Cin]``.
        kernel: ``[kh, kw, Cin, Cout]``.
        strides: ``(sh, sw)``.
        padding: ``"SAME"``, ``"VALID"`` or ``((top, bottom), (left, right))``.
        precision: passed to the convolution / matmuls (``None``: the default).

    Returns:
        ``[B, OH, OW, Cout]``, equal to ``jax.lax.conv_general_dilated(x, kernel, strides,
        padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))``; its gradients equal that
        function's to float round-off.
    """
    strides = tuple(int(s) for s in strides)
    pads = _pads(padding, x.shape[1:3], kernel.shape[:2], strides)
    return _conv(x, kernel, strides, pads, precision)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
    """Drop-in ``jax.lax.conv_general_dilated`` for ``flax.linen.Conv``.

    Plain NHWC/HWIO convolutions go through :func:`conv2d`; anything else (dilations, groups,
    other layouts, ``preferred_element_type``) goes to ``jax.lax.conv_general_dilated``
    unchanged. Same arguments and result as that function.
    """
    plain = (lhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
             and preferred_element_type is None
             and all(d == 1 for d in (lhs_dilation or (1, 1)))
             and all(d == 1 for d in (rhs_dilation or (1, 1)))
             and dimension_numbers is not None
             and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN)
             == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers))
    if plain:
        return conv2d(lhs, rhs, window_strides, padding, precision)
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type)


class _FusedConv(nn.Module):
    """Fields of the fused convolutions below (those of ``nn.Conv``).

    Attributes:
        features: Cout.
        use_bias: add a bias.
        kernel_init: initialiser of the kernel (``[4, 4, Cin, Cout]`` for
            :class:`ConvTranspose4s2`, ``[3, 3, Cin, Cout]`` for the others).
        bias_init: initialiser of the ``[Cout]`` bias.
        dtype: compute dtype (``nn.Conv``'s ``dtype``): input and kernel are cast to it and
            the output has it; None = the promoted dtype of input and kernel (float32). The
            parameters stay float32 either way.
    """

    features: int
    use_bias: bool = True
    kernel_init: Initializer = jax.nn.initializers.lecun_normal()
    bias_init: Initializer = jax.nn.initializers.zeros
    dtype: Any = None

    def _promote(self, x: Array, kernel: Array) -> tuple[Array, Array]:
        """``x`` and ``kernel`` in the compute dtype (flax's ``promote_dtype``, as ``nn.Conv``)."""
        return nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)


# ------------------------------------------------------------------------------------------------
# Transposed convolution
# ------------------------------------------------------------------------------------------------


# Sub-pixel decomposition of a 4x4 stride-2 padding-1 transposed conv. Output row 2m+a (phase a)
# receives input rows m-1, m, m+1 (offset index 0, 1, 2) through kernel rows:
#   a = 0: offset 0 -> k=3, offset 1 -> k=1;   a = 1: offset 1 -> k=2, offset 2 -> k=0
# (from o = 2*i + k - 1). Same for columns.
_PHASE_TAPS = ({0: 3, 1: 1}, {1: 2, 2: 0})


class ConvTranspose4s2(_FusedConv):
    """4x4 stride-2 padding-1 transposed convolution (``torch.nn.ConvTranspose2d(k=4, s=2, p=1)``).

    ``out[2i + k - 1] += x[i] * kernel[k]`` per spatial axis, so ``[B, H, W, Cin]`` ->
    ``[B, 2H, 2W, Cout]``. Computed as one 3x3 stride-1 convolution producing the four output
    phases (an assembled ``[3, 3, Cin, 4*Cout]`` kernel with structural zeros) followed by a
    depth-to-space shuffle. On XLA:CPU this is several times faster to differentiate than
    ``nn.ConvTranspose`` (whose lhs-dilated gradient convolutions are slow); the result is the same.

    Fields: those of :class:`_FusedConv`.
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Applies the transposed convolution.

        Args:
            x: ``[B, H, W, Cin]``.

        Returns:
            ``[B, 2H, 2W, Cout]``.
        """
        cin, cout = x.shape[-1], self.features
        kernel = self.param("kernel", self.kernel_init, (4, 4, cin, cout))
        x, kernel = self._promote(x, kernel)
        zero = jnp.zeros((cin, cout), kernel.dtype)
        phases = []
        for rows in _PHASE_TAPS:
            for cols in _PHASE_TAPS:
                phases.append(
                    jnp.stack(
                        [
                            jnp.stack(
                                [
                                    kernel[rows[i], cols[j]] if (i in rows and j in cols) else zero
                                    for j in range(3)
                                ]
                            )
                            for i in range(3)
                        ]
                    )
                )
        full = jnp.stack(phases, axis=-2).reshape(3, 3, cin, 4 * cout)  # channels (a, b, Cout)
        y = conv_general_dilated(
            x, full, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        b, h, w, _ = y.shape
        y = y.reshape(b, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
        y = y.reshape(b, 2 * h, 2 * w, cout)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (cout,)).astype(y.dtype)
        return y


# ------------------------------------------------------------------------------------------------
# Nearest x2 upsampling followed by a 3x3 convolution, without the upsampled copy
# ------------------------------------------------------------------------------------------------

# After a nearest x2 upsampling, output row 2m + a of a 3x3 "SAME" convolution reads upsampled
# rows 2m + a - 1, 2m + a, 2m + a + 1, i.e. input rows (m - 1, m, m) for phase a = 0 and
# (m, m, m + 1) for a = 1. Per phase the 3 kernel rows therefore fold into 2 taps on the input:
#   a = 0: input offset -1 <- k0, offset 0 <- k1 + k2;   a = 1: offset 0 <- k0 + k1, +1 <- k2
# (the zero row padding of the upsampled image is the zero padding of the input). Same per column.
_UP_FOLD = (((0,), (1, 2)), ((0, 1), (2,)))  # phase -> (kernel rows of tap 0, of tap 1)
_UP_PAD = ((1, 0), (0, 1))  # phase -> (low, high) padding of the 2-tap convolution


class UpsampleConv3x3(_FusedConv):
    """Nearest-neighbour x2 upsampling then a 3x3 stride-1 ``SAME`` convolution, fused.

    Equals ``nn.Conv(features, (3, 3))(upsample2x(x))`` (the SNGAN / BigGAN ``GenBlock``'s
    ``upsample_conv``; Miyato et al. 2018 appendix B) up to float rounding: the four output
    phases ``(a, b)`` of the upsampled grid each read a 2x2 neighbourhood of the input, so the
    layer runs four 2x2 convolutions on the low-resolution input, with kernels summed from the
    3x3 kernel's taps (``_UP_FOLD``), and interleaves them (depth-to-space). That is 16 instead
    of 36 multiply-adds per input pixel and channel pair (0.44x the FLOPs of the plain
    convolution on the upsampled map, forward and backward), and no upsampled copy of the
    input. The parameters are those of ``nn.Conv`` (``kernel [3, 3, Cin, Cout]``, ``bias``),
    so checkpoints, masks and spectral norm see the same tree.

    Fields: those of :class:`_FusedConv`.
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Applies upsample-then-convolve.

        Args:
            x: ``[B, H, W, Cin]``.

        Returns:
            ``[B, 2H, 2W, Cout]``.
        """
        cin, cout = x.shape[-1], self.features
        x, kernel = self._promote(x, self.param("kernel", self.kernel_init, (3, 3, cin, cout)))
        rows = [jnp.stack([sum(kernel[i] for i in taps) for taps in fold]) for fold in _UP_FOLD]
        outs = []
        for a in range(2):
            for b in range(2):
                k = rows[a]  # [2, 3, Cin, Cout]: folded rows, original columns
                k = jnp.stack([sum(k[:, j] for j in taps) for taps in _UP_FOLD[b]], axis=1)
                outs.append(conv_general_dilated(
                    x, k, (1, 1), (_UP_PAD[a], _UP_PAD[b]),
                    dimension_numbers=("NHWC", "HWIO", "NHWC")))
        bsz, h, w, _ = x.shape
        y = jnp.stack(outs, axis=3).reshape(bsz, h, w, 2, 2, cout)  # [.., (a, b), C]
        y = y.transpose(0, 1, 3, 2, 4, 5).reshape(bsz, 2 * h, 2 * w, cout)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (cout,)).astype(y.dtype)
        return y


class PoolableConv3x3(_FusedConv):
    """A 3x3 stride-1 ``SAME`` convolution that can fuse a following 2x2 average pooling.

    ``layer(x)`` is ``nn.Conv(features, (3, 3))(x)``; ``layer(x, pool=True)`` equals
    ``avg_pool_2x2(layer(x))`` (the SNGAN / BigGAN discriminator blocks' ``conv2`` then
    ``_downsample``; Miyato et al. 2018 appendix B) up to float rounding, computed as one 4x4
    stride-2 convolution (padding 1) whose kernel is the 3x3 kernel box-filtered by the 2x2
    pooling window: ``k4[t] = (k3[t] + k3[t - 1]) / 4`` per axis (with ``k3`` zero outside
    0..2). That is 4 instead of 9 multiply-adds per input pixel and channel pair (0.44x the
    FLOPs, forward and backward) and no full-resolution output. The parameters are those of
    ``nn.Conv`` (``kernel [3, 3, Cin, Cout]``, ``bias``).

    Fields: those of :class:`_FusedConv`.
    """

    @nn.compact
    def __call__(self, x: Array, pool: bool = False, full: bool = False):
        """Applies the convolution (and the pooling when ``pool``).

        Args:
            x: ``[B, H, W, Cin]`` (H, W even when ``pool``).
            pool: fuse a 2x2 stride-2 average pooling of the output.
            full: with ``pool``, also return the unpooled output (one call, so a spectrally
                normalised layer uses one sigma for both).

        Returns:
            ``[B, H, W, Cout]``, or ``[B, H/2, W/2, Cout]`` when ``pool``, or the pair
            ``(pooled, unpooled)`` when ``pool`` and ``full``.
        """
        cin, cout = x.shape[-1], self.features
        x, kernel = self._promote(x, self.param("kernel", self.kernel_init, (3, 3, cin, cout)))
        dn = ("NHWC", "HWIO", "NHWC")
        if pool:
            z = (0, 0)
            k = jnp.pad(kernel, ((0, 1), z, z, z)) + jnp.pad(kernel, ((1, 0), z, z, z))
            k = jnp.pad(k, (z, (0, 1), z, z)) + jnp.pad(k, (z, (1, 0), z, z))  # [4, 4, ..]
            y = conv_general_dilated(x, 0.25 * k, (2, 2), ((1, 1), (1, 1)),
                                             dimension_numbers=dn)
        if not pool or full:
            y_full = conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                                  dimension_numbers=dn)
        bias = self.param("bias", self.bias_init, (cout,)) if self.use_bias else None
        add = (lambda v: v + bias.astype(v.dtype)) if bias is not None else (lambda v: v)
        if not pool:
            return add(y_full)
        return (add(y), add(y_full)) if full else add(y)


__all__ = ["MATMUL_GRAD_MAX_SLICE_BYTES", "MATMUL_GRAD_MIN_ROWS", "ConvTranspose4s2",
           "PoolableConv3x3", "UpsampleConv3x3", "conv2d", "conv_general_dilated"]
