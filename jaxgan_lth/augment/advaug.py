"""AdvAug: feature-level adversarial augmentation for GAN training (PGD via `jax.grad`).

Source: Chen, Cheng, Gan, Liu, Wang, "Data-Efficient GAN Training Beyond (Just) Augmentations: A
Lottery Ticket Perspective" (NeurIPS 2021, arXiv:2103.00397; "Ultra-Data-Efficient GAN Training"),
Eq. 5 and appendix A1 (Eqs. 6-9), Table 6 (noise baseline); released code
VITA-Group/Ultra-Data-Efficient-GAN-Training as analysed in `seed_repos.md` section 1.3.

Idea. Split D = D2 o D1 and G = G2 o G1. A perturbation `delta` of the intermediate features is
found by a few steps of signed-gradient PGD and the training loss is evaluated on both the clean
and the perturbed features, then averaged:

    L = (1 - lam) * L(head(h)) + lam * L(head(h + delta)),   lam = 1/2 in the paper.

For D the features are D1(x_real) and D1(G(z)) (the pooled penultimate feature; head = D2, the last
linear / projection layer), perturbed by separate deltas; for G the feature is G1(z) (output of
G's first linear layer) and the head is `u -> D(G2(u))`.

Gradient flow. `pgd_perturbation` returns `jax.lax.stop_gradient(delta)`: in the released code the
perturbed feature is a clone of the clean one whose `.data` is shifted in place, and the PGD
gradient is taken with `autograd.grad` without `create_graph`, so the perturbation is a constant
offset -- the training gradient flows through `h` (into D1 or G1, and into the head) in both the
clean and the adversarial terms, but not through the construction of `delta` (seed_repos
section 1.3, "Gradient of the D loss flows through x_adv ... the perturbation is a constant
offset"). The train step should therefore compute the adversarial term as
`loss(head(h + delta))` with the *un-stopped* `h`.

Directions. Two sign conventions are offered (`DIRECTIONS`); with both, PGD *ascends* the
objective returned by `branch_objective`:

* `"paper"`: delta is a worst case for the player being updated (Eq. 4/5, A1: delta "minimises"
  the D objective that D maximises, i.e. maximises D's loss in our minimisation convention):
  `d_real` ascends D's real loss term, `d_fake` ascends D's fake loss term (the two deltas are
  found separately), `g` ascends G's loss.
* `"reference_code"`: the released SNGAN code (`functions_adv.py::PGD`) ascends `mean(head(h))`,
  the mean D logit, for the real features, the fake features and the G-side feature alike. That is
  adversarial only for D's fake term; for the real term and for G it *helps* the player being
  updated. (The released BigGAN code instead ascends `-mean(relu(1 - D))` for both real and fake
  features -- same direction, but samples with D > 1 get no perturbation; not offered here.)

The released code uses PGD-1, step size (`gamma`) 0.01, no random start and no projection
(`clip=False`; the `eps` radius is unused) -- the paper's default (section 4.4: PGD-1, step 0.01).

Strengths (`step_size`, `radius`, noise `scale`, `lam`) are always converted with `jnp.asarray`
and never used as Python values, so they can be passed as traced arguments of a jitted step: a
sweep over strengths reuses one compiled step. Only the loop length and the boolean switches are
static.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgan_lth.training.losses import LOSSES, d_loss, g_loss
from jaxgan_lth.training.losses import d_loss_fake as d_fake_loss
from jaxgan_lth.training.losses import d_loss_real as d_real_loss

Array = jax.Array
Objective = Callable[[Array], Array]
Head = Callable[[Array], Array]

#: GAN loss kinds (the `config.train.loss` values); the losses live in `jaxgan_lth.training.losses`.
LOSS_KINDS = LOSSES
#: PGD sign conventions, see the module docstring.
DIRECTIONS = ("paper", "reference_code")
#: Branches that get a perturbation: D's real features, D's fake features, G's first feature.
BRANCHES = ("d_real", "d_fake", "g")
#: Feature-noise baseline kinds (Table 6).
NOISE_KINDS = ("uniform", "gaussian")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(choices)}.")


# ------------------------------------------------------------------------------------------------
# Objectives that PGD ascends
# ------------------------------------------------------------------------------------------------


def branch_objective(
    head: Head, branch: str, *, direction: str = "paper", loss: str = "hinge"
) -> Objective:
    """Returns the function of the (perturbed) features that PGD *ascends* for one branch.

    | direction        | `d_real`             | `d_fake`             | `g`                |
    |------------------|----------------------|----------------------|--------------------|
    | `paper`          | `d_real_loss(head)`  | `d_fake_loss(head)`  | `g_loss(head)`     |
    | `reference_code` | `mean(head)`         | `mean(head)`         | `mean(head)`       |

    With a linear head `head(h) = h @ w` (`h` `[B, F]`), the gradient w.r.t. `h` at the start point
    is: `reference_code` `w / B` for every row; `paper`/hinge `d_real` `-w / B` on rows with
    `h @ w < 1` and 0 elsewhere, `d_fake` `+w / B` on rows with `h @ w > -1` and 0 elsewhere, `g`
    `-w / B`.

    Args:
        head: `features -> logits`; for D branches the last D layer(s) (e.g. the SN linear or the
            projection head with the labels closed over), for `g` the map `u -> D(G2(u))` (with any
            DiffAugment applied inside if wanted). Logits `[B]` (any shape; averaged).
        branch: `"d_real"`, `"d_fake"` or `"g"`.
        direction: `"paper"` or `"reference_code"`.
        loss: `"hinge"` or `"nonsaturating"` (ignored by `reference_code` but still validated).

    Returns:
        `objective(features) -> scalar`.

    Raises:
        ValueError: Unknown branch, direction or loss kind.
    """
    _check_choice("AdvAug branch", branch, BRANCHES)
    _check_choice("AdvAug direction", direction, DIRECTIONS)
    _check_choice("loss kind", loss, LOSS_KINDS)
    if direction == "reference_code":
        return lambda h: jnp.mean(head(h))
    term = {"d_real": d_real_loss, "d_fake": d_fake_loss, "g": g_loss}[branch]
    return lambda h: term(head(h), loss)


# ------------------------------------------------------------------------------------------------
# PGD
# ------------------------------------------------------------------------------------------------


def _shape_dtype(shape_or_like: Any) -> tuple[tuple[int, ...], Any]:
    if hasattr(shape_or_like, "shape") and hasattr(shape_or_like, "dtype"):
        return tuple(shape_or_like.shape), shape_or_like.dtype
    return tuple(int(d) for d in shape_or_like), jnp.float32


def pgd_perturbation(
    objective: Objective,
    shape_or_like: Any,
    *,
    key: Array | None = None,
    num_steps: int = 1,
    step_size: Any,
    radius: Any = None,
    random_start: bool = False,
    ascend: bool = True,
    project: bool = False,
) -> Array:
    """Finds a perturbation by signed-gradient PGD on `objective(delta)` (L-infinity geometry).

    `delta_0 = 0` (or `U[-radius, radius]` elementwise when `random_start`); then `num_steps`
    times `delta <- delta + step_size * sign(grad objective(delta))` (`ascend`, minus otherwise),
    followed, when `project`, by clipping to `[-radius, radius]`. `sign(0) = 0`, so coordinates
    with zero gradient (e.g. inactive hinge terms) stay where they are. The released AdvAug code
    is `num_steps=1, step_size=0.01, random_start=False, project=False`.

    Args:
        objective: `delta -> scalar`, e.g. `lambda d: branch_objective(...)(h + d)`.
        shape_or_like: The shape of `delta` (dtype float32) or an array /
            `jax.ShapeDtypeStruct` whose shape and dtype it takes (e.g. the features).
        key: PRNG key, required only when `random_start`.
        num_steps: Static number of PGD steps (>= 0; 0 returns the start point).
        step_size: Step size (a "strength": traced, float or jnp scalar).
        radius: L-infinity radius (traced); required when `random_start` or `project`.
        random_start: Static; start uniformly in the ball instead of at 0.
        ascend: Static; True ascends `objective` (adversarial), False descends it.
        project: Static; clip `delta` to the ball after every step (the released code does not).

    Returns:
        `jax.lax.stop_gradient(delta)`, same shape/dtype as requested: a constant offset for the
        training loss (see the module docstring).

    Raises:
        ValueError: `num_steps` not a non-negative int, or `radius`/`key` missing when needed.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be a static non-negative int, got {num_steps!r}.")
    if (random_start or project) and radius is None:
        raise ValueError("radius is required when random_start or project is set.")
    if random_start and key is None:
        raise ValueError("key is required when random_start is set.")
    shape, dtype = _shape_dtype(shape_or_like)
    step = jnp.asarray(step_size, dtype)
    if radius is not None:
        radius = jnp.asarray(radius, dtype)
    if random_start:
        delta = jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0) * radius
    else:
        delta = jnp.zeros(shape, dtype)
    sign = 1.0 if ascend else -1.0
    grad_fn = jax.grad(objective)

    def body(_, d):
        d = d + sign * step * jnp.sign(grad_fn(d)).astype(dtype)
        if project:
            d = jnp.clip(d, -radius, radius)
        return d

    if num_steps > 0:
        delta = jax.lax.fori_loop(0, num_steps, body, delta)
    return jax.lax.stop_gradient(delta)


def adversarial_delta(
    head: Head,
    features: Array,
    branch: str,
    *,
    direction: str = "paper",
    loss: str = "hinge",
    key: Array | None = None,
    num_steps: int = 1,
    step_size: Any,
    radius: Any = None,
    random_start: bool = False,
    project: bool = False,
) -> Array:
    """AdvAug perturbation for one branch: PGD ascending `branch_objective` around `features`.

    The features are wrapped in `stop_gradient` for the search (only `delta` is differentiated);
    the result is a constant offset. Typical D-step use:

        d_r = adversarial_delta(head, h_real, "d_real", step_size=gamma, ...)
        d_f = adversarial_delta(head, h_fake, "d_fake", step_size=gamma, ...)
        clean = d_loss(head(h_real), head(h_fake), loss)
        adv = d_loss(head(h_real + d_r), head(h_fake + d_f), loss)
        total = combine(clean, adv, lam)

    Args:
        head: `features -> logits`, see `branch_objective`.
        features: Clean features, e.g. `[B, F]` (D) or `[B, 4, 4, C]` (G, NHWC).
        branch: `"d_real"`, `"d_fake"` or `"g"`.
        direction: `"paper"` or `"reference_code"`.
        loss: `"hinge"` or `"nonsaturating"`.
        key: PRNG key, required only when `random_start` (as `pgd_perturbation`).
        num_steps: Static number of PGD steps (>= 0; 0 returns the start point).
        step_size: Step size (a "strength": traced, float or jnp scalar).
        radius: L-infinity radius (traced); required when `random_start` or `project`.
        random_start: Static; start uniformly in the ball instead of at 0.
        project: Static; clip `delta` to the ball after every step. The search always ascends
            (`pgd_perturbation` with `ascend=True`).

    Returns:
        `delta`, shape and dtype of `features`, gradient-stopped.

    Raises:
        ValueError: As `branch_objective` and `pgd_perturbation`.
    """
    objective = branch_objective(head, branch, direction=direction, loss=loss)
    h0 = jax.lax.stop_gradient(features)
    return pgd_perturbation(
        lambda d: objective(h0 + d),
        h0,
        key=key,
        num_steps=num_steps,
        step_size=step_size,
        radius=radius,
        random_start=random_start,
        ascend=True,
        project=project,
    )


# ------------------------------------------------------------------------------------------------
# Noise baseline and loss mixing
# ------------------------------------------------------------------------------------------------


def noise_perturbation(key: Array, shape: Any, scale: Any, kind: str) -> Array:
    """Random feature perturbation, the paper's noise baseline (Table 6).

    `"uniform"` is what the released code does (`train_gau_gd`: `0.1 * U[0, 1)`, non-negative,
    despite the function's name); `"gaussian"` is the Table 6 label (`scale * N(0, 1)`).

    Args:
        key: PRNG key.
        shape: Shape of the perturbation (float32), or an array / `jax.ShapeDtypeStruct` whose
            shape and dtype it takes.
        scale: Noise scale (traced).
        kind: `"uniform"` (`scale * U[0, 1)`) or `"gaussian"` (`scale * N(0, 1)`).

    Returns:
        Gradient-stopped noise of the given shape.

    Raises:
        ValueError: Unknown kind.
    """
    _check_choice("noise kind", kind, NOISE_KINDS)
    shape, dtype = _shape_dtype(shape)
    scale = jnp.asarray(scale, dtype)
    if kind == "uniform":
        noise = jax.random.uniform(key, shape, dtype)
    else:
        noise = jax.random.normal(key, shape, dtype)
    return jax.lax.stop_gradient(scale * noise)


def combine(clean_loss: Array, adv_loss: Array, lam: Any = 0.5) -> Array:
    """Mixes clean and adversarial losses: `(1 - lam) * clean + lam * adv` (Eq. 5; lam traced).

    Args:
        clean_loss: Loss on clean features (scalar or any shape).
        adv_loss: Loss on perturbed features (same shape).
        lam: Weight of the adversarial term; 0.5 (the paper's/code's 50/50 average) by default.

    Returns:
        The mixed loss.
    """
    lam = jnp.asarray(lam, jnp.result_type(clean_loss, adv_loss))
    return (1.0 - lam) * clean_loss + lam * adv_loss


__all__ = [
    "BRANCHES",
    "DIRECTIONS",
    "LOSS_KINDS",
    "NOISE_KINDS",
    "adversarial_delta",
    "branch_objective",
    "combine",
    "d_fake_loss",
    "d_loss",
    "d_real_loss",
    "g_loss",
    "noise_perturbation",
    "pgd_perturbation",
]
