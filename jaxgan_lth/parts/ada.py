"""Part ``ada``: adaptive discriminator augmentation (Karras et al., NeurIPS 2020).

The pipeline (``ada.pipeline``, default ``"bgc"``) is :mod:`jaxgan_lth.augment.ada`, applied
to every D input (reals and fakes, D and G steps) with probability ``p`` per op and sample.
``p`` lives in ``state["parts"]["ada"]`` (checkpointed, logged as ``ada_p``, resumed exactly)
and is moved by the controller of stylegan2-ada-pytorch ``training/training_loop.py``
(``fewshot_sparse_regularisers.md`` section 2.1)::

    after every D step:            sum += sum(sign(D(x_real_aug)));  n += B
    every `interval` D steps:      r_t = sum / n
                                   p <- max(p + sign(r_t - target) * n / (kimg * 1000), 0)
                                   sum, n <- 0

i.e. p moves by ``sign(r_t - target) x batch x interval / (kimg x 1000)`` (the reference's
``ada_interval`` counts training iterations of one D step each; with ``n_dis > 1`` every D step
counts, as every D step sees a batch of reals). Reference constants: ``target`` 0.6,
``interval`` 4, ``kimg`` 500, ``p_init`` 0; p is clamped at 0 only (``p_max = 0``; StudioGAN
clamps at 1: ``p_max = 1``). ``adjust = False`` keeps ``p = p_init`` fixed (the reference's
``--aug=fixed --p=P``). Traced strengths: ``ada_target``, ``ada_kimg``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from typing_extensions import override

from jaxgan_lth.augment import ada
from jaxgan_lth.parts import base


def controller(state: dict, logits_real, hp: dict, *, interval: int, p_max: float,
               adjust: bool) -> dict:
    """One D step of ADA's p controller (module docstring).

    Args:
      state: ``{"p": [], "sign_sum": [], "count": [], "steps": []}`` float32 / int32 scalars.
      logits_real: D's logits ``[B]`` on the augmented reals of this D step.
      hp: traced ``ada_target`` (in [-1, 1]) and ``ada_kimg`` (> 0, thousands of images for p to
        move by 1).
      interval: D steps between adjustments.
      p_max: upper clamp of p; 0 = none (reference).
      adjust: False keeps p fixed (statistics still accumulate).

    Returns:
      The new state (no gradient flows into it).
    """
    signs = jnp.sign(jax.lax.stop_gradient(logits_real).astype(jnp.float32))
    sign_sum = state["sign_sum"] + jnp.sum(signs)
    count = state["count"] + jnp.float32(signs.shape[0])
    steps = state["steps"] + 1
    due = steps % interval == 0
    r_t = sign_sum / jnp.maximum(count, 1.0)
    moved = state["p"] + jnp.sign(r_t - hp["ada_target"]) * count / (hp["ada_kimg"] * 1000.0)
    moved = jnp.maximum(moved, 0.0)
    if p_max > 0:
        moved = jnp.minimum(moved, p_max)
    p = jnp.where(due & adjust, moved, state["p"])
    return {"p": p.astype(jnp.float32),
            "sign_sum": jnp.where(due, 0.0, sign_sum).astype(jnp.float32),
            "count": jnp.where(due, 0.0, count).astype(jnp.float32),
            "steps": steps.astype(jnp.int32),
            "r_t": jnp.where(due, r_t, state["r_t"]).astype(jnp.float32)}


class ADA(base.Augmentation):
    """ADA: the ``bgc`` pipeline with its adaptive probability ``p`` in the part state."""

    name = "ada"
    section = "ada"
    HPARAMS = {
        "ada_target": base.HParam("target", -1.0, 1.0),
        "ada_kimg": base.HParam("kimg", 1e-6, None),
    }

    @classmethod
    @override
    def default_config(cls, pipeline: str = "") -> ml_collections.ConfigDict:
        """ADA (Karras et al., NeurIPS 2020) section; stylegan2-ada-pytorch's constants.

        Args:
          pipeline: the augmentation pipeline (:mod:`jaxgan_lth.augment.ada`); "" = off.
        """
        c = ml_collections.ConfigDict()
        c.pipeline = pipeline  # "bgc" (reference default), "bg", "blit", "geom", "color"; "" = off
        c.p_init = 0.0  # initial augmentation probability p (reference 0)
        c.adjust = True  # adapt p (False: fixed p = p_init, the reference's --aug=fixed)
        c.target = 0.6  # target of r_t = mean(sign(D(x_real_aug))) (reference --target 0.6)
        c.interval = 4  # D steps between adjustments of p (reference ada_interval 4)
        c.kimg = 500.0  # thousands of real images for p to move by 1 (reference ada_kimg 500)
        c.p_max = 0.0  # upper clamp of p; 0 = none (reference: clamped at 0 only; StudioGAN 1)
        return c

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "ada" in config and bool(config.ada.pipeline)

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Checks ``config.<prefix>ada``.

        Raises:
          ValueError: an unknown pipeline (accepted presets listed), ``target`` outside
            [-1, 1], ``kimg`` <= 0, ``interval`` not an integer >= 1, ``p_init`` < 0,
            ``p_max`` < 0 or below ``p_init``, a non-bool ``adjust``; each names the key.
        """
        if cls.section not in config:
            return
        c = config.ada
        where = f"config.{prefix}ada"
        if c.pipeline:
            try:
                ada.parse_pipeline(c.pipeline)
            except ValueError as e:
                raise ValueError(f"{where}.pipeline: {e}") from None
        super().validate(config, prefix)
        iv = c.interval
        if isinstance(iv, bool) or not isinstance(iv, int) or iv < 1:
            raise ValueError(f"{where}.interval = {iv!r}; accepted: an integer >= 1 (D steps "
                             "between adjustments of p; reference 4).")
        if not isinstance(c.adjust, bool):
            raise ValueError(f"{where}.adjust = {c.adjust!r}; accepted: True or False.")
        if float(c.p_init) < 0:
            raise ValueError(f"{where}.p_init = {c.p_init} must be >= 0.")
        if float(c.p_max) < 0 or (float(c.p_max) > 0 and float(c.p_max) < float(c.p_init)):
            raise ValueError(f"{where}.p_max = {c.p_max}: accepted 0 (no upper clamp) or a "
                             f"value >= p_init = {c.p_init}.")

    def __init__(self, config):
        super().__init__(config)
        self.ops = ada.parse_pipeline(self.cfg.pipeline)

    @override
    def init_state(self):
        return {"p": jnp.float32(self.cfg.p_init), "sign_sum": jnp.float32(0.0),
                "count": jnp.float32(0.0), "steps": jnp.int32(0), "r_t": jnp.float32(0.0)}

    @override
    def metrics_of_state(self, state):
        return {"ada_p": state["p"], "ada_r_t": state["r_t"]}

    @override
    def augment(self, key, x, state, hp):
        """ADA of ``x`` ``[B, H, W, C]`` in [-1, 1] with the state's ``p``."""
        return ada.augment(key, x, state["p"], self.ops)

    @override
    def observe(self, state, logits_real, hp):
        return controller(state, logits_real, hp, interval=int(self.cfg.interval),
                          p_max=float(self.cfg.p_max), adjust=bool(self.cfg.adjust))
