"""Part ``r1``: the R1 gradient penalty on reals (Mescheder et al., ICML 2018, eq. 9).

As stylegan2-ada-pytorch ``training/loss.py`` (``StyleGAN2Loss.accumulate_gradients``, phase
``Dr1``) and the DiffAugment TF low-shot code's ``ns_DiffAugment_r1``::

    R1 = mean_b sum_{h, w, c} (d D(x_b) / d x_b)^2      # x = the real batch
    L_D += interval * (gamma / 2) * R1                  # on every interval-th G iteration

``through_augment=True`` (default) takes the gradient w.r.t. the reals *before* the D-input
augmentations, through them (``run_D`` augments after ``real_img_tmp.requires_grad_()`` in the
PyTorch code; ``ns_DiffAugment_r1`` in the TF code used for the paper's 100-shot numbers);
``False`` takes it w.r.t. the augmented reals D saw (TF ``ns_r1_DiffAugment``, the CIFAR/FFHQ
runs). ``augment = "shared"`` (default) differentiates through the augmentation the main D
loss gave the reals, with the same random draws (DiffAugment-stylegan2 ``training/loss.py``
``ns_DiffAugment_r1``: one ``DiffAugment(reals)`` feeds the D loss and the penalty's
``tf.gradients``); ``"redrawn"`` draws a new augmentation for the penalty (its own key; this
package before issue 27, and stylegan2-ada-pytorch's separate ``Dr1`` phase, whose ``run_D``
augments again).

Lazy regularisation (``interval`` = k > 1; reference ``D_reg_interval = 16``), ``lazy``
(:data:`~jaxgan_lth.parts.base.LAZY_MODES`):

* ``"separate_step"`` (default; stylegan2-ada-pytorch ``training/training_loop.py`` lines
  197-208, 270-290): the penalty x k (the reference's ``gain``) is D's loss in an extra Adam step
  after D's main update in G iterations with ``step % k == 0`` (after every D step of those
  iterations when ``n_dis > 1``), and D's Adam, main steps included, runs with ``lr * c``,
  ``betas ** c``, ``c = k / (k + 1)`` (:mod:`jaxgan_lth.training.lazy_reg`). The penalty is taken at
  D's parameters after the main update, on the main step's real batch.
* ``"loss_gain"``: the penalty x k is added to the main D loss of those steps and D's Adam is
  unchanged (no extra step; this package before issue 27).

With ``interval = 1`` both are the penalty in every main D loss. The DiffAugment TF low-shot
runs use no lazy regularisation (``interval = 1``), gamma 10; ADA's ``paper256`` gamma 1,
``stylegan2`` gamma 10, ``auto`` 0.0002 res^2 / batch (fewshot_sparse_regularisers.md
section 1.1).

Config section ``r1``: ``gamma`` (0 = off), ``interval`` (G iterations; 1 = every step),
``through_augment``, ``augment`` (absent = ``"shared"``), ``lazy`` (absent =
``"separate_step"``). Traced strength ``r1_gamma``. State ``{"penalty": R1 of the last
regularised step}`` (logged as ``r1_penalty``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from typing_extensions import override

from jaxgan_lth.parts import base

_AUG_SALT = 0x5231
#: ``r1.augment``: the main loss's augmentation draws, or new ones for the penalty.
AUGMENT_DRAWS = ("shared", "redrawn")


def r1_penalty(d_apply, x: jax.Array) -> jax.Array:
    """``mean_b sum (d sum_b' D(x_b') / d x_b)^2``: R1 of ``d_apply`` at ``x`` ``[B, H, W, C]``.

    Args:
      d_apply: ``d_apply(x) -> logits [B]``.
      x: the point (real images).

    Returns:
      float32 scalar, differentiable in D's parameters (double backprop).
    """
    grads = jax.grad(lambda xx: jnp.sum(d_apply(xx)))(x)
    return jnp.mean(jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=(1, 2, 3)))


class R1(base.LazyRegTerm):
    """R1 penalty on D's real logits, optionally lazy."""

    name = "r1"
    lazy_network = "d"
    section = "r1"
    ticket_copy = False  # one section for every stage
    HPARAMS = {"r1_gamma": base.HParam("gamma")}

    @classmethod
    @override
    def default_config(cls, gamma: float = 0.0) -> ml_collections.ConfigDict:
        """R1 gradient penalty (Mescheder et al. 2018) section, stylegan2-ada-pytorch loss.py.

        Args:
          gamma: R1 weight gamma; 0 = off.
        """
        c = ml_collections.ConfigDict()
        c.gamma = gamma  # R1 weight gamma (L_D += gamma/2 * R1); 0 = off (DiffAugment low-shot: 10)
        # G iterations between penalties (lazy R1 of stylegan2-ada-pytorch: 16); 1 = every step
        # (DiffAugment TF low-shot, lazy_regularization=False)
        c.interval = 1
        # interval > 1: "separate_step" = the penalty x interval as D's own Adam step, D's Adam at
        # lr * c, betas ** c, c = k / (k + 1) (stylegan2-ada-pytorch;
        # jaxgan_lth/training/lazy_reg.py); "loss_gain" = the penalty x interval in the main D
        # loss, Adam unscaled (before issue 27)
        c.lazy = "separate_step"
        # gradient w.r.t. the reals before the D-input augmentations, through them (PyTorch code,
        # TF ns_DiffAugment_r1); False: w.r.t. the augmented reals (TF ns_r1_DiffAugment)
        c.through_augment = True
        # "shared": through the main D loss's augmentation of the reals, same draws (TF
        # ns_DiffAugment_r1); "redrawn": a new draw for the penalty (before issue 27)
        c.augment = "shared"
        return c

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "r1" in config and float(config.r1.gamma) > 0.0

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Raises ValueError.

        A negative gamma, an interval < 1, a non-bool through_augment, an unknown augment or
        lazy mode.
        """
        if cls.section not in config:
            return
        super().validate(config, prefix)
        c = config.r1
        iv = c.interval
        if isinstance(iv, bool) or not isinstance(iv, int) or iv < 1:
            raise ValueError(f"config.{prefix}r1.interval = {iv!r} must be an integer >= 1 "
                             "(1 = every G iteration; the reference's lazy R1 uses 16).")
        if not isinstance(c.through_augment, bool):
            raise ValueError(f"config.{prefix}r1.through_augment = {c.through_augment!r} must "
                             "be a bool.")
        draws = c.get("augment", AUGMENT_DRAWS[0])
        if draws not in AUGMENT_DRAWS:
            raise ValueError(f"config.{prefix}r1.augment = {draws!r}; accepted: {AUGMENT_DRAWS}.")
        base.check_lazy(c, f"config.{prefix}r1")

    @override
    def init_state(self):
        return {"penalty": jnp.float32(0.0)}

    @override
    def metrics_of_state(self, state):
        return {"r1_penalty": state["penalty"]}

    def _penalty(self, ctx: base.DContext) -> jax.Array:
        if self.cfg.through_augment and ctx.x_real_clean is not None:
            shared = self.cfg.get("augment", AUGMENT_DRAWS[0]) == "shared"
            if shared and ctx.augment_real is not None:
                return r1_penalty(lambda x: ctx.d_apply(ctx.augment_real(x)), ctx.x_real_clean)
            key = jax.random.fold_in(ctx.key, _AUG_SALT)
            return r1_penalty(lambda x: ctx.d_apply(ctx.augment(key, x)), ctx.x_real_clean)
        return r1_penalty(ctx.d_apply, ctx.x_real)

    @override
    def phase_term(self, ctx, state, hp):
        pen = self._penalty(ctx)
        new = {"penalty": jax.lax.stop_gradient(pen)}
        return int(self.cfg.interval) * 0.5 * hp["r1_gamma"] * pen, {}, new

    @override
    def d_term(self, ctx, state, hp):
        if self.lazy_phase():
            return 0.0, {}, state  # its own step (jaxgan_lth.training.lazy_reg)
        k = int(self.cfg.interval)
        if k == 1:
            pen = self._penalty(ctx)
        else:
            pen = jax.lax.cond(ctx.step % k == 0, lambda: self._penalty(ctx),
                               lambda: jnp.float32(0.0))
        on = (ctx.step % k == 0) if k > 1 else True
        new = {"penalty": jnp.where(on, jax.lax.stop_gradient(pen), state["penalty"])}
        return k * 0.5 * hp["r1_gamma"] * pen, {}, new
