"""StyleGAN2 (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020).

Config F as in NVIDIA's stylegan2-ada-pytorch ``training/networks.py`` (``Generator`` with the
``skip`` synthesis architecture, ``Discriminator`` with the ``resnet`` architecture), in NHWC;
the layers are in :mod:`jaxgan_lth.models.sg2_ops`. With ``r`` = resolution (a power of two in
32..1024) and ``ch(s) = min(channel_base // s, channel_max)``::

    mapping:   z [B, latent_dim] -> normalize_2nd_moment -> mapping_layers x (FC w_dim,
               lrelu, lr multiplier 0.01) -> w [B, w_dim] -> broadcast to ws [B, num_ws, w_dim]
               (num_ws = 2 log2(r) - 2); batch_stats "w_avg" <- 0.995 w_avg + 0.005 mean_B(w)
               in train mode; truncation w_avg + psi (w - w_avg) on the first ``cutoff`` ws
    synthesis: b4: const [4, 4, ch(4)] ~ N(0, 1) -> conv1 (modulated 3x3) -> perturb('g_first')
               -> conv_rgb; b8..b_r: conv0 (modulated 3x3 with 2x FIR upsampling) -> conv1
               -> conv_rgb; img = upsample2d(img) + conv_rgb(x) (skip architecture). Every
               modulated conv: style = affine(w) (equalized FC, bias init 1), demodulation,
               noise * learned strength (init 0), bias, lrelu * sqrt(2). conv_rgb: 1x1
               modulated, style * 1/sqrt(Cin), no demodulation, bias, linear.
    D (resnet): b_r: conv_rgb (1x1, lrelu) at full resolution; every block b_s (s = r..8):
               skip = 1x1 conv with FIR 2x downsampling, no bias, gain sqrt(1/2);
               conv0 3x3 lrelu; conv1 3x3 with FIR 2x downsampling, lrelu, gain sqrt(1/2);
               x = skip + conv1. Epilogue at 4x4: minibatch stddev (group 4, 1 feature) ->
               conv 3x3 lrelu -> flatten -> linear_fc (ch(4), lrelu) = features [B, ch(4)]
               -> perturb('d_features') -> linear_out (1).

Style mixing (``style_mixing_prob``, paper and reference 0.9; training only, as the reference's
``StyleGAN2Loss.run_G``): with that probability a second z's ws replace the ws from a cutoff
drawn uniformly in ``[1, num_ws)``, one cutoff per batch. Noise inputs: fresh ``N(0, 1)``
``[B, s, s, 1]`` per layer when the :data:`~jaxgan_lth.models.base.G_NOISE` PRNG stream is
given (the step gives it to every train-mode forward), else the fixed per-layer ``noise_const``
buffers (deterministic; ``noise_mode`` can force ``"random"``, ``"const"`` or ``"none"``).
``use_noise=False`` builds G without noise inputs at all (no ``noise_strength`` parameters, no
``noise_const`` buffers; the reference's ``SynthesisLayer(use_noise=False)``), in training and
sampling alike. (The CPU few-shot preset keeps the noise inputs: trained without them it
collapsed; README's few-shot section.) The synthesis layers are in
:mod:`jaxgan_lth.models.stylegan2_synthesis`, the discriminator in
:mod:`jaxgan_lth.models.stylegan2_d`.

Channels: ``channel_base`` follows the PyTorch code's ``channel_base`` (``ch(s) =
channel_base // s``). 32768 (default) is the official ``stylegan2`` config and gives the same
counts as the TF code's ``fmap_base=16384`` used by DiffAugment's low-shot runs (its ``nf``
halves ``fmap_base`` once more); 16384 is ``paper256`` (half the channels). The channel cap
``channel_max`` (512 in every official config) is ``g_channels`` for G and ``d_channels`` for D.

Output range: the skip images are linear (no tanh, as the reference), so G's output is roughly
in [-1, 1] once trained but not bounded; samples are clipped only when written as images.
Parameter counts at 256 with the official config (channel_base 32768, 512 caps, 8 mapping
layers, z = w = 512, RGB): G 30,034,338, D 28,864,129 (equal to the reference modules'
``sum(p.numel() for p in parameters())``, instantiated from stylegan2-ada-pytorch ``d72cc7d``).

Pruning: every 4-D conv kernel is named ``conv*/kernel`` (modulated convs ``conv0``/``conv1``,
``conv_rgb``, D's ``conv_skip``/``conv``), so :data:`~jaxgan_lth.models.PRUNABLE_KERNEL_REGEX`
(the default ``sparsity.prunable``) selects exactly them; FC layers (mapping, style affines
``linear_affine``, D's ``linear_fc``/``linear_out``) are named ``linear*`` and stay dense. All
conv kernels are stored ``N(0, 1)`` (equalized lr), so global magnitude pruning compares
weights on one scale.

Not implemented: conditional models (``c_dim > 0``), fp16 with ``conv_clamp`` (use
``dtype="bfloat16"`` for accelerator compute), the ``orig``/``resnet`` G and ``orig``/``skip`` D
architectures.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan_lth.models import sg2_ops as ops
from jaxgan_lth.models.base import G_NOISE, G_PERTURB, check_labels
from jaxgan_lth.models.registry import (
    COMPUTE_DTYPES,
    ModelPair,
    check_choice,
    check_kwargs,
    check_positive_int,
    register_model,
)
from jaxgan_lth.models.sg2_ops import channels_at
from jaxgan_lth.models.stylegan2_d import StyleGAN2Discriminator
from jaxgan_lth.models.stylegan2_synthesis import SynthesisBlock

Array = jax.Array

#: w_avg tracking decay (``MappingNetwork(w_avg_beta=0.995)``).
W_AVG_BETA = 0.995
#: Learning-rate multiplier of the mapping network (``MappingNetwork(lr_multiplier=0.01)``).
MAPPING_LR_MUL = 0.01
NOISE_MODES = ("random", "const", "none")
#: Compute dtypes of ``dtype`` (the registry's table, shared by every model).
DTYPES = COMPUTE_DTYPES


def num_ws(resolution: int) -> int:
    """Number of per-layer w vectors of the synthesis network: ``2 log2(r) - 2`` (14 at 256)."""
    return 2 * int(math.log2(resolution)) - 2


def truncate(ws: Array, w_avg: Array, psi: float, cutoff: Optional[int] = None) -> Array:
    """The truncation trick: ``w_avg + psi (w - w_avg)`` on the first ``cutoff`` ws.

    (``MappingNetwork.forward``'s ``truncation_psi`` / ``truncation_cutoff``.)

    Args:
        ws: ``[B, num_ws, w_dim]``.
        w_avg: ``[w_dim]``, the tracked mean of w.
        psi: 1 = no truncation, 0 = every image is the mean image.
        cutoff: number of leading ws truncated; None = all.

    Returns:
        ``[B, num_ws, w_dim]``.
    """
    t = w_avg + psi * (ws - w_avg)
    if cutoff is None:
        return t
    keep = (jnp.arange(ws.shape[1]) < cutoff)[None, :, None]
    return jnp.where(keep, t, ws)


class MappingNetwork(nn.Module):
    """z -> w: 2nd-moment normalisation and ``num_layers`` equalized FC layers (lr x 0.01).

    Attributes:
        w_dim: size of w (and of every hidden layer).
        num_layers: FC layers (8 in the paper; 2 in ADA's ``auto``/``cifar`` configs).
        dtype: compute dtype (w is returned in float32).
    """

    w_dim: int
    num_layers: int = 8
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z: Array, update_w_avg: bool = False) -> tuple[Array, Array]:
        """Returns ``(w [B, w_dim] float32, w_avg [w_dim])``; updates ``w_avg`` if asked.

        ``w_avg`` (``batch_stats``) is updated only when ``update_w_avg`` and ``batch_stats``
        is mutable (``apply(..., mutable=['batch_stats'])``), never during ``init``.
        """
        x = ops.normalize_2nd_moment(z.astype(jnp.float32))
        for i in range(self.num_layers):
            x = ops.EqualizedDense(self.w_dim, "lrelu", lr_mul=MAPPING_LR_MUL,
                                   dtype=self.dtype, name=f"linear{i}")(x)
        x = x.astype(jnp.float32)
        w_avg = self.variable("batch_stats", "w_avg", jnp.zeros, (self.w_dim,), jnp.float32)
        if (update_w_avg and not self.is_initializing()
                and self.is_mutable_collection("batch_stats")):
            mean = jax.lax.stop_gradient(jnp.mean(x, axis=0))
            w_avg.value = W_AVG_BETA * w_avg.value + (1.0 - W_AVG_BETA) * mean
        return x, w_avg.value


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator (mapping + skip synthesis); see the module docstring.

    Attributes:
        resolution: r, a power of two in 32..1024.
        out_channels: image channels.
        latent_dim: size of z.
        w_dim: size of w.
        channel_base: ``ch(s) = min(channel_base // s, channel_max)``.
        channel_max: channel cap (the config's ``g_channels``).
        mapping_layers: FC layers of the mapping network.
        style_mixing_prob: probability of style mixing in train mode.
        use_noise: per-pixel noise inputs (False: none, in training and sampling).
        num_classes: always 0 (unconditional).
        dtype: compute dtype of the convolutions and FC layers (outputs float32).
    """

    resolution: int = 256
    out_channels: int = 3
    latent_dim: int = 512
    w_dim: int = 512
    channel_base: int = 32768
    channel_max: int = 512
    mapping_layers: int = 8
    style_mixing_prob: float = 0.9
    use_noise: bool = True
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32

    @property
    def num_ws(self) -> int:
        """Number of w vectors consumed by the synthesis network."""
        return num_ws(self.resolution)

    @property
    def block_resolutions(self) -> list[int]:
        """4, 8, ..., resolution."""
        return [2 ** i for i in range(2, int(math.log2(self.resolution)) + 1)]

    def setup(self):
        """Creates ``mapping_net`` and the synthesis blocks ``blocks_b4`` .. ``blocks_b<r>``."""
        self.mapping_net = MappingNetwork(self.w_dim, self.mapping_layers, dtype=self.dtype)
        self.blocks = {
            f"b{s}": SynthesisBlock(
                channels_at(s, self.channel_base, self.channel_max), s, self.out_channels,
                first=(s == 4), use_noise=self.use_noise, dtype=self.dtype)
            for s in self.block_resolutions
        }

    def mapping(self, z: Array, y: Optional[Array] = None, train: bool = False,
                psi: float = 1.0, cutoff: Optional[int] = None) -> Array:
        """The ws ``[B, num_ws, w_dim]`` of latents ``z`` ``[B, latent_dim]``.

        Args:
            z: latents ~ N(0, I).
            y: labels (ignored: unconditional).
            train: update ``w_avg`` (needs ``mutable=['batch_stats']``; skipped otherwise).
            psi: truncation psi (1 = none); see :func:`truncate`.
            cutoff: truncate only the first ``cutoff`` ws (None = all).
        """
        del y
        w, w_avg = self.mapping_net(z, update_w_avg=train)
        ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, self.w_dim))
        if psi != 1.0:
            ws = truncate(ws, w_avg, psi, cutoff)
        return ws

    def synthesis(self, ws: Array, noise_mode: Optional[str] = None) -> Array:
        """Images of ws ``[B, num_ws, w_dim]``: float32 ``[B, r, r, C]``, roughly in [-1, 1].

        Args:
            ws: per-layer w vectors.
            noise_mode: ``"random"`` (needs the ``g_noise`` PRNG stream), ``"const"``,
                ``"none"``; None = random when the stream is given, else const.

        Raises:
            ValueError: unknown ``noise_mode``, or ws of the wrong shape.
        """
        if noise_mode is None:
            noise_mode = "random" if self.has_rng(G_NOISE) else "const"
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"stylegan2: noise_mode = {noise_mode!r}; accepted: {NOISE_MODES}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"stylegan2: ws must be [B, {self.num_ws}, {self.w_dim}], "
                             f"got {ws.shape}")
        x = img = None
        idx = 0
        for s in self.block_resolutions:
            block = self.blocks[f"b{s}"]
            n = 1 if s == 4 else 2
            x = block.features_of(x, ws[:, idx:idx + n], noise_mode)
            if s == 4 and not self.is_initializing():
                x = self.perturb(G_PERTURB, x)
            idx += n
            # the ToRGB of a block shares its w with the next block's conv0 (networks.py)
            img = block.rgb(x, img, ws[:, idx])
        return img

    def generate(self, z: Array, y: Optional[Array] = None, psi: float = 1.0,
                 cutoff: Optional[int] = None, noise_mode: Optional[str] = None) -> Array:
        """Sampling with truncation: ``synthesis(mapping(z, psi, cutoff))`` (no training effects).

        Use as ``G.apply(variables, z, method="generate", psi=0.7)``.
        """
        return self.synthesis(self.mapping(z, y, False, psi, cutoff), noise_mode)

    def ws_of(self, z: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """The ws G's forward synthesises: :meth:`mapping`, then style mixing in train mode.

        Args:
            z: latents ``[B, latent_dim]`` ~ N(0, I).
            y: labels (ignored: unconditional).
            train: update ``w_avg`` (with ``mutable=['batch_stats']``) and mix styles with
                probability ``style_mixing_prob`` (draws from the ``g_noise`` stream).

        Returns:
            ``[B, num_ws, w_dim]``.

        Raises:
            ValueError: train mode with style mixing but without the ``g_noise`` PRNG stream.
        """
        check_labels(self, y, z.shape[0])
        ws = self.mapping(z, None, train)
        if train and self.style_mixing_prob > 0 and not self.is_initializing():
            if not self.has_rng(G_NOISE):
                raise ValueError(
                    f"stylegan2: style mixing in train mode draws from the {G_NOISE!r} PRNG "
                    f"stream; apply with rngs={{{G_NOISE!r}: key}} (jaxgan_lth.training.step "
                    "does) or "
                    "build with style_mixing_prob=0")
            k_cut, k_use, k_z = jax.random.split(self.make_rng(G_NOISE), 3)
            cut = jax.random.randint(k_cut, (), 1, self.num_ws)
            use = jax.random.uniform(k_use, ()) < self.style_mixing_prob
            cut = jnp.where(use, cut, self.num_ws)
            w2, _ = self.mapping_net(jax.random.normal(k_z, z.shape, jnp.float32))
            keep = (jnp.arange(self.num_ws) < cut)[None, :, None]
            ws = jnp.where(keep, ws, w2[:, None, :])
        return ws

    def __call__(self, z: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """Generates images: ``synthesis(ws_of(z, y, train))``.

        Args:
            z: latents ``[B, latent_dim]`` ~ N(0, I).
            y: labels (ignored: unconditional).
            train: see :meth:`ws_of`; noise is random when the ``g_noise`` stream is given.

        Returns:
            float32 images ``[B, r, r, out_channels]``, roughly in [-1, 1] (not clipped).

        Raises:
            ValueError: train mode with style mixing but without the ``g_noise`` PRNG stream.
        """
        return self.synthesis(self.ws_of(z, y, train))


def check_resolution(resolution) -> int:
    """Returns ``resolution``; raises ValueError unless it is a power of two in 32..1024."""
    ok = (isinstance(resolution, int) and not isinstance(resolution, bool)
          and 32 <= resolution <= 1024 and resolution & (resolution - 1) == 0)
    if not ok:
        raise ValueError(f"stylegan2: resolution = {resolution!r} is not supported; accepted: "
                         "a power of two in 32..1024 (32, 64, 128, 256, 512, 1024)")
    return resolution


@register_model("stylegan2")
def build_stylegan2(
    *,
    resolution: int,
    channels: int,
    num_classes: int = 0,
    latent_dim: int = 512,
    g_channels: int = 512,
    d_channels: int = 512,
    conditional: bool = False,
    w_dim: int = 0,
    channel_base: int = 32768,
    mapping_layers: int = 8,
    style_mixing_prob: float = 0.9,
    mbstd_group: int = 4,
    use_noise: bool = True,
    dtype: str = "float32",
    **kwargs,
) -> ModelPair:
    """Builds the StyleGAN2 pair (config F, skip G / resnet D).

    Args:
        resolution: a power of two in 32..1024.
        channels: image channels.
        num_classes: ignored (unconditional).
        latent_dim: z size (official 512).
        g_channels: G's channel cap ``channel_max`` (official 512).
        d_channels: D's channel cap ``channel_max`` (official 512).
        conditional: must be False.
        w_dim: w size; 0 = ``latent_dim`` (official 512 = z).
        channel_base: ``ch(s) = min(channel_base // s, cap)``; 32768 official / DiffAugment
            low-shot, 16384 ADA's ``paper256`` (see the module docstring).
        mapping_layers: mapping FC layers (8 paper / DiffAugment TF; 2 ADA ``auto`` / DiffAugment
            PyTorch ``low_shot``).
        style_mixing_prob: in [0, 1] (0.9 paper; 0 = off).
        mbstd_group: minibatch-stddev group size (4 in ``stylegan2``/DiffAugment; D batches in
            training must be multiples of it).
        use_noise: G's per-pixel noise inputs (True as every official config; False builds
            G without them, the reference's ``SynthesisLayer(use_noise=False)``).
        dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
        **kwargs: no other options are accepted; any key here raises ``ValueError``.

    Returns:
        ``ModelPair(StyleGAN2Generator, StyleGAN2Discriminator)``.

    Raises:
        ValueError: unknown kwargs or bad values (naming the value and what is accepted).
    """
    check_kwargs("stylegan2", kwargs, [
        "latent_dim", "g_channels", "d_channels", "conditional", "w_dim", "channel_base",
        "mapping_layers", "style_mixing_prob", "mbstd_group", "use_noise", "dtype"])
    resolution = check_resolution(resolution)
    channels = check_positive_int("stylegan2", "channels", channels)
    if conditional is not False:
        raise ValueError(f"stylegan2 is unconditional here; got conditional={conditional!r}, "
                         "accepted: False")
    check_choice("stylegan2", "dtype", dtype, list(DTYPES))
    latent_dim = check_positive_int("stylegan2", "latent_dim", latent_dim)
    w_dim = latent_dim if w_dim == 0 else check_positive_int("stylegan2", "w_dim", w_dim)
    base = check_positive_int("stylegan2", "channel_base", channel_base)
    if base // resolution < 1:
        raise ValueError(f"stylegan2: channel_base = {base} gives 0 channels at resolution "
                         f"{resolution}; accepted: channel_base >= resolution")
    try:
        ok = 0.0 <= float(style_mixing_prob) <= 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"stylegan2: style_mixing_prob = {style_mixing_prob!r} must be in [0, 1]")
    if not isinstance(use_noise, bool):
        raise ValueError(f"stylegan2: use_noise = {use_noise!r}; accepted: True or False")
    gen = StyleGAN2Generator(
        resolution=resolution, out_channels=channels, latent_dim=latent_dim, w_dim=w_dim,
        channel_base=base, channel_max=check_positive_int("stylegan2", "g_channels", g_channels),
        mapping_layers=check_positive_int("stylegan2", "mapping_layers", mapping_layers),
        style_mixing_prob=float(style_mixing_prob), use_noise=use_noise, dtype=DTYPES[dtype])
    disc = StyleGAN2Discriminator(
        resolution=resolution, in_channels=channels, channel_base=base,
        channel_max=check_positive_int("stylegan2", "d_channels", d_channels),
        mbstd_group=check_positive_int("stylegan2", "mbstd_group", mbstd_group),
        dtype=DTYPES[dtype])
    return ModelPair(gen, disc)
