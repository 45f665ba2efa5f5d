"""The composed GAN step: pure D/G updates wired from the config's parts.

State layout (a plain dict pytree, big_vision style)::

    state = {
        "step":  int32 scalar, G iterations done,
        "rng":   uint32 [2], raw key data of the run's base PRNG key,
        "g":     {"params": ..., "batch_stats": ...},   # generator variables
        "d":     {"params": ..., "batch_stats": ...},   # discriminator variables (SN u/sigma)
        "ema":   {"params": ..., "batch_stats": ...},   # EMA generator
        "g_opt": optax state of G, "d_opt": optax state of D,
        "parts": {part name: state},                    # only parts that keep state (LeCam)
    }
    masks = {"g": bool tree like state["g"]["params"], "d": bool tree like state["d"]["params"]}

One *iteration* = ``n_dis`` D steps (a ``jax.lax.scan``) followed by one G step (SNGAN /
lottery-ticket code, n_critic). PRNG keys are folded per iteration from the base key,
``fold_in(base, step)``, then per D step ``fold_in(key, i)`` and for the G step
``fold_in(key, n_dis)``, so a resumed run draws exactly the numbers of an uninterrupted one.
D metrics are the mean over the ``n_dis`` D steps.

The step builder knows no method: it asks the parts (:mod:`jaxgan_lth.parts`) the config
switches on for D-input augmentations (applied to every D input), feature perturbations at
the models' named points (``d_features``, ``g_first``), loss terms, and extra variable
collections / PRNG streams for D's training forwards (parts with ``modifies_d``: NICE's noise).
Masks, traced strengths (``hparams``) and the parts' state are arguments, so none of them
recompiles the step.

Real batches are drawn inside the compiled step from the limited training set, which lives on
the accelerator (:mod:`jaxgan_lth.data.sampling`: with replacement, or without replacement
within an epoch from a permutation kept in ``state["sampler"]``). The parameter updates
(Adam, masked updates, EMA G) are :mod:`jaxgan_lth.updates`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxgan_lth import lazy_reg, losses, parallel, schedules
from jaxgan_lth import models as models_lib
from jaxgan_lth import parts as parts_lib
from jaxgan_lth.data.sampling import init_sampler, sample_real, sample_real_epoch
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.step_config import scan_unroll, validate_config  # noqa: F401 (re-exported)
from jaxgan_lth.updates import (
    add_bn_l1,
    current_lr,
    ema_update,
    make_optimizer,
    masked_update,
)

Pytree = Any

#: Salts folded into a D/G step's key for the parts' D-forward extras and the loss terms' key
#: (fold_in, so the step's other draws are those of a config without such parts).
_D_FORWARD_SALT = 0x4E494345
_TERMS_SALT = 0x4E494346
_SAMPLER_SALT = 0x5045524D
_LAZY_SALT = 0x4C415A59  # the latents of G's lazy reg step (the reference's Greg gen_z)
#: Salt of the key of G's own PRNG stream (models.base.G_NOISE: StyleGAN2's noise inputs and
#: style mixing) in a train-mode G forward.
_G_NOISE_SALT = 0x4E494347


def sample_latent(key, batch: int, latent_dim: int, num_classes: int):
    """``z`` ``[batch, latent_dim]`` ~ N(0, I) and uniform labels ``[batch]`` (None if 0)."""
    kz, ky = jax.random.split(key)
    z = jax.random.normal(kz, (batch, latent_dim), jnp.float32)
    y = jax.random.randint(ky, (batch,), 0, num_classes) if num_classes else None
    return z, y


@dataclasses.dataclass(frozen=True)
class StepFns:
    """The pure functions of one run (compile them with ``jax.jit``).

    Attributes:
      init: ``init(key) -> state`` (theta_0, fresh optimizers, parts' initial state).
      d_step: ``d_step(state, masks, data, key, hparams) -> (state, metrics)``, one D update.
      g_step: ``g_step(state, masks, data, key, hparams) -> (state, metrics)``, one G update
        plus the EMA update.
      iteration: ``iteration(state, masks, data, hparams) -> (state, metrics)``: ``n_dis`` D
        steps (scan) then one G step; increments ``state["step"]``.
      sample: ``sample(variables, z, y, key=None) -> images [B, H, W, C] in [-1, 1]`` (G in
        eval mode; ``key`` feeds G's own noise, e.g. StyleGAN2's random noise inputs).
      d_logits: ``d_logits(d_variables, x, y) -> [B]`` (D in eval mode).
      hparams: default traced hyper-parameters (``{name: float32 scalar}``).
      parts: the parts wired into the step.
      g_grads: ``g_grads(state, masks, data, key, hparams) -> (grads, aux)``: the gradient of
        :func:`g_step`'s loss w.r.t. G's parameters (the forward of the G update, no update).
      d_grads: the same for :func:`d_step`'s loss and D's parameters.
      optimizers: ``{"g": optax transformation of G, "d": of D}`` (their states are
        ``state["g_opt"]`` / ``state["d_opt"]``).
    """

    init: Callable
    d_step: Callable
    g_step: Callable
    iteration: Callable
    sample: Callable
    d_logits: Callable
    hparams: dict
    parts: tuple
    g_grads: Callable | None = None
    d_grads: Callable | None = None
    optimizers: dict | None = None


def make_step_fns(
    config: ml_collections.ConfigDict,
    generator,
    discriminator,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    mesh=None,
    num_real: int = 0,
) -> StepFns:
    """Builds the pure D/G step functions of ``config`` for one generator/discriminator pair.

    Args:
      config: the run's full config (``train``, ``model``, ``data.random_flip`` and the parts'
        sections).
      generator: the generator flax module from :func:`jaxgan_lth.models.get_model`.
      discriminator: the discriminator flax module (with ``features`` / ``head`` methods).
      image_shape: ``(H, W, C)`` of real images.
      num_classes: classes of the conditional model (0 = unconditional).
      mesh: optional device mesh; sampled batches are split over its ``data`` axis.
      num_real: N, images in the training set; needed by ``data.sampling = "epoch"`` (the
        permutation lives in the state).

    Returns:
      A :class:`StepFns`.

    Raises:
      ValueError: epoch sampling without ``num_real``, or a D batch larger than it.
    """
    tc = config.train
    G, D = generator, discriminator
    latent_dim = G.latent_dim
    ncls = num_classes if config.model.conditional else 0
    n_dis = int(tc.n_dis)
    unroll = scan_unroll(tc.get("n_dis_unroll", 0), n_dis)
    decay = bool(tc.lr_decay)
    ema_buffers = tc.get("ema_buffers", "copy")
    ema_rampup = float(tc.get("ema_rampup", 0.0))
    bn_l1 = float(tc.get("g_bn_l1", 0.0))
    mask_grads = bool(tc.get("mask_grads", True))  # False and sema: set by the dst stage
    mask_p = masks_lib.apply if mask_grads else masks_lib.apply_straight_through
    sema = tuple(config.sparsity.prunable) if tc.get("sema", False) else None
    loss_kind = tc.loss
    random_flip = bool(config.data.random_flip)
    epoch_sampling = config.data.get("sampling", "replacement") == "epoch"
    if epoch_sampling and not 0 < tc.d_batch_size <= num_real:
        raise ValueError(
            f"data.sampling='epoch' draws batches of train.d_batch_size={tc.d_batch_size} "
            f"without replacement from {num_real} training images; accepted: a D batch of at "
            "most the training set's size (or data.sampling='replacement').")
    parts = tuple(parts_lib.build(config))
    augs = [p for p in parts if p.kind == "augment"]
    perts = [p for p in parts if p.kind == "perturb"]
    terms = [p for p in parts if p.kind == "loss"]
    d_perts = [p for p in perts if p.perturbs_d()]
    g_perts = [p for p in perts if p.perturbs_g()]
    if len(d_perts) > 1 or len(g_perts) > 1:
        raise ValueError(
            f"at most one feature perturbation per network; got D: {[p.name for p in d_perts]}, "
            f"G: {[p.name for p in g_perts]}.")
    d_pert = d_perts[0] if d_perts else None
    # lazy regularisers run as their own Adam steps, Adam scaled (lazy_reg.py; stylegan2-ada)
    d_lazy, d_k = lazy_reg.phase_terms(terms, "d")
    g_lazy, g_k = lazy_reg.phase_terms(terms, "g")
    g_lr, g_betas, g_ds = lazy_reg.adam_settings(tc.g_lr, tc.g_betas, decay and tc.num_steps, g_k)
    d_lr, d_betas, d_ds = lazy_reg.adam_settings(tc.d_lr, tc.d_betas,
                                                 decay and tc.num_steps * n_dis, d_k)
    tx_g = make_optimizer(g_lr, g_betas, tc.adam_eps, g_ds or None)
    tx_d = make_optimizer(d_lr, d_betas, tc.adam_eps, d_ds or None)
    d_mods = [p for p in parts if p.modifies_d]
    g_pert = g_perts[0] if g_perts else None
    aug_g_adv = g_pert is None or g_pert.augments_adv_branch()

    def _g_point(key):
        z, y = sample_latent(key, tc.g_batch_size, latent_dim, ncls)
        variables = G.init(key, z, y, train=False)
        _, upd = G.apply(variables, z, y, train=False, mutable=["perturbations"])
        return upd["perturbations"][models_lib.G_PERTURB]

    # Shape [B, ...] of G's first-layer output (the g_first point), from shapes only.
    g_point_shape = jax.eval_shape(_g_point, jax.random.key(0)).shape if g_pert else None

    def augment(key, x, pstates, hp):
        """The D-input augmentations, in registry order (the first gets ``key`` itself)."""
        for j, a in enumerate(augs):
            k = key if j == 0 else jax.random.fold_in(key, j)
            x = a.augment(k, x, pstates.get(a.name), hp)
        return x

    def d_extras(key, pstates, hp, phase):
        """Variable collections and rngs the ``modifies_d`` parts add to one forward of D."""
        cols, rngs = {}, {}
        for j, p in enumerate(d_mods):
            c, r = p.d_forward(jax.random.fold_in(key, j), pstates.get(p.name), hp, phase)
            cols.update(c)
            rngs.update(r)
        return cols, rngs

    def add_terms(method, ctx, loss, metrics, pstates, hp):
        """``loss`` plus every loss term's ``method`` (``d_term`` or ``g_term``) value.

        The terms' metrics go into ``metrics``; returns ``(loss, parts' states)`` with the
        terms' new (gradient-stopped) states.
        """
        new_p = dict(pstates)
        for t in terms:
            val, m, new_p_t = getattr(t, method)(ctx, pstates.get(t.name), hp)
            loss = loss + val
            metrics.update(m)
            if new_p_t is not None:
                new_p[t.name] = jax.lax.stop_gradient(new_p_t)
        return loss, new_p

    def init(key):
        kg, kd, kr = jax.random.split(key, 3)
        z, y = sample_latent(kg, 1, latent_dim, ncls)
        g_vars = G.init(kg, z, y, train=False)
        x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
        d_vars = D.init(kd, x, y, train=False)
        g = {"params": g_vars["params"], "batch_stats": g_vars.get("batch_stats", {})}
        d = {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {})}
        state = {
            "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(kr),
            "g": g,
            "d": d,
            "ema": jax.tree.map(jnp.copy, g),
            "g_opt": tx_g.init(g["params"]),
            "d_opt": tx_d.init(d["params"]),
        }
        pstates = {p.name: p.init_state() for p in parts if p.init_state() is not None}
        if pstates:
            state["parts"] = pstates
        if epoch_sampling:
            state["sampler"] = init_sampler(num_real)
        return state

    def g_forward(g_vars, g_params, z, y, train, key=None):
        variables = {"params": g_params, "batch_stats": g_vars["batch_stats"]}
        if train:
            x, upd = G.apply(variables, z, y, train=True, mutable=["batch_stats"],
                             rngs={models_lib.G_NOISE: key})
            return x, upd["batch_stats"]
        return G.apply(variables, z, y, train=False), g_vars["batch_stats"]

    def d_grads(state, masks, data, key, hparams):
        """D's loss gradient and what the D update needs (the forward of :func:`d_step`)."""
        k_real, k_lat, k_aug, k_adv = jax.random.split(key, 4)
        pstates = state.get("parts", {})
        if epoch_sampling:
            base = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), _SAMPLER_SALT)
            x_real, y_real, sampler = sample_real_epoch(
                state["sampler"], base, data, k_real, tc.d_batch_size, random_flip)
        else:
            x_real, y_real = sample_real(k_real, data, tc.d_batch_size, random_flip)
            sampler = None
        z, y_fake = sample_latent(k_lat, tc.d_batch_size, latent_dim, ncls)
        x_real = parallel.shard_batch(x_real, mesh)
        z = parallel.shard_batch(z, mesh)
        g_params = masks_lib.apply(state["g"]["params"], masks["g"])
        x_fake, g_bs = g_forward(state["g"], g_params, z, y_fake, train=True,
                                 key=jax.random.fold_in(k_lat, _G_NOISE_SALT))
        x_fake = jax.lax.stop_gradient(x_fake)
        x_real_clean = x_real
        x = augment(k_aug, jnp.concatenate([x_real, x_fake], axis=0), pstates, hparams)
        y = jnp.concatenate([y_real, y_fake], axis=0) if ncls else None
        b = tc.d_batch_size
        k_mod = jax.random.fold_in(key, _D_FORWARD_SALT)

        def augment_real(xr):  # the reals' augmentation above as a function of them (same draws)
            return augment(k_aug, jnp.concatenate([xr, x_fake], axis=0), pstates, hparams)[:b]

        def loss_fn(d_params):
            variables = {
                "params": mask_p(d_params, masks["d"]),
                "batch_stats": state["d"]["batch_stats"],
            }
            pre = variables
            cols, rngs = d_extras(k_mod, pstates, hparams, "d")
            h, upd = D.apply({**variables, **cols}, x, y, train=True, method="features",
                             mutable=["batch_stats"], rngs=rngs or None)
            variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}

            def d_features(xx, kk):  # the same D once more (SN state of this forward)
                c, r = d_extras(kk, pstates, hparams, "d")
                return D.apply({**pre, **c}, xx, None, train=False, method="features",
                               rngs=r or None)

            def head(feats, labels):
                return D.apply(variables, feats, labels, method="head")

            logits = head(h, y)
            loss = losses.d_loss(logits[:b], logits[b:], loss_kind)
            metrics = {}
            if d_pert is not None:  # at D's pooled features (d_features)
                loss, m = d_pert.d_loss(k_adv, head, h, y, b, loss, hparams)
                metrics.update(m)
            ctx = parts_lib.DContext(
                logits_real=logits[:b], logits_fake=logits[b:], x_real=x[:b],
                d_apply=lambda xr: D.apply(variables, xr, y[:b] if ncls else None, train=False),
                step=state["step"], x=x, features=h, d_features=d_features,
                key=jax.random.fold_in(key, _TERMS_SALT), x_real_clean=x_real_clean,
                augment=lambda kk, xx: augment(kk, xx, pstates, hparams),
                augment_real=augment_real)
            loss, new_p = add_terms("d_term", ctx, loss, metrics, pstates, hparams)
            return loss, (upd["batch_stats"], logits, metrics, new_p)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["d"]["params"])
        reg = parts_lib.DContext(  # for D's lazy reg step: d_apply set there (lazy_reg.py)
            logits_real=None, logits_fake=None, x_real=x[:b], d_apply=None, step=state["step"],
            key=jax.random.fold_in(key, _TERMS_SALT), x_real_clean=x_real_clean,
            augment=lambda kk, xx: augment(kk, xx, pstates, hparams), augment_real=augment_real)
        return grads, (loss, aux, x, g_bs, k_aug, sampler, (reg, y_real))

    def d_step(state, masks, data, key, hparams):
        grads, (loss, (d_bs, logits, extra, new_p), x, g_bs, k_aug, sampler, (reg, y_r)) = d_grads(
            state, masks, data, key, hparams)
        b = tc.d_batch_size
        params, opt = masked_update(tx_d, grads, state["d_opt"], state["d"]["params"], masks["d"],
                                    mask_grads)
        if d_lazy:  # stylegan2-ada-pytorch's Dreg phase, at D after its main update
            def d_reg_ctx(p):
                return dataclasses.replace(reg, d_apply=lambda xr: D.apply(
                    {"params": p, "batch_stats": d_bs}, xr, y_r if ncls else None, train=False))
            params, opt, new_p = lazy_reg.run_phase(d_lazy, d_k, d_reg_ctx, tx_d, params, opt,
                                                    masks["d"], new_p, hparams, state["step"])
        for j, a in enumerate(augs):  # adaptive augmentations see D's real logits (ADA's r_t)
            if a.name in new_p:
                obs = parts_lib.base.AugObservation(
                    logits_real=logits[:b], key=k_aug if j == 0 else jax.random.fold_in(k_aug, j),
                    x_shape=tuple(x.shape))
                new_p[a.name] = a.observe_d_step(new_p[a.name], obs, hparams)
        new = dict(state)
        new["d"] = {"params": params, "batch_stats": d_bs}
        new["d_opt"] = opt
        if epoch_sampling:
            new["sampler"] = sampler
        new["g"] = {"params": state["g"]["params"], "batch_stats": g_bs}
        if new_p:
            new["parts"] = new_p
        metrics = {
            "d_loss": loss,
            "d_real": jnp.mean(logits[:b]),
            "d_fake": jnp.mean(logits[b:]),
            "d_lr": current_lr(state["d_opt"]),
            **extra,
        }
        return new, metrics

    def g_grads(state, masks, data, key, hparams):
        """G's loss gradient and what the G update needs (the forward of :func:`g_step`)."""
        del data
        k_lat, k_aug, k_adv = jax.random.split(key, 3)
        pstates = state.get("parts", {})
        z, y_fake = sample_latent(k_lat, tc.g_batch_size, latent_dim, ncls)
        z = parallel.shard_batch(z, mesh)
        d_vars = {
            "params": masks_lib.apply(state["d"]["params"], masks["d"]),
            "batch_stats": state["d"]["batch_stats"],
        }
        d_cols, d_rngs = d_extras(jax.random.fold_in(key, _D_FORWARD_SALT), pstates, hparams, "g")
        d_vars.update(d_cols)

        g_rngs = {models_lib.G_NOISE: jax.random.fold_in(k_lat, _G_NOISE_SALT)}

        def logits_of(g_params, delta=None, augmented=True):
            """D(augment(G(z))) with ``delta`` added at G's first-layer output, and G(z)."""
            variables = {"params": g_params, "batch_stats": state["g"]["batch_stats"]}
            if delta is not None:
                variables["perturbations"] = {models_lib.G_PERTURB: delta}
            x_fake, upd = G.apply(variables, z, y_fake, train=True, mutable=["batch_stats"],
                                  rngs=g_rngs)
            x_in = augment(k_aug, x_fake, pstates, hparams) if augmented else x_fake
            return D.apply(d_vars, x_in, y_fake, train=False, rngs=d_rngs or None), upd, x_fake

        def loss_fn(g_params):
            g_params = mask_p(g_params, masks["g"])
            logits, upd, x_fake = logits_of(g_params)
            loss = losses.g_loss(logits, loss_kind)
            metrics = {}
            if g_pert is not None:  # at G's first-layer output (g_first)
                frozen = jax.lax.stop_gradient(g_params)

                def logits_at(delta, search):
                    return logits_of(frozen if search else g_params, delta, aug_g_adv)[0]

                loss, m = g_pert.g_loss(k_adv, logits_at, g_point_shape, loss, hparams)
                metrics.update(m)
            g_vars = {"params": g_params, "batch_stats": state["g"]["batch_stats"]}
            ctx = parts_lib.GContext(
                logits_fake=logits, step=state["step"], x_fake=x_fake, z=z, y=y_fake,
                g_apply=lambda *a, **kw: G.apply(g_vars, *a, **kw),
                key=jax.random.fold_in(key, _TERMS_SALT))
            loss, new_p = add_terms("g_term", ctx, loss, metrics, pstates, hparams)
            return loss, (upd["batch_stats"], metrics, new_p)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["g"]["params"])
        return grads, (loss, aux)

    def g_step(state, masks, data, key, hparams):
        grads, (loss, (g_bs, extra, new_p)) = g_grads(state, masks, data, key, hparams)
        if bn_l1:  # network slimming's sparsity training (train.g_bn_l1)
            grads = add_bn_l1(grads, state["g"]["params"], bn_l1)
        params, opt = masked_update(tx_g, grads, state["g_opt"], state["g"]["params"], masks["g"],
                                    mask_grads)
        if g_lazy:  # stylegan2-ada-pytorch's Greg phase, at G after its main update
            z_r, y_r = sample_latent(jax.random.fold_in(key, _LAZY_SALT), tc.g_batch_size,
                                     latent_dim, ncls)

            def g_reg_ctx(p):
                return parts_lib.GContext(
                    logits_fake=None, step=state["step"], z=parallel.shard_batch(z_r, mesh),
                    y=y_r, key=jax.random.fold_in(key, _TERMS_SALT), g_apply=lambda *a, **kw:
                    G.apply({"params": p, "batch_stats": g_bs}, *a, **kw))
            params, opt, new_p = lazy_reg.run_phase(g_lazy, g_k, g_reg_ctx, tx_g, params, opt,
                                                    masks["g"], new_p, hparams, state["step"])
        new = dict(state)
        new["g"] = {"params": params, "batch_stats": g_bs}
        new["g_opt"] = opt
        decay = hparams["ema_decay"]
        if ema_rampup > 0:  # half-life capped at ema_rampup * images so far (schedules.py)
            decay = schedules.ema_rampup_decay(decay, state["step"], ema_rampup)
        new["ema"] = ema_update(state["ema"], new["g"], masks["g"], decay,
                                state["step"], tc.ema_start, ema_buffers, sema)
        if new_p:
            new["parts"] = new_p
        return new, {"g_loss": loss, "g_lr": current_lr(state["g_opt"]), **extra}

    def iteration(state, masks, data, hparams):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

        def d_body(st, i):
            return d_step(st, masks, data, jax.random.fold_in(key, i), hparams)

        if unroll is True:  # unrolled in Python: the program has no while loop at all
            per_step = []
            for i in range(n_dis):
                state, m = d_body(state, jnp.int32(i))
                per_step.append(m)
            d_metrics = jax.tree.map(lambda *ms: jnp.mean(jnp.stack(ms), axis=0), *per_step)
        else:
            state, d_metrics = jax.lax.scan(
                d_body, state, jnp.arange(n_dis, dtype=jnp.int32), unroll=unroll)
            d_metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), d_metrics)
        state, g_metrics = g_step(state, masks, data, jax.random.fold_in(key, n_dis), hparams)
        state = dict(state)
        state["step"] = state["step"] + 1
        metrics = {**d_metrics, **g_metrics}
        for p in parts:
            if p.name in state.get("parts", {}):
                metrics.update(p.metrics_of_state(state["parts"][p.name]))
        return state, metrics

    def sample(variables, z, y=None, key=None):
        # key: G's own randomness in eval mode (StyleGAN2's noise inputs; the models.G_NOISE
        # stream), None = the model's deterministic choice (StyleGAN2: its fixed noise maps)
        rngs = None if key is None else {models_lib.G_NOISE: key}
        return G.apply(variables, z, y, train=False, rngs=rngs)

    def d_logits(d_variables, x, y=None):
        return D.apply(d_variables, x, y, train=False)

    ema_decay = tc.ema_decay
    if tc.get("ema_kimg", 0.0) > 0:  # EMA by half-life in kimg (schedules.ema_beta)
        ema_decay = schedules.ema_beta(
            schedules.images_per_iteration(tc.d_batch_size, n_dis), tc.ema_kimg)
    hparams = {"ema_decay": jnp.float32(ema_decay)}
    for p in parts:
        hparams.update({k: jnp.float32(v) for k, v in p.hparams().items()})
    return StepFns(init, d_step, g_step, iteration, sample, d_logits, hparams, parts,
                   g_grads=g_grads, d_grads=d_grads, optimizers={"g": tx_g, "d": tx_d})
