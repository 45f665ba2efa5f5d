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

StyleGAN2 form (``zero_debias = True``; lecam-gan ``stylegan2/lecam_loss.py::lecamreg``, the
file its README says to copy into NVIDIA's TF stylegan2-ada; the integration itself was not
released): the anchors are TensorFlow's zero-debiased moving averages
(``moving_averages.assign_moving_average(decay=0.99, zero_debias=True)``), updated once per D
step with the current batch included, and R_LC is added from the first step (no start delay)::

    b_R <- g b_R + (1 - g) mean(D(x_real)),  b_R starts at 0;  t <- t + 1
    alpha_R = b_R / (1 - g^t)                           # likewise b_F, alpha_F

Its scripts use lambda 1e-6 (``run_train_cifar.sh``, ``--cfg cifar``) and 3e-7
(``run_train_ffhq.sh``, FFHQ-1k, ``--cfg paper256``), with g = 0.99
(:meth:`LeCam.stylegan2_config`).

Config section ``lecam``: ``weight`` (lambda; 0 = off; 0.3 for BigGAN-CIFAR), ``decay``
(gamma; 0.9 BigGAN-CIFAR code, 0.99 paper/StyleGAN2), ``start`` (G iterations; 1000 in
``biggan_cifar/train.py``; must be 0 with ``zero_debias``), ``anchor_init`` (initial anchors;
the code's 1000 is overwritten while ``itr < start``; unused with ``zero_debias``),
``zero_debias`` (False = the BigGAN-CIFAR form above, the default; a section without the key
reads False). Traced strengths: ``lecam_weight``, ``lecam_decay``. The anchors (and, for the
zero-debiased form, the biased averages ``b_R``, ``b_F`` and the count ``t``) are in the train
state (checkpointed and resumed, unlike the released code).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
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
    def default_config(cls, weight: float = 0.0) -> ml_collections.ConfigDict:
        """LeCam (Tseng et al., CVPR 2021) section, google/lecam-gan BigGAN-CIFAR values.

        Args:
          weight: lambda of R_LC; 0 = off.
        """
        c = ml_collections.ConfigDict()
        c.weight = weight  # lambda of R_LC; 0 = off (BigGAN-CIFAR code: 0.3)
        c.decay = 0.9  # EMA decay of the anchors (BigGAN-CIFAR code 0.9; paper / StyleGAN2 0.99)
        c.start = 1000  # G iteration after which R_LC is added (anchors = batch means before it)
        c.anchor_init = 0.0  # initial anchors (overwritten while the iteration < start)
        # False: the BigGAN-CIFAR anchors above; True: lecam_loss.py's zero-debiased EMAs (needs
        # start = 0; see stylegan2_config)
        c.zero_debias = False
        return c

    @classmethod
    def stylegan2_config(cls, weight: float = 0.0) -> ml_collections.ConfigDict:
        """LeCam's StyleGAN2 form of the section (google/lecam-gan ``stylegan2/lecam_loss.py``).

        :meth:`default_config` with decay 0.99, zero-debiased anchors, no start delay.

        Args:
          weight: lambda; its scripts': 1e-6 (CIFAR-10 10%, ``--cfg cifar``), 3e-7 (FFHQ-1k,
            ``--cfg paper256``); 0 = off.
        """
        c = cls.default_config(weight)
        c.decay = 0.99  # assign_moving_average(decay=0.99, zero_debias=True)
        c.start = 0  # no start delay
        c.zero_debias = True
        return c

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "lecam" in config and float(config.lecam.weight) > 0.0

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Raises ValueError.

        A negative weight, a decay outside [0, 1), a negative start, a non-bool
        ``zero_debias``, or ``zero_debias`` with ``start != 0``.
        """
        if cls.section not in config:
            return
        super().validate(config, prefix)
        c = config.lecam
        if int(c.start) < 0:
            raise ValueError(f"config.{prefix}lecam.start = {c.start} must be >= 0.")
        zd = c.get("zero_debias", False)
        if not isinstance(zd, bool):
            raise ValueError(f"config.{prefix}lecam.zero_debias = {zd!r} must be a bool.")
        if zd and int(c.start) != 0:
            raise ValueError(f"config.{prefix}lecam.start = {c.start} with zero_debias = True; "
                             "accepted: 0 (lecam_loss.py has no start delay).")

    @property
    def zero_debias(self) -> bool:
        """Whether the anchors are zero-debiased EMAs (the StyleGAN2 form)."""
        return bool(self.cfg.get("zero_debias", False))

    @override
    def init_state(self):
        if self.zero_debias:
            z = jnp.float32(0.0)
            return {"real": z, "fake": z, "biased_real": z, "biased_fake": z, "count": z}
        a = jnp.float32(self.cfg.anchor_init)
        return {"real": a, "fake": a}

    @override
    def metrics_of_state(self, state):
        return {"lecam_anchor_real": state["real"], "lecam_anchor_fake": state["fake"]}

    @override
    def d_term(self, ctx, state, hp):
        itr = ctx.step + 1
        mean_r = jax.lax.stop_gradient(jnp.mean(ctx.logits_real))
        mean_f = jax.lax.stop_gradient(jnp.mean(ctx.logits_fake))
        if self.zero_debias:
            g = hp["lecam_decay"]
            new = {"biased_real": g * state["biased_real"] + (1.0 - g) * mean_r,
                   "biased_fake": g * state["biased_fake"] + (1.0 - g) * mean_f,
                   "count": state["count"] + 1.0}
            debias = 1.0 - g ** new["count"]
            new["real"] = new["biased_real"] / debias
            new["fake"] = new["biased_fake"] / debias
            on = jnp.float32(1.0)
        else:
            g = jnp.where(itr < int(self.cfg.start), 0.0, hp["lecam_decay"])
            new = {"real": g * state["real"] + (1.0 - g) * mean_r,
                   "fake": g * state["fake"] + (1.0 - g) * mean_f}
            on = (itr > int(self.cfg.start)).astype(jnp.float32)
        reg = (jnp.mean(jax.nn.relu(ctx.logits_real - new["fake"]) ** 2)
               + jnp.mean(jax.nn.relu(new["real"] - ctx.logits_fake) ** 2))
        return on * hp["lecam_weight"] * reg, {"lecam_reg": reg}, new
