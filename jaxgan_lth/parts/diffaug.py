"""Part ``diffaug``: DiffAugment on every D input (Zhao et al., NeurIPS 2020).

Config section ``diffaug``: ``policy``, comma-separated ops from
:data:`jaxgan_lth.augment.diffaugment.POLICY_OPS` (``color``, ``translation``, ``cutout``);
``""`` switches the part off. The maths lives in :mod:`jaxgan_lth.augment.diffaugment`
(mit-han-lab/data-efficient-gans ``DiffAugment_pytorch.py``).
"""

from __future__ import annotations

from typing_extensions import override

from jaxgan_lth.augment import diffaugment
from jaxgan_lth.parts import base


class DiffAugment(base.Augmentation):
    """DiffAugment: the same policy, fresh per-sample draws, on reals and fakes alike."""

    name = "diffaug"
    section = "diffaug"

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "diffaug" in config and bool(config.diffaug.policy)

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Raises ValueError for an unknown op, naming the key and the accepted ops."""
        if cls.section not in config:
            return
        try:
            diffaugment.parse_policy(config.diffaug.policy)
        except ValueError as e:
            raise ValueError(f"config.{prefix}diffaug.policy: {e}") from None

    @override
    def augment(self, key, x, state, hp):
        """DiffAugment of ``x`` ``[B, H, W, C]`` in [-1, 1] with the configured policy."""
        return diffaugment.diff_augment(key, x, self.cfg.policy)
