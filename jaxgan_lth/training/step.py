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

The step is module-level pure functions taking the run's static :class:`StepSpec` first
(:func:`init`, :func:`d_update`, :func:`g_update`, :func:`iteration`, :func:`sample`,
:func:`d_logits`; the losses :func:`d_loss` / :func:`g_loss` and their gradients are in
:mod:`jaxgan_lth.training.step_losses`), as the Flax examples' ``train_step``: compile one with
``jax.jit(functools.partial(iteration, spec))``. :func:`make_step_fns` builds the spec from a
config and binds it into a :class:`StepFns`.

The step knows no method: it asks the parts (:mod:`jaxgan_lth.parts`) the config
switches on for D-input augmentations (applied to every D input), feature perturbations at
the models' named points (``d_features``, ``g_first``), loss terms, and extra variable
collections / PRNG streams for D's training forwards (parts with ``modifies_d``: NICE's noise).
Masks, traced strengths (``hparams``) and the parts' state are arguments, so none of them
recompiles the step.

Real batches are drawn inside the compiled step from the limited training set, which lives on
the accelerator (:mod:`jaxgan_lth.data.sampling`: with replacement, or without replacement
within an epoch from a permutation kept in ``state["sampler"]``). The parameter updates
(Adam, masked updates, EMA G) are :mod:`jaxgan_lth.training.updates`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxgan_lth import models as models_lib
from jaxgan_lth import parallel
from jaxgan_lth import parts as parts_lib
from jaxgan_lth.data.sampling import init_sampler
from jaxgan_lth.training import lazy_reg, schedules
from jaxgan_lth.training.step_config import (  # noqa: F401 (re-exported)
    StepSpec,
    build_spec,
    sample_latent,
    scan_unroll,
    validate_config,
)
from jaxgan_lth.training.step_losses import (  # noqa: F401 (re-exported)
    TERMS_SALT,
    d_grads,
    d_loss,
    g_grads,
    g_loss,
)
from jaxgan_lth.training.updates import add_bn_l1, current_lr, ema_update, masked_update

Pytree = Any

_LAZY_SALT = 0x4C415A59  # the latents of G's lazy reg step (the reference's Greg gen_z)


@dataclasses.dataclass(frozen=True)
class StepFns:
    """The step's pure functions with one run's :class:`StepSpec` bound (jit them).

    The interface the loop, the run axis and the DST update use.

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
      spec: the :class:`StepSpec` bound into the functions.
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
    spec: StepSpec | None = None


def init(spec: StepSpec, key) -> Pytree:
    """The step-0 state from ``key`` (layout in the module docstring).

    theta_0, fresh optimizers, the parts' initial state and, with epoch sampling, the
    sampler's state.
    """
    G, D = spec.generator, spec.discriminator
    kg, kd, kr = jax.random.split(key, 3)
    z, y = sample_latent(kg, 1, spec.latent_dim, spec.num_classes)
    g_vars = G.init(kg, z, y, train=False)
    x = jnp.zeros((1,) + tuple(spec.image_shape), jnp.float32)
    d_vars = D.init(kd, x, y, train=False)
    g = {"params": g_vars["params"], "batch_stats": g_vars.get("batch_stats", {})}
    d = {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {})}
    state = {
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(kr),
        "g": g,
        "d": d,
        "ema": jax.tree.map(jnp.copy, g),
        "g_opt": spec.tx_g.init(g["params"]),
        "d_opt": spec.tx_d.init(d["params"]),
    }
    pstates = {p.name: p.init_state() for p in spec.parts if p.init_state() is not None}
    if pstates:
        state["parts"] = pstates
    if spec.epoch_sampling:
        state["sampler"] = init_sampler(spec.num_real)
    return state


def d_update(spec: StepSpec, state: Pytree, masks: dict, data: dict, key, hparams: dict):
    """One D update.

    D's masked Adam step on :func:`d_loss`, then D's lazy reg step (every ``d_k`` G
    iterations) and the adaptive augmentations' observation of D's real logits.

    Args:
      spec: the run's static settings.
      state: the train state.
      masks: ``{"g": ..., "d": ...}`` bool trees like the parameters.
      data: the training set on the device (``{"images": [N, H, W, C] in [-1, 1],
        "labels": [N] int32}``).
      key: this D step's PRNG key.
      hparams: the traced strengths (``{name: float32 scalar}``).

    Returns:
      ``(state, metrics)``: ``d_loss``, ``d_real`` / ``d_fake`` (mean logits), ``d_lr`` and
      the parts' D metrics.
    """
    grads, (loss, (d_bs, logits, extra, new_p), x, g_bs, k_aug, sampler, (reg, y_r)) = d_grads(
        spec, state, masks, data, key, hparams)
    b, D = spec.d_batch_size, spec.discriminator
    params, opt = masked_update(spec.tx_d, grads, state["d_opt"], state["d"]["params"],
                                masks["d"], spec.mask_grads)
    if spec.d_lazy:  # stylegan2-ada-pytorch's Dreg phase, at D after its main update
        def d_reg_ctx(p):
            return dataclasses.replace(reg, d_apply=lambda xr: D.apply(
                {"params": p, "batch_stats": d_bs}, xr, y_r if spec.num_classes else None,
                train=False))
        params, opt, new_p = lazy_reg.run_phase(spec.d_lazy, spec.d_k, d_reg_ctx, spec.tx_d,
                                                params, opt, masks["d"], new_p, hparams,
                                                state["step"])
    for j, a in enumerate(spec.of_kind("augment")):  # adaptive ones see D's real logits (ADA)
        if a.name in new_p:
            obs = parts_lib.base.AugObservation(
                logits_real=logits[:b], key=k_aug if j == 0 else jax.random.fold_in(k_aug, j),
                x_shape=tuple(x.shape))
            new_p[a.name] = a.observe_d_step(new_p[a.name], obs, hparams)
    new = dict(state)
    new["d"] = {"params": params, "batch_stats": d_bs}
    new["d_opt"] = opt
    if spec.epoch_sampling:
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


def g_update(spec: StepSpec, state: Pytree, masks: dict, data: dict, key, hparams: dict):
    """One G update.

    G's masked Adam step on :func:`g_loss` (plus network slimming's BN L1), G's lazy reg step
    (every ``g_k`` G iterations), then the EMA generator's update.

    Arguments as :func:`d_update`. Returns ``(state, metrics)``: ``g_loss``, ``g_lr`` and the
    parts' G metrics.
    """
    G = spec.generator
    grads, (loss, (g_bs, extra, new_p)) = g_grads(spec, state, masks, data, key, hparams)
    if spec.bn_l1:  # network slimming's sparsity training (train.g_bn_l1)
        grads = add_bn_l1(grads, state["g"]["params"], spec.bn_l1)
    params, opt = masked_update(spec.tx_g, grads, state["g_opt"], state["g"]["params"],
                                masks["g"], spec.mask_grads)
    if spec.g_lazy:  # stylegan2-ada-pytorch's Greg phase, at G after its main update
        z_r, y_r = sample_latent(jax.random.fold_in(key, _LAZY_SALT), spec.g_batch_size,
                                 spec.latent_dim, spec.num_classes)

        def g_reg_ctx(p):
            return parts_lib.GContext(
                logits_fake=None, step=state["step"], z=parallel.shard_batch(z_r, spec.mesh),
                y=y_r, key=jax.random.fold_in(key, TERMS_SALT), g_apply=lambda *a, **kw:
                G.apply({"params": p, "batch_stats": g_bs}, *a, **kw))
        params, opt, new_p = lazy_reg.run_phase(spec.g_lazy, spec.g_k, g_reg_ctx, spec.tx_g,
                                                params, opt, masks["g"], new_p, hparams,
                                                state["step"])
    new = dict(state)
    new["g"] = {"params": params, "batch_stats": g_bs}
    new["g_opt"] = opt
    decay = hparams["ema_decay"]
    if spec.ema_rampup > 0:  # half-life capped at ema_rampup * images so far (schedules.py)
        decay = schedules.ema_rampup_decay(decay, state["step"], spec.ema_rampup)
    new["ema"] = ema_update(state["ema"], new["g"], masks["g"], decay, state["step"],
                            spec.ema_start, spec.ema_buffers, spec.sema)
    if new_p:
        new["parts"] = new_p
    return new, {"g_loss": loss, "g_lr": current_lr(state["g_opt"]), **extra}


def iteration(spec: StepSpec, state: Pytree, masks: dict, data: dict, hparams: dict):
    """One G iteration: ``n_dis`` D updates (a scan, or unrolled) then one G update.

    Keys: ``fold_in(fold_in(base, step), i)`` for D step i, ``fold_in(..., n_dis)`` for the G
    step. Increments ``state["step"]``.

    Returns:
      ``(state, metrics)``: D's metrics averaged over the D steps, G's, and the parts'
      :meth:`~jaxgan_lth.parts.base.Part.metrics_of_state`.
    """
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

    def d_body(st, i):
        return d_update(spec, st, masks, data, jax.random.fold_in(key, i), hparams)

    if spec.unroll is True:  # unrolled in Python: the program has no while loop at all
        per_step = []
        for i in range(spec.n_dis):
            state, m = d_body(state, jnp.int32(i))
            per_step.append(m)
        d_metrics = jax.tree.map(lambda *ms: jnp.mean(jnp.stack(ms), axis=0), *per_step)
    else:
        state, d_metrics = jax.lax.scan(
            d_body, state, jnp.arange(spec.n_dis, dtype=jnp.int32), unroll=spec.unroll)
        d_metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), d_metrics)
    state, g_metrics = g_update(spec, state, masks, data, jax.random.fold_in(key, spec.n_dis),
                                hparams)
    state = dict(state)
    state["step"] = state["step"] + 1
    metrics = {**d_metrics, **g_metrics}
    for p in spec.parts:
        if p.name in state.get("parts", {}):
            metrics.update(p.metrics_of_state(state["parts"][p.name]))
    return state, metrics


def sample(spec: StepSpec, variables, z, y=None, key=None):
    """G in eval mode: images ``[B, H, W, C]`` in [-1, 1] from ``z`` ``[B, latent_dim]``.

    ``key`` feeds G's own randomness (StyleGAN2's noise inputs; the models.G_NOISE stream);
    None = the model's deterministic choice (StyleGAN2: its fixed noise maps).
    """
    rngs = None if key is None else {models_lib.G_NOISE: key}
    return spec.generator.apply(variables, z, y, train=False, rngs=rngs)


def d_logits(spec: StepSpec, d_variables, x, y=None):
    """D in eval mode: logits ``[B]`` of images ``x`` ``[B, H, W, C]`` in [-1, 1]."""
    return spec.discriminator.apply(d_variables, x, y, train=False)


def bind(fn: Callable, spec: StepSpec) -> Callable:
    """``fn`` with ``spec`` bound first, as a plain function named as ``fn``.

    ``functools.partial`` does the same for ``jax.jit``; a function also has the ``__name__``
    and source that ``chex.assert_max_traces`` reads.
    """
    def bound(*args, **kwargs):
        return fn(spec, *args, **kwargs)

    bound.__name__ = bound.__qualname__ = fn.__name__
    bound.__doc__ = fn.__doc__
    return bound


def step_fns(spec: StepSpec) -> StepFns:
    """The :class:`StepFns` of ``spec`` (its functions with the spec bound)."""
    return StepFns(
        bind(init, spec), bind(d_update, spec), bind(g_update, spec), bind(iteration, spec),
        bind(sample, spec), bind(d_logits, spec), spec.default_hparams(), spec.parts,
        g_grads=bind(g_grads, spec), d_grads=bind(d_grads, spec),
        optimizers={"g": spec.tx_g, "d": spec.tx_d}, spec=spec)


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
    """The step functions of ``config`` for one generator/discriminator pair.

    :func:`build_spec` then :func:`step_fns`.

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
      ValueError: epoch sampling without ``num_real``, or a D batch larger than it; more than
        one feature perturbation of one network.
    """
    return step_fns(build_spec(config, generator, discriminator, image_shape=image_shape,
                               num_classes=num_classes, mesh=mesh, num_real=num_real))
