"""Common generator / discriminator logic (label checks, AdvAug hooks, projection head).

AdvAug hooks (seed_repos.md section 1.3): the generator passes the output of its first layer
through ``self.perturb("g_first", h)``; the discriminator passes its pooled features through
``self.perturb("d_features", h)`` between :meth:`features` and :meth:`head`. ``perturb`` is skipped
during ``init`` so the initial variables hold only ``params`` and ``batch_stats``. During ``apply``
it is a no-op unless a ``perturbations`` collection is passed, e.g.
``D.apply({"params": p, "batch_stats": s, "perturbations": {"d_features": delta}}, x, ...)``,
which adds ``delta`` (``[B, F]``) and lets ``jax.grad`` differentiate w.r.t. it.

NICE's adaptive-noise points (:func:`noise_point`, the ``d_noise`` collection): D's later blocks
multiply their conv outputs by ``1 + beta * eps`` when a ``d_noise`` collection holding the
block's ``beta`` and a ``d_noise`` PRNG stream are passed to ``apply``; without the collection
they return their input itself (the plain D, bit for bit).

Compute dtype (``model.dtype``, :mod:`jaxgan_lth.models.layers`): with bfloat16 layers the
AdvAug points and D's pooled features are float32 (the generator casts its first-layer output
before ``perturb``, :meth:`ProjectionDiscriminator.features` casts the trunk's output before
pooling and the head runs in float32), so PGD perturbations, logits and losses are float32
whatever the trunk computes in; the noise points keep their input's dtype.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgan_lth.models.layers import call_layer

Array = jax.Array

G_PERTURB = "g_first"
D_PERTURB = "d_features"
#: Variable collection and PRNG stream of NICE's adaptive noise in D (:func:`noise_point`).
D_NOISE = "d_noise"
#: PRNG stream of a generator's own randomness in training forwards (StyleGAN2's per-layer noise
#: inputs and style mixing). The step passes it to every train-mode ``G.apply``
#: (``rngs={G_NOISE: key}``); models without such randomness ignore it.
G_NOISE = "g_noise"


def noise_point(module: nn.Module, name: str, x: Array) -> Array:
    """Multiplicative noise ``x * (1 + beta * eps)``, eps ~ N(0, 1) per element (NICE's AN).

    ``beta`` (a float scalar >= 0) is the variable ``name`` of the :data:`D_NOISE` collection in
    ``module``'s scope; each call draws fresh ``eps`` from the :data:`D_NOISE` PRNG stream
    (``rngs={"d_noise": key}``), so two points of one block get independent noise.

    Args:
        module: the (bound) module the point belongs to.
        name: the variable holding ``beta``.
        x: features ``[B, ...]``.

    Returns:
        ``x`` itself when the collection does not hold ``name`` (and during ``init``), else the
        modulated features (same shape).
    """
    if module.is_initializing() or not module.has_variable(D_NOISE, name):
        return x
    beta = module.get_variable(D_NOISE, name)
    eps = jax.random.normal(module.make_rng(D_NOISE), x.shape, x.dtype)
    return (x * (1.0 + beta * eps)).astype(x.dtype)


def noise_delta(module: nn.Module, name: str, x: Array) -> Array | None:
    """``beta * eps * x``: what :func:`noise_point` adds to ``x``, or None when it is off.

    Draws ``eps`` exactly as :func:`noise_point` does (one ``make_rng`` per call), so a
    block may add the noise of a full-resolution map to a value computed another way (the
    discriminator blocks add it, average-pooled, to their fused conv + pooling output).
    """
    if module.is_initializing() or not module.has_variable(D_NOISE, name):
        return None
    beta = module.get_variable(D_NOISE, name)
    eps = jax.random.normal(module.make_rng(D_NOISE), x.shape, x.dtype)
    return (beta * eps * x).astype(x.dtype)


def d_noise_variables(discriminator: nn.Module, beta: Array, num_blocks: int) -> dict:
    """The :data:`D_NOISE` collection putting ``beta`` at D's last ``num_blocks`` noise blocks.

    Args:
        discriminator: a discriminator with a ``noise_paths`` attribute (one path per noise
            block, first block first).
        beta: float scalar, the noise std.
        num_blocks: how many blocks, counted from D's last, get the noise (>= 1).

    Returns:
        A nested dict to pass as ``variables["d_noise"]``.

    Raises:
        ValueError: ``num_blocks`` outside ``[1, len(noise_paths)]``.
    """
    paths = tuple(discriminator.noise_paths)
    if not 1 <= num_blocks <= len(paths):
        raise ValueError(f"{type(discriminator).__name__} has {len(paths)} noise blocks; "
                         f"num_blocks = {num_blocks} must be in [1, {len(paths)}].")
    out: dict = {}
    for path in paths[len(paths) - num_blocks:]:
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = beta
    return out


def check_labels(model: nn.Module, y: Optional[Array], batch: int) -> Optional[Array]:
    """Validates the labels of a (possibly) conditional model.

    Args:
        model: a module with a ``num_classes`` attribute (0 = unconditional).
        y: int labels ``[B]`` or None.
        batch: B.

    Returns:
        ``y`` as int32 ``[B]`` for conditional models; None for unconditional ones (their labels
        are ignored).

    Raises:
        ValueError: conditional model without labels, or labels of the wrong shape.
    """
    if not model.num_classes:
        return None
    if y is None:
        raise ValueError(
            f"{type(model).__name__} is class-conditional (num_classes={model.num_classes}): "
            "pass int labels y of shape [B]"
        )
    y = jnp.asarray(y)
    if y.shape != (batch,):
        raise ValueError(f"labels y must have shape [{batch}], got {y.shape}")
    return y.astype(jnp.int32)


class ProjectionDiscriminator(nn.Module):
    """Base class: features -> ``perturb('d_features')`` -> linear (+ projection) head.

    Subclasses define the fields ``num_classes`` (0 = unconditional) and in ``setup`` the modules
    ``linear_out`` (``F -> 1``) and, when conditional, ``embed_proj`` (``[num_classes, F]``), and
    implement ``_trunk(x, train) -> [B, H', W', F]`` and the ``noise_paths`` property (NICE's noise
    blocks, see :func:`d_noise_variables`). Features are ``sum_{H', W'} relu(trunk)``
    (global SUM pooling, as the SNGAN/BigGAN references); a subclass may override ``_pool``
    (the dcgan D's ``pooling="flatten"`` keeps the spatial layout).

    Compute dtype: the trunk may compute in bfloat16 (its layers' ``dtype``); :meth:`features`
    casts its output to float32 before the pooling, and the head's layers (``linear_out``,
    ``embed_proj``) are built in float32 by the subclasses: the head is a few hundred
    multiply-adds per image, and its outputs are the logits every loss reads.

    Spectral-norm statistics of the head: :meth:`head` never writes them (``update_stats=False``),
    so PGD can call it repeatedly. To keep the head's power iteration running during training (as
    torch does on every forward), :meth:`features` with ``train=True`` advances the head layers'
    ``u``/``sigma`` by one power-iteration step (a dummy call whose output is discarded; it has no
    effect on the returned features or their gradients).
    """

    def _trunk(self, x: Array, train: bool) -> Array:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must define _trunk(x, train) -> [B, H, W, F].")

    @property
    def feature_dim(self) -> int:  # pragma: no cover - overridden
        """Size F of the pooled features ``[B, F]`` returned by :meth:`features`."""
        raise TypeError(f"{type(self).__name__} must define the feature_dim property.")

    def _pool(self, h: Array) -> Array:
        """``[B, H', W', F']`` non-negative trunk output -> ``[B, F]``: global SUM pooling."""
        return jnp.sum(h, axis=(1, 2))

    def _refresh_head_stats(self, train: bool) -> None:
        dummy = jnp.zeros((1, self.feature_dim), jnp.float32)
        if isinstance(self.linear_out, nn.SpectralNorm):
            call_layer(self.linear_out, dummy, update_stats=train)
        if self.num_classes and isinstance(self.embed_proj, nn.SpectralNorm):
            call_layer(self.embed_proj, jnp.zeros((1,), jnp.int32), update_stats=train)

    def features(self, x: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """Pooled penultimate features.

        Args:
            x: images ``[B, H, W, C]`` in [-1, 1].
            y: int32 labels ``[B]`` (unused here; accepted for a uniform signature).
            train: update spectral-norm statistics (needs ``mutable=['batch_stats']``).

        Returns:
            ``[B, F]`` float32 features, ``F = self.feature_dim`` (non-negative: sums of ReLUs).
        """
        del y
        h = self._pool(nn.relu(self._trunk(x, train)).astype(jnp.float32))
        if train or self.is_initializing():
            self._refresh_head_stats(train)
        return h

    def head(self, h: Array, y: Optional[Array] = None) -> Array:
        """Final linear layer (+ projection ``<embed_proj(y), h>`` when conditional).

        Never updates spectral-norm statistics, so it is safe to call repeatedly without
        ``mutable``.

        Args:
            h: features ``[B, F]``.
            y: int32 labels ``[B]``; required iff ``num_classes > 0``.

        Returns:
            logits ``[B]`` (unbounded).

        Raises:
            ValueError: conditional model called without labels.
        """
        y = check_labels(self, y, h.shape[0])
        out = call_layer(self.linear_out, h, update_stats=False)[:, 0]
        if self.num_classes:
            emb = call_layer(self.embed_proj, y, update_stats=False)
            out = out + jnp.sum(emb * h, axis=-1)
        return out

    def __call__(self, x: Array, y: Optional[Array] = None, train: bool = True) -> Array:
        """Logits ``head(perturb('d_features', features(x, y, train)), y)``.

        Args:
            x: images ``[B, H, W, C]`` in [-1, 1].
            y: int32 labels ``[B]``; required iff ``num_classes > 0``.
            train: update spectral-norm statistics (apply with ``mutable=['batch_stats']``).

        Returns:
            logits ``[B]``.
        """
        h = self.features(x, y, train)
        if not self.is_initializing():
            h = self.perturb(D_PERTURB, h)
        return self.head(h, y)
