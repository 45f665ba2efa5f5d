"""Initial sparse masks for training from scratch: ERK or uniform layer densities.

Erdos-Renyi-Kernel (ERK; Evci et al., "Rigging the Lottery", ICML 2020, Sec. 3) gives layer l
the density ``eps * raw_l`` with ``raw_l = (sum of the kernel's dimensions / number of its
weights) ** power_scale``, so small layers (few weights per fan-in + fan-out) stay denser. The
global ``eps`` is solved so that the prunable weights of the network have the target density
``d`` overall. A layer whose density would exceed 1 is made dense and ``eps`` is solved again
over the others, until every density is at most 1 (the "dense fix-up loop").

Source: STU-GAN's SNGAN code ``src/sparselearning/core_SNGAN.py::ERK_initialize_G/D``
(Shiweiliuiiiiiii/GAN-LTH-main; ``../shared/reference/fewshot_sparse_regularisers.md`` 6.2),
which solves::

    eps = (sum_{l not dense} d * N_l - sum_{l dense} (1 - d) * N_l) / sum_{l not dense} raw_l * N_l

and, while ``max_l eps * raw_l > 1``, moves the layer(s) with the largest ``raw_l`` to the dense
set. ``uniform`` gives every prunable layer the density ``d`` (``sparse_init='uniform'``).

One deliberate difference: the reference draws each weight i.i.d. Bernoulli(density_l), so a
layer's realised density matches only in expectation; :func:`random_masks` keeps exactly
``round(density_l * N_l)`` weights at uniformly random positions, so realised densities are
deterministic (and reported by :func:`jaxgan_lth.sparsity.pruning.density_table`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from jaxgan_lth.sparsity import pruning

DISTRIBUTIONS = ("erk", "uniform")


def check_density(density: float, key: str) -> None:
    """Raises ValueError naming ``key`` unless ``0 < density <= 1``."""
    if isinstance(density, bool) or not isinstance(density, (int, float)) or \
            not 0.0 < float(density) <= 1.0:
        raise ValueError(f"config.{key} = {density!r} must be a number in (0, 1] "
                         "(1 = dense).")


def erk_densities(shapes: Mapping[str, Sequence[int]], density: float,
                  power_scale: float = 1.0) -> dict[str, float]:
    """ERK density of every layer, with the dense fix-up loop.

    Args:
      shapes: ``{layer name: kernel shape}`` of the prunable layers of one network (any layout:
        only the sum and the product of the dimensions enter).
      density: target fraction of the layers' weights kept overall, in (0, 1].
      power_scale: exponent of ``raw_l`` (1 in the reference).

    Returns:
      ``{layer name: density in (0, 1]}``; the weighted mean (by layer size) is ``density``.

    Raises:
      ValueError: ``density`` outside (0, 1] or no layers.
    """
    check_density(density, "density")
    if not shapes:
        raise ValueError("ERK needs at least one prunable layer; got none.")
    sizes = {k: float(np.prod(s)) for k, s in shapes.items()}
    raw_all = {k: (float(np.sum(s)) / sizes[k]) ** power_scale for k, s in shapes.items()}
    dense: set[str] = set()
    while True:
        sparse = [k for k in shapes if k not in dense]
        if not sparse:
            eps = 0.0
            break
        rhs = sum(density * sizes[k] for k in sparse) - sum((1.0 - density) * sizes[k]
                                                               for k in dense)
        divisor = sum(raw_all[k] * sizes[k] for k in sparse)
        eps = rhs / divisor
        max_raw = max(raw_all[k] for k in sparse)
        if eps * max_raw > 1.0:
            dense.update(k for k in sparse if raw_all[k] == max_raw)
        else:
            break
    return {k: 1.0 if k in dense else eps * raw_all[k] for k in shapes}


def layer_densities(params: Any, density: float, distribution: str,
                    patterns: Sequence[str] = pruning.DEFAULT_PRUNABLE) -> dict[str, float]:
    """Target density of every prunable leaf of ``params`` (``'/'``-joined paths).

    Raises:
      ValueError: an unknown ``distribution`` (accepted: :data:`DISTRIBUTIONS`), a density
        outside (0, 1], no prunable path.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution {distribution!r}; accepted: {DISTRIBUTIONS}.")
    check_density(density, "density")
    flat = pruning._host_flat(params)
    paths = pruning.prunable_paths(params, patterns)
    if distribution == "uniform":
        return {k: float(density) for k in paths}
    return erk_densities({k: flat[k].shape for k in paths}, density)


def random_masks(seed: int | Sequence[int], params: Any, densities: Mapping[str, float],
                 patterns: Sequence[str] = pruning.DEFAULT_PRUNABLE) -> dict:
    """A mask keeping exactly ``round(density_l * N_l)`` (at least 1) weights of each layer.

    Positions are uniformly random (numpy ``default_rng(seed)``, layers in sorted path order);
    leaves that are not prunable stay dense.

    Returns:
      A nested dict of numpy bool arrays with the structure of ``params``.
    """
    rng = np.random.default_rng(seed)
    flat = pruning._host_flat(params)
    out = {k: np.ones(v.shape, bool) for k, v in flat.items()}
    for k in pruning.prunable_paths(params, patterns):
        n = flat[k].size
        keep = min(n, max(1, int(round(densities[k] * n))))
        m = np.zeros(n, bool)
        m[rng.permutation(n)[:keep]] = True
        out[k] = m.reshape(flat[k].shape)
    return pruning._unflat(out)


def initial_masks(seed: int | Sequence[int], params: Any, density: float, distribution: str,
                  patterns: Sequence[str] = pruning.DEFAULT_PRUNABLE) -> dict:
    """:func:`random_masks` at the :func:`layer_densities` of ``distribution``.

    A density of 1.0 gives the dense mask (no random draw).
    """
    if density == 1.0:
        return pruning._unflat({k: np.ones(v.shape, bool)
                                for k, v in pruning._host_flat(params).items()})
    return random_masks(seed, params, layer_densities(params, density, distribution, patterns),
                        patterns)

