"""Part ``lecam``: LeCam regularisation of D (Tseng et al., CVPR 2021, google/lecam-gan).

As the released code (``biggan_cifar/losses.py::lecam_reg``, ``third_party/utils.py::
ema_losses``; fewshot_sparse_regularisers.md section 7)::

    alpha_R <- g alpha_R + (1 - g) mean(D(x_real))      # every D step, current batch included
    alpha_F <- g alpha_F + (1 - g) mean(D(G(z)))        # g = 0 before the start iteration
    R_LC = mean(relu(D(x_real) - alpha_F)^2) + mean(relu(alpha_R - D(G(z)))^2)
    L_D += weight * R_LC                                # only after the start iteration

The anchors carry no gradient. The paper writes the squared distances without the relu; the
one-sided clipping is the code's. Iterations are counted 1-based as BigGAN-PyTorch's
``state_dict['itr']``: in G iteration ``itr = step + 1`` the decay is 0 while
``itr < start`` and R_LC is added when ``itr > start``.

Config section ``lecam``: ``weight`` (lambda; 0 = off; 0.3 for BigGAN-CIFAR), ``decay``
(gamma; 0.9 BigGAN-CIFAR code, 0.99 paper/StyleGAN2), ``start`` (G iterations; 1000 in
``biggan_cifar/train.py``), ``anchor_init`` (initial anchors; the code's 1000 is overwritten
while ``itr < start``). Traced strengths: ``lecam_weight``, ``lecam_decay``. The anchors are
in the train state (checkpointed and resumed, unlike the released code).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from typing_extensions import override

from jaxgan_lth.parts import base


class LeCam(base.LossTerm):
    """LeCam's anchored penalty on D's outputs; state ``{"real": [], "fake": []}`` anchors."""

    name = "lecam"
    section = "lecam"
    HPARAMS = {
        "lecam_weight": base.HParam("weight"),
        "lecam_decay": base.HParam("decay", 0.0, 1.0, high_open=True),
    }

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "lecam" in config and float(config.lecam.weight) > 0.0

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Raises ValueError: a negative weight, a decay outside [0, 1), a negative start."""
        if cls.section not in config:
            return
        super().validate(config, prefix)
        if int(config.lecam.start) < 0:
            raise ValueError(f"config.{prefix}lecam.start = {config.lecam.start} must be >= 0.")

    @override
    def init_state(self):
        a = jnp.float32(self.cfg.anchor_init)
        return {"real": a, "fake": a}

    @override
    def metrics_of_state(self, state):
        return {"lecam_anchor_real": state["real"], "lecam_anchor_fake": state["fake"]}

    @override
    def d_term(self, ctx, state, hp):
        itr = ctx.step + 1
        g = jnp.where(itr < int(self.cfg.start), 0.0, hp["lecam_decay"])
        mean_r = jax.lax.stop_gradient(jnp.mean(ctx.logits_real))
        mean_f = jax.lax.stop_gradient(jnp.mean(ctx.logits_fake))
        new = {"real": g * state["real"] + (1.0 - g) * mean_r,
               "fake": g * state["fake"] + (1.0 - g) * mean_f}
        reg = (jnp.mean(jax.nn.relu(ctx.logits_real - new["fake"]) ** 2)
               + jnp.mean(jax.nn.relu(new["real"] - ctx.logits_fake) ** 2))
        on = (itr > int(self.cfg.start)).astype(jnp.float32)
        return on * hp["lecam_weight"] * reg, {"lecam_reg": reg}, new
