"""StyleGAN2's synthesis layers (Karras et al., CVPR 2020; config F, ``architecture='skip'``).

NVIDIA's stylegan2-ada-pytorch ``training/networks.py`` (``SynthesisLayer``, ``ToRGBLayer``,
``SynthesisBlock``) in NHWC, built from :mod:`jaxgan_lth.models.sg2_ops`; the generator that
stacks them (mapping, style mixing, truncation, the named perturbation point) and the layout
of the whole pair are in :mod:`jaxgan_lth.models.stylegan2`::

    SynthesisLayer: style = affine(w) (equalized FC, bias init 1) -> modulated 3x3 conv
                    (demodulated; 2x FIR upsampling when up = 2) -> + noise * strength
                    (init 0) -> bias -> lrelu * sqrt(2)
    ToRGB:          1x1 modulated conv, style * 1/sqrt(Cin), no demodulation, bias, linear
    SynthesisBlock: b4: const [4, 4, ch(4)] -> conv1 -> conv_rgb; b8..b_r: conv0 (up 2)
                    -> conv1 -> conv_rgb; img = upsample2d(img) + conv_rgb(x)

Noise maps: ``noise_mode`` ``"random"`` draws fresh ``N(0, 1)`` ``[B, s, s, 1]`` from the
:data:`~jaxgan_lth.models.base.G_NOISE` PRNG stream, ``"const"`` adds the layer's fixed
``noise_const`` buffer, ``"none"`` adds nothing; ``use_noise=False`` builds no noise input.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan_lth.models import sg2_ops as ops
from jaxgan_lth.models.base import G_NOISE

Array = jax.Array


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up) + noise + bias + lrelu (``SynthesisLayer``).

    Attributes:
        features: Cout.
        resolution: output resolution (of the noise maps).
        up: 1 or 2.
        use_noise: add the per-pixel noise input (``noise_strength``, ``noise_const``).
        dtype: compute dtype.
    """

    features: int
    resolution: int
    up: int = 1
    use_noise: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, w: Array, noise_mode: str) -> Array:
        """``[B, s/up, s/up, Cin]``, w ``[B, w_dim]`` -> ``[B, s, s, features]``."""
        cin, r = x.shape[-1], self.resolution
        styles = ops.EqualizedDense(cin, bias_init=1.0, name="linear_affine")(w)
        kernel = self.param("kernel", nn.initializers.normal(1.0), (3, 3, cin, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x = ops.modulated_conv2d(x.astype(self.dtype), kernel.astype(self.dtype),
                                 styles.astype(self.dtype), up=self.up)
        if not self.use_noise:
            return ops.bias_act(x, bias, "lrelu")
        strength = self.param("noise_strength", nn.initializers.zeros, ())
        noise_const = self.variable(
            "batch_stats", "noise_const",
            lambda: jax.random.normal(self.make_rng("params"), (r, r), jnp.float32))
        if noise_mode == "random":
            noise = jax.random.normal(self.make_rng(G_NOISE), (x.shape[0], r, r, 1))
            x = x + (noise * strength).astype(x.dtype)
        elif noise_mode == "const":
            x = x + (noise_const.value[None, :, :, None] * strength).astype(x.dtype)
        return ops.bias_act(x, bias, "lrelu")


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, bias, linear (``ToRGBLayer``).

    Attributes:
        features: image channels.
        dtype: compute dtype.
    """

    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, w: Array) -> Array:
        """``[B, s, s, Cin]`` -> float32 ``[B, s, s, features]``."""
        cin = x.shape[-1]
        styles = ops.EqualizedDense(cin, bias_init=1.0, name="linear_affine")(w)
        styles = styles / math.sqrt(cin)
        kernel = self.param("kernel", nn.initializers.normal(1.0), (1, 1, cin, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = ops.modulated_conv2d(x.astype(self.dtype), kernel.astype(self.dtype),
                                 styles.astype(self.dtype), demodulate=False)
        return ops.bias_act(y.astype(jnp.float32), bias, "linear")


class SynthesisBlock(nn.Module):
    """One resolution of the skip synthesis network (``SynthesisBlock``, architecture skip).

    Attributes:
        features: ch(resolution).
        resolution: s.
        img_channels: image channels.
        first: the 4x4 block (const input, no conv0).
        use_noise: noise inputs in the modulated convs.
        dtype: compute dtype.
    """

    features: int
    resolution: int
    img_channels: int
    first: bool = False
    use_noise: bool = True
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        """Creates ``const`` (first block) or ``conv0``, then ``conv1`` and ``conv_rgb``."""
        s, c = self.resolution, self.features
        if self.first:
            self.const = self.param("const", nn.initializers.normal(1.0), (s, s, c))
        else:
            self.conv0 = SynthesisLayer(c, s, up=2, use_noise=self.use_noise, dtype=self.dtype)
        self.conv1 = SynthesisLayer(c, s, use_noise=self.use_noise, dtype=self.dtype)
        self.conv_rgb = ToRGB(self.img_channels, dtype=self.dtype)

    @property
    def num_conv(self) -> int:
        """Modulated 3x3 convs (1 in the first block, else 2)."""
        return 1 if self.first else 2

    def features_of(self, x: Optional[Array], ws: Array, noise_mode: str) -> Array:
        """Block features: ``x`` ``[B, s/2, s/2, Cin]`` (None for the first), ws ``[B, n, w]``."""
        if self.first:
            x = jnp.broadcast_to(self.const, (ws.shape[0],) + self.const.shape)
            return self.conv1(x, ws[:, 0], noise_mode)
        x = self.conv0(x, ws[:, 0], noise_mode)
        return self.conv1(x, ws[:, 1], noise_mode)

    def rgb(self, x: Array, img: Optional[Array], w: Array) -> Array:
        """Skip image: ``upsample2d(img) + conv_rgb(x, w)`` (float32 ``[B, s, s, C]``)."""
        y = self.conv_rgb(x, w)
        if img is None:
            return y
        return ops.upsample2d(img, ops.fir_filter()) + y
