"""Adversarial losses of the discriminator (D) and generator (G).

All functions take D's raw outputs (logits, shape ``[B]``, unbounded) and return scalars.

* ``hinge`` (Lim & Ye 2017; Miyato et al. 2018, SNGAN; the lottery-ticket and BigGAN code):
  L_D = mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))),  L_G = -mean(D(G(z))).
* ``nonsaturating`` (Goodfellow et al. 2014, Sec. 3; StyleGAN2):
  L_D = mean(softplus(-D(x))) + mean(softplus(D(G(z)))),  L_G = mean(softplus(-D(G(z)))).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSSES = ("hinge", "nonsaturating")


def _check(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; accepted: {', '.join(LOSSES)}.")


def d_loss_real(logits_real: jax.Array, kind: str = "hinge") -> jax.Array:
    """D's loss term on real images, ``[B]`` logits -> scalar."""
    _check(kind)
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - logits_real))
    return jnp.mean(jax.nn.softplus(-logits_real))


def d_loss_fake(logits_fake: jax.Array, kind: str = "hinge") -> jax.Array:
    """D's loss term on generated images, ``[B]`` logits -> scalar."""
    _check(kind)
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 + logits_fake))
    return jnp.mean(jax.nn.softplus(logits_fake))


def d_loss(logits_real: jax.Array, logits_fake: jax.Array, kind: str = "hinge") -> jax.Array:
    """Total D loss: real term + fake term (see the module docstring)."""
    return d_loss_real(logits_real, kind) + d_loss_fake(logits_fake, kind)


def g_loss(logits_fake: jax.Array, kind: str = "hinge") -> jax.Array:
    """G loss on D's logits for generated images, ``[B]`` -> scalar."""
    _check(kind)
    if kind == "hinge":
        return -jnp.mean(logits_fake)
    return jnp.mean(jax.nn.softplus(-logits_fake))
