"""Parts: the methods the composed GAN step is built from (see :mod:`jaxgan_lth.parts.base`).

``REGISTRY`` maps a part name to its class (scenic-style registry); the step builder takes every
part the config switches on, in registry order (augmentations are applied in this order).
Adding a method = one module here and one registry line: the part declares its config section
once (:meth:`Part.default_config`), from which ``configs/default.py`` builds the default config's
section and, where :attr:`Part.ticket_copy`, the ticket's copy (``config.ticket.<section>``).
"""

from __future__ import annotations

import ml_collections

from jaxgan_lth.parts import base
from jaxgan_lth.parts.ada import ADA
from jaxgan_lth.parts.advaug import AdvAug
from jaxgan_lth.parts.base import (
    Augmentation,
    DContext,
    FeaturePerturbation,
    GContext,
    HParam,
    LossTerm,
    Part,
)
from jaxgan_lth.parts.diffaug import DiffAugment
from jaxgan_lth.parts.lecam import LeCam
from jaxgan_lth.parts.maskedgan import MaskedGAN
from jaxgan_lth.parts.nice import NICE
from jaxgan_lth.parts.pathlen import PathLength
from jaxgan_lth.parts.r1 import R1

REGISTRY: dict[str, type[base.Part]] = {
    DiffAugment.name: DiffAugment,
    ADA.name: ADA,
    AdvAug.name: AdvAug,
    LeCam.name: LeCam,
    NICE.name: NICE,
    MaskedGAN.name: MaskedGAN,
    R1.name: R1,
    PathLength.name: PathLength,
}


def build(config: ml_collections.ConfigDict) -> list[base.Part]:
    """The parts ``config`` switches on, instantiated, in registry order."""
    return [cls(config) for cls in REGISTRY.values() if cls.enabled(config)]


def validate_config(config: ml_collections.ConfigDict, prefix: str = "") -> None:
    """Runs every registered part's validator on its section of ``config``.

    Raises:
      ValueError: from the first part whose section holds a bad value.
    """
    for cls in REGISTRY.values():
        cls.validate(config, prefix)


def traced_hparams() -> dict[str, tuple[type[base.Part], HParam]]:
    """``{traced name: (part class, HParam)}`` over every registered part."""
    return {n: (cls, hp) for cls in REGISTRY.values() for n, hp in cls.HPARAMS.items()}


__all__ = [
    "REGISTRY", "ADA", "AdvAug", "Augmentation", "DContext", "DiffAugment",
    "FeaturePerturbation", "GContext", "HParam", "LeCam", "LossTerm", "MaskedGAN", "NICE", "Part",
    "PathLength", "R1",
    "build", "traced_hparams", "validate_config",
]
