"""StyleGAN2 on a 100-shot image folder: the DiffAugment paper's preset and its variants.

Give the folder on the command line (``python -m jaxgan_lth.data.fetch`` downloads the DiffAugment
paper's sets, checks their SHA-256 and unpacks them)::

    python -m jaxgan_lth.data.fetch 100-shot-obama data/100-shot-obama
    python -m jaxgan_lth.main --config=configs/stylegan2_fewshot.py[:VARIANT] \\
      --config.data.folder=data/100-shot-obama --workdir=workdirs/obama

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
``ada``       ADA's own preset: stylegan2-ada-pytorch ``train.py`` cfg ``paper256``
              (``cfg_specs``, lines 154-161): batch 64, minibatch-stddev group 8, channel_base
              16384, 8 mapping layers, Adam 0.0025 (0, 0.99), R1 gamma 1 lazy every 16 steps,
              path length 2 lazy every 4 steps (each its own Adam step, Adam scaled by
              k / (k + 1): ``training_loop.py`` lines 106-107, 197-208), EMA half-life 20 kimg
              without ramp-up, ADA ``bgc`` with target 0.6, adjusted every 4 steps by
              batch x 4 / 500 kimg (``--aug=ada`` defaults); see :data:`ADA_SPECS`
``ada_auto``  the same with cfg ``auto`` at 256 px on one GPU (``train.py`` lines 164-172):
              batch 16, group 4, channel_base 16384, 2 mapping layers, lr 0.0025, gamma
              0.0002 x 256^2 / 16 = 0.8192, EMA 16 x 10 / 32 = 5 kimg with ramp-up 0.05
``diffaug_ada`` the ``diffaug`` preset with ADA ``bgc`` (target 0.6, interval 4, 500 kimg) in
              place of DiffAugment: the ``ada`` variant before issue 27, kept by name
``ticket``    the lottery paper's few-shot pipeline (Chen et al., NeurIPS 2021, Table 5):
              IMP rounds (20% of G's modulated conv weights per round, rewinding to theta_0)
              without augmentation, then the ticket trained with DiffAugment + AdvAug PGD-1;
              see :func:`_ticket` for what is the paper's and what is ours
``cpu``       a CPU preset: 32x32, 64 channels up to 16 px and 32 at 32 px, 2 mapping
              layers, batch 16, 48 kimg, lr 0.0025, R1 gamma 0.16 lazy
              every 16 steps, EMA half-life 1 kimg with ADA's ramp-up, DiffAugment; trains on
              one core in under 20 minutes, so ``launch/fewshot_cpu.sh`` trains both folders
              at once on 2 cores (README's few-shot section has the measured wall times)
============  =========================================================================

Differences from the TF code, on purpose: each iteration here is one D step then one G step
(TF: G then D); batches are drawn without replacement within an epoch (``data.sampling``).

LeCam, when switched on (``--config.lecam.weight``), takes its StyleGAN2 form in every variant
(google/lecam-gan ``stylegan2/lecam_loss.py``: zero-debiased anchors, decay 0.99, no start
delay; its scripts' weights 1e-6 at CIFAR-10 ``--cfg cifar``, 3e-7 at FFHQ-1k ``--cfg
paper256``): :meth:`jaxgan_lth.parts.LeCam.stylegan2_config`.

The ADA variants differ from stylegan2-ada-pytorch in: fp32 throughout (the reference runs the
4 highest resolutions in fp16 with ``conv_clamp`` 256), the run length (300 kimg, this file's
few-shot budget; ``train.py`` defaults to 25,000 kimg), x-flips of the reals (``--mirror``
defaults to off there; on here as in every few-shot variant), and the G-then-D order above.
"""

import ml_collections

from configs import default
from jaxgan_lth import parts

VARIANTS = ("diffaug", "baseline", "ada", "ada_auto", "diffaug_ada", "ticket", "cpu")

#: stylegan2-ada-pytorch ``train.py`` ``cfg_specs`` (lines 154-161) as used here; ``auto`` is
#: resolved at 256 px on one GPU (lines 164-172): mb = max(min(1 x min(4096 // 256, 32), 64),
#: 1) = 16, mbstd = min(16 // 1, 4) = 4, fmaps 0.5 (res < 512), lrate 0.0025 (res < 1024),
#: gamma = 0.0002 x 256^2 / 16, ema = 16 x 10 / 32 kimg. channel_base = fmaps x 32768.
ADA_SPECS = {
    "ada": dict(batch=64, mbstd=8, channel_base=16384, lr=0.0025, gamma=1.0, ema_kimg=20.0,
                ema_rampup=0.0, mapping_layers=8),  # paper256 (ramp None)
    "ada_auto": dict(batch=16, mbstd=4, channel_base=16384, lr=0.0025,
                     gamma=0.0002 * 256 ** 2 / 16, ema_kimg=16 * 10 / 32, ema_rampup=0.05,
                     mapping_layers=2),
}


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
    config = default.base_config()
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
    # LeCam's StyleGAN2 form when switched on (weight 0 = off); see the module docstring
    config.lecam = parts.LeCam.stylegan2_config(0.0)
    config.ticket.lecam = parts.LeCam.stylegan2_config(0.0)
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
    elif variant in ADA_SPECS:
        _ada(config, ADA_SPECS[variant])
    elif variant == "diffaug_ada":
        config.diffaug.policy = ""
        config.ada.pipeline = "bgc"
    elif variant == "ticket":
        _ticket(config)
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


def _ada(config, spec: dict) -> None:
    """stylegan2-ada-pytorch ``train.py`` (one ``cfg_specs`` entry) on top of the base preset.

    Common to every cfg: Adam (0, 0.99), eps 1e-8; ``training_loop.py`` ``G_reg_interval`` 4,
    ``D_reg_interval`` 16 (lazy regularisation as separate Adam steps, Adam scaled by
    k / (k + 1)); ``loss.py`` ``StyleGAN2Loss`` defaults ``pl_weight`` 2, ``pl_decay`` 0.01,
    ``pl_batch_shrink`` 2, ``style_mixing_prob`` 0.9; ``--aug=ada``: pipeline ``bgc``,
    ``ada_target`` 0.6, ``ada_interval`` 4, ``ada_kimg`` 500, p from 0. R1 redraws the
    augmentation (``r1.augment = "redrawn"``): the reference's ``Dr1`` phase calls ``run_D``,
    which runs the augment pipe again (``loss.py`` lines 50-52, 108-112).
    """
    batch = spec["batch"]
    config.diffaug.policy = ""
    config.ada = parts.ADA.default_config("bgc")
    config.ada.target, config.ada.interval, config.ada.kimg = 0.6, 4, 500.0
    config.model.channel_base = spec["channel_base"]
    config.model.g_channels = config.model.d_channels = 512  # channel_max
    config.model.mapping_layers = spec["mapping_layers"]
    config.model.mbstd_group = spec["mbstd"]
    config.model.style_mixing_prob = 0.9
    config.train.g_batch_size = config.train.d_batch_size = batch
    config.train.g_lr = config.train.d_lr = spec["lr"]
    config.train.g_betas = config.train.d_betas = (0.0, 0.99)
    config.train.adam_eps = 1e-8
    config.train.ema_kimg = spec["ema_kimg"]
    config.train.ema_rampup = spec["ema_rampup"]
    config.train.ema_start = 0
    config.train.num_steps = _kimg_steps(300, batch)  # this file's few-shot budget (ours)
    config.eval.every = _kimg_steps(100, batch)
    config.r1.gamma = spec["gamma"]
    config.r1.interval = 16
    config.r1.lazy = "separate_step"
    config.r1.augment = "redrawn"
    config.pathlen.weight = 2.0
    config.pathlen.interval = 4
    config.pathlen.lazy = "separate_step"
    config.pathlen.decay = 0.01
    config.pathlen.batch_shrink = 2


def _ticket(config) -> None:
    """The lottery paper's few-shot StyleGAN2 pipeline, on this package's StyleGAN2.

    Chen et al., NeurIPS 2021 (seed 001), §4 "implementation details": the few-shot StyleGAN2
    runs used lucidrains' ``stylegan2-pytorch`` (github.com/lucidrains/stylegan2-pytorch), a
    different implementation from NVIDIA's, "keeping the default configuration" of the
    DiffAugment paper (resolution, G/D learning rates, batch size, iterations); Table 5 gives
    the 100-shot FIDs of the tickets. The released lottery-ticket code has no StyleGAN2
    scripts (seed_repos.md). This preset runs the pipeline on the NVIDIA-faithful StyleGAN2 of
    :mod:`jaxgan_lth.models.stylegan2` with the TF DiffAugment preset's settings (the base of
    this file), so its numbers are not the paper's.

    The paper's: IMP of G with 20% of the remaining weights per round, rewinding to theta_0
    (§3, Algorithm 1), IMP rounds without augmentation, the ticket trained with DiffAugment
    ``color,translation,cutout`` and AdvAug PGD-1. Ours: 3 rounds (density 0.8^3 = 0.512; the
    paper's few-shot sparsity is not in the text we have), the rounds' and the ticket's budget
    (the base preset's 300 kimg each), AdvAug at both feature points (D's pooled features in
    the D step, G's first-layer output in the G step) with step size 0.01 and the released
    CIFAR code's signs (``advaug.direction = "reference_code"``, as ``configs/sngan_cifar10.py``
    and ``configs/biggan_cifar10.py``; §4 states PGD-1 for the CIFAR / ImageNet runs only).
    """
    config.stages = "imp,ticket"
    config.diffaug.policy = ""
    config.sparsity.prune = "g"
    config.imp.rounds = 3  # ours: density 0.512 (the paper's few-shot sparsity unverified)
    config.imp.num_steps = config.train.num_steps
    config.ticket.num_steps = config.train.num_steps
    config.ticket.diffaug.policy = "color,translation,cutout"
    config.ticket.advaug.mode = "pgd"
    config.ticket.advaug.networks = "gd"  # ours: both feature points
    config.ticket.advaug.num_steps = 1  # PGD-1 (§4)
    config.ticket.advaug.step_size = 0.01  # the released CIFAR code's gamma (ours here)
    config.ticket.advaug.direction = "reference_code"  # as the CIFAR configs
