"""Part ``advaug``: AdvAug, PGD on intermediate features (Chen et al., NeurIPS 2021, Eq. 5).

Config section ``advaug`` (defaults in :meth:`AdvAug.default_config`): ``mode``
(``none``, ``pgd`` = AdvAug, ``noise`` = the feature-noise baseline of the paper's Table 6),
``networks`` (``d``: D's pooled features in the D step; ``g``: G's first-layer output in the
G step; ``gd``), ``num_steps``, ``step_size``, ``radius``, ``random_start``, ``lam``,
``direction`` (``paper`` or ``reference_code``), ``noise_scale``, ``noise_kind`` and
``augment_adv_branch`` (False: in the G step only the clean branch goes through the D-input
augmentations and the perturbed branch's fakes reach D un-augmented, as UDEG BigGAN's
``train_eval.py``; seed_repos.md section 1.3).

The maths (``jax.grad`` w.r.t. the perturbation, signed steps, projection, the loss mix) lives
in :mod:`jaxgan_lth.augment.advaug`; this module wires it into the step. Traced strengths:
``adv_step_size``, ``adv_radius``, ``adv_lam``, ``adv_noise_scale``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from typing_extensions import override

from jaxgan_lth.augment import advaug
from jaxgan_lth.parts import base
from jaxgan_lth.training import losses

MODES = ("none", "pgd", "noise")
NETWORKS = ("g", "d", "gd")
#: Which modes read each traced strength (a sweep of an unused one is refused).
USED_BY_MODES = {
    "adv_step_size": ("pgd",),
    "adv_radius": ("pgd",),
    "adv_lam": ("pgd", "noise"),
    "adv_noise_scale": ("noise",),
}


class AdvAug(base.FeaturePerturbation):
    """AdvAug (PGD-k on D's pooled features and G's first-layer output) or the noise baseline.

    D step: ``L = (1 - lam) L(head(h)) + lam L(head(h + delta))`` with separate deltas for the
    real and the fake features. G step: the same mix with ``delta`` at G's first-layer output.
    """

    name = "advaug"
    section = "advaug"
    HPARAMS = {
        "adv_step_size": base.HParam("step_size"),
        "adv_radius": base.HParam("radius"),
        "adv_lam": base.HParam("lam", 0.0, 1.0),
        "adv_noise_scale": base.HParam("noise_scale"),
    }

    @classmethod
    @override
    def default_config(cls, mode: str = "none") -> ml_collections.ConfigDict:
        """AdvAug (Chen et al., NeurIPS 2021, Eq. 5, App. A1) section; defaults from the paper.

        Args:
          mode: :data:`MODES`; "none" = off.
        """
        c = ml_collections.ConfigDict()
        c.mode = mode  # "none", "pgd" (AdvAug) or "noise" (feature-noise baseline, paper Table 6)
        # whose updates are augmented: "d" perturbs D's pooled features (reals and fakes) in the D
        # step, "g" perturbs G's first-layer output in the G step (the paper's two feature points)
        c.networks = "gd"
        c.num_steps = 1  # PGD steps (PGD-1 in the paper)
        c.step_size = 0.01  # PGD step size (gamma of the released code)
        c.radius = 0.0  # L-infinity radius of the projection; 0 = no projection (released code)
        c.random_start = False  # start PGD uniformly inside the radius (needs radius > 0)
        c.lam = 0.5  # weight of the adversarial loss: (1 - lam) * clean + lam * adversarial
        # "paper": delta maximises the loss of the player being updated; "reference_code": the
        # released code's signs (delta raises D's output on every branch), seed_repos.md 1.3
        c.direction = "paper"
        c.noise_scale = 0.1  # mode "noise": scale of the noise
        # mode "noise": "uniform" (scale * U[0,1), released code) or "gaussian"
        c.noise_kind = "uniform"
        # False: in the G step only the clean branch goes through the D-input augmentations; the
        # perturbed branch's fakes reach D un-augmented (UDEG BigGAN train_eval.py)
        c.augment_adv_branch = True
        return c

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "advaug" in config and config.advaug.mode != "none"

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Checks ``config.<prefix>advaug``.

        Raises:
          ValueError: an unknown mode/networks/direction/noise kind, a negative strength,
            ``lam`` outside [0, 1], ``num_steps < 1``, ``random_start`` without radius.
        """
        if cls.section not in config:
            return
        ac = config.advaug
        where = f"config.{prefix}advaug"
        for key, choices in (("mode", MODES), ("networks", NETWORKS),
                             ("direction", advaug.DIRECTIONS), ("noise_kind", advaug.NOISE_KINDS)):
            if ac[key] not in choices:
                raise ValueError(
                    f"{where}.{key} = {ac[key]!r} is not accepted; choose one of {choices}.")
        super().validate(config, prefix)
        if int(ac.num_steps) < 1:
            raise ValueError(f"{where}.num_steps = {ac.num_steps} must be >= 1.")
        if ac.random_start and ac.radius <= 0:
            raise ValueError(f"{where}.random_start=True needs radius > 0 (got {ac.radius}).")

    def __init__(self, config):
        super().__init__(config)
        self.loss_kind = config.train.loss
        self.project = float(self.cfg.radius) > 0.0

    def used_hparams(self) -> tuple[str, ...]:
        """Traced strengths the configured mode reads."""
        return tuple(n for n, modes in USED_BY_MODES.items() if self.cfg.mode in modes)

    @override
    def perturbs_d(self) -> bool:
        return "d" in self.cfg.networks

    @override
    def perturbs_g(self) -> bool:
        return "g" in self.cfg.networks

    @override
    def augments_adv_branch(self) -> bool:
        """``advaug.augment_adv_branch`` (absent = True)."""
        return bool(self.cfg.get("augment_adv_branch", True))

    def delta(self, key, head, features, branch, hp):
        """The perturbation of one branch (``d_real``, ``d_fake``, ``g``), gradient-stopped."""
        if self.cfg.mode == "noise":
            return advaug.noise_perturbation(
                key, features.shape, hp["adv_noise_scale"], self.cfg.noise_kind)
        return advaug.adversarial_delta(
            head, features, branch, direction=self.cfg.direction, loss=self.loss_kind, key=key,
            num_steps=int(self.cfg.num_steps), step_size=hp["adv_step_size"],
            radius=hp["adv_radius"], random_start=bool(self.cfg.random_start),
            project=self.project,
        )

    @override
    def d_loss(self, key, head, h, labels, num_real, clean, hp):
        b = num_real
        y_r, y_f = (labels[:b], labels[b:]) if labels is not None else (None, None)
        kr, kf = jax.random.split(key)
        d_r = self.delta(kr, lambda f: head(f, y_r), h[:b], "d_real", hp)
        d_f = self.delta(kf, lambda f: head(f, y_f), h[b:], "d_fake", hp)
        adv_logits = head(h + jnp.concatenate([d_r, d_f], axis=0), labels)
        adv = losses.d_loss(adv_logits[:b], adv_logits[b:], self.loss_kind)
        loss = advaug.combine(clean, adv, hp["adv_lam"])
        return loss, {"d_loss_clean": clean, "d_loss_adv": adv}

    @override
    def g_loss(self, key, logits_at, point_shape, clean, hp):
        zero = jnp.zeros(point_shape, jnp.float32)
        delta = self.delta(key, lambda d: logits_at(d, True), zero, "g", hp)
        adv = losses.g_loss(logits_at(delta, False), self.loss_kind)
        loss = advaug.combine(clean, adv, hp["adv_lam"])
        return loss, {"g_loss_clean": clean, "g_loss_adv": adv}
