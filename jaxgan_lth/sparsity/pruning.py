"""Magnitude and random pruning of parameter pytrees into boolean masks.

All functions work on host (numpy) copies: pruning happens once per IMP round, and numpy's
stable sort gives a deterministic tie-break (equal magnitudes are pruned in the order of the
flattened parameter paths, sorted by name, then by element index).

Which parameters are *prunable* is chosen by regular expressions over '/'-joined parameter
paths (big_vision-style). The default, :data:`DEFAULT_PRUNABLE`, selects the convolution kernels
of G and D (every conv module of :mod:`jaxgan_lth.models` has ``conv`` in its name), as the
lottery-ticket code does (seed_repos.md section 0.2: ``nn.Conv2d`` weights only; linear layers,
embeddings, norms and biases stay dense).

Counts follow PyTorch's ``prune.global_unstructured`` used by GAN-LTH / the lottery-ticket code:
pruning a fraction ``p`` of the *remaining* weights removes ``round(p * n_remaining)`` weights,
so the density after ``r`` IMP rounds is ``0.8 ** r`` up to rounding to whole weights.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import numpy as np
from flax import traverse_util

DEFAULT_PRUNABLE = (r".*conv[^/]*/(layer_instance/)?kernel$",)


def _flat(tree: Any) -> dict[str, Any]:
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(_to_dict(tree)).items()}


def _to_dict(tree):
    if hasattr(tree, "items"):
        return {k: _to_dict(v) for k, v in tree.items()}
    return tree


def _unflat(flat: dict[str, Any]) -> dict:
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def prunable_paths(params: Any, patterns: Sequence[str] = DEFAULT_PRUNABLE) -> list[str]:
    """Sorted '/'-joined paths of the leaves of ``params`` matched by any regex in ``patterns``.

    Raises:
      ValueError: a pattern is not a valid regular expression, or no leaf matches any pattern
        (the message lists a few available paths).
    """
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"prunable pattern {p!r} is not a valid regex: {e}") from e
    paths = sorted(_flat(params))
    chosen = [k for k in paths if any(c.fullmatch(k) for c in compiled)]
    if not chosen:
        raise ValueError(
            f"no parameter path matches the prunable patterns {list(patterns)}; "
            f"available paths include {paths[:6]}."
        )
    return chosen


def check_mask(mask: Any, params: Any, name: str = "mask") -> None:
    """Checks that ``mask`` has exactly the paths and shapes of ``params``.

    Raises:
      ValueError: naming the first mismatching path (missing, extra or wrong shape).
    """
    fm, fp = _flat(mask), _flat(params)
    for path in sorted(set(fm) | set(fp)):
        if path not in fm:
            raise ValueError(f"{name} does not match the model: path {path!r} is missing.")
        if path not in fp:
            raise ValueError(
                f"{name} does not match the model: path {path!r} is not a model parameter."
            )
        if np.shape(fm[path]) != np.shape(fp[path]):
            raise ValueError(
                f"{name} does not match the model at {path!r}: mask shape "
                f"{np.shape(fm[path])}, parameter shape {np.shape(fp[path])}."
            )


def _check_fraction(fraction: float, what: str) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{what} must be in (0, 1), got {fraction}.")


def _host_flat(tree):
    return {k: np.asarray(jax.device_get(v)) for k, v in _flat(tree).items()}


def global_magnitude_prune(
    params: Any, mask: Any, fraction: float, patterns: Sequence[str] = DEFAULT_PRUNABLE
) -> dict:
    """Prunes ``round(fraction * remaining)`` smallest-|w| weights over all prunable layers.

    One IMP round (Frankle & Carbin 2019; Chen et al., NeurIPS 2021, Sec. 3.2 / App. A2.2; the
    reference uses ``prune.global_unstructured(L1Unstructured, amount=0.2)``): the ranking is
    global across layers, over the weights still in ``mask``.

    Args:
      params: parameter pytree (magnitudes are taken from it).
      mask: current bool mask pytree (same structure).
      fraction: fraction of the remaining prunable weights to remove, in (0, 1).
      patterns: regexes selecting prunable parameter paths.

    Returns:
      The new bool mask (nested dict of numpy arrays), a subset of ``mask``.

    Raises:
      ValueError: ``fraction`` outside (0, 1), mask/params mismatch, no prunable path.
    """
    _check_fraction(fraction, "pruning ratio")
    check_mask(mask, params)
    fp, fm = _host_flat(params), _host_flat(mask)
    fm = {k: v.astype(bool) for k, v in fm.items()}
    paths = prunable_paths(params, patterns)
    scores = np.concatenate([np.abs(fp[k]).ravel() for k in paths]).astype(np.float64)
    alive = np.concatenate([fm[k].ravel() for k in paths])
    n_prune = int(round(fraction * int(alive.sum())))
    scores = np.where(alive, scores, -1.0)  # pruned weights sort first and stay pruned
    order = np.argsort(scores, kind="stable")
    new_alive = alive.copy()
    n_dead = int((~alive).sum())
    new_alive[order[: n_dead + n_prune]] = False
    out, start = dict(fm), 0
    for k in paths:
        size = fm[k].size
        out[k] = new_alive[start : start + size].reshape(fm[k].shape)
        start += size
    return _unflat(out)


def ema_chain_weights(ema_params: Any, g_mask: Any, rewound_params: Any) -> dict:
    """The weights whose magnitudes prune the EMA chain of the released SNGAN IMP (host numpy).

    ``where(g_mask, ema, rewound)`` leaf by leaf. The released ``SNGAN/train_impg_less.py``
    (VITA-Group/Ultra-Data-Efficient-GAN-Training, lines 146-147) prunes two chains after every
    round: ``pruning_generate(gen_net, 0.2)`` (G's magnitudes; the mask the next round trains
    under) and ``pruning_generate(avg_gen_net, 0.2)``, the EMA copy with its own mask, pruned on
    its own magnitudes; the ticket reads the EMA chain's ``weight_mask``
    (``train_with_masks_adv_gd_less.py`` lines 92-93). The EMA averages G's ``weight_orig``
    (``functions.py`` ``copy_params`` / ``load_params``, lines 643-650, over ``parameters()``),
    which is dense: where G's chain has pruned a weight its gradient is 0, Adam leaves it at the
    rewound value, and so does the EMA. This project's EMA is masked by G's mask (0 there),
    hence the ``rewound`` fill.

    Args:
      ema_params: the EMA generator's parameters at the end of the round (masked by ``g_mask``).
      g_mask: the mask the round trained under (G's chain, bool tree).
      rewound_params: G's unmasked parameters the round started from (theta_0 when rewinding
        to step 0).

    Returns:
      A nested dict of numpy arrays with the structure of ``ema_params``.
    """
    fe, fm, fr = _host_flat(ema_params), _host_flat(g_mask), _host_flat(rewound_params)
    return _unflat({k: np.where(fm[k].astype(bool), fe[k], fr[k]) for k in fe})


def layerwise_magnitude_prune(
    params: Any, mask: Any, fraction: float, patterns: Sequence[str] = DEFAULT_PRUNABLE
) -> dict:
    """Prunes ``round(fraction * remaining_l)`` smallest-|w| weights in every prunable layer l.

    Layer-wise (uniform) magnitude pruning, the baseline to global IMP. Same arguments, return
    value and errors as :func:`global_magnitude_prune`.
    """
    _check_fraction(fraction, "pruning ratio")
    check_mask(mask, params)
    fp, fm = _host_flat(params), _host_flat(mask)
    out = {k: v.astype(bool) for k, v in fm.items()}
    for k in prunable_paths(params, patterns):
        alive = out[k].ravel()
        n_prune = int(round(fraction * int(alive.sum())))
        scores = np.where(alive, np.abs(fp[k]).ravel().astype(np.float64), -1.0)
        order = np.argsort(scores, kind="stable")
        new = alive.copy()
        new[order[: int((~alive).sum()) + n_prune]] = False
        out[k] = new.reshape(fm[k].shape)
    return _unflat(out)


def one_shot_magnitude_prune(
    params: Any, sparsity: float, patterns: Sequence[str] = DEFAULT_PRUNABLE
) -> dict:
    """One-shot magnitude pruning (OMP) straight to ``sparsity`` of the prunable weights.

    Equivalent to :func:`global_magnitude_prune` from the dense mask with ``fraction=sparsity``.
    """
    _check_fraction(sparsity, "target sparsity")
    dense = jax.tree.map(lambda p: np.ones(np.shape(p), bool), _to_dict(params))
    return global_magnitude_prune(params, dense, sparsity, patterns)


def random_prune_like(
    seed: int, reference_mask: Any, patterns: Sequence[str] = DEFAULT_PRUNABLE
) -> dict:
    """A random mask with exactly the per-layer densities of ``reference_mask``.

    Every prunable layer keeps as many weights as in the reference, at uniformly random
    positions (random-pruning baseline of the lottery-ticket papers); other leaves stay dense.
    """
    rng = np.random.default_rng(seed)
    fm = {k: v.astype(bool) for k, v in _host_flat(reference_mask).items()}
    out = {k: np.ones_like(v) for k, v in fm.items()}
    for k in prunable_paths(reference_mask, patterns):
        keep = int(fm[k].sum())
        flat = np.zeros(fm[k].size, bool)
        flat[rng.permutation(fm[k].size)[:keep]] = True
        out[k] = flat.reshape(fm[k].shape)
    return _unflat(out)


def random_prune_global(
    seed: int, params: Any, sparsity: float, patterns: Sequence[str] = DEFAULT_PRUNABLE
) -> dict:
    """A random mask pruning ``round(sparsity * n)`` of all prunable weights, chosen globally."""
    _check_fraction(sparsity, "target sparsity")
    rng = np.random.default_rng(seed)
    fp = _host_flat(params)
    paths = prunable_paths(params, patterns)
    sizes = [fp[k].size for k in paths]
    n = sum(sizes)
    alive = np.ones(n, bool)
    alive[rng.permutation(n)[: int(round(sparsity * n))]] = False
    out = {k: np.ones(np.shape(v), bool) for k, v in fp.items()}
    start = 0
    for k, size in zip(paths, sizes):
        out[k] = alive[start : start + size].reshape(fp[k].shape)
        start += size
    return _unflat(out)


def density_table(mask: Any, patterns: Sequence[str] = DEFAULT_PRUNABLE) -> list[dict]:
    """Per prunable layer: ``{"path", "size", "kept", "density"}`` (density = kept / size)."""
    fm = _host_flat(mask)
    rows = []
    for k in prunable_paths(mask, patterns):
        size, kept = int(fm[k].size), int(fm[k].astype(bool).sum())
        rows.append({"path": k, "size": size, "kept": kept, "density": kept / size})
    return rows


def density(mask: Any, patterns: Sequence[str] = DEFAULT_PRUNABLE) -> float:
    """Fraction of prunable weights kept by ``mask`` (1.0 = dense); sparsity = 1 - density."""
    rows = density_table(mask, patterns)
    return sum(r["kept"] for r in rows) / sum(r["size"] for r in rows)


def format_density_table(rows: list[dict], title: str = "") -> str:
    """A fixed-width text table of :func:`density_table` rows for logs and README."""
    width = max([len(r["path"]) for r in rows] + [5])
    lines = [title] if title else []
    lines.append(f"{'layer':<{width}}  {'size':>9}  {'kept':>9}  {'density':>8}")
    for r in rows:
        lines.append(f"{r['path']:<{width}}  {r['size']:>9}  {r['kept']:>9}  {r['density']:>8.4f}")
    total = sum(r["size"] for r in rows)
    kept = sum(r["kept"] for r in rows)
    lines.append(f"{'total':<{width}}  {total:>9}  {kept:>9}  {kept / total:>8.4f}")
    return "\n".join(lines)
