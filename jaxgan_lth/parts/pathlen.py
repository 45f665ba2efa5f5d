"""Part ``pathlen``: path-length regularisation of G (Karras et al., StyleGAN2, CVPR 2020, eq. 4).

As stylegan2-ada-pytorch ``training/loss.py`` (phase ``Gpl``), for a generator with the methods
``ws_of(z, y, train) -> ws [B, L, w_dim]`` and ``synthesis(ws) -> images [B, H, W, C]``
(:class:`jaxgan_lth.models.stylegan2.StyleGAN2Generator`)::

    z' = z[:B // batch_shrink]                          # batch_shrink 2
    ws = ws_of(z', train)   (style mixing as in training)
    u ~ N(0, I) [b, H, W, C] / sqrt(H W)
    g = d sum(synthesis(ws) * u) / d ws                 # J_w^T u, [b, L, w_dim]
    a_b = sqrt(mean_L sum_w g^2)                        # path lengths [b]
    pl_mean <- pl_mean + decay (mean_b a_b - pl_mean)   # decay 0.01; pl_mean starts at 0
    L_G += interval * weight * mean_b (a_b - pl_mean)^2 # on every interval-th G iteration

The new ``pl_mean`` in the penalty is not gradient-stopped (as the reference, which detaches
only the stored copy); the stored state is. ``interval`` = k (reference ``G_reg_interval = 4``)
and ``lazy`` (:data:`~jaxgan_lth.parts.base.LAZY_MODES`): ``"separate_step"`` (default, as
stylegan2-ada-pytorch ``training/training_loop.py`` lines 197-208, 270-290) takes, in G
iterations with ``step % k == 0``, an extra Adam step of G on k x the penalty (the reference's
``gain``) after G's main update (before the EMA update), at G's parameters after that update
and on fresh latents (the reference's ``Greg`` phase draws its own ``gen_z``), and G's Adam,
main steps included, runs with ``lr * c``, ``betas ** c``, ``c = k / (k + 1)``
(:mod:`jaxgan_lth.training.lazy_reg`); ``"loss_gain"`` adds k x the penalty to G's main loss in
those
iterations with G's Adam unchanged (no extra step; this package before issue 27). With k = 1
both add the penalty to every main G loss. The same noise draws serve the forward and its
Jacobian (one ``g_noise`` key). G's statistics (``w_avg``) are not updated by this term's
forward (the reference's ``Gpl`` forward updates them too; one extra update per ``interval``
iterations).

Reference values: weight 2, interval 4, decay 0.01, batch_shrink 2 (every stylegan2-ada config
but ``cifar``; DiffAugment's PyTorch ``low_shot``); the DiffAugment TF low-shot runs behind the
paper's numbers use none (weight 0); fewshot_sparse_regularisers.md section 1.1.

Config section ``pathlen``: ``weight`` (0 = off), ``interval``, ``decay``, ``batch_shrink``,
``lazy`` (absent = ``"separate_step"``).
Traced strengths ``pathlen_weight``, ``pathlen_decay``. State ``{"pl_mean", "penalty"}``
(logged as ``pl_mean`` and ``pl_penalty``, the penalty of the last regularised step).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from typing_extensions import override

from jaxgan_lth import models as models_lib
from jaxgan_lth.parts import base

_SALT = 0x504C


def path_lengths(synthesis, ws: jax.Array, noise: jax.Array) -> jax.Array:
    """``sqrt(mean_L sum_w (d sum(synthesis(ws) * noise) / d ws)^2)`` per sample: ``[b]``.

    Args:
      synthesis: ``synthesis(ws) -> images [b, H, W, C]``.
      ws: ``[b, L, w_dim]``.
      noise: ``[b, H, W, C]`` (already divided by ``sqrt(H W)``).
    """
    g = jax.grad(lambda w: jnp.sum(synthesis(w).astype(jnp.float32) * noise))(ws)
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(g), axis=2), axis=1))


def pl_noise(key: jax.Array, shape: tuple) -> jax.Array:
    """``N(0, I)`` images of ``shape`` ``[b, H, W, C]`` divided by ``sqrt(H W)``."""
    return jax.random.normal(key, shape, jnp.float32) / math.sqrt(shape[1] * shape[2])


class PathLength(base.LazyRegTerm):
    """Path-length regularisation of G, optionally lazy."""

    name = "pathlen"
    lazy_network = "g"
    section = "pathlen"
    ticket_copy = False  # one section for every stage
    HPARAMS = {
        "pathlen_weight": base.HParam("weight"),
        "pathlen_decay": base.HParam("decay", 0.0, 1.0),
    }

    @classmethod
    @override
    def default_config(cls, weight: float = 0.0) -> ml_collections.ConfigDict:
        """Path-length regularisation (StyleGAN2 eq. 4) section; needs model.name = "stylegan2".

        Args:
          weight: pl_weight; 0 = off.
        """
        c = ml_collections.ConfigDict()
        # pl_weight; 0 = off (stylegan2-ada configs: 2; DiffAugment TF low-shot: 0)
        c.weight = weight
        c.interval = 4  # G iterations between penalties (G_reg_interval); penalty x interval
        # interval > 1: "separate_step" (G's own Adam step, Adam scaled; stylegan2-ada-pytorch) or
        # "loss_gain" (in the main G loss, Adam unscaled; before issue 27); see R1.default_config
        c.lazy = "separate_step"
        c.decay = 0.01  # EMA decay of the running mean path length pl_mean (pl_decay)
        c.batch_shrink = 2  # the penalty's batch is g_batch_size // batch_shrink (pl_batch_shrink)
        return c

    @classmethod
    @override
    def enabled(cls, config) -> bool:
        return "pathlen" in config and float(config.pathlen.weight) > 0.0

    @classmethod
    def validate(cls, config, prefix: str = "") -> None:
        """Checks the section; with weight > 0 the generator must be style-based.

        Raises:
          ValueError: bad weight / decay / interval / batch_shrink / lazy, or (when on) a generator
            without ``ws_of`` and ``synthesis`` methods.
        """
        if cls.section not in config:
            return
        super().validate(config, prefix)
        c = config.pathlen
        for key in ("interval", "batch_shrink"):
            v = c[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"config.{prefix}pathlen.{key} = {v!r} must be an integer >= 1.")
        base.check_lazy(c, f"config.{prefix}pathlen")
        if float(c.weight) > 0 and "model" in config:
            builder = models_lib.get_model  # only the module objects; no parameters are built
            kw = {k: v for k, v in config.model.items() if k != "name"}
            try:
                gen = builder(config.model.name, resolution=config.data.resolution,
                              channels=config.data.channels, num_classes=0, **kw).generator
            except ValueError:
                return  # the model's own validation names the problem
            if not (hasattr(gen, "ws_of") and hasattr(gen, "synthesis")):
                raise ValueError(
                    f"config.{prefix}pathlen.weight = {c.weight} needs a style-based generator "
                    f"(methods ws_of and synthesis, e.g. model.name='stylegan2'); "
                    f"model.name = {config.model.name!r} has none. Set pathlen.weight = 0.")

    @override
    def init_state(self):
        return {"pl_mean": jnp.float32(0.0), "penalty": jnp.float32(0.0)}

    @override
    def metrics_of_state(self, state):
        return {"pl_mean": state["pl_mean"], "pl_penalty": state["penalty"]}

    def _term(self, ctx: base.GContext, state, hp):
        b = max(ctx.z.shape[0] // int(self.cfg.batch_shrink), 1)
        z = ctx.z[:b]
        y = None if ctx.y is None else ctx.y[:b]
        k_ws, k_syn, k_u = jax.random.split(jax.random.fold_in(ctx.key, _SALT), 3)
        rngs = {models_lib.G_NOISE: k_syn}
        ws = ctx.g_apply(z, y, True, method="ws_of", rngs={models_lib.G_NOISE: k_ws})

        def synthesis(w):
            return ctx.g_apply(w, method="synthesis", rngs=rngs)

        shape = jax.eval_shape(synthesis, ws).shape
        lengths = path_lengths(synthesis, ws, pl_noise(k_u, shape))
        pl_mean = state["pl_mean"] + hp["pathlen_decay"] * (jnp.mean(lengths) - state["pl_mean"])
        penalty = jnp.mean(jnp.square(lengths - pl_mean))
        return penalty, pl_mean

    @override
    def phase_term(self, ctx, state, hp):
        penalty, pl_mean = self._term(ctx, state, hp)
        new = {"pl_mean": pl_mean, "penalty": penalty}
        return int(self.cfg.interval) * hp["pathlen_weight"] * penalty, {}, new

    @override
    def g_term(self, ctx, state, hp):
        if self.lazy_phase():
            return 0.0, {}, state  # its own step (jaxgan_lth.training.lazy_reg)
        k = int(self.cfg.interval)
        if k == 1:
            penalty, pl_mean = self._term(ctx, state, hp)
            on = True
        else:
            on = ctx.step % k == 0
            penalty, pl_mean = jax.lax.cond(
                on, lambda: self._term(ctx, state, hp),
                lambda: (jnp.float32(0.0), jnp.asarray(state["pl_mean"], jnp.float32)))
        new = {"pl_mean": jnp.where(on, pl_mean, state["pl_mean"]),
               "penalty": jnp.where(on, penalty, state["penalty"])}
        return k * hp["pathlen_weight"] * penalty, {}, new
