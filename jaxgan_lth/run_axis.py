"""The run axis: K runs of one stage executed with one of two strategies (:data:`STRATEGIES`).

* ``"vmap"``: ``jax.jit(jax.vmap(iteration))``, all K runs in one batched program (states,
  masks and strengths stacked ``[K, ...]``, the training set shared);
* ``"loop"``: the single-run compiled iteration called once per run.

Both give the results of K separate runs; the loop (:mod:`jaxgan_lth.loop`) checkpoints the
stacked ``[K, ...]`` state whatever the strategy.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan_lth import step as step_lib

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
        """Per-run list -> internal representation."""
        return stack(states) if self.strategy == "vmap" else list(states)

    def split(self, states: Pytree) -> list[Pytree]:
        """Internal representation -> per-run list."""
        return unstack(states, self.k) if self.strategy == "vmap" else list(states)

    def stacked(self, states: Pytree) -> Pytree:
        """The ``[K, ...]`` stacked state (what is checkpointed)."""
        return states if self.strategy == "vmap" else stack(states)

    def __call__(self, states, masks, data, hparams):
        """One iteration of every run; metrics ``{name: [K]}`` (host numpy)."""
        if self.strategy == "vmap":
            states, metrics = self._step(states, masks, data, hparams)
            return states, {k: np.asarray(v) for k, v in metrics.items()}
        outs = [self._step(s, m, data, h) for s, m, h in zip(states, masks, hparams)]
        return [o[0] for o in outs], outs  # metrics fetched lazily (see host_metrics)


def host_metrics(metrics) -> dict[str, np.ndarray]:
    """``{name: [K]}`` numpy metrics of :meth:`RunAxis.__call__`'s output (either strategy).

    The ``"loop"`` strategy returns the K runs' device outputs; they are fetched here, at the
    logging interval only, so the K compiled iterations are dispatched without a host sync.
    """
    if isinstance(metrics, dict):
        return metrics
    per = [jax.device_get(m[1]) for m in metrics]
    return {k: np.asarray([float(p[k]) for p in per]) for k in per[0]}
