"""Part ``nice``: NICE, noise-modulated consistency of D (Ni & Koniusz, NeurIPS 2023).

A **reconstruction**: the authors released no code (``MaxwellYaoNi/NICE`` holds only a README and
the pipeline figure; ``fewshot_sparse_regularisers.md`` section 4.1). From the official figure
(section 4.2):

* *Adaptive noise* (AN): D's later residual blocks multiply the outputs of conv C1, conv C2 and
  the shortcut conv C_S by ``Z ~ N(1, beta^2)`` elementwise (``X * (1 + beta * eps)``); the
  blocks before them run without noise. One scalar ``beta`` serves all noisy blocks.
* *Adaptive beta*: a controller ``sign(r(x) > eta)`` ("Overfit?") reading D's outputs raises
  ``beta`` when D overfits and lowers it otherwise.
* *Consistency*: two passes through the noisy blocks with shared weights and independent
  noise give ``f1``, ``f2`` (the features before the head); one pass continues to the head and
  the adversarial loss; ``||f1 - f2||^2`` is penalised, for reals and fakes.

Here: the noise points are :func:`jaxgan_lth.models.base.noise_point` in D's blocks (after
``conv1``, ``conv2`` and ``conv_sc`` of the SNGAN/BigGAN blocks; after each of the two convs of
the DCGAN D, each conv counting as a block), switched on by the ``d_noise`` collection this part
adds to D's training forwards (:meth:`NICE.d_forward`: the D step and, with
``noise_in_g_step``, the G step). ``f1`` is D's pooled features of the D step's own forward (the
``d_features`` point, before any AdvAug perturbation); ``f2`` one more forward of the same D on
the same reals and fakes with fresh noise (:attr:`jaxgan_lth.parts.base.DContext.d_features`), so
the regulariser costs one extra D forward and backward. The controller is CHAIN's
(``FastGANDBig/chain_models.py::ChainSharedContext.update_p``, the same authors, section 4.3;
that NICE uses this template is an inference)::

    r    <- ema * r + (1 - ema) * mean(sign(D(x_real_aug)))      # after every D step
    beta <- clip(beta + step * sign(r - target), 0, beta_max)     # from G iteration `start`
    L_D  += weight * mean_{2B} ||f1 - f2||_2^2                  # reals and fakes

Constants (config section ``nice``, :meth:`NICE.default_config`): ``target`` 0.5,
``step`` 0.001 per D step, ``ema`` 0.9 and the clamp ``[0, 1]`` are CHAIN's (``tau``,
``delta_p``, the EMA of ``ema_Dreal``, ``p``'s clamp; carried over to beta). Ours (NICE's
values are unverified): ``beta_init`` 0; ``start`` 0 (CHAIN starts at iteration 5000, longer
than our CPU runs); ``num_blocks`` 2 (the last two noise blocks: "later blocks" of the figure;
both convs of the DCGAN D); ``weight`` 1 (the figure gives none; the squared norm is the
figure's, summed over the F features and averaged over the 2B images); the noise in the G
step's D (AN is part of D in the figure; whether the consistency also enters G's loss is
unverified, so it does not here). Traced strengths: ``nice_weight``, ``nice_target``,
``nice_step``, ``nice_beta_max``, ``nice_ema``; ``beta`` and ``r`` live in
``state["parts"]["nice"]`` (checkpointed and resumed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from typing_extensions import override

from jaxgan_lth import models as models_lib
from jaxgan_lth.models import base as model_base
from jaxgan_lth.parts import base

#: Salt folded into the loss terms' key for the second noise draw.
_SECOND_DRAW = 1


def discriminator_of(config):
    """The (unbound) discriminator ``config.model`` builds (no parameters are created)."""
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    return models_lib.get_model(
        config.model.name, resolution=config.data.resolution, channels=config.data.channels,
        num_classes=10 if config.model.conditional else 0, **kwargs).discriminator


def consistency(f1, f2):
    """NICE's consistency ``mean_N ||f1 - f2||_2^2`` of two ``[N, F]`` feature draws."""
    return jnp.mean(jnp.sum(jnp.square(f1 - f2), axis=-1))


def controller(state, logits_real, hp, on):
    """One step of the adaptive-beta controller (module docstring).

    Args:
      state: ``{"beta": [], "r": []}`` float32.
      logits_real: D's logits ``[B]`` on the augmented reals of this D step.
      hp: traced strengths (``nice_ema``, ``nice_step``, ``nice_target``, ``nice_beta_max``).
      on: bool scalar, whether ``beta`` moves (G iteration >= ``start``); ``r`` always updates.

    Returns:
      The new state (no gradient).
    """
    cur = jnp.mean(jnp.sign(jax.lax.stop_gradient(logits_real)))
    r = hp["nice_ema"] * state["r"] + (1.0 - hp["nice_ema"]) * cur
    moved = jnp.clip(state["beta"] + hp["nice_step"] * jnp.sign(r - hp["nice_target"]),
                     0.0, hp["nice_beta_max"])
    return {"beta": jnp.where(on, moved, state["beta"]), "r": r}


class NICE(base.LossTerm):
    """NICE: adaptive multiplicative noise in D's later blocks + a consistency loss on D.

    State ``{"beta": [], "r": []}``: the noise std and the EMA of ``mean(sign(D(x_real)))``.
    """

    name = "nice"
    section = "nice"
    modifies_d = True
    HPARAMS = {
        "nice_weight": base.HParam("weight"),
        "nice_target": base.HParam("target", -1.0, 1.0),
        "nice_step": base.HParam("step"),
        "nice_beta_max": base.HParam("beta_max"),
        "nice_ema": base.HParam("ema", 0.0, 1.0, high_open=True),
    }

    @classmethod
    @override
    def default_config(cls, enabled: bool = False) -> ml_collections.ConfigDict:
        """NICE (Ni & Koniusz, NeurIPS 2023) section.

        A reconstruction (no released code; see the module docstring). Controller constants are
        CHAIN's (same authors); the rest ours.

        Args:
          enabled: switch the part on.
        """
        c = ml_collections.ConfigDict()
        c.enabled = enabled  # adaptive noise in D's later blocks (+ the consistency loss)
        # how many of D's noise blocks, counted from the last, get the noise (ours; dcgan has 2:
        # its two convs; sngan/biggan 4 residual blocks)
        c.num_blocks = 2
        c.consistency = True  # add the consistency loss (one extra D forward); False = noise only
        # weight of mean over the 2B reals and fakes of ||f1 - f2||^2 (pooled features of two
        # noise draws) in D's loss (ours: unverified; ~2 at beta 0.1, default dcgan at init,
        # random data)
        c.weight = 1.0
        c.beta_init = 0.0  # initial noise std beta (ours; CHAIN's p starts at 0)
        c.target = 0.5  # eta: beta rises while EMA(mean(sign(D(x_real)))) > target (CHAIN tau 0.5)
        c.step = 0.001  # beta change per D step (CHAIN delta_p 0.001)
        c.beta_max = 1.0  # beta clamped to [0, beta_max] (CHAIN clamps p to [0, 1])
        c.ema = 0.9  # EMA decay of mean(sign(D(x_real))) (CHAIN's ema_Dreal 0.9)
        c.start = 0  # G iteration from which beta adapts (ours; CHAIN: 5000, longer than our runs)
        c.noise_in_g_step = True  # D keeps its noise when it judges G's fakes (ours: unverified)
        return c

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "nice" in config and bool(config.nice.enabled)

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Checks ``config.<prefix>nice``.

        Raises:
          ValueError: a strength out of range (``weight``, ``step``, ``beta_max`` >= 0,
            ``target`` in [-1, 1], ``ema`` in [0, 1)), ``beta_init`` outside [0, beta_max],
            ``num_blocks`` < 1 or more than the model's noise blocks, ``start`` < 0, a
            non-bool switch.
        """
        if cls.section not in config:
            return
        c = config.nice
        where = f"config.{prefix}nice"
        for key in ("enabled", "consistency", "noise_in_g_step"):
            if not isinstance(c[key], bool):
                raise ValueError(f"{where}.{key} = {c[key]!r}; accepted: True or False.")
        super().validate(config, prefix)
        if not 0.0 <= float(c.beta_init) <= float(c.beta_max):
            raise ValueError(f"{where}.beta_init = {c.beta_init} must be in [0, beta_max = "
                             f"{c.beta_max}].")
        if isinstance(c.start, bool) or not isinstance(c.start, int) or c.start < 0:
            raise ValueError(f"{where}.start = {c.start!r} must be an integer >= 0.")
        nb = c.num_blocks
        if isinstance(nb, bool) or not isinstance(nb, int) or nb < 1:
            raise ValueError(f"{where}.num_blocks = {nb!r} must be an integer >= 1.")
        if "model" in config and "data" in config:
            cls._check_blocks(config, where)

    @classmethod
    def _check_blocks(cls, config, where):
        d = discriminator_of(config)
        n = len(d.noise_paths)
        if config.nice.num_blocks > n:
            raise ValueError(
                f"{where}.num_blocks = {config.nice.num_blocks}: model {config.model.name!r} "
                f"has {n} noise blocks in D; accepted: 1..{n}.")
        return d

    def __init__(self, config):
        super().__init__(config)
        self.d = self._check_blocks(config, "config.nice")
        self.num_blocks = int(self.cfg.num_blocks)

    def used_hparams(self) -> tuple[str, ...]:
        """Traced strengths the configuration reads (``nice_weight`` only with consistency)."""
        return tuple(n for n in self.HPARAMS if n != "nice_weight" or self.cfg.consistency)

    @override
    def init_state(self):
        return {"beta": jnp.float32(self.cfg.beta_init), "r": jnp.float32(0.0)}

    @override
    def metrics_of_state(self, state):
        return {"nice_beta": state["beta"], "nice_r": state["r"]}

    @override
    def d_forward(self, key, state, hp, phase):
        """The ``d_noise`` collection (``beta`` at D's last ``num_blocks`` blocks) and stream."""
        if phase == "g" and not self.cfg.noise_in_g_step:
            return {}, {}
        cols = model_base.d_noise_variables(self.d, state["beta"], self.num_blocks)
        return {model_base.D_NOISE: cols}, {model_base.D_NOISE: key}

    @override
    def d_term(self, ctx, state, hp):
        new = controller(state, ctx.logits_real, hp, ctx.step >= int(self.cfg.start))
        if not self.cfg.consistency:
            return 0.0, {}, new
        f2 = ctx.d_features(ctx.x, jax.random.fold_in(ctx.key, _SECOND_DRAW))
        cons = consistency(ctx.features, f2)
        return hp["nice_weight"] * cons, {"nice_consistency": cons}, new
