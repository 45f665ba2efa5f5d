"""SNGAN ResNet for CIFAR-10 32x32, as used by the lottery-ticket code.

Source: VITA-Group/Ultra-Data-Efficient-GAN-Training ``SNGAN/models/sngan_cifar10.py`` (identical in
VITA-Group/GAN-LTH; AutoGAN / sngan.pytorch lineage), summarised in seed_repos.md section 6;
architecture of Miyato et al., "Spectral Normalization for GANs" (ICLR 2018), appendix B.

Generator (no spectral norm), ``g_channels`` = gf_dim = 256, ``latent_dim`` = 128::

    linear_in: z [B, 128] -> [B, 4*4*256] -> reshape [B, 4, 4, 256] -> perturb('g_first')
    block1..3: GenBlock(256 -> 256, up x2)      4 -> 8 -> 16 -> 32
    bn_out -> ReLU -> conv_out (3x3 -> channels) -> tanh      [B, 32, 32, channels]

Discriminator (spectral norm on every conv and on linear_out), ``d_channels`` = df_dim = 128::

    block1: DisOptBlock(channels -> 128)        32 -> 16
    block2: DisBlock(128 -> 128, down)          16 -> 8
    block3, block4: DisBlock(128 -> 128)        8
    ReLU -> sum over H, W -> features [B, 128] -> perturb('d_features') -> linear_out (no bias)

Initialisation (reference ``weights_init`` + PyTorch defaults): conv kernels Xavier-uniform
(gain 1); conv biases PyTorch default U(+-1/sqrt(fan_in)); BatchNorm scale N(1, 0.02), bias 0;
linear layers PyTorch default (weight kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias
U(+-1/sqrt(fan_in))).
BatchNorm eps 1e-5, torch momentum 0.1. Spectral norm: 1 power iteration, eps 1e-12 (torch default).

The reference is unconditional; ``conditional=True`` raises ``ValueError``.

Compute dtype (``dtype="bfloat16"``): G's layers and D's blocks compute in bfloat16 with float32
parameters, batch-norm statistics and spectral-norm state (:mod:`jaxgan_lth.models.layers`); G's
first-layer output (AdvAug's point) and its image, D's pooled features and ``linear_out`` are
float32 (:mod:`jaxgan_lth.models.base`).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan_lth.models.base import G_PERTURB, ProjectionDiscriminator
from jaxgan_lth.models.blocks import DisBlock, DisOptBlock, GenBlock
from jaxgan_lth.models.layers import LayerConfig
from jaxgan_lth.models.registry import (
    ModelPair,
    check_choice,
    check_dtype,
    check_kwargs,
    check_positive_int,
    register_model,
)

Array = jax.Array

G_CONFIG = LayerConfig(spectral_norm=False, init="xavier", bn_eps=1e-5, bn_scale_normal=True)
D_CONFIG = LayerConfig(spectral_norm=True, sn_eps=1e-12, init="xavier")


class SNGANGenerator(nn.Module):
    """SNGAN ResNet generator (unconditional), 32x32.

    Attributes:
        latent_dim: size of z (reference 128).
        channels: hidden width gf_dim (reference 256).
        out_channels: image channels.
        bottom_width: spatial size after the first linear layer (4; 3 up-blocks give 32).
        num_classes: always 0 (unconditional).
        dtype: compute dtype (``jnp.float32`` or ``jnp.bfloat16``); images are float32.
    """

    latent_dim: int = 128
    channels: int = 256
    out_channels: int = 3
    bottom_width: int = 4
    num_classes: int = 0
    dtype: Any = jnp.float32

    def setup(self):
        """Creates ``linear_in``, the three up-sampling blocks and the output BN / conv."""
        c, bw = self.channels, self.bottom_width
        cfg = G_CONFIG.replace(dtype=self.dtype)
        self.linear_in = cfg.dense(self.latent_dim, bw * bw * c)
        self.block1 = GenBlock(c, c, cfg)
        self.block2 = GenBlock(c, c, cfg)
        self.block3 = GenBlock(c, c, cfg)
        self.bn_out = cfg.batch_norm()
        self.conv_out = cfg.conv(c, self.out_channels, 3)

    def __call__(self, z: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """Generates images.

        Args:
            z: latents ``[B, latent_dim]`` ~ N(0, I).
            y: ignored (unconditional model).
            train: BatchNorm batch statistics (apply with ``mutable=['batch_stats']``) if True,
                running averages otherwise.

        Returns:
            float32 images ``[B, 32, 32, out_channels]`` in [-1, 1].
        """
        del y
        bw = self.bottom_width
        h = self.linear_in(z).reshape(z.shape[0], bw, bw, self.channels)
        if not self.is_initializing():  # AdvAug's point in float32 (a no-op for float32)
            h = self.perturb(G_PERTURB, h.astype(jnp.float32))
        h = self.block1(h, train=train)
        h = self.block2(h, train=train)
        h = self.block3(h, train=train)
        h = nn.relu(self.bn_out(h, use_running_average=not train))
        return jnp.tanh(self.conv_out(h).astype(jnp.float32))


class SNGANDiscriminator(ProjectionDiscriminator):
    """SNGAN ResNet discriminator (spectral norm, unconditional), 32x32.

    Attributes:
        channels: width df_dim (reference 128); also the feature size F.
        in_channels: image channels.
        num_classes: always 0 (unconditional).
        dtype: compute dtype of the blocks (``jnp.float32`` or ``jnp.bfloat16``); features,
            ``linear_out`` and logits are float32.
    """

    channels: int = 128
    in_channels: int = 3
    num_classes: int = 0
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        """Size F = ``channels`` of the pooled features ``[B, F]`` of :meth:`features`."""
        return self.channels

    @property
    def noise_paths(self) -> tuple[tuple[str, ...], ...]:
        """NICE's noise blocks, first first: ``block1`` .. ``block4`` (their ``beta``)."""
        return tuple((f"block{i}", "beta") for i in range(1, 5))

    def setup(self):
        """Creates the four D blocks and the bias-free ``linear_out`` (F -> 1)."""
        c = self.channels
        cfg = D_CONFIG.replace(dtype=self.dtype)
        self.block1 = DisOptBlock(self.in_channels, c, cfg)
        self.block2 = DisBlock(c, c, True, cfg)
        self.block3 = DisBlock(c, c, False, cfg)
        self.block4 = DisBlock(c, c, False, cfg)
        self.linear_out = D_CONFIG.dense(c, 1, use_bias=False)

    def _trunk(self, x: Array, train: bool) -> Array:
        h = self.block1(x, train=train)
        h = self.block2(h, train=train)
        h = self.block3(h, train=train)
        return self.block4(h, train=train)


@register_model("sngan")
def build_sngan(
    *,
    resolution: int,
    channels: int,
    num_classes: int = 0,
    latent_dim: int = 128,
    g_channels: int = 256,
    d_channels: int = 128,
    conditional: bool = False,
    dtype: str = "float32",
    **kwargs,
) -> ModelPair:
    """Builds the SNGAN CIFAR ResNet pair.

    Args:
        resolution: must be 32.
        channels: image channels (>= 1; the reference uses 3).
        num_classes: ignored (the model is unconditional).
        latent_dim: z size (reference 128).
        g_channels: generator width gf_dim (reference 256).
        d_channels: discriminator width df_dim (reference 128).
        conditional: must be False.
        dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
        **kwargs: no other options are accepted; any key here raises ``ValueError``.

    Returns:
        ``ModelPair(SNGANGenerator, SNGANDiscriminator)``.

    Raises:
        ValueError: unknown kwargs, resolution != 32, conditional=True, non-positive sizes,
            an unknown dtype.
    """
    check_kwargs("sngan", kwargs,
                 ["latent_dim", "g_channels", "d_channels", "conditional", "dtype"])
    compute_dtype = check_dtype("sngan", dtype)
    check_choice("sngan", "resolution", resolution, [32])
    channels = check_positive_int("sngan", "channels", channels)
    if conditional is not False:
        raise ValueError(
            f"sngan is unconditional (reference SNGAN/models/sngan_cifar10.py); got "
            f"conditional={conditional!r}, accepted: False (use 'biggan' or 'dcgan' for a "
            "class-conditional model)"
        )
    gen = SNGANGenerator(
        latent_dim=check_positive_int("sngan", "latent_dim", latent_dim),
        channels=check_positive_int("sngan", "g_channels", g_channels),
        out_channels=channels,
        dtype=compute_dtype,
    )
    disc = SNGANDiscriminator(
        channels=check_positive_int("sngan", "d_channels", d_channels),
        in_channels=channels,
        dtype=compute_dtype,
    )
    return ModelPair(gen, disc)
