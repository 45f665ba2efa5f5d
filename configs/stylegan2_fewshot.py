"""StyleGAN2 on a 100-shot image folder: the DiffAugment paper's preset and its variants.

Give the folder on the command line::

    python -m jaxgan_lth.main --config=configs/stylegan2_fewshot.py[:VARIANT] \\
      --config.data.folder=../shared/data/few-shot/100-shot-obama --workdir=workdirs/obama

Variants (``get_config(arg)``, big_vision style):

============  =========================================================================
(default)     ``diffaug``: StyleGAN2 + DiffAugment ``color,translation,cutout``, the TF paper
              code ``DiffAugment-stylegan2/run_low_shot.py`` (fewshot_sparse_regularisers.md
              section 1.1): 256x256, batch 16, 300 kimg, Adam 0.002 (0, 0.99), 8 mapping
              layers, channels ``min(32768 / res, 512)``, R1 gamma 10 every step, no path
              length, style mixing 0.9, EMA half-life 10 kimg held at a copy for the first 10
              kimg, fp32, x-flips of the reals, fid5k-train (5,000 EMA samples vs the 100
              training images, no flips in the reference) every 100 kimg
``baseline``  the same without DiffAugment (the papers' "StyleGAN2" row)
``ada``       ADA ``bgc`` in place of DiffAugment (target 0.6, interval 4, 500 kimg)
``ticket``    the lottery paper's few-shot pipeline (Chen et al., NeurIPS 2021, Table 5):
              IMP rounds (20% of G's modulated conv weights per round, rewinding to theta_0)
              without augmentation, then the ticket trained with DiffAugment + AdvAug PGD-1.
              The released code has no StyleGAN2 scripts (seed_repos.md): rounds and budget
              are ours (config keys)
``cpu``       a CPU preset: 32x32, 64 channels up to 16 px and 32 at 32 px, 2 mapping
              layers, batch 16, 48 kimg, lr 0.0025, R1 gamma 0.16 lazy
              every 16 steps, EMA half-life 1 kimg with ADA's ramp-up, DiffAugment; trains on
              one core in under 20 minutes, so ``launch/fewshot_cpu.sh`` trains both folders
              at once on 2 cores (README's few-shot section has the measured wall times)
============  =========================================================================

Differences from the TF code, on purpose: each iteration here is one D step then one G step
(TF: G then D); batches are drawn without replacement within an epoch (``data.sampling``).
"""

import ml_collections

from configs import default

VARIANTS = ("diffaug", "baseline", "ada", "ticket", "cpu")


def _kimg_steps(kimg: float, batch: int) -> int:
    return max(1, int(round(kimg * 1000 / batch)))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The config of one variant (default ``diffaug``).

    Raises:
      ValueError: an unknown variant (accepted: :data:`VARIANTS`).
    """
    variant = arg or "diffaug"
    if variant not in VARIANTS:
        raise ValueError(f"stylegan2_fewshot variant {variant!r}; accepted: {VARIANTS}.")
    config = default.get_config()
    config.stages = "train"
    # ---- data: the folder is the whole training set, x-flipped ----
    config.data.name = "folder"
    config.data.folder = ""  # give it: --config.data.folder=PATH
    config.data.resolution = 256
    config.data.channels = 3
    config.data.subset_fraction = 0.0
    config.data.subset_count = 0
    config.data.random_flip = True  # --mirror-augment (TF default True)
    config.data.sampling = "epoch"
    config.data.heldout_split = ""
    # ---- model: StyleGAN2 config F, TF low-shot sizes ----
    config.model.name = "stylegan2"
    config.model.latent_dim = 512
    config.model.w_dim = 512
    config.model.channel_base = 32768
    config.model.g_channels = 512
    config.model.d_channels = 512
    config.model.mapping_layers = 8
    config.model.style_mixing_prob = 0.9
    config.model.mbstd_group = 4
    config.model.dtype = "float32"
    # ---- training ----
    batch = 16
    config.train.loss = "nonsaturating"
    config.train.g_batch_size = batch
    config.train.d_batch_size = batch
    config.train.n_dis = 1
    config.train.g_lr = config.train.d_lr = 0.002
    config.train.g_betas = config.train.d_betas = (0.0, 0.99)
    config.train.adam_eps = 1e-8
    config.train.ema_kimg = 10.0
    config.train.ema_start = _kimg_steps(10, batch)  # held at a copy for the first 10 kimg
    config.train.num_steps = _kimg_steps(300, batch)  # 300 kimg = 18,750 G steps
    config.r1.gamma = 10.0
    config.r1.interval = 1  # lazy_regularization=False in the TF low-shot code
    config.pathlen.weight = 0.0
    config.diffaug.policy = "color,translation,cutout"
    # ---- evaluation: fid5k-train ----
    config.eval.num_samples = 5000
    config.eval.reference_split = "train"
    config.eval.every = _kimg_steps(100, batch)
    config.eval.batch_size = 50
    config.eval.diagnostic = True
    config.log_every = 100
    config.sample_every = 1000
    config.checkpoint_every = 1000
    config.num_samples = 16

    if variant == "baseline":
        config.diffaug.policy = ""
    elif variant == "ada":
        config.diffaug.policy = ""
        config.ada.pipeline = "bgc"
    elif variant == "ticket":
        config.stages = "imp,ticket"
        config.diffaug.policy = ""
        config.sparsity.prune = "g"
        config.imp.rounds = 3  # ours: density 0.512 (the paper's few-shot sparsity unverified)
        config.imp.num_steps = config.train.num_steps
        config.ticket.num_steps = config.train.num_steps
        config.ticket.diffaug.policy = "color,translation,cutout"
        config.ticket.advaug.mode = "pgd"
    elif variant == "cpu":
        config.data.resolution = 32
        config.model.latent_dim = 64
        config.model.w_dim = 64
        # ch(s) = min(1024 / s, 64): 64 channels at 4-16 px, 32 at 32 px, where 3/4 of a
        # 64-channel network's FLOPs were (0.43x its cost per image)
        config.model.channel_base = 1024
        config.model.g_channels = 64
        config.model.d_channels = 64
        config.model.mapping_layers = 2
        # noise inputs kept: trained without them (model.use_noise = False) this preset
        # collapsed to one fixed pattern by 1000 steps on both folders (README, few-shot)
        batch = 16
        config.train.g_batch_size = config.train.d_batch_size = batch
        config.model.mbstd_group = 4
        config.train.g_lr = config.train.d_lr = 0.0025  # stylegan2-ada 'auto' below 1024 px
        # 48 kimg: 18.4-19.0 min on one core of a 2-core AMD EPYC with FID (README); at 1600
        # steps (25.6 kimg) the Obama faces were not recognisable yet (FID 338 vs 112)
        config.train.num_steps = 3000
        config.train.ema_kimg = 1.0
        config.train.ema_rampup = 0.05  # half-life <= 5% of the images so far (ADA 'auto')
        config.train.ema_start = 0
        # the low-shot preset's gamma 10 at 256 px scaled by res^2 (the ADA 'auto' rule's
        # dependence on resolution): 10 * (32 / 256)^2 = 0.16
        config.r1.gamma = 0.16
        config.r1.interval = 16  # lazy R1 (penalty x 16 every 16th step), StyleGAN2's interval
        # as measured in README (before issue 27): the lazy penalty in the main D loss with
        # D's Adam unscaled, and its own augmentation draw
        config.r1.lazy = "loss_gain"
        config.r1.augment = "redrawn"
        config.eval.num_samples = 500  # a CPU-sized FID: 500 EMA samples vs the 100 images
        config.eval.every = 0
        config.eval.batch_size = 50
        config.log_every = 50
        config.sample_every = 250
        config.checkpoint_every = 250
    return config
