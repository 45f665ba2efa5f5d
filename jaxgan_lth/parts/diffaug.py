"""Part ``diffaug``: DiffAugment on every D input (Zhao et al., NeurIPS 2020).

Config section ``diffaug``: ``policy``, comma-separated ops from
:data:`jaxgan_lth.augment.diffaugment.POLICY_OPS` (``color``, ``translation``, ``cutout``);
``""`` switches the part off; ``fill``, the value of translation's uncovered pixels and of
cutout's rectangle in image units [-1, 1] (0 = mid-grey, the reference; -1 = black, for
black-background data such as Fashion-MNIST), traced as ``diffaug_fill``. The maths lives in
:mod:`jaxgan_lth.augment.diffaugment` (mit-han-lab/data-efficient-gans ``DiffAugment_pytorch.py``).
"""

from __future__ import annotations

import ml_collections
from typing_extensions import override

from jaxgan_lth.augment import diffaugment
from jaxgan_lth.parts import base


class DiffAugment(base.Augmentation):
    """DiffAugment: the same policy, fresh per-sample draws, on reals and fakes alike."""

    name = "diffaug"
    section = "diffaug"
    HPARAMS = {"diffaug_fill": base.HParam("fill", -1.0, 1.0)}

    @classmethod
    @override
    def default_config(cls, policy: str = "", fill: float = 0.0) -> ml_collections.ConfigDict:
        """DiffAugment (Zhao et al., NeurIPS 2020) section.

        Args:
          policy: a comma-separated policy of "color", "translation" (ratio 1/8), "cutout"
            (ratio 1/2); "" = off.
          fill: the value of translation's uncovered pixels and of cutout's rectangle in
            [-1, 1]: 0 (mid-grey) is the reference; -1 (black) suits black-background data
            (docs/results.md, leak table).
        """
        return ml_collections.ConfigDict({"policy": policy, "fill": fill})

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "diffaug" in config and bool(config.diffaug.policy)

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Raises ValueError for an unknown op or a fill outside [-1, 1], naming the key."""
        if cls.section not in config:
            return
        super().validate(config, prefix)
        try:
            diffaugment.parse_policy(config.diffaug.policy)
        except ValueError as e:
            raise ValueError(f"config.{prefix}diffaug.policy: {e}") from None

    @override
    def augment(self, key, x, state, hp):
        """DiffAugment of ``x`` ``[B, H, W, C]`` in [-1, 1] (policy; traced ``diffaug_fill``)."""
        return diffaugment.diff_augment(key, x, self.cfg.policy, fill=hp["diffaug_fill"])
