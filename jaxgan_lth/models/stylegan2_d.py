"""StyleGAN2's resnet discriminator (Karras et al., CVPR 2020; config F, ``architecture='resnet'``).

NVIDIA's stylegan2-ada-pytorch ``training/networks.py`` (``DiscriminatorBlock``,
``DiscriminatorEpilogue``, ``Discriminator``) in NHWC, built from
:mod:`jaxgan_lth.models.sg2_ops`; the generator and the layout of the whole pair are in
:mod:`jaxgan_lth.models.stylegan2`, whose ``build_stylegan2`` is the registry entry::

    b_r: conv_rgb (1x1, lrelu) at full resolution; every block b_s (s = r..8):
    skip = 1x1 conv with FIR 2x downsampling, no bias, gain sqrt(1/2); conv0 3x3 lrelu;
    conv1 3x3 with FIR 2x downsampling, lrelu, gain sqrt(1/2); x = skip + conv1.
    Epilogue at 4x4: minibatch stddev (group 4, 1 feature) -> conv 3x3 lrelu -> flatten ->
    linear_fc (ch(4), lrelu) = features [B, ch(4)] -> perturb('d_features') -> linear_out (1).
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan_lth.models import sg2_ops as ops
from jaxgan_lth.models.base import D_PERTURB, noise_point
from jaxgan_lth.models.sg2_ops import channels_at

Array = jax.Array


class DBlock(nn.Module):
    """Residual D block with FIR 2x downsampling (``DiscriminatorBlock``, architecture resnet).

    NICE's noise points (:func:`~jaxgan_lth.models.base.noise_point`, variable ``beta``) follow
    conv0, conv1 and the skip conv, as in NICE's pipeline figure.

    Attributes:
        tmp_channels: ch(s).
        out_channels: ch(s/2).
        first: has the FromRGB layer ``conv_rgb``.
        dtype: compute dtype.
    """

    tmp_channels: int
    out_channels: int
    first: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, s, s, Cin]`` (the image for the first block) -> ``[B, s/2, s/2, out]``."""
        dt = self.dtype
        if self.first:
            x = ops.EqualizedConv(self.tmp_channels, 1, dtype=dt, name="conv_rgb")(x)
        g = math.sqrt(0.5)
        y = ops.EqualizedConv(self.out_channels, 1, down=2, activation="linear", use_bias=False,
                              dtype=dt, name="conv_skip")(x, gain=g)
        y = noise_point(self, "beta", y)
        x = noise_point(self, "beta", ops.EqualizedConv(self.tmp_channels, 3, dtype=dt,
                                                        name="conv0")(x))
        x = ops.EqualizedConv(self.out_channels, 3, down=2, dtype=dt, name="conv1")(x, gain=g)
        return y + noise_point(self, "beta", x)


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 resnet discriminator; ``features`` / ``head`` / ``__call__`` as every model.

    Attributes:
        resolution: r.
        in_channels: image channels.
        channel_base: ``ch(s) = min(channel_base // s, channel_max)``.
        channel_max: channel cap (the config's ``d_channels``).
        mbstd_group: minibatch-stddev group size (reference 4).
        mbstd_features: minibatch-stddev features (reference 1).
        num_classes: always 0 (unconditional).
        dtype: compute dtype (features and logits float32).
    """

    resolution: int = 256
    in_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_features: int = 1
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32

    def _ch(self, s: int) -> int:
        return channels_at(s, self.channel_base, self.channel_max)

    @property
    def block_resolutions(self) -> list[int]:
        """r, r/2, ..., 8."""
        return [2 ** i for i in range(int(math.log2(self.resolution)), 2, -1)]

    @property
    def feature_dim(self) -> int:
        """Size F = ch(4) of the features ``[B, F]`` (output of ``linear_fc``)."""
        return self._ch(4)

    @property
    def noise_paths(self) -> tuple[tuple[str, ...], ...]:
        """NICE's noise blocks, first first: residual blocks ``blocks_b<r>`` .. ``blocks_b8``."""
        return tuple((f"blocks_b{s}", "beta") for s in self.block_resolutions)

    def setup(self):
        """Creates the residual blocks and the epilogue ``conv``, ``linear_fc``, ``linear_out``."""
        dt = self.dtype
        self.blocks = {
            f"b{s}": DBlock(self._ch(s), self._ch(s // 2), first=(s == self.resolution), dtype=dt)
            for s in self.block_resolutions
        }
        c4 = self._ch(4)
        self.conv = ops.EqualizedConv(c4, 3, dtype=dt)
        self.linear_fc = ops.EqualizedDense(c4, "lrelu", dtype=dt)
        self.linear_out = ops.EqualizedDense(1, dtype=dt)

    def features(self, x: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """Features before the output FC.

        Args:
            x: images ``[B, r, r, C]`` in [-1, 1].
            y: labels (ignored: unconditional).
            train: the minibatch-stddev batch rule (see :func:`~jaxgan_lth.models.sg2_ops.
                minibatch_std`); D has no statistics to update.

        Returns:
            float32 ``[B, F]``, ``F = feature_dim``.

        Raises:
            ValueError: a wrong image size, or (train) a batch not a multiple of the group.
        """
        del y
        if x.shape[1:3] != (self.resolution, self.resolution):
            raise ValueError(f"stylegan2 D expects [B, {self.resolution}, {self.resolution}, C] "
                             f"images, got {x.shape}")
        h = x.astype(self.dtype)
        for s in self.block_resolutions:
            h = self.blocks[f"b{s}"](h)
        h = ops.minibatch_std(h, self.mbstd_group, self.mbstd_features, train)
        h = self.conv(h)
        h = self.linear_fc(h.reshape(h.shape[0], -1))
        return h.astype(jnp.float32)

    def head(self, h: Array, y: Optional[Array] = None) -> Array:
        """Output FC: features ``[B, F]`` -> logits ``[B]`` (float32)."""
        del y
        return self.linear_out(h)[:, 0].astype(jnp.float32)

    def __call__(self, x: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """Logits ``head(perturb('d_features', features(x)))``: ``[B, r, r, C]`` -> ``[B]``."""
        h = self.features(x, y, train)
        if not self.is_initializing():
            h = self.perturb(D_PERTURB, h)
        return self.head(h, y)
