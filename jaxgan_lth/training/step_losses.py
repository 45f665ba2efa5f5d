"""The losses of the composed GAN step and their gradients, as pure functions of a StepSpec.

:func:`d_loss` / :func:`g_loss` are D's and G's losses as functions of their parameters (the
adversarial loss of :mod:`jaxgan_lth.training.losses`, a feature perturbation, the loss terms of the
parts); :func:`d_grads` / :func:`g_grads` draw the step's batch and return the gradient. The
updates built on them are :func:`jaxgan_lth.training.step.d_update` /
:func:`jaxgan_lth.training.step.g_update`.
Every function takes the run's :class:`jaxgan_lth.training.step_config.StepSpec` first and knows no
method: it asks the parts (:mod:`jaxgan_lth.parts`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxgan_lth import models as models_lib
from jaxgan_lth import parallel
from jaxgan_lth import parts as parts_lib
from jaxgan_lth.data.sampling import sample_real, sample_real_epoch
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.training import losses
from jaxgan_lth.training.step_config import StepSpec, sample_latent

Pytree = Any

#: Salts folded into a D/G step's key for the parts' D-forward extras and the loss terms' key
#: (fold_in, so the step's other draws are those of a config without such parts).
D_FORWARD_SALT = 0x4E494345
TERMS_SALT = 0x4E494346
SAMPLER_SALT = 0x5045524D
#: Salt of the key of G's own PRNG stream (models.base.G_NOISE: StyleGAN2's noise inputs and
#: style mixing) in a train-mode G forward.
G_NOISE_SALT = 0x4E494347


class DBatch(NamedTuple):
    """What one D step's loss sees besides D's parameters (drawn by :func:`d_grads`).

    Attributes:
      x: the augmented D input ``[2B, H, W, C]`` in [-1, 1], reals first then fakes.
      y: its int32 labels ``[2B]``, or None (unconditional).
      x_real_clean: the reals ``[B, H, W, C]`` before the D-input augmentations.
      x_fake: G's fakes ``[B, H, W, C]`` before them (gradient-stopped).
      key: the D step's PRNG key.
      k_aug: the augmentations' key (``x`` was augmented with it).
      k_adv: the feature perturbation's key.
    """

    x: jax.Array
    y: jax.Array | None
    x_real_clean: jax.Array
    x_fake: jax.Array
    key: jax.Array
    k_aug: jax.Array
    k_adv: jax.Array


class GBatch(NamedTuple):
    """What one G step's loss sees besides G's parameters (drawn by :func:`g_grads`).

    Attributes:
      z: latents ``[B, latent_dim]``; y: their labels ``[B]`` or None.
      key: the G step's PRNG key; k_aug, k_adv: the augmentations' and the perturbation's;
        k_noise: G's own noise stream's (models.base.G_NOISE).
      d_vars: D's (masked) variables with the parts' D-forward collections.
      d_rngs: the parts' PRNG streams of D's forward (``{}`` = none).
    """

    z: jax.Array
    y: jax.Array | None
    key: jax.Array
    k_aug: jax.Array
    k_adv: jax.Array
    k_noise: jax.Array
    d_vars: dict
    d_rngs: dict


def augment(spec: StepSpec, key, x, pstates: dict, hp: dict):
    """The D-input augmentations of ``x`` ``[N, H, W, C]``, in registry order.

    The first gets ``key`` itself, the j-th ``fold_in(key, j)``.
    """
    for j, a in enumerate(spec.of_kind("augment")):
        k = key if j == 0 else jax.random.fold_in(key, j)
        x = a.augment(k, x, pstates.get(a.name), hp)
    return x


def d_extras(spec: StepSpec, key, pstates: dict, hp: dict, phase: str) -> tuple[dict, dict]:
    """Variable collections and rngs the ``modifies_d`` parts add to one forward of D."""
    cols, rngs = {}, {}
    for j, p in enumerate(spec.d_mods):
        c, r = p.d_forward(jax.random.fold_in(key, j), pstates.get(p.name), hp, phase)
        cols.update(c)
        rngs.update(r)
    return cols, rngs


def add_terms(spec: StepSpec, method: str, ctx, loss, metrics: dict, pstates: dict, hp: dict):
    """``loss`` plus every loss term's ``method`` (``d_term`` or ``g_term``) value.

    The terms' metrics go into ``metrics``; returns ``(loss, parts' states)`` with the terms'
    new (gradient-stopped) states.
    """
    new_p = dict(pstates)
    for t in spec.of_kind("loss"):
        val, m, new_p_t = getattr(t, method)(ctx, pstates.get(t.name), hp)
        loss = loss + val
        metrics.update(m)
        if new_p_t is not None:
            new_p[t.name] = jax.lax.stop_gradient(new_p_t)
    return loss, new_p


def g_forward(spec: StepSpec, g_vars, g_params, z, y, train: bool, key=None):
    """``(G(z, y), G's new batch_stats)``.

    ``train`` updates the statistics; ``key`` feeds G's own noise (models.base.G_NOISE).
    """
    variables = {"params": g_params, "batch_stats": g_vars["batch_stats"]}
    if train:
        x, upd = spec.generator.apply(variables, z, y, train=True, mutable=["batch_stats"],
                                      rngs={models_lib.G_NOISE: key})
        return x, upd["batch_stats"]
    return spec.generator.apply(variables, z, y, train=False), g_vars["batch_stats"]


def _augment_real(spec: StepSpec, batch: DBatch, pstates: dict, hp: dict):
    """The reals' augmentation of ``batch.x`` as a function of the reals (the same draws)."""
    def augment_real(xr):
        x = jnp.concatenate([xr, batch.x_fake], axis=0)
        return augment(spec, batch.k_aug, x, pstates, hp)[:spec.d_batch_size]
    return augment_real


def d_loss(spec: StepSpec, d_params, state: dict, masks: dict, batch: DBatch, hparams: dict):
    """D's loss: the adversarial loss (with D's feature perturbation) plus the loss terms.

    Returns:
      ``(loss, (D's new batch_stats, logits [2B], metrics, parts' states))``.
    """
    D, b, pstates = spec.discriminator, spec.d_batch_size, state.get("parts", {})
    x, y = batch.x, batch.y
    variables = {"params": spec.mask_params(d_params, masks["d"]),
                 "batch_stats": state["d"]["batch_stats"]}
    pre = variables
    cols, rngs = d_extras(spec, jax.random.fold_in(batch.key, D_FORWARD_SALT), pstates, hparams,
                          "d")
    h, upd = D.apply({**variables, **cols}, x, y, train=True, method="features",
                     mutable=["batch_stats"], rngs=rngs or None)
    variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}

    def d_features(xx, kk):  # the same D once more (SN state of this forward)
        c, r = d_extras(spec, kk, pstates, hparams, "d")
        return D.apply({**pre, **c}, xx, None, train=False, method="features", rngs=r or None)

    def head(feats, labels):
        return D.apply(variables, feats, labels, method="head")

    logits = head(h, y)
    loss = losses.d_loss(logits[:b], logits[b:], spec.loss)
    metrics = {}
    if spec.d_pert is not None:  # at D's pooled features (d_features)
        loss, m = spec.d_pert.d_loss(batch.k_adv, head, h, y, b, loss, hparams)
        metrics.update(m)
    ctx = parts_lib.DContext(
        logits_real=logits[:b], logits_fake=logits[b:], x_real=x[:b],
        d_apply=lambda xr: D.apply(variables, xr, y[:b] if spec.num_classes else None,
                                   train=False),
        step=state["step"], x=x, features=h, d_features=d_features,
        key=jax.random.fold_in(batch.key, TERMS_SALT), x_real_clean=batch.x_real_clean,
        augment=lambda kk, xx: augment(spec, kk, xx, pstates, hparams),
        augment_real=_augment_real(spec, batch, pstates, hparams))
    loss, new_p = add_terms(spec, "d_term", ctx, loss, metrics, pstates, hparams)
    return loss, (upd["batch_stats"], logits, metrics, new_p)


def d_grads(spec: StepSpec, state: dict, masks: dict, data: dict, key, hparams: dict):
    """D's loss gradient and what the D update needs (the forward of ``step.d_update``).

    Returns:
      ``(grads, (loss, (d_bs, logits, metrics, parts' states), x, g_bs, k_aug, sampler,
      (reg, y_real)))``: ``reg`` the :class:`DContext` of D's lazy reg step (``d_apply`` set
      there), ``y_real`` the reals' labels, ``sampler`` the epoch sampler's state or None.
    """
    k_real, k_lat, k_aug, k_adv = jax.random.split(key, 4)
    pstates = state.get("parts", {})
    b = spec.d_batch_size
    if spec.epoch_sampling:
        base = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), SAMPLER_SALT)
        x_real, y_real, sampler = sample_real_epoch(
            state["sampler"], base, data, k_real, b, spec.random_flip)
    else:
        x_real, y_real = sample_real(k_real, data, b, spec.random_flip)
        sampler = None
    z, y_fake = sample_latent(k_lat, b, spec.latent_dim, spec.num_classes)
    x_real = parallel.shard_batch(x_real, spec.mesh)
    z = parallel.shard_batch(z, spec.mesh)
    g_params = masks_lib.apply(state["g"]["params"], masks["g"])
    x_fake, g_bs = g_forward(spec, state["g"], g_params, z, y_fake, train=True,
                             key=jax.random.fold_in(k_lat, G_NOISE_SALT))
    x_fake = jax.lax.stop_gradient(x_fake)
    x = augment(spec, k_aug, jnp.concatenate([x_real, x_fake], axis=0), pstates, hparams)
    y = jnp.concatenate([y_real, y_fake], axis=0) if spec.num_classes else None
    batch = DBatch(x=x, y=y, x_real_clean=x_real, x_fake=x_fake, key=key, k_aug=k_aug,
                   k_adv=k_adv)
    (loss, aux), grads = jax.value_and_grad(
        lambda p: d_loss(spec, p, state, masks, batch, hparams), has_aux=True)(
            state["d"]["params"])
    reg = parts_lib.DContext(  # for D's lazy reg step: d_apply set there (lazy_reg.py)
        logits_real=None, logits_fake=None, x_real=x[:b], d_apply=None, step=state["step"],
        key=jax.random.fold_in(key, TERMS_SALT), x_real_clean=x_real,
        augment=lambda kk, xx: augment(spec, kk, xx, pstates, hparams),
        augment_real=_augment_real(spec, batch, pstates, hparams))
    return grads, (loss, aux, x, g_bs, k_aug, sampler, (reg, y_real))


def g_logits(spec: StepSpec, g_params, state: dict, batch: GBatch, hparams: dict, delta=None,
             augmented: bool = True):
    """``(D(augment(G(z))) [B], G's update of its collections, G(z))``.

    ``delta`` is added at G's first-layer output (``g_first``) when given;
    ``augmented=False`` skips the D-input augmentations.
    """
    variables = {"params": g_params, "batch_stats": state["g"]["batch_stats"]}
    if delta is not None:
        variables["perturbations"] = {models_lib.G_PERTURB: delta}
    x_fake, upd = spec.generator.apply(variables, batch.z, batch.y, train=True,
                                       mutable=["batch_stats"],
                                       rngs={models_lib.G_NOISE: batch.k_noise})
    pstates = state.get("parts", {})
    x_in = augment(spec, batch.k_aug, x_fake, pstates, hparams) if augmented else x_fake
    logits = spec.discriminator.apply(batch.d_vars, x_in, batch.y, train=False,
                                      rngs=batch.d_rngs or None)
    return logits, upd, x_fake


def g_loss(spec: StepSpec, g_params, state: dict, masks: dict, batch: GBatch, hparams: dict):
    """G's loss: the adversarial loss (with G's feature perturbation) plus the loss terms.

    Returns:
      ``(loss, (G's new batch_stats, metrics, parts' states))``.
    """
    pstates = state.get("parts", {})
    g_params = spec.mask_params(g_params, masks["g"])
    logits, upd, x_fake = g_logits(spec, g_params, state, batch, hparams)
    loss = losses.g_loss(logits, spec.loss)
    metrics = {}
    g_pert = spec.g_pert
    if g_pert is not None:  # at G's first-layer output (g_first)
        frozen = jax.lax.stop_gradient(g_params)
        augmented = g_pert.augments_adv_branch()

        def logits_at(delta, search):
            return g_logits(spec, frozen if search else g_params, state, batch, hparams, delta,
                            augmented)[0]

        loss, m = g_pert.g_loss(batch.k_adv, logits_at, spec.g_point_shape, loss, hparams)
        metrics.update(m)
    g_vars = {"params": g_params, "batch_stats": state["g"]["batch_stats"]}
    ctx = parts_lib.GContext(
        logits_fake=logits, step=state["step"], x_fake=x_fake, z=batch.z, y=batch.y,
        g_apply=lambda *a, **kw: spec.generator.apply(g_vars, *a, **kw),
        key=jax.random.fold_in(batch.key, TERMS_SALT))
    loss, new_p = add_terms(spec, "g_term", ctx, loss, metrics, pstates, hparams)
    return loss, (upd["batch_stats"], metrics, new_p)


def g_grads(spec: StepSpec, state: dict, masks: dict, data: dict, key, hparams: dict):
    """G's loss gradient and what the G update needs (the forward of ``step.g_update``).

    ``data`` is unused (G's step draws no reals); it keeps :func:`d_grads`' signature.

    Returns:
      ``(grads, (loss, (g_bs, metrics, parts' states)))``.
    """
    del data
    k_lat, k_aug, k_adv = jax.random.split(key, 3)
    pstates = state.get("parts", {})
    z, y_fake = sample_latent(k_lat, spec.g_batch_size, spec.latent_dim, spec.num_classes)
    z = parallel.shard_batch(z, spec.mesh)
    d_vars = {
        "params": masks_lib.apply(state["d"]["params"], masks["d"]),
        "batch_stats": state["d"]["batch_stats"],
    }
    d_cols, d_rngs = d_extras(spec, jax.random.fold_in(key, D_FORWARD_SALT), pstates, hparams,
                              "g")
    d_vars.update(d_cols)
    batch = GBatch(z=z, y=y_fake, key=key, k_aug=k_aug, k_adv=k_adv,
                   k_noise=jax.random.fold_in(k_lat, G_NOISE_SALT), d_vars=d_vars, d_rngs=d_rngs)
    (loss, aux), grads = jax.value_and_grad(
        lambda p: g_loss(spec, p, state, masks, batch, hparams), has_aux=True)(
            state["g"]["params"])
    return grads, (loss, aux)
