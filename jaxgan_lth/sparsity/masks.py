"""Masks: boolean pytrees with the structure of a network's parameters, kept apart from them.

A mask leaf is ``True`` where the weight is kept and ``False`` where it is pruned. Masks are
ordinary (traced) arguments of the compiled train steps, so changing a mask never retraces:
the forward pass uses ``params * mask``, optimizer updates are multiplied by the mask and the
updated parameters are multiplied again, so pruned weights stay exactly zero.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ones_like(params: Any) -> Any:
    """The dense mask: ``True`` for every element of every leaf of ``params``."""
    return jax.tree.map(lambda p: jnp.ones(jnp.shape(p), dtype=bool), params)


def apply(params: Any, mask: Any) -> Any:
    """``params * mask`` leaf by leaf (mask leaves bool or 0/1 floats of the same shapes)."""
    return jax.tree.map(lambda p, m: p * m.astype(p.dtype), params, mask)


def apply_straight_through(params: Any, mask: Any) -> Any:
    """``params * mask`` in the forward pass, with the gradient passed through unmasked.

    The gradient of a loss of the result w.r.t. ``params`` is its gradient w.r.t. the masked
    (effective) weights, dense: a pruned position gets the gradient the loss has at that weight
    = 0. This is what a network whose pruned weights are zeroed in place (instead of masked in
    the forward) computes, as STU-GAN's ``Masking`` (GAN-LTH-main
    ``src/sparselearning/core_SNGAN.py``: ``apply_mask`` after ``optimizer.step()``, no
    gradient masking). The value is exactly ``params * mask`` (``p + (p*m - p)``: ``p`` or
    ``+0``).
    """
    return jax.tree.map(lambda p, m: p + jax.lax.stop_gradient(p * m.astype(p.dtype) - p),
                        params, mask)
