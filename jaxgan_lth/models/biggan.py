"""Class-conditional BigGAN for 32x32 images (CIFAR), StudioGAN ``big_resnet`` flavour.

Source: POSTECH-CVLab/PyTorch-StudioGAN ``models/big_resnet.py`` and ``utils/model_ops.py`` (v0.2,
as forked by VITA-Group/Ultra-Data-Efficient-GAN-Training ``BigGAN and DiffAugGAN/``, config
``configs/CIFAR10_less/BigGAN_adv.json``); seed_repos.md sections 5.1 and 6. Architecture of
Brock et al., "Large Scale GAN Training" (ICLR 2019) with SAGAN attention (Zhang et al. 2019) and
the projection discriminator (Miyato & Koyama 2018).

Generator, ``g_channels`` = g_conv_dim = 96 (width 4*96 = 384), ``latent_dim`` = z_dim = 80::

    z [B, 80] split into 4 chunks of 20 (hierarchical z); embed_shared: y -> [B, 128] (no SN)
    linear0: chunk0 -> [B, 4*4*384] -> reshape [B, 4, 4, 384] -> perturb('g_first')
    block1..3: GenBlock(384 -> 384, up x2) with conditional BN; block k is conditioned on
               [shared(y); chunk k] (148-d): gain = 1 + linear_gain(.), bias = linear_bias(.)
    attn: self-attention after block2 (16x16)
    bn_out -> ReLU -> conv_out (3x3 -> channels) -> tanh                [B, 32, 32, channels]

Discriminator, ``d_channels`` = d_conv_dim = 96 (width 2*96 = 192)::

    block1: DisOptBlock(channels -> 192) 32 -> 16;  attn: self-attention (16x16)
    block2: DisBlock(192, down) 16 -> 8;  block3, block4: DisBlock(192) 8
    ReLU -> sum over H, W -> features [B, 192] -> perturb('d_features')
    logits = linear_out(h) + <embed_proj(y), h>

Spectral norm (1 power iteration, eps 1e-6 as StudioGAN's ``snconv2d/snlinear/sn_embedding``) on
every conv, linear and on ``embed_proj`` in both networks; the shared class embedding of G has none.
Initialisation ("ortho", StudioGAN ``init_weights``): orthogonal conv/linear kernels and embeddings,
zero biases; BatchNorm eps 1e-4, torch momentum 0.1, plain scale 1 / bias 0; attention gamma 0.

Compute dtype (``dtype="bfloat16"``): G's and D's layers compute in bfloat16 (the attention
softmax in float32) with float32 parameters, batch-norm statistics and spectral-norm state
(:mod:`jaxgan_lth.models.layers`); G's first-layer output (AdvAug's point) and its image, D's
pooled features and its head (``linear_out``, ``embed_proj``) are float32
(:mod:`jaxgan_lth.models.base`).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan_lth.models.base import G_PERTURB, ProjectionDiscriminator, check_labels
from jaxgan_lth.models.blocks import DisBlock, DisOptBlock, GenBlock
from jaxgan_lth.models.layers import LayerConfig, SelfAttention, call_layer
from jaxgan_lth.models.registry import (
    ModelPair,
    check_choice,
    check_conditional,
    check_dtype,
    check_kwargs,
    check_positive_int,
    register_model,
)

Array = jax.Array

CONFIG = LayerConfig(spectral_norm=True, sn_eps=1e-6, init="ortho", bn_eps=1e-4)
NUM_G_BLOCKS = 3


class BigGANGenerator(nn.Module):
    """Class-conditional BigGAN generator, 32x32.

    Attributes:
        num_classes: number of classes (>= 1).
        latent_dim: z_dim (reference 80); divisible by ``NUM_G_BLOCKS + 1`` = 4.
        conv_dim: g_conv_dim (reference 96); block width is ``4 * conv_dim``.
        shared_dim: size of the shared class embedding (reference 128).
        out_channels: image channels.
        bottom_width: spatial size after ``linear0`` (4).
        attention: add self-attention after block 2.
        dtype: compute dtype (``jnp.float32`` or ``jnp.bfloat16``); images are float32.
    """

    num_classes: int
    latent_dim: int = 80
    conv_dim: int = 96
    shared_dim: int = 128
    out_channels: int = 3
    bottom_width: int = 4
    attention: bool = True
    dtype: Any = jnp.float32

    @property
    def width(self) -> int:
        """Channel width ``4 * conv_dim`` of the blocks (feature maps ``[B, H, W, width]``)."""
        return 4 * self.conv_dim

    @property
    def chunk_size(self) -> int:
        """Size ``latent_dim // 4`` of each of the 4 chunks z is split in (``[B, chunk_size]``)."""
        return self.latent_dim // (NUM_G_BLOCKS + 1)

    def setup(self):
        """Creates the shared embedding, ``linear0``, the blocks (+ attention) and output layers.

        Raises:
            ValueError: ``latent_dim`` not divisible by ``NUM_G_BLOCKS + 1``.
        """
        if self.latent_dim % (NUM_G_BLOCKS + 1):
            raise ValueError(
                f"biggan latent_dim must be divisible by {NUM_G_BLOCKS + 1}, got {self.latent_dim}"
            )
        c, bw = self.width, self.bottom_width
        cond_dim = self.chunk_size + self.shared_dim
        cfg = CONFIG.replace(dtype=self.dtype)
        self.embed_shared = cfg.embed(self.num_classes, self.shared_dim, spectral_norm=False)
        self.linear0 = cfg.dense(self.chunk_size, bw * bw * c)
        self.block1 = GenBlock(c, c, cfg, cond_mode="linear", cond_dim=cond_dim)
        self.block2 = GenBlock(c, c, cfg, cond_mode="linear", cond_dim=cond_dim)
        if self.attention:
            self.attn = SelfAttention(c, cfg)
        self.block3 = GenBlock(c, c, cfg, cond_mode="linear", cond_dim=cond_dim)
        self.bn_out = cfg.batch_norm()
        self.conv_out = cfg.conv(c, self.out_channels, 3)

    def __call__(self, z: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """Generates class-conditional images.

        Args:
            z: latents ``[B, latent_dim]`` ~ N(0, I).
            y: int32 class labels ``[B]`` in ``[0, num_classes)`` (required).
            train: BatchNorm batch statistics and spectral-norm updates (apply with
                ``mutable=['batch_stats']``) if True; running averages otherwise.

        Returns:
            float32 images ``[B, 32, 32, out_channels]`` in [-1, 1].

        Raises:
            ValueError: missing labels.
        """
        b = z.shape[0]
        y = check_labels(self, y, b)
        chunks = jnp.split(z, NUM_G_BLOCKS + 1, axis=-1)
        shared = self.embed_shared(y)
        conds = [jnp.concatenate([shared, zc], axis=-1) for zc in chunks[1:]]
        bw = self.bottom_width
        h = call_layer(self.linear0, chunks[0], update_stats=train)
        h = h.reshape(b, bw, bw, self.width)
        if not self.is_initializing():  # AdvAug's point in float32 (a no-op for float32)
            h = self.perturb(G_PERTURB, h.astype(jnp.float32))
        h = self.block1(h, conds[0], train=train)
        h = self.block2(h, conds[1], train=train)
        if self.attention:
            h = self.attn(h, train=train)
        h = self.block3(h, conds[2], train=train)
        h = nn.relu(self.bn_out(h, use_running_average=not train))
        return jnp.tanh(call_layer(self.conv_out, h, update_stats=train).astype(jnp.float32))


class BigGANDiscriminator(ProjectionDiscriminator):
    """BigGAN projection discriminator, 32x32.

    Attributes:
        num_classes: number of classes (>= 1).
        conv_dim: d_conv_dim (reference 96); width and feature size F = ``2 * conv_dim``.
        in_channels: image channels.
        attention: add self-attention after block 1.
        dtype: compute dtype of the blocks and attention (``jnp.float32`` or ``jnp.bfloat16``);
            features, head and logits are float32.
    """

    num_classes: int
    conv_dim: int = 96
    in_channels: int = 3
    attention: bool = True
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        """Size F = ``2 * conv_dim`` of the pooled features ``[B, F]`` of :meth:`features`."""
        return 2 * self.conv_dim

    @property
    def noise_paths(self) -> tuple[tuple[str, ...], ...]:
        """NICE's noise blocks, first first: ``block1`` .. ``block4`` (their ``beta``)."""
        return tuple((f"block{i}", "beta") for i in range(1, 5))

    def setup(self):
        """Creates the D blocks (+ attention), ``linear_out`` (F -> 1) and ``embed_proj``."""
        c = self.feature_dim
        cfg = CONFIG.replace(dtype=self.dtype)
        self.block1 = DisOptBlock(self.in_channels, c, cfg)
        if self.attention:
            self.attn = SelfAttention(c, cfg)
        self.block2 = DisBlock(c, c, True, cfg)
        self.block3 = DisBlock(c, c, False, cfg)
        self.block4 = DisBlock(c, c, False, cfg)
        self.linear_out = CONFIG.dense(c, 1)
        self.embed_proj = CONFIG.embed(self.num_classes, c)

    def _trunk(self, x: Array, train: bool) -> Array:
        h = self.block1(x, train=train)
        if self.attention:
            h = self.attn(h, train=train)
        h = self.block2(h, train=train)
        h = self.block3(h, train=train)
        return self.block4(h, train=train)


@register_model("biggan")
def build_biggan(
    *,
    resolution: int,
    channels: int,
    num_classes: int = 0,
    latent_dim: int = 80,
    g_channels: int = 96,
    d_channels: int = 96,
    conditional: bool = True,
    shared_dim: int = 128,
    attention: bool = True,
    dtype: str = "float32",
    **kwargs,
) -> ModelPair:
    """Builds the class-conditional BigGAN pair (StudioGAN big_resnet, 32x32).

    Args:
        resolution: must be 32.
        channels: image channels (>= 1; the reference uses 3).
        num_classes: number of classes, >= 1.
        latent_dim: z_dim (reference 80), divisible by 4 (hierarchical z chunks).
        g_channels: g_conv_dim (reference 96; G width 4x).
        d_channels: d_conv_dim (reference 96; D width 2x).
        conditional: must be True (BigGAN here is class-conditional).
        shared_dim: shared class-embedding size (reference 128).
        attention: self-attention after G block 2 and D block 1 (reference True).
        dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
        **kwargs: no other options are accepted; any key here raises ``ValueError``.

    Returns:
        ``ModelPair(BigGANGenerator, BigGANDiscriminator)``.

    Raises:
        ValueError: unknown kwargs, resolution != 32, conditional=False, num_classes < 1,
            latent_dim not divisible by 4, widths not giving attention channels divisible by 8,
            an unknown dtype.
    """
    check_kwargs(
        "biggan",
        kwargs,
        ["latent_dim", "g_channels", "d_channels", "conditional", "shared_dim", "attention",
         "dtype"],
    )
    compute_dtype = check_dtype("biggan", dtype)
    check_choice("biggan", "resolution", resolution, [32])
    channels = check_positive_int("biggan", "channels", channels)
    if conditional is not True:
        raise ValueError(
            f"biggan is class-conditional (cBN + projection D); got conditional={conditional!r}, "
            "accepted: True (set model.conditional=True and give num_classes >= 1)"
        )
    num_classes = check_conditional("biggan", conditional, num_classes)
    latent_dim = check_positive_int("biggan", "latent_dim", latent_dim)
    if latent_dim % (NUM_G_BLOCKS + 1):
        raise ValueError(
            f"biggan latent_dim must be divisible by {NUM_G_BLOCKS + 1} (hierarchical z chunks), "
            f"got {latent_dim}"
        )
    g_channels = check_positive_int("biggan", "g_channels", g_channels)
    d_channels = check_positive_int("biggan", "d_channels", d_channels)
    if not isinstance(attention, bool):
        raise ValueError(f"biggan: attention must be a bool, got {attention!r}")
    if attention and ((4 * g_channels) % 8 or (2 * d_channels) % 8):
        raise ValueError(
            "biggan self-attention needs 4*g_channels and 2*d_channels divisible by 8, got "
            f"g_channels={g_channels}, d_channels={d_channels}"
        )
    gen = BigGANGenerator(
        num_classes=num_classes,
        latent_dim=latent_dim,
        conv_dim=g_channels,
        shared_dim=check_positive_int("biggan", "shared_dim", shared_dim),
        out_channels=channels,
        attention=attention,
        dtype=compute_dtype,
    )
    disc = BigGANDiscriminator(
        num_classes=num_classes,
        conv_dim=d_channels,
        in_channels=channels,
        attention=attention,
        dtype=compute_dtype,
    )
    return ModelPair(gen, disc)
