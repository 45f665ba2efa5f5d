"""Lazy regularisation as its own optimizer step (stylegan2-ada-pytorch's ``Dreg`` / ``Greg``).

stylegan2-ada-pytorch ``training/training_loop.py`` (lines 197-208 build the phases, 270-290
run them): for a network with regularisation interval ``k`` the loop has a *main* phase every
minibatch and a *reg* phase every ``k``-th minibatch, each one Adam step of the same optimizer,
whose settings are scaled for the ``k + 1`` steps per ``k`` minibatches::

    c = k / (k + 1);  Adam(lr * c, betas = (b1 ** c, b2 ** c))       # main and reg steps
    reg step (batch_idx % k == 0, after the main step): loss = k * penalty  (``gain``)

Here the loss terms that say so (:meth:`jaxgan_lth.parts.base.LossTerm.lazy_phase`: R1 and
path length with ``interval > 1`` and ``lazy = "separate_step"``) run in :func:`run_phase`
after the network's main update in G iterations with ``step % k == 0`` (with ``n_dis > 1``,
after every D step of those iterations), and :func:`adam_settings` scales the network's Adam.
Each network takes one interval (the reference has one ``D_reg_interval`` and one
``G_reg_interval``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax

from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.training import schedules
from jaxgan_lth.training.updates import masked_update

Pytree = Any


def phase_terms(terms: Sequence, net: str) -> tuple[list, int | None]:
    """The loss terms run as ``net``'s (``"d"`` / ``"g"``) own step, and their interval k.

    Returns:
      ``(terms, k)``; ``([], None)`` when none.

    Raises:
      ValueError: two such terms of one network with different intervals.
    """
    mine = [t for t in terms if t.lazy_phase() == net]
    ks = sorted({int(t.lazy_interval()) for t in mine})
    if len(ks) > 1:
        raise ValueError(f"lazy regularisation of {net.upper()}: terms "
                         f"{[t.name for t in mine]} have intervals {ks}; accepted: one interval "
                         "per network (the reference's D_reg_interval / G_reg_interval).")
    return mine, (ks[0] if ks else None)


def adam_settings(lr: float, betas: Sequence[float], decay_steps: int | None,
                  interval: int | None) -> tuple[float, tuple[float, float], int | None]:
    """``(lr, betas, decay_steps)`` of a network's Adam with a reg step every ``interval``.

    ``interval`` None: unchanged. Else ``lr * c`` and ``betas ** c``, ``c = k / (k + 1)``
    (:func:`jaxgan_lth.training.schedules.lazy_regularization_adam`), and a linear decay spread
    over the
    main plus the reg steps (``decay_steps * (k + 1) / k``, rounded up), so it still ends at 0.
    """
    if interval is None:
        return lr, (float(betas[0]), float(betas[1])), decay_steps
    lr, betas = schedules.lazy_regularization_adam(lr, tuple(betas), interval)
    if decay_steps:
        decay_steps = int(math.ceil(decay_steps * (interval + 1) / interval))
    return lr, betas, decay_steps


def run_phase(terms: Sequence, interval: int, ctx_of: Callable, tx, params: Pytree,
              opt_state: Pytree, mask: Pytree, pstates: dict, hp: dict, step: jax.Array):
    """The reg step: one masked Adam update on the terms' :meth:`phase_term` loss alone.

    Runs when ``step % interval == 0`` (``jax.lax.cond``; otherwise everything is returned
    unchanged, the optimizer's step count included).

    Args:
      terms: the loss terms of this phase (:func:`phase_terms`).
      interval: k.
      ctx_of: ``ctx_of(masked params) -> DContext / GContext`` of the phase.
      tx: the network's optax optimizer (scaled by :func:`adam_settings`).
      params: the network's parameters after its main update.
      opt_state: its optimizer state.
      mask: its bool mask (pytree like ``params``).
      pstates: the parts' states (``state["parts"]``).
      hp: traced strengths.
      step: G iterations done (int32 scalar).

    Returns:
      ``(params, opt_state, pstates)``.
    """

    def reg(operand):
        p0, opt, pst = operand

        def loss_fn(p):
            ctx = ctx_of(masks_lib.apply(p, mask))
            total, new = 0.0, dict(pst)
            for t in terms:
                val, _, ns = t.phase_term(ctx, pst.get(t.name), hp)
                total = total + val
                if ns is not None:
                    new[t.name] = ns
            return total, new

        (_, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(p0)
        p1, opt = masked_update(tx, grads, opt, p0, mask)
        return p1, opt, jax.lax.stop_gradient(new)

    return jax.lax.cond(step % interval == 0, reg, lambda o: o, (params, opt_state, pstates))
