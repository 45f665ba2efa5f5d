"""Part ``r1``: the R1 gradient penalty on reals (Mescheder et al., ICML 2018, eq. 9).

As stylegan2-ada-pytorch ``training/loss.py`` (``StyleGAN2Loss.accumulate_gradients``, phase
``Dr1``) and the DiffAugment TF low-shot code's ``ns_DiffAugment_r1``::

    R1 = mean_b sum_{h, w, c} (d D(x_b) / d x_b)^2      # x = the real batch
    L_D += interval * (gamma / 2) * R1                  # on every interval-th G iteration

``through_augment=True`` (default) takes the gradient w.r.t. the reals *before* the D-input
augmentations, through them (``run_D`` augments after ``real_img_tmp.requires_grad_()`` in the
PyTorch code; ``ns_DiffAugment_r1`` in the TF code used for the paper's 100-shot numbers);
``False`` takes it w.r.t. the augmented reals D saw (TF ``ns_r1_DiffAugment``, the CIFAR/FFHQ
runs). The augmentations are redrawn for the penalty (their own key), as in the reference's
separate ``Dr1`` phase.

Lazy regularisation (``interval`` = k > 1; reference ``D_reg_interval = 16``): the penalty,
multiplied by k as the reference's ``gain``, is added in the D steps of G iterations with
``step % k == 0`` (every D step of those iterations when ``n_dis > 1``). The reference runs it
as a separate Adam step with ``lr * c`` and ``betas ** c``, ``c = k / (k + 1)``, to offset the
extra step; here no extra step is taken, so D's optimizer is unchanged
(:func:`jaxgan_lth.schedules.lazy_regularization_adam` gives the reference's numbers for a
config that wants them). The DiffAugment TF low-shot runs use no lazy regularisation
(``interval = 1``), gamma 10; ADA's ``paper256`` gamma 1, ``stylegan2`` gamma 10,
``auto`` 0.0002 res^2 / batch (fewshot_sparse_regularisers.md section 1.1).

Config section ``r1``: ``gamma`` (0 = off), ``interval`` (G iterations; 1 = every step),
``through_augment``. Traced strength ``r1_gamma``. State ``{"penalty": R1 of the last
regularised step}`` (logged as ``r1_penalty``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from typing_extensions import override

from jaxgan_lth.parts import base

_AUG_SALT = 0x5231


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


class R1(base.LossTerm):
    """R1 penalty on D's real logits, optionally lazy."""

    name = "r1"
    section = "r1"
    HPARAMS = {"r1_gamma": base.HParam("gamma")}

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "r1" in config and float(config.r1.gamma) > 0.0

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Raises ValueError: a negative gamma, an interval < 1, a non-bool through_augment."""
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

    @override
    def init_state(self):
        return {"penalty": jnp.float32(0.0)}

    @override
    def metrics_of_state(self, state):
        return {"r1_penalty": state["penalty"]}

    def _penalty(self, ctx: base.DContext) -> jax.Array:
        if self.cfg.through_augment and ctx.x_real_clean is not None:
            key = jax.random.fold_in(ctx.key, _AUG_SALT)
            return r1_penalty(lambda x: ctx.d_apply(ctx.augment(key, x)), ctx.x_real_clean)
        return r1_penalty(ctx.d_apply, ctx.x_real)

    @override
    def d_term(self, ctx, state, hp):
        k = int(self.cfg.interval)
        if k == 1:
            pen = self._penalty(ctx)
        else:
            pen = jax.lax.cond(ctx.step % k == 0, lambda: self._penalty(ctx),
                               lambda: jnp.float32(0.0))
        on = (ctx.step % k == 0) if k > 1 else True
        new = {"penalty": jnp.where(on, jax.lax.stop_gradient(pen), state["penalty"])}
        return k * 0.5 * hp["r1_gamma"] * pen, {}, new
