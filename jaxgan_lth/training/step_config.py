"""Step-level config of :mod:`jaxgan_lth.training.step`: :class:`StepSpec`, the step's static half.

:func:`build_spec` reads a run's config once into a frozen :class:`StepSpec` (modules, parts,
optimizers, batch sizes, the loss, ``n_dis`` ...); the step's pure functions
(:mod:`jaxgan_lth.training.step`, :mod:`jaxgan_lth.training.step_losses`) take it as their first
argument, as the
Flax examples' module-level ``train_step`` takes its static settings. Also the keys no part
owns (:func:`validate_config`) and the D-scan unroll (:func:`scan_unroll`); re-exported by
:mod:`jaxgan_lth.training.step`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxgan_lth import models as models_lib
from jaxgan_lth import parts as parts_lib
from jaxgan_lth.data.sampling import SAMPLING
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.training import lazy_reg, schedules
from jaxgan_lth.training.updates import EMA_BUFFERS, make_optimizer


def scan_unroll(setting: int, n_dis: int) -> int | bool:
    """The ``unroll`` of the ``n_dis`` D-step scan for ``train.n_dis_unroll = setting``.

    ``setting > 0`` is used as given (1 = a rolled loop: one traced D step, the fastest
    compile; ``>= n_dis`` = fully unrolled, no while loop). ``0`` = automatic: fully unrolled
    on CPUs, where XLA:CPU ran the scanned iteration about 5x slower (default config, one
    process after the other under the same load on a 2-core EPYC: 5.1 s vs 0.94 s per
    iteration; a scan with ``unroll=n_dis`` kept the slow one-trip loop), rolled on GPUs/TPUs.
    """
    if setting <= 0:
        setting = n_dis if jax.default_backend() == "cpu" else 1
    # True: unrolled in Python, no while loop (a scan with unroll=n_dis keeps a 1-trip loop)
    return True if setting >= n_dis else int(setting)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks the step-level keys the parts do not own.

    ``train.ema_buffers``, ``n_dis_unroll``, ``ema_kimg``, ``ema_rampup``, ``g_bn_l1`` and
    ``data.sampling``.

    Raises:
      ValueError: naming the key and the accepted values.
    """
    eb = config.train.get("ema_buffers", "copy")
    if eb not in EMA_BUFFERS:
        raise ValueError(f"config.train.ema_buffers = {eb!r}; accepted: {EMA_BUFFERS}.")
    sm = config.data.get("sampling", "replacement")
    if sm not in SAMPLING:
        raise ValueError(f"config.data.sampling = {sm!r}; accepted: {SAMPLING}.")
    l1 = config.train.get("g_bn_l1", 0.0)
    if isinstance(l1, bool) or not isinstance(l1, (int, float)) or l1 < 0:
        raise ValueError(f"config.train.g_bn_l1 = {l1!r} must be a number >= 0 (0 = off).")
    un = config.train.get("n_dis_unroll", 0)
    if isinstance(un, bool) or not isinstance(un, int) or un < 0:
        raise ValueError(f"config.train.n_dis_unroll = {un!r} must be an integer >= 0 "
                         "(0 = automatic: unrolled on CPUs, rolled on accelerators).")
    for key in ("ema_kimg", "ema_rampup"):
        v = config.train.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"config.train.{key} = {v!r} must be a number >= 0 (0 = off).")


def sample_latent(key, batch: int, latent_dim: int, num_classes: int):
    """``z`` ``[batch, latent_dim]`` ~ N(0, I) and uniform labels ``[batch]`` (None if 0)."""
    kz, ky = jax.random.split(key)
    z = jax.random.normal(kz, (batch, latent_dim), jnp.float32)
    y = jax.random.randint(ky, (batch,), 0, num_classes) if num_classes else None
    return z, y


@dataclasses.dataclass(frozen=True, eq=False)
class StepSpec:
    """What is static in one run's step: nothing here is traced, everything else is an argument.

    Frozen and hashed by identity (``eq=False``), so ``jax.jit(functools.partial(iteration,
    spec))`` compiles one program per spec, and a spec may be a static argument.

    Attributes:
      generator, discriminator: the flax modules (:func:`jaxgan_lth.models.get_model`).
      parts: the parts the config switches on (:func:`jaxgan_lth.parts.build`), registry order.
      tx_g, tx_d: the optax optimizers of G and D (their states: ``state["g_opt"]`` /
        ``state["d_opt"]``), Adam scaled for lazy regularisation
        (:mod:`jaxgan_lth.training.lazy_reg`).
      loss: ``train.loss`` (:mod:`jaxgan_lth.training.losses`).
      n_dis: D steps per G step.
      unroll: the D scan's ``unroll`` (:func:`scan_unroll`; True = unrolled in Python).
      d_batch_size, g_batch_size: images per D step (reals and as many fakes) / per G step.
      num_classes: classes G and D are conditioned on (0 = unconditional).
      image_shape: ``(H, W, C)`` of real images.
      random_flip: ``data.random_flip``.
      epoch_sampling: ``data.sampling == "epoch"`` (the permutation lives in the state).
      num_real: N, images in the training set (epoch sampling).
      mesh: the device mesh sampled batches are split over (None = one device).
      ema_buffers, ema_start: :func:`jaxgan_lth.training.updates.ema_update`'s options.
      ema_rampup: ``train.ema_rampup`` (0 = off).
      ema_decay: the EMA decay's default (``train.ema_decay``, or from ``train.ema_kimg``).
      bn_l1: ``train.g_bn_l1`` (network slimming's sparsity training; 0 = off).
      mask_grads: masks applied to the gradients and the updates (False: straight-through,
        the DST stage's dense moments).
      sema: prunable patterns of STU-GAN's sparse EMA, or None.
      g_point_shape: shape ``[B, ...]`` of G's first-layer output (``g_first``) when a part
        perturbs G, else None.
      d_lazy, d_k, g_lazy, g_k: the lazily regularising loss terms of D / G and their
        interval (:func:`jaxgan_lth.training.lazy_reg.phase_terms`).
    """

    generator: Any
    discriminator: Any
    parts: tuple
    tx_g: Any
    tx_d: Any
    loss: str
    n_dis: int
    unroll: int | bool
    d_batch_size: int
    g_batch_size: int
    num_classes: int
    image_shape: tuple
    random_flip: bool
    epoch_sampling: bool
    num_real: int
    mesh: Any
    ema_buffers: str
    ema_start: int
    ema_rampup: float
    ema_decay: float
    bn_l1: float
    mask_grads: bool
    sema: tuple | None
    g_point_shape: tuple | None
    d_lazy: tuple
    d_k: int | None
    g_lazy: tuple
    g_k: int | None

    @property
    def latent_dim(self) -> int:
        """G's latent size."""
        return self.generator.latent_dim

    def of_kind(self, kind: str) -> tuple:
        """The parts of ``kind`` (``"augment"``, ``"perturb"``, ``"loss"``), registry order."""
        return tuple(p for p in self.parts if p.kind == kind)

    @property
    def d_mods(self) -> tuple:
        """The parts that change D's training forwards (:attr:`Part.modifies_d`)."""
        return tuple(p for p in self.parts if p.modifies_d)

    @property
    def d_pert(self):
        """The feature perturbation of D's update, or None."""
        return next((p for p in self.of_kind("perturb") if p.perturbs_d()), None)

    @property
    def g_pert(self):
        """The feature perturbation of G's update, or None."""
        return next((p for p in self.of_kind("perturb") if p.perturbs_g()), None)

    def mask_params(self, params, mask):
        """The masked parameters the losses see (straight-through without ``mask_grads``)."""
        apply = masks_lib.apply if self.mask_grads else masks_lib.apply_straight_through
        return apply(params, mask)

    def default_hparams(self) -> dict:
        """Default traced hyper-parameters: ``{"ema_decay": ..., the parts' strengths}``."""
        hparams = {"ema_decay": jnp.float32(self.ema_decay)}
        for p in self.parts:
            hparams.update({k: jnp.float32(v) for k, v in p.hparams().items()})
        return hparams


def _g_point_shape(generator, g_batch_size: int, num_classes: int) -> tuple:
    """Shape ``[B, ...]`` of G's first-layer output (the g_first point), from shapes only."""
    def g_point(key):
        z, y = sample_latent(key, g_batch_size, generator.latent_dim, num_classes)
        variables = generator.init(key, z, y, train=False)
        _, upd = generator.apply(variables, z, y, train=False, mutable=["perturbations"])
        return upd["perturbations"][models_lib.G_PERTURB]

    return jax.eval_shape(g_point, jax.random.key(0)).shape


def build_spec(config: ml_collections.ConfigDict, generator, discriminator, *,
               image_shape: tuple[int, int, int], num_classes: int, mesh=None,
               num_real: int = 0) -> StepSpec:
    """Reads ``config`` into the :class:`StepSpec` of one generator/discriminator pair.

    Args:
      config: the run's full config (``train``, ``model``, ``data`` and the parts' sections).
      generator: the generator flax module from :func:`jaxgan_lth.models.get_model`.
      discriminator: the discriminator flax module (with ``features`` / ``head`` methods).
      image_shape: ``(H, W, C)`` of real images.
      num_classes: classes of the data set (used when ``model.conditional``).
      mesh: optional device mesh; sampled batches are split over its ``data`` axis.
      num_real: N, images in the training set; needed by ``data.sampling = "epoch"``.

    Raises:
      ValueError: epoch sampling with a D batch larger than ``num_real``, or more than one
        feature perturbation of one network.
    """
    tc = config.train
    n_dis = int(tc.n_dis)
    ncls = num_classes if config.model.conditional else 0
    epoch_sampling = config.data.get("sampling", "replacement") == "epoch"
    if epoch_sampling and not 0 < tc.d_batch_size <= num_real:
        raise ValueError(
            f"data.sampling='epoch' draws batches of train.d_batch_size={tc.d_batch_size} "
            f"without replacement from {num_real} training images; accepted: a D batch of at "
            "most the training set's size (or data.sampling='replacement').")
    parts = tuple(parts_lib.build(config))
    perts = [p for p in parts if p.kind == "perturb"]
    d_perts = [p for p in perts if p.perturbs_d()]
    g_perts = [p for p in perts if p.perturbs_g()]
    if len(d_perts) > 1 or len(g_perts) > 1:
        raise ValueError(
            f"at most one feature perturbation per network; got D: {[p.name for p in d_perts]}, "
            f"G: {[p.name for p in g_perts]}.")
    terms = [p for p in parts if p.kind == "loss"]
    # lazy regularisers run as their own Adam steps, Adam scaled (lazy_reg.py; stylegan2-ada)
    d_lazy, d_k = lazy_reg.phase_terms(terms, "d")
    g_lazy, g_k = lazy_reg.phase_terms(terms, "g")
    decay = bool(tc.lr_decay)
    g_lr, g_betas, g_ds = lazy_reg.adam_settings(tc.g_lr, tc.g_betas, decay and tc.num_steps, g_k)
    d_lr, d_betas, d_ds = lazy_reg.adam_settings(tc.d_lr, tc.d_betas,
                                                 decay and tc.num_steps * n_dis, d_k)
    ema_decay = tc.ema_decay
    if tc.get("ema_kimg", 0.0) > 0:  # EMA by half-life in kimg (schedules.ema_beta)
        ema_decay = schedules.ema_beta(
            schedules.images_per_iteration(tc.d_batch_size, n_dis), tc.ema_kimg)
    return StepSpec(
        generator=generator, discriminator=discriminator, parts=parts,
        tx_g=make_optimizer(g_lr, g_betas, tc.adam_eps, g_ds or None),
        tx_d=make_optimizer(d_lr, d_betas, tc.adam_eps, d_ds or None),
        loss=tc.loss, n_dis=n_dis, unroll=scan_unroll(tc.get("n_dis_unroll", 0), n_dis),
        d_batch_size=tc.d_batch_size, g_batch_size=tc.g_batch_size, num_classes=ncls,
        image_shape=tuple(image_shape), random_flip=bool(config.data.random_flip),
        epoch_sampling=epoch_sampling, num_real=num_real, mesh=mesh,
        ema_buffers=tc.get("ema_buffers", "copy"), ema_start=tc.ema_start,
        ema_rampup=float(tc.get("ema_rampup", 0.0)), ema_decay=ema_decay,
        bn_l1=float(tc.get("g_bn_l1", 0.0)),
        mask_grads=bool(tc.get("mask_grads", True)),  # False and sema: set by the dst stage
        sema=tuple(config.sparsity.prunable) if tc.get("sema", False) else None,
        g_point_shape=_g_point_shape(generator, tc.g_batch_size, ncls) if g_perts else None,
        d_lazy=tuple(d_lazy), d_k=d_k, g_lazy=tuple(g_lazy), g_k=g_k)
