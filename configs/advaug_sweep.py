"""AdvAug strength sweep: PGD step sizes x seeds trained as one sweep of the dense stage.

Based on configs/default.py (DCGAN-sized nets, Fashion-MNIST 10%), with plain training
augmented like the ticket stage: DiffAugment "translation,cutout" and AdvAug mode "pgd"
(Chen et al., NeurIPS 2021, Eq. 5; lam 0.5, PGD-1). The step size is a traced strength, so the
8 runs (step sizes 0, 0.01, 0.05, 0.1 x seeds 0, 1) share one compiled program
(jaxgan_lth/training/sweep.py, jaxgan_lth/training/loop.py); step size 0 is the no-AdvAug baseline
(the
adversarial term then equals the clean loss). Each run writes DIR/train/runs/<name>/ (metrics,
sample grids, summary.json), e.g. DIR/train/runs/seed1_adv_step_size0.05/, and the table of all
runs is DIR/train/sweep.md.

Run:  python -m jaxgan_lth.main --config=configs/advaug_sweep.py --workdir=/tmp/advaug_sweep
Change the sweep on the command line, e.g.
  --config.sweep.hparams="adv_step_size=0.0,0.1;adv_lam=0.3,0.7" --config.sweep.seeds=0,1,2
  (product=True: every combination; --config.sweep.product=False zips equal-length lists).
On a GPU add --config.sweep.strategy=vmap (one batched program for all runs).
"""

from configs import default
from jaxgan_lth import parts


def get_config():
    """Returns the AdvAug step-size sweep config (8 runs of the dense stage)."""
    config = default.base_config()
    config.stages = "train"
    config.diffaug = parts.DiffAugment.default_config(policy="translation,cutout")
    config.advaug = parts.AdvAug.default_config(mode="pgd")
    config.sweep.stages = "train"
    config.sweep.seeds = "0,1"
    config.sweep.hparams = "adv_step_size=0.0,0.01,0.05,0.1"
    config.sweep.product = True
    return config
