"""The run axis: K runs of one stage executed with one of two strategies (:data:`STRATEGIES`).

* ``"vmap"``: ``jax.jit(jax.vmap(iteration))``, all K runs in one batched program (states,
  masks and strengths stacked ``[K, ...]``, the training set shared);
* ``"loop"``: the single-run compiled iteration called once per run.

Both give the results of K separate runs; the loop (:mod:`jaxgan_lth.training.loop`) checkpoints the
stacked ``[K, ...]`` state whatever the strategy. Neither copies metrics to the host per
iteration: :func:`host_metrics` fetches them when an action needs them.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan_lth.training import step as step_lib

Pytree = Any


def stack(trees: Sequence[Pytree]) -> Pytree:
    """K pytrees of equal structure -> one pytree with a leading run axis ``[K, ...]``."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Pytree, k: int) -> list[Pytree]:
    """The K runs of a stacked pytree."""
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(k)]


STRATEGIES = ("vmap", "loop")


class RunAxis:
    """Executes the iteration of K runs with a strategy (:data:`STRATEGIES`).

    Internally ``"loop"`` keeps a list of K states and ``"vmap"`` one stacked state; both take
    and return per-run lists at the boundaries (:meth:`split`, :meth:`join`).
    """

    def __init__(self, fns: step_lib.StepFns, k: int, strategy: str):
        if strategy not in STRATEGIES:
            raise ValueError(f"run-axis strategy {strategy!r}; accepted: {STRATEGIES}.")
        self.k = k
        self.strategy = "loop" if k == 1 else strategy
        if self.strategy == "vmap":
            self._step = jax.jit(jax.vmap(fns.iteration, in_axes=(0, 0, None, 0)),
                                 donate_argnums=(0,))
        else:
            self._step = jax.jit(fns.iteration, donate_argnums=(0,))

    def join(self, states: Sequence[Pytree]) -> Pytree:
        """Per-run list -> internal representation (also of the K masks and strengths)."""
        return stack(states) if self.strategy == "vmap" else list(states)

    def split(self, states: Pytree) -> list[Pytree]:
        """Internal representation -> per-run list."""
        return unstack(states, self.k) if self.strategy == "vmap" else list(states)

    def stacked(self, states: Pytree) -> Pytree:
        """The ``[K, ...]`` stacked state (what is checkpointed)."""
        return states if self.strategy == "vmap" else stack(states)

    @staticmethod
    def host_metrics(metrics) -> dict[str, np.ndarray]:
        """:func:`host_metrics` (so that a caller needs the axis object only)."""
        return host_metrics(metrics)

    def __call__(self, states, masks, data, hparams):
        """One iteration of every run; the metrics stay on the device.

        Returns:
          ``(states, metrics)``: ``metrics`` is a dict ``{name: [K] device array}`` for
          ``"vmap"`` and a list of K dicts ``{name: device scalar}`` for ``"loop"``; nothing is
          fetched to the host (see :func:`host_metrics`), so successive iterations are
          dispatched without a host sync.
        """
        if self.strategy == "vmap":
            return self._step(states, masks, data, hparams)
        outs = [self._step(s, m, data, h) for s, m, h in zip(states, masks, hparams)]
        return [o[0] for o in outs], [o[1] for o in outs]


def host_metrics(metrics) -> dict[str, np.ndarray]:
    """``{name: [K]}`` numpy metrics of :meth:`RunAxis.__call__`'s output (either strategy).

    The one place the loop fetches metrics to the host (``jax.device_get``); it calls this only
    at the steps where an action needs them (:mod:`jaxgan_lth.training.periodic`).
    """
    if isinstance(metrics, dict):  # "vmap": {name: [K]}
        return {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
    per = [jax.device_get(m) for m in metrics]
    return {k: np.asarray([float(p[k]) for p in per]) for k in per[0]}
