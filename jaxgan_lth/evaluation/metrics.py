"""FID, KID and Inception Score from Inception features (numpy / scipy, float64).

* FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
  Nash Equilibrium", the Fréchet distance between Gaussians fitted to the features):
  ``d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})``.
* KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): unbiased MMD^2 with the cubic
  polynomial kernel ``k(x, y) = (x . y / d + 1)^3``, averaged over random subsets.
* IS (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over splits, from logits.

Statistics files are ``.npz`` with float64 ``mu [D]`` and ``sigma [D, D]`` (the TTUR layout, so
TTUR / StyleGAN-style statistics files with those keys load too), optional float32
``features [N, D]`` (for KID), ``num_images`` and string metadata ``meta_<key>``; they are read
with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Dict, Optional, Tuple, Union

import numpy as np
import scipy.linalg

__all__ = [
    "FIDStatistics",
    "compute_statistics",
    "fid_from_features",
    "frechet_distance",
    "frechet_distance_to_features",
    "inception_score",
    "kernel_inception_distance",
    "load_statistics",
    "save_statistics",
    "trace_sqrt_product",
]


@dataclasses.dataclass
class FIDStatistics:
    """Gaussian statistics of a feature set.

    Attributes:
        mu: ``[D]`` float64 mean.
        sigma: ``[D, D]`` float64 covariance (``ddof=1``, as ``np.cov``).
        num_images: number of feature vectors the statistics came from (-1 = unknown).
        features: optional ``[M, D]`` float32 features (all or a subset) kept for KID.
        metadata: free-form string metadata (data set, split, weights SHA-1, ...).
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int = -1
    features: Optional[np.ndarray] = None
    metadata: Dict[str, str] = dataclasses.field(default_factory=dict)


def compute_statistics(features: np.ndarray, keep_features: Union[bool, int] = False,
                       seed: int = 0) -> FIDStatistics:
    """Mean and covariance of features in float64.

    Args:
        features: ``[N, D]`` with ``N >= 2``.
        keep_features: False = keep none; True = keep all; an int ``k`` = keep a random subset of
            ``min(k, N)`` rows (seeded, order preserved) for KID.
        seed: seed of that subset.

    Returns:
        :class:`FIDStatistics`.

    Raises:
        ValueError: for a non-2-D array, fewer than 2 rows, or non-finite values.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D], got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or Inf")
    f64 = features.astype(np.float64)
    kept = None
    if keep_features is True:
        kept = features.astype(np.float32)
    elif keep_features is not False and int(keep_features) > 0:
        k = min(int(keep_features), features.shape[0])
        rows = np.sort(np.random.default_rng(seed).choice(features.shape[0], k, replace=False))
        kept = features[rows].astype(np.float32)
    return FIDStatistics(mu=f64.mean(axis=0), sigma=np.cov(f64, rowvar=False),
                         num_images=int(features.shape[0]), features=kept)


def sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root of a ``[D, D]`` matrix, in float64.

    Eigenvalues under the round-off floor ``D eps lambda_max`` are set to 0.
    """
    eigval, eigvec = np.linalg.eigh((matrix + matrix.T) / 2)
    floor = matrix.shape[0] * np.finfo(np.float64).eps * max(float(eigval.max()), 0.0)
    root_eigval = np.sqrt(np.where(eigval > floor, eigval, 0.0))
    return (eigvec * root_eigval) @ eigvec.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: str = "svd") -> float:
    """``Tr((S_1 S_2)^{1/2})`` for symmetric positive semi-definite covariances.

    Methods:
        ``"svd"`` (default): with ``R_k = S_k^{1/2}`` (symmetric square roots from ``eigh``,
            eigenvalues under the round-off floor ``D * eps * lambda_max`` set to 0), the
            eigenvalues of ``S_1 S_2 = R_1 R_1 R_2 R_2`` equal those of ``(R_1 R_2)^T (R_1 R_2)``,
            so the trace is the sum of the singular values of ``R_1 R_2`` (its nuclear norm).
            Singular values carry an absolute error of about ``eps * ||R_1 R_2||``, whereas
            taking square roots of computed eigenvalues (``sqrtm``, or ``eigvalsh`` of
            ``R_1 S_2 R_1``) turns round-off of size ``eps * lambda_max^2`` in the ~2000 null
            directions of a rank-deficient covariance (fewer than D + 1 images, e.g. the 100-shot
            sets with D = 2048) into errors of ``sqrt(eps) * lambda_max`` each. On the 100-shot
            Obama vs Grumpy-cat features this method agrees with the exact data-space value to
            1e-12 (``sqrtm``: 2e-5 off), and the FID of a set with itself is ~1e-13 instead of
            ~-4e-5. No complex parts, no offset needed.
        ``"sqrtm"``: the TTUR / NVIDIA recipe, ``scipy.linalg.sqrtm(S_1 @ S_2)`` (Schur method on
            the non-symmetric product); if the result is not finite it is recomputed with
            ``1e-6 * I`` added to both covariances; a complex result whose diagonal imaginary
            part exceeds 1e-3 raises, otherwise the real part is used. Kept for comparison with
            published numbers.

    Raises:
        ValueError: for an unknown method, mismatched shapes, or (``"sqrtm"``) a significantly
            complex square root.
    """
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if sigma1.shape != sigma2.shape or sigma1.shape[0] != sigma1.shape[1]:
        raise ValueError(f"covariances must be square and equal-shaped, got {sigma1.shape} "
                         f"and {sigma2.shape}")
    if method == "svd":
        product = sqrt_psd(sigma1) @ sqrt_psd(sigma2)
        return float(np.linalg.svd(product, compute_uv=False).sum())
    if method == "sqrtm":
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(sigma1.shape[0]) * 1e-6
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if np.iscomplexobj(covmean):
            if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
                raise ValueError("matrix square root has a significant imaginary part "
                                 f"({np.max(np.abs(np.diagonal(covmean).imag)):.3g})")
            covmean = covmean.real
        return float(np.trace(covmean))
    raise ValueError(f"method must be 'svd' or 'sqrtm', got {method!r}")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     method: str = "svd") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (TTUR paper, FID equation).

    ``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2})`` in float64.

    Args:
        mu1: ``[D]`` mean of the first set.
        sigma1: ``[D, D]`` covariance of the first set.
        mu2: ``[D]`` mean of the second set.
        sigma2: ``[D, D]`` covariance of the second set.
        method: matrix square-root method, see :func:`trace_sqrt_product`.

    Returns:
        The distance (a float; tiny negative round-off is not clipped).

    Raises:
        ValueError: for mismatched shapes or a failed square root.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / "
                         f"{sigma2.shape}")
    diff = mu1 - mu2
    tr = trace_sqrt_product(sigma1, sigma2, method)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr)


def fid_from_features(features1: np.ndarray, features2: np.ndarray, method: str = "svd") -> float:
    """FID between two ``[N, D]`` feature sets, in float64.

    When both sets have at most D rows (and ``method == "svd"``), the trace term is computed
    exactly in data space, which is cheaper than two D x D eigendecompositions: with centred
    data ``X_k`` and ``S_k = X_k^T X_k / (N_k - 1)``, the non-zero eigenvalues of ``S_1 S_2``
    are the squared singular values of ``X_1 X_2^T / sqrt((N_1 - 1)(N_2 - 1))``. Otherwise it
    goes through :func:`compute_statistics` and :func:`frechet_distance`.

    Raises:
        ValueError: see :func:`compute_statistics` / :func:`frechet_distance`.
    """
    s1, s2 = compute_statistics(features1), compute_statistics(features2)
    f1 = np.asarray(features1, np.float64)
    f2 = np.asarray(features2, np.float64)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape} vs {f2.shape}")
    if method == "svd" and max(f1.shape[0], f2.shape[0]) <= f1.shape[1]:
        x1, x2 = f1 - s1.mu, f2 - s2.mu
        scale = np.sqrt((f1.shape[0] - 1) * (f2.shape[0] - 1))
        trace_sqrt = np.linalg.svd(x1 @ x2.T / scale, compute_uv=False).sum()
        diff = s1.mu - s2.mu
        return float(diff @ diff + np.trace(s1.sigma) + np.trace(s2.sigma) - 2.0 * trace_sqrt)
    return frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma, method)


def frechet_distance_to_features(mu1: np.ndarray, sigma1: np.ndarray, features2: np.ndarray,
                                 sqrt_sigma1: Optional[np.ndarray] = None) -> float:
    """FID between N(mu1, sigma1) (e.g. cached reference statistics) and a feature set.

    Equal, up to round-off, to ``frechet_distance(mu1, sigma1, mu2, sigma2)`` (method ``"svd"``)
    with ``mu2, sigma2`` the statistics of ``features2``, but cheaper when ``N2 <= D`` (1,000 or
    5,000 generated images against D = 2048): with ``R_1 = sigma1^{1/2}`` (as in
    :func:`trace_sqrt_product`) and centred ``X_2``, ``S_1 S_2`` has the eigenvalues of
    ``A A^T`` with ``A = R_1 X_2^T / sqrt(N2 - 1)`` ([D, N2]), so ``Tr((S_1 S_2)^{1/2})`` is the
    sum of A's singular values: one ``[N2, D] x [D, D]`` product and one thin SVD instead of two
    D x D eigendecompositions and a D x D SVD. ``R_1`` does not depend on the generator:
    pass it (``sqrt_sigma1``, from :func:`sqrt_psd`) to reuse it across evaluations.

    Args:
        mu1: ``[D]`` mean of the first set.
        sigma1: ``[D, D]`` covariance of the first set.
        features2: ``[N2, D]`` features of the second set (N2 >= 2).
        sqrt_sigma1: optional precomputed ``sqrt_psd(sigma1)``.

    Returns:
        The distance (float64 arithmetic).

    Raises:
        ValueError: for mismatched shapes or fewer than 2 feature rows.
    """
    f2 = np.asarray(features2, np.float64)
    s2 = compute_statistics(f2)
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    if f2.ndim != 2 or f2.shape[1] != mu1.shape[0] or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, features2 "
                         f"{f2.shape}; accepted: [D], [D, D] and [N, D]")
    if f2.shape[0] > f2.shape[1]:
        return frechet_distance(mu1, sigma1, s2.mu, s2.sigma)
    root = sqrt_psd(sigma1) if sqrt_sigma1 is None else np.asarray(sqrt_sigma1, np.float64)
    a = (f2 - s2.mu) @ root / np.sqrt(f2.shape[0] - 1)  # A^T, [N2, D]
    trace_sqrt = np.linalg.svd(a, compute_uv=False).sum()
    diff = mu1 - s2.mu
    return float(diff @ diff + np.trace(sigma1) + np.trace(s2.sigma) - 2.0 * trace_sqrt)


#: Largest number of kernel entries (N1^2 + N2^2 + N1 N2, float64) that
#: :func:`kernel_inception_distance` computes once instead of per subset (~200 MB).
KID_FULL_KERNEL_MAX_ENTRIES = 25_000_000


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray,
                              num_subsets: int = 100, max_subset_size: int = 1000,
                              seed: int = 0) -> Tuple[float, float]:
    """KID: unbiased MMD^2 with the cubic polynomial kernel, over random subsets.

    Bińkowski et al. 2018: ``k(x, y) = (x . y / d + 1)^3`` with ``d`` the feature dimension.
    For each of ``num_subsets`` subsets, ``m = min(max_subset_size, N1, N2)`` rows are drawn
    without replacement from each set and

    ``MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
    - 2 sum_{i, j} k(x_i, y_j) / m^2``,

    an unbiased estimate (it can be negative). Computed in float64. When the three full kernel
    matrices have at most :data:`KID_FULL_KERNEL_MAX_ENTRIES` entries they are computed once
    and every subset sums its rows and columns of them (the same draws and the same sums, up to
    round-off, as computing each subset's kernels; 100 subsets of 1,000 cost one kernel
    evaluation instead of 100).

    Args:
        features1: ``[N1, d]`` features of the first set.
        features2: ``[N2, d]`` features of the second set.
        num_subsets: number of subsets (default 100).
        max_subset_size: subset size cap (default 1000).
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` of the per-subset estimates (std with ``ddof=0``: the spread over
        subsets, not a standard error).

    Raises:
        ValueError: for mismatched dimensions or fewer than 2 rows in a set.
    """
    x_all = np.asarray(features1, np.float64)
    y_all = np.asarray(features2, np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"features must be [N, d] with equal d, got {x_all.shape} and "
                         f"{y_all.shape}")
    m = min(int(max_subset_size), x_all.shape[0], y_all.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 feature vectors in each set")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    d = x_all.shape[1]
    n1, n2 = x_all.shape[0], y_all.shape[0]

    def kernel(a, b):
        return (a @ b.T / d + 1.0) ** 3

    full = n1 * n1 + n2 * n2 + n1 * n2 <= KID_FULL_KERNEL_MAX_ENTRIES
    if full:
        k_xx_all, k_yy_all = kernel(x_all, x_all), kernel(y_all, y_all)
        k_xy_all = kernel(x_all, y_all)
    rng = np.random.default_rng(seed)
    estimates = np.empty(num_subsets, np.float64)
    for s in range(num_subsets):
        ix = rng.choice(n1, m, replace=False)
        iy = rng.choice(n2, m, replace=False)
        if full:
            k_xx, k_yy = k_xx_all[np.ix_(ix, ix)], k_yy_all[np.ix_(iy, iy)]
            k_xy = k_xy_all[np.ix_(ix, iy)]
        else:
            x, y = x_all[ix], y_all[iy]
            k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        estimates[s] = within - 2.0 * k_xy.sum() / (m * m)
    return float(estimates.mean()), float(estimates.std())


def inception_score(logits: np.ndarray, splits: int = 10) -> Tuple[float, float]:
    """Inception Score from classifier logits (Salimans et al. 2016).

    For each of ``splits`` consecutive chunks: ``exp(mean_x KL(p(y|x) || p(y)))`` with
    ``p(y|x) = softmax(logits)`` and ``p(y)`` the chunk's mean prediction; float64.

    Args:
        logits: ``[N, K]`` pre-softmax outputs (e.g. the 1008-way TF Inception logits).
        splits: number of chunks (10 in the standard protocol).

    Returns:
        ``(mean, std)`` over the splits.

    Raises:
        ValueError: for a non-2-D input or fewer images than splits.
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or logits.shape[0] < splits or splits < 1:
        raise ValueError(f"logits must be [N >= splits, K], got {logits.shape} with "
                         f"splits={splits}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    scores = []
    for chunk in np.array_split(log_p, splits):
        log_py = np.log(np.exp(chunk).mean(axis=0))
        kl = (np.exp(chunk) * (chunk - log_py)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def save_statistics(path: Union[str, os.PathLike], stats: FIDStatistics) -> None:
    """Writes statistics to ``path`` (``.npz``) atomically.

    The file is written to a uniquely named temporary file in the same folder
    (``<path>.<uuid4>.tmp``: unique across processes and hosts sharing the folder), then renamed
    over ``path`` (``os.replace``), so a reader sees the old file or the whole new one, never a
    partial one; on any failure the temporary file is removed and ``path`` is left as it was.

    Keys: ``mu`` float64 ``[D]``, ``sigma`` float64 ``[D, D]``, ``num_images`` int64, optional
    ``features`` float32 ``[M, D]``, and ``meta_<key>`` strings.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = {"mu": np.asarray(stats.mu, np.float64),
              "sigma": np.asarray(stats.sigma, np.float64),
              "num_images": np.asarray(stats.num_images, np.int64)}
    if stats.features is not None:
        arrays["features"] = np.asarray(stats.features, np.float32)
    for key, value in stats.metadata.items():
        arrays[f"meta_{key}"] = np.asarray(str(value))
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    f = open(tmp, "xb")  # a unique name; "x": never another writer's file
    try:
        with f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_statistics(path: Union[str, os.PathLike]) -> FIDStatistics:
    """Reads statistics written by :func:`save_statistics` (or a TTUR-style ``mu``/``sigma`` npz).

    Uses ``np.load(..., allow_pickle=False)``: an object array in the file is refused.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when ``mu``/``sigma`` are missing or mis-shaped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    with np.load(path, allow_pickle=False) as data:
        if "mu" not in data.files or "sigma" not in data.files:
            raise ValueError(f"{path}: not a statistics file (needs 'mu' and 'sigma', has "
                             f"{data.files})")
        mu = np.asarray(data["mu"], np.float64)
        sigma = np.asarray(data["sigma"], np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"{path}: mu {mu.shape} / sigma {sigma.shape} are not [D] / [D, D]")
        features = np.asarray(data["features"], np.float32) if "features" in data.files else None
        num_images = int(data["num_images"]) if "num_images" in data.files else -1
        metadata = {k[len("meta_"):]: str(data[k]) for k in data.files if k.startswith("meta_")}
    return FIDStatistics(mu=mu, sigma=sigma, num_images=num_images, features=features,
                         metadata=metadata)
