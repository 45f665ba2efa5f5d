"""GAN training: jit-compiled D and G steps and the ``train_and_evaluate`` loop.

State layout (a plain dict pytree, big_vision style)::

    state = {
        "step":  int32 scalar, G iterations done,
        "rng":   uint32 [2], raw key data of the run's base PRNG key,
        "g":     {"params": ..., "batch_stats": ...},   # generator variables
        "d":     {"params": ..., "batch_stats": ...},   # discriminator variables (SN u/sigma)
        "ema":   {"params": ..., "batch_stats": ...},   # EMA generator
        "g_opt": optax state of G, "d_opt": optax state of D,
    }
    masks = {"g": bool tree like state["g"]["params"], "d": bool tree like state["d"]["params"]}

One *iteration* = ``n_dis`` D steps followed by one G step (SNGAN / lottery-ticket code, n_critic).
PRNG keys are folded per iteration from the base key: ``fold_in(base, step)``, then per D step
``fold_in(key, i)`` and for the G step ``fold_in(key, n_dis)``, so a resumed run draws exactly
the same numbers as an uninterrupted one.

Real batches are sampled inside the compiled step from the limited training set, which lives
on the accelerator (uniform sampling with replacement), so no host input pipeline can stall.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from jaxgan_lth import checkpointing, config_lib, losses, parallel
from jaxgan_lth.augment import advaug, diffaugment
from jaxgan_lth import data as data_lib
from jaxgan_lth import models as models_lib
from jaxgan_lth.sparsity import masks as masks_lib

Pytree = Any


# ------------------------------------------------------------------------------------------------
# Optimizers
# ------------------------------------------------------------------------------------------------


def make_optimizer(
    lr: float, betas: tuple[float, float], eps: float, decay_steps: int | None
) -> optax.GradientTransformation:
    """Adam with a constant learning rate, or linear decay to 0 over ``decay_steps`` updates.

    The learning rate is held in the optimizer state (``optax.inject_hyperparams``) so it can be
    logged. TTUR (Heusel et al. 2017) = separate G/D learning rates and betas.
    """
    schedule = lr if not decay_steps else optax.linear_schedule(lr, 0.0, decay_steps)
    return optax.inject_hyperparams(optax.adam)(
        learning_rate=schedule, b1=betas[0], b2=betas[1], eps=eps
    )


def current_lr(opt_state: Any) -> jax.Array:
    """The learning rate stored in an ``inject_hyperparams`` optimizer state."""
    return opt_state.hyperparams["learning_rate"]


# ------------------------------------------------------------------------------------------------
# The step functions
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepFns:
    """The compiled-step building blocks of one run (all pure functions of their arguments).

    Attributes:
      init: ``init(key) -> state``.
      d_step: ``d_step(state, masks, data, key, hparams) -> (state, metrics)``, one D update.
      g_step: ``g_step(state, masks, data, key, hparams) -> (state, metrics)``, one G update
        plus the EMA update.
      iteration: ``iteration(state, masks, data, hparams) -> (state, metrics)``, ``n_dis`` D
        steps then one G step; increments ``state["step"]``.
      sample: ``sample(variables, z, y) -> images [B, H, W, C] in [-1, 1]`` (G in eval mode).
      hparams: default traced hyper-parameters (dict of float32 scalars).
    """

    init: Callable
    d_step: Callable
    g_step: Callable
    iteration: Callable
    sample: Callable
    hparams: dict


def _sample_latent(key, batch: int, latent_dim: int, num_classes: int):
    kz, ky = jax.random.split(key)
    z = jax.random.normal(kz, (batch, latent_dim), jnp.float32)
    y = jax.random.randint(ky, (batch,), 0, num_classes) if num_classes else None
    return z, y


def _sample_real(key, data: dict, batch: int, random_flip: bool):
    k_idx, k_flip = jax.random.split(key)
    n = data["images"].shape[0]
    idx = jax.random.randint(k_idx, (batch,), 0, n)
    x = data["images"][idx]
    y = data["labels"][idx]
    if random_flip:
        flip = jax.random.bernoulli(k_flip, 0.5, (batch,))
        x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    return x, y


def make_step_fns(
    config: ml_collections.ConfigDict,
    generator,
    discriminator,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    mesh=None,
) -> StepFns:
    """Builds the pure D/G step functions of ``config`` for one generator/discriminator pair.

    Args:
      config: the run's full config (``train``, ``model`` sections used here).
      generator, discriminator: flax modules from :func:`jaxgan_lth.models.get_model`.
      image_shape: ``(H, W, C)`` of real images.
      num_classes: classes of the conditional model (0 = unconditional).
      mesh: optional device mesh; sampled batches are split over its ``data`` axis.

    Returns:
      A :class:`StepFns`.
    """
    tc = config.train
    G, D = generator, discriminator
    latent_dim = G.latent_dim
    ncls = num_classes if config.model.conditional else 0
    n_dis = int(tc.n_dis)
    decay = bool(tc.lr_decay)
    tx_g = make_optimizer(tc.g_lr, tuple(tc.g_betas), tc.adam_eps, tc.num_steps if decay else None)
    tx_d = make_optimizer(
        tc.d_lr, tuple(tc.d_betas), tc.adam_eps, tc.num_steps * n_dis if decay else None
    )
    loss_kind = tc.loss
    random_flip = bool(config.data.random_flip)
    policy = config.diffaug.policy
    diffaugment.parse_policy(policy)  # raises on unknown op names
    ac = config.advaug
    adv_d = ac.mode != "none" and "d" in ac.networks
    adv_g = ac.mode != "none" and "g" in ac.networks
    project = float(ac.radius) > 0.0

    def _g_point(key):
        z, y = _sample_latent(key, tc.g_batch_size, latent_dim, ncls)
        variables = G.init(key, z, y, train=False)
        _, upd = G.apply(variables, z, y, train=False, mutable=["perturbations"])
        return upd["perturbations"][models_lib.G_PERTURB]

    # Shape [B, ...] of G's first-layer output (the AdvAug point), from shapes only.
    g_point_shape = jax.eval_shape(_g_point, jax.random.key(0)).shape if adv_g else None

    def augment(key, x):
        """DiffAugment on every D input (reals and fakes, D and G steps)."""
        return diffaugment.diff_augment(key, x, policy) if policy else x

    def perturbation(key, head, features, branch, hparams):
        """AdvAug delta for one branch: PGD (``jax.grad`` w.r.t. delta) or the noise baseline.

        ``head`` maps ``features + delta`` to D's logits ``[B]``; the returned delta is a
        gradient-stopped constant offset of the shape of ``features``.
        """
        if ac.mode == "noise":
            return advaug.noise_perturbation(
                key, features.shape, hparams["adv_noise_scale"], ac.noise_kind
            )
        return advaug.adversarial_delta(
            head, features, branch, direction=ac.direction, loss=loss_kind, key=key,
            num_steps=int(ac.num_steps), step_size=hparams["adv_step_size"],
            radius=hparams["adv_radius"], random_start=bool(ac.random_start), project=project,
        )

    def init(key):
        kg, kd, kr = jax.random.split(key, 3)
        z, y = _sample_latent(kg, 1, latent_dim, ncls)
        g_vars = G.init(kg, z, y, train=False)
        x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
        d_vars = D.init(kd, x, y, train=False)
        g = {"params": g_vars["params"], "batch_stats": g_vars.get("batch_stats", {})}
        d = {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {})}
        return {
            "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(kr),
            "g": g,
            "d": d,
            "ema": jax.tree.map(jnp.copy, g),
            "g_opt": tx_g.init(g["params"]),
            "d_opt": tx_d.init(d["params"]),
        }

    def g_forward(g_vars, g_params, z, y, train):
        variables = {"params": g_params, "batch_stats": g_vars["batch_stats"]}
        if train:
            x, upd = G.apply(variables, z, y, train=True, mutable=["batch_stats"])
            return x, upd["batch_stats"]
        return G.apply(variables, z, y, train=False), g_vars["batch_stats"]

    def d_step(state, masks, data, key, hparams):
        k_real, k_lat, k_aug, k_adv = jax.random.split(key, 4)
        x_real, y_real = _sample_real(k_real, data, tc.d_batch_size, random_flip)
        z, y_fake = _sample_latent(k_lat, tc.d_batch_size, latent_dim, ncls)
        x_real = parallel.shard_batch(x_real, mesh)
        z = parallel.shard_batch(z, mesh)
        g_params = masks_lib.apply(state["g"]["params"], masks["g"])
        x_fake, g_bs = g_forward(state["g"], g_params, z, y_fake, train=True)
        x_fake = jax.lax.stop_gradient(x_fake)
        x = augment(k_aug, jnp.concatenate([x_real, x_fake], axis=0))
        y = jnp.concatenate([y_real, y_fake], axis=0) if ncls else None
        b = tc.d_batch_size

        def loss_fn(d_params):
            variables = {
                "params": masks_lib.apply(d_params, masks["d"]),
                "batch_stats": state["d"]["batch_stats"],
            }
            h, upd = D.apply(
                variables, x, y, train=True, method="features", mutable=["batch_stats"]
            )
            variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}

            def head(feats, labels):
                return D.apply(variables, feats, labels, method="head")

            logits = head(h, y)
            loss = clean = adv = losses.d_loss(logits[:b], logits[b:], loss_kind)
            if adv_d:  # AdvAug on D's pooled features, reals and fakes separately
                y_r, y_f = (y[:b], y[b:]) if ncls else (None, None)
                kr, kf = jax.random.split(k_adv)
                d_r = perturbation(kr, lambda f: head(f, y_r), h[:b], "d_real", hparams)
                d_f = perturbation(kf, lambda f: head(f, y_f), h[b:], "d_fake", hparams)
                adv_logits = head(h + jnp.concatenate([d_r, d_f], axis=0), y)
                adv = losses.d_loss(adv_logits[:b], adv_logits[b:], loss_kind)
                loss = advaug.combine(clean, adv, hparams["adv_lam"])
            return loss, (upd["batch_stats"], logits, clean, adv)

        (loss, (d_bs, logits, clean, adv)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["d"]["params"]
        )
        params, opt = _masked_update(tx_d, grads, state["d_opt"], state["d"]["params"], masks["d"])
        new = dict(state)
        new["d"] = {"params": params, "batch_stats": d_bs}
        new["d_opt"] = opt
        new["g"] = {"params": state["g"]["params"], "batch_stats": g_bs}
        metrics = {
            "d_loss": loss,
            "d_real": jnp.mean(logits[:b]),
            "d_fake": jnp.mean(logits[b:]),
            "d_lr": current_lr(state["d_opt"]),
        }
        if adv_d:
            metrics.update(d_loss_clean=clean, d_loss_adv=adv)
        return new, metrics

    def g_step(state, masks, data, key, hparams):
        del data
        k_lat, k_aug, k_adv = jax.random.split(key, 3)
        z, y_fake = _sample_latent(k_lat, tc.g_batch_size, latent_dim, ncls)
        z = parallel.shard_batch(z, mesh)
        d_vars = {
            "params": masks_lib.apply(state["d"]["params"], masks["d"]),
            "batch_stats": state["d"]["batch_stats"],
        }

        def logits_of(g_params, delta=None):
            """D(augment(G(z))) with ``delta`` added at G's first-layer output."""
            variables = {"params": g_params, "batch_stats": state["g"]["batch_stats"]}
            if delta is not None:
                variables["perturbations"] = {models_lib.G_PERTURB: delta}
            x_fake, upd = G.apply(variables, z, y_fake, train=True, mutable=["batch_stats"])
            return D.apply(d_vars, augment(k_aug, x_fake), y_fake, train=False), upd

        def loss_fn(g_params):
            g_params = masks_lib.apply(g_params, masks["g"])
            logits, upd = logits_of(g_params)
            loss = clean = adv = losses.g_loss(logits, loss_kind)
            if adv_g:  # AdvAug on G's first-layer output
                zero = jnp.zeros(g_point_shape, jnp.float32)
                frozen = jax.lax.stop_gradient(g_params)
                delta = perturbation(
                    k_adv, lambda d: logits_of(frozen, d)[0], zero, "g", hparams
                )
                adv_logits, _ = logits_of(g_params, delta)
                adv = losses.g_loss(adv_logits, loss_kind)
                loss = advaug.combine(clean, adv, hparams["adv_lam"])
            return loss, (upd["batch_stats"], logits, clean, adv)

        (loss, (g_bs, logits, clean, adv)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["g"]["params"]
        )
        params, opt = _masked_update(tx_g, grads, state["g_opt"], state["g"]["params"], masks["g"])
        new = dict(state)
        new["g"] = {"params": params, "batch_stats": g_bs}
        new["g_opt"] = opt
        new["ema"] = ema_update(
            state["ema"], new["g"], masks["g"], hparams["ema_decay"], state["step"], tc.ema_start
        )
        metrics = {"g_loss": loss, "g_lr": current_lr(state["g_opt"])}
        if adv_g:
            metrics.update(g_loss_clean=clean, g_loss_adv=adv)
        return new, metrics

    def iteration(state, masks, data, hparams):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        metrics = {}
        for i in range(n_dis):
            state, metrics = d_step(state, masks, data, jax.random.fold_in(key, i), hparams)
        state, g_metrics = g_step(state, masks, data, jax.random.fold_in(key, n_dis), hparams)
        state = dict(state)
        state["step"] = state["step"] + 1
        return state, {**metrics, **g_metrics}

    def sample(variables, z, y=None):
        return G.apply(variables, z, y, train=False)

    hparams = {
        "ema_decay": jnp.float32(tc.ema_decay),
        "adv_step_size": jnp.float32(ac.step_size),
        "adv_radius": jnp.float32(ac.radius),
        "adv_lam": jnp.float32(ac.lam),
        "adv_noise_scale": jnp.float32(ac.noise_scale),
    }
    return StepFns(init, d_step, g_step, iteration, sample, hparams)


def _masked_update(tx, grads, opt_state, params, mask):
    """One optimizer update that keeps pruned weights exactly zero.

    Gradients and updates are multiplied by the mask and the new parameters once more, so a
    weight outside the mask is 0 after the step whatever the optimizer's momentum holds.
    """
    grads = masks_lib.apply(grads, mask)
    updates, opt_state = tx.update(grads, opt_state, params)
    updates = masks_lib.apply(updates, mask)
    params = masks_lib.apply(optax.apply_updates(params, updates), mask)
    return params, opt_state


def ema_update(ema, g, g_mask, decay, step, start: int):
    """EMA generator: ``ema <- decay * ema + (1 - decay) * params`` (masked), per G step.

    Before G step ``start`` the EMA is a copy of G (decay 0), as BigGAN/StudioGAN's ``ema_start``.
    Batch statistics are copied from G (they are not averaged). ``decay`` is a traced scalar.
    """
    d = jnp.where(step >= start, decay, 0.0)
    params = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema["params"], g["params"])
    return {"params": masks_lib.apply(params, g_mask), "batch_stats": g["batch_stats"]}


# ------------------------------------------------------------------------------------------------
# Host-side helpers
# ------------------------------------------------------------------------------------------------


def image_grid(images: np.ndarray, ncols: int | None = None) -> np.ndarray:
    """Tiles ``[N, H, W, C]`` images in [-1, 1] into one uint8 ``[rows*H, cols*W, C]`` grid.

    Own code (a few lines of numpy): no listed library tiles image batches without pulling in
    torchvision or matplotlib.
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * h, ncols * w, c), -1.0, np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i]
    return np.clip(np.round((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: str) -> None:
    """Writes a uint8 ``[H, W, C]`` array (C = 1 or 3) as PNG with Pillow."""
    from PIL import Image

    img = array[..., 0] if array.shape[-1] == 1 else array
    Image.fromarray(img).save(path)


def fixed_noise(config, latent_dim: int, num_classes: int):
    """The fixed ``(z, y)`` used for every sample grid of a run (derived from ``config.seed``)."""
    key = jax.random.fold_in(jax.random.key(config.seed), 0x5A3)
    ncls = num_classes if config.model.conditional else 0
    z, y = _sample_latent(key, config.num_samples, latent_dim, ncls)
    if ncls:  # class-sorted rows are easier to read
        y = jnp.arange(config.num_samples, dtype=jnp.int32) % ncls
    return z, y


def _to_host(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Setup:
    """Everything a training stage needs besides the masks: data, models, compiled fns."""

    config: ml_collections.ConfigDict
    train_set: data_lib.TrainingSet
    data: dict
    generator: Any
    discriminator: Any
    fns: StepFns
    mesh: Any
    jit_iteration: Callable
    num_classes: int


def build(config: ml_collections.ConfigDict, workdir: str | None) -> Setup:
    """Loads the limited training set, builds the models and compiles the iteration.

    Raises:
      ValueError: invalid config values or data (see :mod:`jaxgan_lth.config_lib` and
        :mod:`jaxgan_lth.data`).
    """
    config_lib.validate(config)
    train_set = data_lib.load_training_set(config.data, workdir)
    num_classes = train_set.num_classes
    if config.model.conditional and num_classes < 1:
        raise ValueError(
            f"model.conditional=True needs class labels, but data set {train_set.name!r} has "
            "none; set model.conditional=False."
        )
    mesh = parallel.create_mesh()
    parallel.check_batch_divisible(config.train.d_batch_size, mesh, "train.d_batch_size")
    parallel.check_batch_divisible(config.train.g_batch_size, mesh, "train.g_batch_size")
    model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
    pair = models_lib.get_model(
        config.model.name,
        resolution=config.data.resolution,
        channels=config.data.channels,
        num_classes=num_classes if config.model.conditional else 0,
        **model_kwargs,
    )
    image_shape = tuple(train_set.images.shape[1:])
    fns = make_step_fns(
        config,
        pair.generator,
        pair.discriminator,
        image_shape=image_shape,
        num_classes=num_classes,
        mesh=mesh,
    )
    data = parallel.replicate(
        {"images": jnp.asarray(train_set.images), "labels": jnp.asarray(train_set.labels)}, mesh
    )
    jit_iteration = jax.jit(fns.iteration, donate_argnums=(0,))
    return Setup(
        config, train_set, data, pair.generator, pair.discriminator, fns, mesh, jit_iteration,
        num_classes,
    )


def initial_state(setup: Setup, seed: int | None = None) -> Pytree:
    """The step-0 state of a run (parameters theta_0, fresh optimizers), replicated."""
    seed = setup.config.seed if seed is None else seed
    state = jax.jit(setup.fns.init)(jax.random.key(seed))
    return parallel.replicate(state, setup.mesh)


def run_stage(
    setup: Setup,
    stage_dir: str,
    *,
    init_state: Pytree,
    masks: Pytree,
    num_steps: int,
    meta: dict | None = None,
    hparams: dict | None = None,
    writer=None,
    log_prefix: str = "",
    evaluator=None,
) -> tuple[Pytree, dict]:
    """Trains from ``init_state`` (or the latest checkpoint in ``stage_dir``) to ``num_steps``.

    Checkpoints go to ``stage_dir/checkpoints`` (step 0 always kept), sample grids to
    ``stage_dir/samples``. Re-running after a kill continues from the latest checkpoint and
    reaches the same state as an uninterrupted run (bit-for-bit on CPU).

    Args:
      setup: from :func:`build`.
      stage_dir: folder of this stage (created).
      init_state: state at step 0 (used only when no checkpoint exists yet).
      masks: ``{"g": tree, "d": tree}`` of bool masks (all True when dense).
      num_steps: G iterations to reach.
      meta: JSON dict stored with every checkpoint.
      hparams: traced hyper-parameters (defaults: ``setup.fns.hparams``).
      writer: a clu metric writer (default: one writing into ``stage_dir``).
      log_prefix: prefix of metric names (e.g. ``"round_1/"``).
      evaluator: optional :class:`jaxgan_lth.evaluation.evaluator.Evaluator`: FID/KID every
        ``eval.every`` steps and at the end (history in ``stage_dir/eval.json``, best
        checkpoint by FID in ``stage_dir/best``), D-accuracy diagnostic at every log step.

    Returns:
      ``(final_state, summary)`` where summary has ``steps``, ``wall_time_s``,
      ``steps_per_s``, the last logged metrics and, with an evaluator, ``final_fid``,
      ``final_kid``, ``best_fid``, ``best_step``.
    """
    from clu import metric_writers, periodic_actions

    config = setup.config
    os.makedirs(os.path.join(stage_dir, "samples"), exist_ok=True)
    own_writer = writer is None
    if own_writer:
        writer = metric_writers.create_default_writer(
            stage_dir, just_logging=not parallel.is_main_process(), asynchronous=False
        )
    hparams = setup.fns.hparams if hparams is None else hparams
    ckpt = checkpointing.Checkpointer(
        os.path.join(stage_dir, "checkpoints"), keep=config.keep_checkpoints
    )
    latest = ckpt.latest_step()
    if latest is None:
        # The compiled iteration donates its state buffers: copy so the caller's arrays
        # (e.g. theta_0, reused by every IMP round) stay valid.
        state = jax.tree.map(jnp.copy, init_state)
        ckpt.save(0, state, meta)
    else:
        state, _ = ckpt.restore(latest, init_state)
        state = parallel.replicate(state, setup.mesh)
        logging.info("Resumed %s from step %d.", stage_dir, latest)
    masks = parallel.replicate(masks, setup.mesh)
    start = int(state["step"])
    z_fixed, y_fixed = fixed_noise(config, setup.generator.latent_dim, setup.num_classes)
    jit_sample = jax.jit(setup.fns.sample)
    report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
    evals = _EvalLog(stage_dir, config.keep_checkpoints) if evaluator else None

    def evaluate(step, state):
        if evaluator is None or evals.has(step):
            return
        t_eval = time.time()
        result = evaluator.evaluate(state)
        writer.write_scalars(step, {log_prefix + k: v for k, v in result.items()})
        logging.info("%sstep %d: FID %.3f  KID %.5f +- %.5f  (%.0f s)", log_prefix, step,
                     result["fid"], result["kid"], result["kid_std"], time.time() - t_eval)
        evals.add(step, result, state)

    t0 = time.time()
    last = {}
    for step in range(start + 1, num_steps + 1):
        state, metrics = setup.jit_iteration(state, masks, setup.data, hparams)
        if step % config.log_every == 0 or step == num_steps:
            last = _to_host(metrics)
            if evaluator is not None and config.eval.diagnostic:
                last.update(evaluator.diagnostic(state, masks))
            bad = [k for k, v in last.items() if not np.isfinite(v)]
            if bad:
                raise FloatingPointError(f"{', '.join(bad)} became nan/inf at step {step}.")
            writer.write_scalars(step, {log_prefix + k: v for k, v in last.items()})
            elapsed = time.time() - t0
            rate = (step - start) / max(elapsed, 1e-9)
            logging.info(
                "%sstep %d/%d  d_loss %.4f  g_loss %.4f  D(real) %.3f  D(fake) %.3f  "
                "%.2f it/s  ETA %s",
                log_prefix, step, num_steps, last["d_loss"], last["g_loss"], last["d_real"],
                last["d_fake"], rate, _fmt_eta((num_steps - step) / max(rate, 1e-9)),
            )
        report(step)
        if step % config.sample_every == 0 or step == num_steps:
            # Every process runs the (SPMD) sampling program; process 0 writes the grid.
            imgs = jit_sample(state["ema"], z_fixed, y_fixed)
            grid = image_grid(np.asarray(jax.device_get(imgs)))
            if parallel.is_main_process():
                save_png(grid, os.path.join(stage_dir, "samples", f"step_{step:06d}.png"))
            writer.write_images(step, {log_prefix + "samples_ema": grid[None]})
        if step % config.checkpoint_every == 0 or step == num_steps:
            ckpt.save(step, state, meta)
        if evaluator is not None and config.eval.every and step % config.eval.every == 0:
            evaluate(step, state)
    evaluate(num_steps, state)
    wall = time.time() - t0
    ckpt.close()
    writer.flush()
    if own_writer:
        writer.close()
    done = num_steps - start
    summary = {
        "steps": int(num_steps),
        "steps_this_session": int(done),
        "wall_time_s": round(wall, 2),
        "steps_per_s": round(done / wall, 3) if done else None,
        "last_metrics": last,
    }
    if evals is not None:
        summary.update(evals.summary())
        evals.close()
    return state, summary


class _EvalLog:
    """FID/KID history of a stage (``eval.json``) and its best checkpoint by FID (``best/``)."""

    def __init__(self, stage_dir: str, keep: int):
        self.path = os.path.join(stage_dir, "eval.json")
        self.history = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.history = json.load(f)["history"]
        self.best_ckpt = checkpointing.Checkpointer(os.path.join(stage_dir, "best"), keep=1)

    def has(self, step: int) -> bool:
        return any(h["step"] == step for h in self.history)

    def best(self) -> dict | None:
        return min(self.history, key=lambda h: (h["fid"], h["step"])) if self.history else None

    def add(self, step: int, result: dict, state) -> None:
        previous = self.best()
        self.history.append({"step": int(step), **result})
        if previous is None or result["fid"] < previous["fid"]:
            self.best_ckpt.save(step, state, {"fid": result["fid"]})
        config_lib.write_json(self.path, {"history": self.history, "best": self.best()})

    def summary(self) -> dict:
        final = max(self.history, key=lambda h: h["step"])
        best = self.best()
        return {"final_fid": final["fid"], "final_kid": final["kid"],
                "final_kid_std": final["kid_std"], "best_fid": best["fid"],
                "best_step": best["step"]}

    def close(self) -> None:
        self.best_ckpt.close()


def _fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


STAGES = ("train", "imp", "ticket", "multirun")


def make_evaluator(config: ml_collections.ConfigDict, workdir: str, setup: Setup):
    """An :class:`~jaxgan_lth.evaluation.evaluator.Evaluator` when ``eval.enabled``, else None."""
    if not config.eval.enabled:
        return None
    from jaxgan_lth.evaluation.evaluator import Evaluator

    return Evaluator(config, workdir, setup)


def parse_stages(config: ml_collections.ConfigDict) -> list[str]:
    """``config.stages`` ("imp,ticket") as a list, checked against :data:`STAGES`.

    Raises:
      ValueError: an unknown stage name (accepted ones listed) or an empty list.
    """
    stages = [s.strip() for s in str(config.stages).split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ValueError(
            f"config.stages = {config.stages!r}: unknown stage(s) {bad}; accepted: "
            f"comma-separated names from {STAGES}."
        )
    return stages


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the stages of ``config`` in ``workdir`` and returns (and writes) the summary.

    Stage ``train``: dense GAN training in ``workdir/train``. Stages ``imp`` / ``ticket``: the
    lottery-ticket pipeline of :mod:`jaxgan_lth.sparsity.lottery`. Stage ``multirun``: K runs
    trained together by ``jax.vmap`` (:mod:`jaxgan_lth.multirun`, ``DIR/runs/<name>/``).
    ``workdir/summary.json`` is rewritten after every stage, so it is useful while a long
    pipeline runs. Re-running the same command after a kill resumes where the run stopped.

    Raises:
      ValueError: invalid config values, a workdir holding a run with a different config, bad
        data or mask inputs (messages name the bad value).
    """
    stages = parse_stages(config)
    config_lib.validate(config)
    os.makedirs(workdir, exist_ok=True)
    config_lib.write_or_check(config, workdir)
    summary_path = os.path.join(workdir, "summary.json")
    result: dict = {"stages": {}}
    t0 = time.time()
    lottery = None
    for stage in stages:
        if stage == "train":
            setup = build(config, workdir)
            state0 = initial_state(setup)
            masks = {
                "g": masks_lib.ones_like(state0["g"]["params"]),
                "d": masks_lib.ones_like(state0["d"]["params"]),
            }
            _, summary = run_stage(
                setup, os.path.join(workdir, "train"), init_state=state0, masks=masks,
                num_steps=config.train.num_steps, evaluator=make_evaluator(config, workdir, setup),
            )
            result["stages"]["train"] = summary
        elif stage == "multirun":  # K runs in one vmapped program (configs/advaug_sweep.py)
            from jaxgan_lth import multirun

            result["stages"]["multirun"] = multirun.train_multirun(config, workdir)
        else:
            from jaxgan_lth.sparsity import lottery as lottery_lib

            lottery = lottery or lottery_lib.Lottery(config, workdir)
            if stage == "imp":
                result["stages"]["imp"] = {"rounds": lottery.run_imp()}
            else:
                result["stages"]["ticket"] = lottery.run_ticket()
        result["wall_time_s"] = round(time.time() - t0, 2)
        config_lib.write_json(summary_path, result)
    return result
