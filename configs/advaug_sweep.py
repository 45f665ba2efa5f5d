"""AdvAug strength sweep: several PGD step sizes x seeds trained together as one multi-run.

Based on configs/default.py (DCGAN-sized nets, Fashion-MNIST 10%), with plain training
augmented like the ticket stage: DiffAugment "translation,cutout" and AdvAug mode "pgd"
(Chen et al., NeurIPS 2021, Eq. 5; lam 0.5, PGD-1). The step size gamma is a traced
hyper-parameter, so all 8 runs (step sizes 0, 0.01, 0.05, 0.1 x seeds 0, 1) share one compiled
``jax.vmap`` program (jaxgan_lth/multirun.py); step size 0 is the no-AdvAug baseline (the
adversarial term then equals the clean loss). Each run writes DIR/runs/<name>/ (metrics,
sample grids, summary.json), e.g. DIR/runs/seed1_adv_step_size0.05/.

Run:  python -m jaxgan_lth.main --config=configs/advaug_sweep.py --workdir=/tmp/advaug_sweep
Change the sweep on the command line, e.g.
  --config.multirun.hparams="adv_step_size=0.0,0.1;adv_lam=0.3,0.7" --config.multirun.seeds=0,1,2
  (product=True: every combination; --config.multirun.product=False zips equal-length lists).
"""

import ml_collections

from configs import default


def multirun_config(
    seeds=(0,), hparams: str = "", product: bool = False, strategy: str = "vmap"
) -> ml_collections.ConfigDict:
    """The ``multirun`` section (documented in jaxgan_lth/multirun.py).

    Args:
      seeds: run seeds, a tuple of ints or a comma-separated string ("0,1,2,3"); stored as a
        tuple (override with --config.multirun.seeds=0,1,2 or "(0,1,2)").
      hparams: ``"name=v1,v2,...; name2=w1,..."`` over the traced hyper-parameters
        ``adv_step_size``, ``adv_lam``, ``adv_radius``, ``adv_noise_scale``, ``ema_decay``.
      product: True = every combination of seeds and values; False = zip the lists (lists
        with more than one entry must have the same length K; one-entry lists are shared).
      strategy: "vmap" (one batched program: the speedup on accelerators) or "loop" (the
        single-run step once per run: for CPUs, where vmapped convolutions are slow).
    """
    c = ml_collections.ConfigDict()
    if isinstance(seeds, str):
        seeds = [s for s in seeds.split(",") if s.strip()]
    c.seeds = tuple(int(s) for s in seeds)
    c.hparams = hparams
    c.product = product
    c.strategy = strategy
    return c


def get_config():
    """Returns the AdvAug step-size sweep config (8 runs)."""
    config = default.get_config()
    config.stages = "multirun"
    config.diffaug = default.diffaug_config(policy="translation,cutout")
    config.advaug = default.advaug_config(mode="pgd")
    config.multirun = multirun_config(
        seeds=(0, 1), hparams="adv_step_size=0.0,0.01,0.05,0.1", product=True
    )
    return config
