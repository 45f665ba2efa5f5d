"""Residual blocks shared by the SNGAN and BigGAN ResNets (32x32 CIFAR variants).

Sources: SNGAN ``GenBlock`` / ``OptimizedDisBlock`` / ``DisBlock`` of
VITA-Group/Ultra-Data-Efficient-GAN-Training ``SNGAN/models/sngan_cifar10.py`` (Miyato et al. 2018,
ResNet of Gulrajani et al. 2017) and StudioGAN ``big_resnet.py`` ``GenBlock`` / ``DiscOptBlock`` /
``DiscBlock`` (SN variants, no BatchNorm in D). Both orderings are identical; they differ only in
normalisation (plain vs. conditional BN), spectral norm and initialisation, which
:class:`~jaxgan_lth.models.layers.LayerConfig` and ``cond_mode`` select.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxgan_lth.models.base import D_NOISE, noise_delta, noise_point
from jaxgan_lth.models.layers import (
    ConditionalBatchNorm,
    LayerConfig,
    call_layer,
    downsample2x,
    upsample2x,
)

Array = jax.Array


class GenBlock(nn.Module):
    """Up-sampling generator block: ``BN-ReLU-up2-conv3-BN-ReLU-conv3`` + ``up2-conv1x1`` shortcut.

    Input ``[B, H, W, in_channels]`` -> output ``[B, 2H, 2W, out_channels]``. Computed without
    upsampled copies, with the reference's results up to float rounding: ``conv1`` is an
    :class:`~jaxgan_lth.models.conv_ops.UpsampleConv3x3` (upsampling fused into the 3x3 conv, 0.44x
    its FLOPs) and the shortcut applies the 1x1 conv before the upsampling (the same values:
    nearest upsampling copies pixels, a 1x1 conv acts per pixel; 0.25x the FLOPs).

    Attributes:
        in_channels: input channels.
        out_channels: output channels (also the hidden width).
        cfg: layer config (SN, init, BN constants).
        cond_mode: ``"none"`` (plain affine BN, SNGAN), ``"linear"`` (BigGAN cBN from a float
            conditioning vector) or ``"embed"`` (cBN from class labels).
        cond_dim: size of the conditioning vector (``"linear"``).
        num_classes: number of classes (``"embed"``).
    """

    in_channels: int
    out_channels: int
    cfg: LayerConfig
    cond_mode: str = "none"
    cond_dim: int = 0
    num_classes: int = 0

    def _bn(self, features: int) -> nn.Module:
        if self.cond_mode == "none":
            return self.cfg.batch_norm()
        return ConditionalBatchNorm(
            features,
            self.cfg,
            mode=self.cond_mode,
            cond_dim=self.cond_dim,
            num_classes=self.num_classes,
        )

    def setup(self):
        """Creates ``bn1``, ``conv1``, ``bn2``, ``conv2`` and the 1x1 shortcut ``conv_sc``."""
        cin, cout = self.in_channels, self.out_channels
        self.bn1 = self._bn(cin)
        self.conv1 = self.cfg.conv(cin, cout, 3, upsample=True)
        self.bn2 = self._bn(cout)
        self.conv2 = self.cfg.conv(cout, cout, 3)
        self.conv_sc = self.cfg.conv(cin, cout, 1)

    def _norm(self, bn: nn.Module, x: Array, cond, train: bool) -> Array:
        if self.cond_mode == "none":
            return bn(x, use_running_average=not train)
        return bn(x, cond, train=train)

    def __call__(self, x: Array, cond=None, train: bool = True) -> Array:
        """Applies the block.

        Args:
            x: features ``[B, H, W, Cin]``.
            cond: conditioning (see ``cond_mode``).
            train: BN batch statistics and SN updates.

        Returns:
            ``[B, 2H, 2W, Cout]``.
        """
        h = nn.relu(self._norm(self.bn1, x, cond, train))
        h = call_layer(self.conv1, h, update_stats=train)  # upsample x2 + conv3x3
        h = nn.relu(self._norm(self.bn2, h, cond, train))
        h = call_layer(self.conv2, h, update_stats=train)
        sc = upsample2x(call_layer(self.conv_sc, x, update_stats=train))
        return h + sc


def _has_noise(block: nn.Module) -> bool:
    """Whether NICE's noise point ``beta`` of ``block`` is active in this call.

    See :func:`~jaxgan_lth.models.base.noise_point`.
    """
    return not block.is_initializing() and block.has_variable(D_NOISE, "beta")


def _conv_then_pool(block: nn.Module, conv: nn.Module, h: Array, train: bool) -> Array:
    """``avg_pool_2x2(noise_point(conv(h)))`` with the conv and the pooling fused.

    The fusion (:class:`~jaxgan_lth.models.conv_ops.PoolableConv3x3`) gives the same values up to
    float rounding. NICE's noise multiplies the full-resolution output ``c``: as
    ``pool(c * (1 + beta * eps)) = pool(c) + pool(beta * eps * c)``, the fused ``pool(c)``
    gets the pooled noise term added, so beta = 0 gives exactly the plain discriminator.
    """
    if not _has_noise(block):
        return call_layer(conv, h, update_stats=train, pool=True)
    pooled, full = call_layer(conv, h, update_stats=train, pool=True, full=True)
    return pooled + downsample2x(noise_delta(block, "beta", full))


class DisOptBlock(nn.Module):
    """First ("optimized") D block: ``conv3-ReLU-conv3-avgpool2`` + ``avgpool2-conv1x1`` shortcut.

    Input ``[B, H, W, in_channels]`` -> output ``[B, H/2, W/2, out_channels]``. No pre-activation
    (the input is the image). NICE's noise point ``beta`` (:func:`~jaxgan_lth.models.base.
    noise_point`) follows ``conv1``, ``conv2`` and ``conv_sc``; a no-op unless passed.

    Attributes:
        in_channels: input (image) channels.
        out_channels: output channels.
        cfg: layer config.
    """

    in_channels: int
    out_channels: int
    cfg: LayerConfig

    def setup(self):
        """Creates ``conv1``, ``conv2`` (a poolable 3x3) and the 1x1 shortcut ``conv_sc``."""
        cin, cout = self.in_channels, self.out_channels
        self.conv1 = self.cfg.conv(cin, cout, 3)
        self.conv2 = self.cfg.conv(cout, cout, 3, poolable=True)
        self.conv_sc = self.cfg.conv(cin, cout, 1)

    def __call__(self, x: Array, train: bool = True) -> Array:
        """Applies the block.

        Args:
            x: images ``[B, H, W, Cin]``.
            train: SN updates.

        Returns:
            ``[B, H/2, W/2, Cout]``.
        """
        h = noise_point(self, "beta", call_layer(self.conv1, x, update_stats=train))
        h = _conv_then_pool(self, self.conv2, nn.relu(h), train)
        sc = call_layer(self.conv_sc, downsample2x(x), update_stats=train)
        return h + noise_point(self, "beta", sc)


class DisBlock(nn.Module):
    """Pre-activation discriminator block: ``ReLU-conv3-ReLU-conv3[-avgpool2]`` + shortcut.

    The shortcut is ``conv1x1[-avgpool2]`` when ``downsample`` or the channel count changes, the
    identity otherwise. Input ``[B, H, W, in_channels]`` -> ``[B, H', W', out_channels]`` with
    ``H' = H/2`` if ``downsample`` else ``H``. (Hidden width = ``out_channels``; the SNGAN reference
    uses ``in_channels``, which is the same for its 128 -> 128 blocks.) NICE's noise point ``beta``
    follows ``conv1``, ``conv2`` and ``conv_sc`` (not an identity shortcut); a no-op unless passed.

    Attributes:
        in_channels: input channels.
        out_channels: output channels.
        downsample: average-pool by 2 at the end of both branches.
        cfg: layer config.
    """

    in_channels: int
    out_channels: int
    downsample: bool
    cfg: LayerConfig

    @property
    def learnable_sc(self) -> bool:
        """Whether the shortcut is a 1x1 conv: ``downsample or in_channels != out_channels``."""
        return self.downsample or self.in_channels != self.out_channels

    def setup(self):
        """Creates ``conv1``, ``conv2`` and, if :attr:`learnable_sc`, the 1x1 ``conv_sc``."""
        cin, cout = self.in_channels, self.out_channels
        self.conv1 = self.cfg.conv(cin, cout, 3)
        self.conv2 = self.cfg.conv(cout, cout, 3, poolable=True)
        if self.learnable_sc:
            self.conv_sc = self.cfg.conv(cin, cout, 1)

    def __call__(self, x: Array, train: bool = True) -> Array:
        """Applies the block.

        Args:
            x: features ``[B, H, W, Cin]``.
            train: SN updates.

        Returns:
            ``[B, H', W', Cout]``.
        """
        h = noise_point(self, "beta", call_layer(self.conv1, nn.relu(x), update_stats=train))
        if self.downsample:
            h = _conv_then_pool(self, self.conv2, nn.relu(h), train)
        else:
            h = noise_point(self, "beta", call_layer(self.conv2, nn.relu(h), update_stats=train))
        sc = x
        if self.learnable_sc:
            sc = noise_point(self, "beta", call_layer(self.conv_sc, x, update_stats=train))
            if self.downsample:
                sc = downsample2x(sc)
        return h + sc
