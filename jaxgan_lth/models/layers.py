"""Shared building blocks of the model zoo.

Initialisers, (spectrally normalised) layer factories, conditional batch normalisation and SAGAN
self-attention.

Conventions used by every model in :mod:`jaxgan_lth.models`:

* Images and feature maps are NHWC, ``[B, H, W, C]``.
* Module names follow the pruning contract: every convolution is named ``conv*`` (and nothing else
  is), dense layers ``linear*``, embeddings ``embed*``, normalisations ``bn*``. The prunable conv
  kernels are therefore exactly the params matched by :data:`PRUNABLE_KERNEL_REGEX`.
* Spectral normalisation uses :class:`flax.linen.SpectralNorm` (one power iteration per call, as
  ``torch.nn.utils.spectral_norm``). Its ``u`` vector and ``sigma`` live in the ``batch_stats``
  collection under ``<layer>/layer_instance/<param>/{u,sigma}``; they are written only when the
  layer is called with ``update_stats=True`` (the models pass ``update_stats=train``).
  Differences to PyTorch, both negligible in practice: flax normalises ``x * rsqrt(|x|^2 + eps)``
  where torch divides by ``max(|x|, eps)``, and in eval mode flax still runs one (unstored) power
  iteration from the stored ``u`` whereas torch reuses the stored ``u, v`` unchanged.
* BatchNorm momentum: torch's ``momentum=0.1`` is flax's ``momentum=0.9``.
* Compute dtype (``LayerConfig.dtype``, the models' ``model.dtype``): convolutions, linears,
  embeddings and batch norms take flax's ``dtype`` (inputs and weights cast to it, output in
  it) while every parameter and statistic stays float32 (``param_dtype``): batch-norm mean and
  variance are reduced in float32 (flax's ``force_float32_reductions``) and kept as float32
  running averages, and the spectral-norm power iteration (``u``, ``sigma`` and the normalised
  weight) runs in float32 on the float32 weight, which the wrapped layer then casts. The
  mixed-precision recipe of Micikevicius et al., "Mixed Precision Training" (ICLR 2018): float32
  master weights, low-precision forward and backward passes; no loss scaling, as bfloat16 has
  float32's exponent range.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan_lth.models import conv_ops
from jaxgan_lth.models.conv_ops import ConvTranspose4s2, PoolableConv3x3, UpsampleConv3x3

Array = jax.Array
Initializer = Callable[..., Array]

#: Regex over '/'-joined parameter paths that selects exactly the convolution kernels (the weights
#: the lottery-ticket code prunes). ``layer_instance/`` appears when the conv is spectrally
#: normalised.
PRUNABLE_KERNEL_REGEX = r".*conv[^/]*/(layer_instance/)?kernel$"

INIT_SCHEMES = ("xavier", "ortho", "dcgan")


# ------------------------------------------------------------------------------------------------
# Initialisers
# ------------------------------------------------------------------------------------------------


def xavier_uniform() -> Initializer:
    """Glorot/Xavier-uniform with gain 1: U(-a, a), a = sqrt(6 / (fan_in + fan_out)).

    For a flax conv kernel ``[kh, kw, in, out]`` the fans are ``in*kh*kw`` and ``out*kh*kw``, the
    same as ``torch.nn.init.xavier_uniform_`` on a ``[out, in, kh, kw]`` weight.
    """
    return jax.nn.initializers.xavier_uniform()


def torch_default_kernel() -> Initializer:
    """PyTorch's default ``nn.Linear``/``nn.Conv2d`` weight init: kaiming_uniform(a=sqrt(5)).

    The bound is ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + 5))``, i.e.
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` = variance scaling 1/3, fan_in, uniform.
    """
    return jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int) -> Initializer:
    """PyTorch's default bias init ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Args:
        fan_in: input fan of the layer (``in_features`` or ``in_channels * kh * kw``).
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def normal_around_one(stddev: float = 0.02) -> Initializer:
    """BatchNorm scale init ``N(1, stddev^2)`` (DCGAN / SNGAN reference ``weights_init``)."""

    def init(key, shape, dtype=jnp.float32):
        return 1.0 + stddev * jax.random.normal(key, shape, dtype)

    return init


def orthogonal() -> Initializer:
    """Orthogonal init (``torch.nn.init.orthogonal_``, gain 1).

    The kernel is viewed as a ``[prod(shape[:-1]), shape[-1]]`` matrix (for a conv
    ``[kh*kw*in, out]``, the transpose of torch's ``[out, in*kh*kw]`` view); its columns (or rows,
    whichever are fewer) are orthonormal.
    """
    return jax.nn.initializers.orthogonal(scale=1.0, column_axis=-1)


# ------------------------------------------------------------------------------------------------
# Layer factory
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """How an architecture builds its layers (spectral norm, init scheme, BatchNorm constants).

    Attributes:
        spectral_norm: wrap convs / linears / projection embeddings in ``nn.SpectralNorm``.
        sn_eps: epsilon of the power iteration's l2-normalisation (torch default 1e-12;
            StudioGAN uses 1e-6).
        init: ``"xavier"`` (SNGAN reference: Xavier-uniform conv kernels, PyTorch-default conv
            biases and linear layers), ``"ortho"`` (StudioGAN/BigGAN: orthogonal kernels and
            embeddings, zero biases) or ``"dcgan"`` (N(0, 0.02) kernels, zero biases).
        bn_eps: BatchNorm epsilon.
        bn_momentum: flax BatchNorm momentum (= 1 - torch momentum).
        bn_scale_normal: initialise affine BatchNorm scales as N(1, 0.02) instead of ones.
        dtype: compute dtype of the layers (``jnp.float32`` or ``jnp.bfloat16``); None = flax's
            default (the float32 of the inputs and parameters). Parameters, batch-norm
            statistics and spectral-norm state stay float32 (see the module docstring).
    """

    spectral_norm: bool = False
    sn_eps: float = 1e-12
    init: str = "xavier"
    bn_eps: float = 1e-5
    bn_momentum: float = 0.9
    bn_scale_normal: bool = False
    dtype: Any = None

    def __post_init__(self):
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"init must be one of {INIT_SCHEMES}, got {self.init!r}")

    def replace(self, **changes) -> "LayerConfig":
        """Returns a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    # -- initialisers ------------------------------------------------------------------------------

    def _kernel_init(self, kind: str) -> Initializer:
        if self.init == "ortho":
            return orthogonal()
        if self.init == "dcgan":
            return jax.nn.initializers.normal(0.02)
        return xavier_uniform() if kind == "conv" else torch_default_kernel()

    def _bias_init(self, fan_in: int) -> Initializer:
        if self.init == "xavier":
            return torch_default_bias(fan_in)
        return jax.nn.initializers.zeros

    def _dtype_kwargs(self) -> dict:
        """``{"dtype": self.dtype}``, or ``{}`` for None (each layer's own default)."""
        return {} if self.dtype is None else {"dtype": self.dtype}

    def _wrap(self, layer: nn.Module, spectral_norm: bool | None) -> nn.Module:
        use_sn = self.spectral_norm if spectral_norm is None else spectral_norm
        if use_sn:
            return nn.SpectralNorm(layer, n_steps=1, epsilon=self.sn_eps)
        return layer

    # -- layers ------------------------------------------------------------------------------------

    def conv(
        self,
        in_features: int,
        features: int,
        kernel_size: int,
        *,
        strides: int = 1,
        padding: Any = "SAME",
        use_bias: bool = True,
        transpose: bool = False,
        upsample: bool = False,
        poolable: bool = False,
        spectral_norm: bool | None = None,
    ) -> nn.Module:
        """A (spectrally normalised) ``nn.Conv`` / ``nn.ConvTranspose`` with this scheme's init.

        Args:
            in_features: input channels (only used for the PyTorch-default bias bound).
            features: output channels.
            kernel_size: square kernel size.
            strides: square stride.
            padding: flax padding spec.
            use_bias: add a bias.
            transpose: build a :class:`ConvTranspose4s2` (needs ``kernel_size=4, strides=2``).
            upsample: build an :class:`UpsampleConv3x3` (nearest x2 upsampling fused into the
                convolution; needs ``kernel_size=3``, ``strides=1``, ``padding="SAME"``).
            poolable: build a :class:`PoolableConv3x3` (call it with ``pool=True`` to fuse a
                following 2x2 average pooling; same requirements as ``upsample``).
            spectral_norm: override ``self.spectral_norm`` for this layer.

        Returns:
            The module; call it through :func:`call_layer`.
        """
        kernel_init = self._kernel_init("conv")
        bias_init = self._bias_init(in_features * kernel_size * kernel_size)
        if transpose:
            if kernel_size != 4 or strides != 2:
                raise ValueError("only 4x4 stride-2 transposed convs are supported")
            layer = ConvTranspose4s2(
                features, use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init,
                **self._dtype_kwargs())
        elif poolable:
            if kernel_size != 3 or strides != 1 or padding != "SAME":
                raise ValueError(
                    "poolable=True fuses 2x2 average pooling into a 3x3 stride-1 SAME conv; "
                    f"got kernel_size={kernel_size}, strides={strides}, padding={padding!r}")
            layer = PoolableConv3x3(
                features, use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init,
                **self._dtype_kwargs())
        elif upsample:
            if kernel_size != 3 or strides != 1 or padding != "SAME":
                raise ValueError(
                    "upsample=True fuses nearest x2 upsampling into a 3x3 stride-1 SAME conv; "
                    f"got kernel_size={kernel_size}, strides={strides}, padding={padding!r}")
            layer = UpsampleConv3x3(
                features, use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init,
                **self._dtype_kwargs())
        else:
            layer = nn.Conv(
                conv_general_dilated=conv_ops.conv_general_dilated,
                features=features,
                kernel_size=(kernel_size, kernel_size),
                strides=(strides, strides),
                padding=padding,
                use_bias=use_bias,
                kernel_init=kernel_init,
                bias_init=bias_init,
                **self._dtype_kwargs(),
            )
        return self._wrap(layer, spectral_norm)

    def dense(
        self,
        in_features: int,
        features: int,
        *,
        use_bias: bool = True,
        spectral_norm: bool | None = None,
    ) -> nn.Module:
        """A (spectrally normalised) ``nn.Dense`` with this scheme's init (see ``conv``)."""
        layer = nn.Dense(
            features,
            use_bias=use_bias,
            kernel_init=self._kernel_init("dense"),
            bias_init=self._bias_init(in_features),
            **self._dtype_kwargs(),
        )
        return self._wrap(layer, spectral_norm)

    def embed(
        self,
        num_embeddings: int,
        features: int,
        *,
        spectral_norm: bool | None = None,
        embedding_init: Initializer | None = None,
    ) -> nn.Module:
        """A (spectrally normalised) ``nn.Embed`` table ``[num_embeddings, features]``.

        Default init: orthogonal for ``"ortho"``, N(0, 0.02) for ``"dcgan"``, N(0, 1) (PyTorch's
        ``nn.Embedding`` default) for ``"xavier"``.
        """
        if embedding_init is None:
            embedding_init = {
                "ortho": orthogonal(),
                "dcgan": jax.nn.initializers.normal(0.02),
                "xavier": jax.nn.initializers.normal(1.0),
            }[self.init]
        layer = nn.Embed(num_embeddings, features, embedding_init=embedding_init,
                         **self._dtype_kwargs())
        return self._wrap(layer, spectral_norm)

    def batch_norm(self, *, affine: bool = True) -> nn.BatchNorm:
        """``nn.BatchNorm`` with this config's epsilon / momentum / scale init.

        Call it as ``bn(x, use_running_average=not train)``.
        """
        scale_init = normal_around_one(0.02) if self.bn_scale_normal else jax.nn.initializers.ones
        return nn.BatchNorm(
            epsilon=self.bn_eps,
            momentum=self.bn_momentum,
            use_scale=affine,
            use_bias=affine,
            scale_init=scale_init,
            **self._dtype_kwargs(),
        )


def call_layer(layer: nn.Module, x: Array, *, update_stats: bool, **kwargs) -> Array:
    """Applies ``layer`` to ``x``; passes ``update_stats`` if it is an ``nn.SpectralNorm``.

    Args:
        layer: a module built by :class:`LayerConfig`.
        x: its input.
        update_stats: whether spectral-norm power-iteration state (``u``, ``sigma``) is written.
        **kwargs: passed to the layer's call (e.g. ``pool=True`` of :class:`PoolableConv3x3`).

    Returns:
        The layer's output.
    """
    if isinstance(layer, nn.SpectralNorm):
        return layer(x, update_stats=update_stats, **kwargs)
    return layer(x, **kwargs)


# ------------------------------------------------------------------------------------------------
# Resampling
# ------------------------------------------------------------------------------------------------


def upsample2x(x: Array) -> Array:
    """Nearest-neighbour x2 upsampling of ``[B, H, W, C]`` -> ``[B, 2H, 2W, C]``.

    One broadcast + reshape (a single copy; its gradient is one reduction over the 2x2 copies)
    rather than two ``jnp.repeat`` passes.
    """
    b, h, w, c = x.shape
    return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(
        b, 2 * h, 2 * w, c)


def downsample2x(x: Array) -> Array:
    """2x2 average pooling (stride 2) of ``[B, H, W, C]`` -> ``[B, H/2, W/2, C]``."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


# ------------------------------------------------------------------------------------------------
# Conditional BatchNorm and self-attention
# ------------------------------------------------------------------------------------------------


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine parameters, then per-sample ``gain * x_hat + bias``.

    Two modes:

    * ``"linear"`` (BigGAN, StudioGAN ``ConditionalBatchNorm2d_for_skip_and_shared``): ``cond`` is a
      float vector ``[B, D]`` (shared class embedding concatenated with a z chunk);
      ``gain = 1 + linear_gain(cond)``, ``bias = linear_bias(cond)`` with bias-free (SN) linears.
    * ``"embed"`` (cBN of Miyato & Koyama 2018 / StudioGAN ``ConditionalBatchNorm2d``): ``cond`` is
      int labels ``[B]``; ``gain = 1 + embed_gain[y]``, ``bias = embed_bias[y]``, tables
      initialised to zero so the layer starts as plain BatchNorm.

    Attributes:
        features: channels C of the normalised input.
        cfg: layer config (BN constants, SN, init).
        mode: ``"linear"`` or ``"embed"``.
        cond_dim: D, input size of the linear maps (``"linear"`` mode).
        num_classes: number of classes (``"embed"`` mode).
    """

    features: int
    cfg: LayerConfig
    mode: str = "linear"
    cond_dim: int = 0
    num_classes: int = 0

    def setup(self):
        """Creates the affine-free ``bn`` and the gain / bias maps of ``mode``.

        Raises:
            ValueError: ``mode`` is not ``"linear"`` or ``"embed"``.
        """
        self.bn = self.cfg.batch_norm(affine=False)
        if self.mode == "linear":
            self.linear_gain = self.cfg.dense(self.cond_dim, self.features, use_bias=False)
            self.linear_bias = self.cfg.dense(self.cond_dim, self.features, use_bias=False)
        elif self.mode == "embed":
            zeros = jax.nn.initializers.zeros
            self.embed_gain = self.cfg.embed(
                self.num_classes, self.features, spectral_norm=False, embedding_init=zeros
            )
            self.embed_bias = self.cfg.embed(
                self.num_classes, self.features, spectral_norm=False, embedding_init=zeros
            )
        else:
            raise ValueError(f"mode must be 'linear' or 'embed', got {self.mode!r}")

    def __call__(self, x: Array, cond: Array, train: bool = True) -> Array:
        """Normalises ``x`` and applies the conditional affine transform.

        Args:
            x: ``[B, H, W, C]``.
            cond: ``[B, D]`` float (``"linear"``) or ``[B]`` int32 labels (``"embed"``).
            train: batch statistics (and running-average / SN updates) if True, else running
                averages.

        Returns:
            ``[B, H, W, C]``.
        """
        h = self.bn(x, use_running_average=not train)
        if self.mode == "linear":
            gain = 1.0 + call_layer(self.linear_gain, cond, update_stats=train)
            bias = call_layer(self.linear_bias, cond, update_stats=train)
        else:
            gain = 1.0 + self.embed_gain(cond)
            bias = self.embed_bias(cond)
        return h * gain[:, None, None, :] + bias[:, None, None, :]


class SelfAttention(nn.Module):
    """SAGAN self-attention block (Zhang et al. 2019) as in StudioGAN's ``Self_Attn``.

    ``theta = conv_theta(x)`` (C/8), ``phi = maxpool2(conv_phi(x))`` (C/8),
    ``g = maxpool2(conv_g(x))`` (C/2); ``attn = softmax_j(theta_i . phi_j)`` over the H*W/4 pooled
    positions; ``out = x + gamma * conv_o(attn @ g)`` with the learned scalar ``gamma`` initialised
    to 0 (so the block starts as the identity). All four 1x1 convs are bias-free.

    Attributes:
        channels: C (must be divisible by 8; H and W must be even).
        cfg: layer config (SN, init).
    """

    channels: int
    cfg: LayerConfig

    def setup(self):
        """Creates the four bias-free 1x1 convs and the scalar ``gamma`` (initialised to 0).

        Raises:
            ValueError: ``channels`` not divisible by 8.
        """
        c = self.channels
        if c % 8:
            raise ValueError(f"SelfAttention channels must be divisible by 8, got {c}")
        self.conv_theta = self.cfg.conv(c, c // 8, 1, use_bias=False)
        self.conv_phi = self.cfg.conv(c, c // 8, 1, use_bias=False)
        self.conv_g = self.cfg.conv(c, c // 2, 1, use_bias=False)
        self.conv_o = self.cfg.conv(c // 2, c, 1, use_bias=False)
        self.gamma = self.param("gamma", jax.nn.initializers.zeros, (1,))

    def __call__(self, x: Array, train: bool = True) -> Array:
        """Applies self-attention with a residual connection.

        Args:
            x: ``[B, H, W, C]``, H and W even.
            train: update SN statistics.

        Returns:
            ``[B, H, W, C]`` in ``x``'s dtype (the softmax is computed in float32).
        """
        b, h, w, c = x.shape
        theta = call_layer(self.conv_theta, x, update_stats=train).reshape(b, h * w, c // 8)
        phi = call_layer(self.conv_phi, x, update_stats=train)
        phi = nn.max_pool(phi, (2, 2), strides=(2, 2)).reshape(b, h * w // 4, c // 8)
        g = call_layer(self.conv_g, x, update_stats=train)
        g = nn.max_pool(g, (2, 2), strides=(2, 2)).reshape(b, h * w // 4, c // 2)
        # the softmax in float32 (a no-op for float32 compute; bfloat16 logits would round
        # the attention weights to 8 bits before their normalisation)
        logits = jnp.einsum("bik,bjk->bij", theta, phi)
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(logits.dtype)
        attn_g = jnp.einsum("bij,bjc->bic", attn, g).reshape(b, h, w, c // 2)
        out = self.gamma * call_layer(self.conv_o, attn_g, update_stats=train)
        return x + out.astype(x.dtype)
