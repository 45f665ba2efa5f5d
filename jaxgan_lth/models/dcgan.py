"""Small DCGAN-style pair for 28x28 / 32x32 images that trains on a CPU in minutes.

Architecture after Radford et al., "DCGAN" (ICLR 2016): strided transposed convs with BatchNorm-ReLU
in G, strided convs in D, N(0, 0.02) weights and N(1, 0.02) BatchNorm scales; D uses spectral norm
(Miyato et al. 2018) instead of BatchNorm and ends like the SNGAN/BigGAN references (ReLU, global
SUM pooling, linear), so the AdvAug feature hook and the projection head are the same as theirs.
With ``r`` = resolution, ``c`` = ``g_channels`` / ``d_channels``::

    G: linear_in (no bias): z -> [B, r/4, r/4, 2c] -> perturb('g_first') -> bn1 -> ReLU
       conv1 (no bias): 4x4 stride-2 transposed conv -> [B, r/2, r/2, c] -> bn2 -> ReLU
       conv_out: 4x4 stride-2 transposed conv -> [B, r, r, channels] -> tanh
    D: conv1: 4x4 s2 -> [B, r/2, r/2, c] -> LeakyReLU(0.1)
       conv2: 4x4 s2 -> [B, r/4, r/4, 2c] -> ReLU -> features
       -> perturb('d_features') -> linear_out (+ <embed_proj(y), h> when conditional)

D's features (``d_pooling``): ``"sum"`` sums over H, W (``[B, 2c]``, as the SNGAN/BigGAN
references; the dcgan's original choice), ``"flatten"`` keeps the layout (``[B, (r/4)^2 * 2c]``,
Radford et al.'s DCGAN and the TensorFlow / PyTorch DCGAN examples: the last conv's map goes
flattened into one linear unit). A sum-pooled D cannot tell where on the canvas a stroke is,
only how much of it there is; on Fashion-MNIST its G collapsed onto tops (issue 26), so the
default config uses ``"flatten"``.

Conditional (``conditional=True``): bn1/bn2 become class-conditional BatchNorm (per-class gain and
bias tables initialised to 0, i.e. plain BN at init) and D gets the projection term with a
spectrally normalised class embedding. Spectral norm: 1 power iteration, eps 1e-12.

Compute dtype (``dtype="bfloat16"``): every conv, linear and batch norm of G and D's convs
compute in bfloat16 with float32 parameters and statistics (:mod:`jaxgan_lth.models.layers`);
G's first-layer output (AdvAug's point) and its image, D's pooled features and its head are
float32 (:mod:`jaxgan_lth.models.base`).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan_lth.models.base import G_PERTURB, ProjectionDiscriminator, check_labels, noise_point
from jaxgan_lth.models.layers import ConditionalBatchNorm, LayerConfig, call_layer
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

G_CONFIG = LayerConfig(spectral_norm=False, init="dcgan", bn_eps=1e-5, bn_scale_normal=True)
D_CONFIG = LayerConfig(spectral_norm=True, sn_eps=1e-12, init="dcgan")
_PAD = ((1, 1), (1, 1))  # torch padding=1 for the 4x4 stride-2 convs
#: Accepted ``d_pooling`` values of :func:`build_dcgan`.
D_POOLING = ("sum", "flatten")


class DCGANGenerator(nn.Module):
    """DCGAN generator.

    Attributes:
        resolution: output size r (28 or 32; must be divisible by 4).
        latent_dim: size of z.
        channels: base width c (the first feature map has 2c channels).
        out_channels: image channels.
        num_classes: 0 = unconditional, else number of classes (conditional BN).
        dtype: compute dtype (``jnp.float32`` or ``jnp.bfloat16``); images are float32.
    """

    resolution: int = 28
    latent_dim: int = 64
    channels: int = 64
    out_channels: int = 1
    num_classes: int = 0
    dtype: Any = jnp.float32

    def _bn(self, features: int) -> nn.Module:
        cfg = G_CONFIG.replace(dtype=self.dtype)
        if self.num_classes:
            return ConditionalBatchNorm(features, cfg, mode="embed", num_classes=self.num_classes)
        return cfg.batch_norm()

    def setup(self):
        """Creates ``linear_in``, the (conditional) BNs and the two transposed convs."""
        c, s = self.channels, self.resolution // 4
        cfg = G_CONFIG.replace(dtype=self.dtype)
        # No bias in front of a batch norm: BN removes it, so its true gradient is 0 and
        # Adam would only turn rounding noise into steps (as in Radford et al.'s DCGAN).
        self.linear_in = cfg.dense(self.latent_dim, s * s * 2 * c, use_bias=False)
        self.bn1 = self._bn(2 * c)
        self.conv1 = cfg.conv(2 * c, c, 4, strides=2, transpose=True, use_bias=False)
        self.bn2 = self._bn(c)
        self.conv_out = cfg.conv(c, self.out_channels, 4, strides=2, transpose=True)

    def _norm(self, bn: nn.Module, x: Array, y: Optional[Array], train: bool) -> Array:
        if self.num_classes:
            return bn(x, y, train=train)
        return bn(x, use_running_average=not train)

    def __call__(self, z: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """Generates images.

        Args:
            z: latents ``[B, latent_dim]`` ~ N(0, I).
            y: int32 labels ``[B]``; required iff ``num_classes > 0`` (ignored otherwise).
            train: BatchNorm batch statistics (apply with ``mutable=['batch_stats']``) if True,
                running averages otherwise.

        Returns:
            float32 images ``[B, resolution, resolution, out_channels]`` in [-1, 1].

        Raises:
            ValueError: conditional generator called without labels.
        """
        b = z.shape[0]
        y = check_labels(self, y, b)
        s = self.resolution // 4
        h = self.linear_in(z).reshape(b, s, s, 2 * self.channels)
        if not self.is_initializing():  # AdvAug's point in float32 (a no-op for float32)
            h = self.perturb(G_PERTURB, h.astype(jnp.float32))
        h = nn.relu(self._norm(self.bn1, h, y, train))
        h = self.conv1(h)
        h = nn.relu(self._norm(self.bn2, h, y, train))
        return jnp.tanh(self.conv_out(h).astype(jnp.float32))


class DCGANDiscriminator(ProjectionDiscriminator):
    """DCGAN-style discriminator with spectral norm and global sum pooling.

    Attributes:
        channels: base width c (features F = 2c).
        in_channels: image channels.
        num_classes: 0 = unconditional, else number of classes (projection head).
        pooling: D's features, ``"sum"`` or ``"flatten"`` (see the module docstring).
        resolution: image size r (the ``"flatten"`` feature size depends on it).
        dtype: compute dtype of the convs (``jnp.float32`` or ``jnp.bfloat16``); features,
            head and logits are float32.
    """

    channels: int = 64
    in_channels: int = 1
    num_classes: int = 0
    pooling: str = "sum"
    resolution: int = 28
    dtype: Any = jnp.float32

    @property
    def feature_dim(self) -> int:
        """Size F of the features ``[B, F]``: ``2c`` ("sum") or ``(r/4)^2 * 2c`` ("flatten")."""
        if self.pooling == "flatten":
            return (self.resolution // 4) ** 2 * 2 * self.channels
        return 2 * self.channels

    def _pool(self, h: Array) -> Array:
        """``[B, r/4, r/4, 2c]`` -> ``[B, F]``: global sum or the flattened map."""
        if self.pooling == "flatten":
            return h.reshape(h.shape[0], -1)
        return jnp.sum(h, axis=(1, 2))

    @property
    def noise_paths(self) -> tuple[tuple[str, ...], ...]:
        """NICE's noise blocks, first first: each conv is a block (its output is modulated)."""
        return (("beta_conv1",), ("beta_conv2",))

    def setup(self):
        """Creates the two SN convs, ``linear_out`` (F -> 1) and, if conditional, ``embed_proj``."""
        c = self.channels
        cfg = D_CONFIG.replace(dtype=self.dtype)
        self.conv1 = cfg.conv(self.in_channels, c, 4, strides=2, padding=_PAD)
        self.conv2 = cfg.conv(c, 2 * c, 4, strides=2, padding=_PAD)
        self.linear_out = D_CONFIG.dense(self.feature_dim, 1)
        if self.num_classes:
            self.embed_proj = D_CONFIG.embed(self.num_classes, self.feature_dim)

    def _trunk(self, x: Array, train: bool) -> Array:
        h = noise_point(self, "beta_conv1", call_layer(self.conv1, x, update_stats=train))
        h = nn.leaky_relu(h, 0.1)
        return noise_point(self, "beta_conv2", call_layer(self.conv2, h, update_stats=train))


@register_model("dcgan")
def build_dcgan(
    *,
    resolution: int,
    channels: int,
    num_classes: int = 0,
    latent_dim: int = 64,
    g_channels: int = 64,
    d_channels: int = 64,
    conditional: bool = False,
    d_pooling: str = "sum",
    dtype: str = "float32",
    **kwargs,
) -> ModelPair:
    """Builds the small DCGAN pair.

    Args:
        resolution: 28 or 32.
        channels: image channels, 1 or 3.
        num_classes: number of classes (used iff ``conditional``).
        latent_dim: z size (default 64).
        g_channels: generator base width (default 64).
        d_channels: discriminator base width (default 64).
        conditional: class-conditional BN in G and projection head in D.
        d_pooling: D's features, ``"sum"`` (global sum pooling) or ``"flatten"`` (the
            flattened last map, DCGAN's); see the module docstring.
        dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
        **kwargs: no other options are accepted; any key here raises ``ValueError``.

    Returns:
        ``ModelPair(DCGANGenerator, DCGANDiscriminator)``.

    Raises:
        ValueError: unknown kwargs, unsupported resolution / channels / dtype, non-positive
            sizes, conditional=True with num_classes < 1.
    """
    check_kwargs("dcgan", kwargs,
                 ["latent_dim", "g_channels", "d_channels", "conditional", "d_pooling", "dtype"])
    compute_dtype = check_dtype("dcgan", dtype)
    check_choice("dcgan", "d_pooling", d_pooling, list(D_POOLING))
    check_choice("dcgan", "resolution", resolution, [28, 32])
    check_choice("dcgan", "channels", channels, [1, 3])
    ncls = check_conditional("dcgan", conditional, num_classes)
    gen = DCGANGenerator(
        resolution=resolution,
        latent_dim=check_positive_int("dcgan", "latent_dim", latent_dim),
        channels=check_positive_int("dcgan", "g_channels", g_channels),
        out_channels=channels,
        num_classes=ncls,
        dtype=compute_dtype,
    )
    disc = DCGANDiscriminator(
        channels=check_positive_int("dcgan", "d_channels", d_channels),
        in_channels=channels,
        num_classes=ncls,
        pooling=d_pooling,
        resolution=resolution,
        dtype=compute_dtype,
    )
    return ModelPair(gen, disc)
