"""Part ``maskedgan``: MaskedGAN's maskings of every D input (Huang et al., NeurIPS 2022).

A **reconstruction**: no code was released (``fewshot_sparse_regularisers.md`` section 5.1);
the maths and which parts of it are sourced are in :mod:`jaxgan_lth.augment.masking`. Applied
like DiffAugment to every image D sees (reals and fakes, D and G steps), after the augmentations
before it in the registry (DiffAugment): balanced spectral masking first, then shifted spatial
masking (so masked patches stay exactly 0). The order and using both at once are ours.

Config section ``maskedgan`` (:meth:`MaskedGAN.default_config`): ``ops``
(comma-separated from :data:`OPS`; ``""`` = off), ``spatial_ratio``, ``patch_size``,
``spectral_ratio``, ``num_bands``, ``band_p_max``, ``band_step``, ``band_decay``. Every constant is
ours (the paper's are unverified): ``spatial_ratio`` 0.25 (the area DiffAugment's cutout
removes), ``patch_size`` 4 px (a 7x7 / 8x8 grid at 28 / 32 px), ``num_bands`` 8 (rings about two
frequency indices wide at 28-32 px, as GenCo's 2-px rings at 256 px, section 5.3),
``spectral_ratio`` 0.2 (GenCo drops 12 of its 56 randomly dropped bands, 0.21), ``band_p_max`` 0.5
(no band dropped more often than kept), ``band_step`` 0.001 per D step and ``band_decay`` 0.9
(CHAIN's controller step and EMA, section 4.3). Traced strengths: ``mask_spatial_ratio``,
``mask_spectral_ratio``, ``mask_band_p_max``, ``mask_band_step``, ``mask_band_decay``. With
``spectral``, the bands' relative offsets and reliance EMAs live in
``state["parts"]["maskedgan"]`` and adapt after every D step
(:meth:`MaskedGAN.observe_d_step`, redrawing that step's band drops from its key).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from typing_extensions import override

from jaxgan_lth.augment import masking
from jaxgan_lth.parts import base

OPS = ("spatial", "spectral")
#: Which op reads each traced strength (a sweep of an unused one is refused).
USED_BY_OPS = {
    "mask_spatial_ratio": "spatial",
    "mask_spectral_ratio": "spectral",
    "mask_band_p_max": "spectral",
    "mask_band_step": "spectral",
    "mask_band_decay": "spectral",
}


def parse_ops(ops: str) -> tuple[str, ...]:
    """``"spatial,spectral"`` -> ``("spatial", "spectral")``.

    Raises:
      ValueError: an unknown op, naming the accepted ones.
    """
    names = tuple(o.strip() for o in str(ops).split(",") if o.strip())
    bad = [o for o in names if o not in OPS]
    if bad:
        raise ValueError(f"unknown op(s) {bad} in {ops!r}; accepted: comma-separated names "
                         f"from {OPS}.")
    return names


class MaskedGAN(base.Augmentation):
    """Shifted spatial and balanced spectral masking of D's inputs (a reconstruction).

    State (with ``spectral``): ``{"offsets": [K], "credit": [K]}`` float32, the bands' relative
    drop-probability offsets and the EMA of D's reliance on each band.
    """

    name = "maskedgan"
    section = "maskedgan"
    HPARAMS = {
        "mask_spatial_ratio": base.HParam("spatial_ratio", 0.0, 1.0),
        "mask_spectral_ratio": base.HParam("spectral_ratio", 0.0, 1.0),
        "mask_band_p_max": base.HParam("band_p_max", 0.0, 1.0),
        "mask_band_step": base.HParam("band_step"),
        "mask_band_decay": base.HParam("band_decay", 0.0, 1.0, high_open=True),
    }

    @classmethod
    @override
    def default_config(cls, ops: str = "") -> ml_collections.ConfigDict:
        """MaskedGAN (Huang et al., NeurIPS 2022) section.

        A reconstruction (no released code; see jaxgan_lth/augment/masking.py). Every constant
        is ours; the paper's are unverified.

        Args:
          ops: comma-separated names from :data:`OPS`; "" = off.
        """
        c = ml_collections.ConfigDict()
        c.ops = ops  # comma-separated: "spatial" (shifted patch masking), "spectral"; "" = off
        c.spatial_ratio = 0.25  # fraction of grid patches zeroed per image (cutout's area, 1/4)
        c.patch_size = 4  # patch side in pixels; must divide the resolution (7x7 grid at 28 px)
        c.spectral_ratio = 0.2  # mean FFT-band drop probability (GenCo drops 12/56 = 0.21)
        c.num_bands = 8  # Chebyshev frequency rings (GenCo: 64 rings of 2 px at 256 px)
        c.band_p_max = 0.5  # no band dropped with probability above this
        c.band_step = 0.001  # balancing controller step per D step (CHAIN's delta_p)
        c.band_decay = 0.9  # EMA decay of D's per-band reliance (CHAIN's EMA)
        return c

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "maskedgan" in config and bool(parse_ops(config.maskedgan.ops))

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Checks ``config.<prefix>maskedgan``.

        Raises:
          ValueError: an unknown op (accepted ones named), a ratio or ``band_p_max`` outside
            [0, 1], ``band_decay`` outside [0, 1), a negative ``band_step``, ``patch_size`` not
            dividing the image size, ``num_bands`` outside [1, resolution // 2 + 1].
        """
        if cls.section not in config:
            return
        c = config.maskedgan
        where = f"config.{prefix}maskedgan"
        try:
            parse_ops(c.ops)
        except ValueError as e:
            raise ValueError(f"{where}.ops: {e}") from None
        super().validate(config, prefix)
        for key in ("patch_size", "num_bands"):
            v = c[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{where}.{key} = {v!r} must be an integer >= 1.")
        if "data" in config:
            cls._check_sizes(c, int(config.data.resolution), where)

    @staticmethod
    def _check_sizes(c, res: int, where: str) -> None:
        try:
            masking.grid_shape(res, res, int(c.patch_size))
        except ValueError:
            raise ValueError(f"{where}.patch_size = {c.patch_size} must divide the resolution "
                             f"{res}; accepted: {[p for p in range(1, res + 1) if res % p == 0]}."
                             ) from None
        try:
            masking.band_index(res, res, int(c.num_bands))
        except ValueError:
            raise ValueError(f"{where}.num_bands = {c.num_bands}: accepted 1..{res // 2 + 1} "
                             f"at resolution {res}.") from None

    def __init__(self, config):
        super().__init__(config)
        self.ops = parse_ops(self.cfg.ops)
        self.patch = int(self.cfg.patch_size)
        self.num_bands = int(self.cfg.num_bands)
        if "data" in config:
            self._check_sizes(self.cfg, int(config.data.resolution), "config.maskedgan")

    def used_hparams(self) -> tuple[str, ...]:
        """Traced strengths the configured ops read."""
        return tuple(n for n, op in USED_BY_OPS.items() if op in self.ops)

    @override
    def init_state(self):
        if "spectral" not in self.ops:
            return None
        zeros = jnp.zeros((self.num_bands,), jnp.float32)
        return {"offsets": zeros, "credit": zeros}

    @override
    def metrics_of_state(self, state):
        o = state["offsets"]
        return {"mask_band_offset_min": jnp.min(o), "mask_band_offset_max": jnp.max(o)}

    def probs(self, state, hp):
        """Band drop probabilities ``[K]`` from the state and the traced strengths."""
        return masking.band_probs(state["offsets"], hp["mask_spectral_ratio"],
                                  hp["mask_band_p_max"])

    @override
    def augment(self, key, x, state, hp):
        """Spectral then spatial masking of ``x`` ``[B, H, W, C]`` in [-1, 1]."""
        k_spatial, k_spectral = jax.random.split(key)
        if "spectral" in self.ops:
            x = masking.spectral_mask(k_spectral, x, self.probs(state, hp))
        if "spatial" in self.ops:
            x = masking.spatial_mask(k_spatial, x, hp["mask_spatial_ratio"], self.patch)
        return x

    @override
    def observe_d_step(self, state, obs, hp):
        """Balances the band probabilities from D's real logits (module docstring)."""
        if "spectral" not in self.ops:
            return state
        k_spectral = jax.random.split(obs.key)[1]  # the draws augment() made in this D step
        drops = masking.sample_band_drops(k_spectral, obs.x_shape[0], self.probs(state, hp))
        b = obs.logits_real.shape[0]
        reliance, valid = masking.band_reliance(drops[:b], obs.logits_real)
        return masking.balance_update(state, reliance, valid, hp["mask_band_decay"],
                                      hp["mask_band_step"])
