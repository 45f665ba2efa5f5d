"""Augmentations applied inside the compiled train steps.

* `diffaugment`: DiffAugment (Zhao et al., NeurIPS 2020) on NHWC images -- `diff_augment(key, x,
  policy)` with policies built from `color`, `translation`, `cutout`.
* `advaug`: AdvAug (Chen et al., NeurIPS 2021) feature-level adversarial perturbations found by
  signed-gradient PGD (`pgd_perturbation`, `adversarial_delta`), the feature-noise baseline
  (`noise_perturbation`) and the clean/adversarial loss mix (`combine`).
"""

from jaxgan_lth.augment.advaug import (
    BRANCHES,
    DIRECTIONS,
    LOSS_KINDS,
    NOISE_KINDS,
    adversarial_delta,
    branch_objective,
    combine,
    d_fake_loss,
    d_loss,
    d_real_loss,
    g_loss,
    noise_perturbation,
    pgd_perturbation,
)
from jaxgan_lth.augment.diffaugment import (
    POLICY_OPS,
    diff_augment,
    parse_policy,
    policy_ops,
)

__all__ = [
    "BRANCHES",
    "DIRECTIONS",
    "LOSS_KINDS",
    "NOISE_KINDS",
    "POLICY_OPS",
    "adversarial_delta",
    "branch_objective",
    "combine",
    "d_fake_loss",
    "d_loss",
    "d_real_loss",
    "diff_augment",
    "g_loss",
    "noise_perturbation",
    "parse_policy",
    "pgd_perturbation",
    "policy_ops",
]
