"""SNGAN on CIFAR-10 at 10% data: the lottery-ticket paper's SNGAN protocol, by variant.

Chen et al., NeurIPS 2021 ("Data-Efficient GAN Training Beyond (Just) Augmentations: A Lottery
Ticket Perspective"), released code VITA-Group/Ultra-Data-Efficient-GAN-Training, folder
``SNGAN/`` (../shared/reference/seed_repos.md sections 1 and 6). Choose a variant after the
file name, as big_vision's ``get_config(arg)``:

  python -m jaxgan_lth.main --config=configs/sngan_cifar10.py:ticket_advaug --workdir=DIR

| variant       | stages     | released script(s), SNGAN/                         | paper          |
|---------------|------------|----------------------------------------------------|----------------|
| dense         | train      | train_less.py                                      | Fig. 4 dense   |
| dense_advaug  | train      | train_adv_gd_less.py                               | + AdvAug       |
| imp           | imp        | train_impg_less.py (11 rounds)                     | Alg. 1, Fig. 4 |
| ticket        | imp,ticket | train_impg_less.py, train_with_masks_less.py       | Fig. 4 ticket  |
| ticket_advaug | imp,ticket | train_impg_less.py, train_with_masks_adv_gd_less.py | + AdvAug      |

No variant argument = ``ticket_advaug``, the paper's SNGAN result and the released checkpoint
("SNGAN, CIFAR-10, 10% data, 10.74% remaining weights, AdvAug on G and D", README of the
released code): the round-10 ticket (density 0.8^10 = 10.74%) trained with AdvAug on G and D
and *without* DiffAugment (the released stage-2 script calls ``functions_adv.train_adv_gd``,
which has no DiffAugment).

Common to every variant (SNGAN/cfg.py defaults = the README commands; seed_repos.md 1.4, 6):
ResNet G (256 ch, BN, no SN) / D (128 ch, SN), hinge loss, Adam 2e-4 with betas (0.0, 0.9),
n_dis 5, G batch 128, D batch 64, 50k G iterations per training run (dense run, every IMP round
and the ticket), no LR decay, EMA 0.999 per G step from step 0 evaluated with G's own batch-norm
statistics (``copy_params``/``load_params`` copy parameters only: ``train.ema_buffers="copy"``),
the first 10% (5,000 images) of the training split, no flips. IMP keeps two mask chains as
``train_impg_less.py`` does (``sparsity.mask_chains="two"``, since issue 27): the rounds train
under the chain pruned on G's magnitudes, the ticket reads the chain pruned on the EMA G's
(``DIR/masks_ema``); the one-chain form used before issue 27 is
``--config.sparsity.mask_chains=one --config.sparsity.magnitudes=ema``.
FID protocol (seed_repos.md section 7, ``functions.validate``): 50,000 samples of the EMA
generator against the statistics of the whole CIFAR-10 *train* split (TTUR
``fid_stats_cifar10_train.npz``), every ``--val_freq 20`` epochs, best FID over training.
CIFAR-10 needs internet (or a prepared tfds copy) on first use.
"""

from configs import default

#: variant -> released script(s) it follows (VITA-Group/Ultra-Data-Efficient-GAN-Training).
VARIANTS = {
    "dense": "SNGAN/train_less.py",
    "dense_advaug": "SNGAN/train_adv_gd_less.py",
    "imp": "SNGAN/train_impg_less.py",
    "ticket": "SNGAN/train_impg_less.py + SNGAN/train_with_masks_less.py",
    "ticket_advaug": "SNGAN/train_impg_less.py + SNGAN/train_with_masks_adv_gd_less.py",
}
DEFAULT_VARIANT = "ticket_advaug"

NUM_STEPS = 50_000  # --max_iter 50000 G iterations (every training run of the released code)
SUBSET = 5_000  # first int(50,000 * 0.1) CIFAR-10 training images (--ratio 0.1)
# Evaluation interval. The released loops evaluate when `epoch % val_freq == 0` (epoch > 0) and
# after the last epoch, with --val_freq 20 epochs. One epoch is one pass of the D loader over the
# 5,000 images with D batch 64 and no drop_last: ceil(5000 / 64) = 79 D steps (5000/64 = 78.1
# without the partial batch); a G step every n_critic = 5 D steps, so 20 epochs = 20 * 79 / 5 =
# 316 G steps (~158 evaluations in 50k G steps). Here batches are sampled with replacement, so an
# "epoch" is only this conversion.
EVAL_EVERY = 316
# Headline ticket: IMP round 10, density 0.8^10 = 10.74% (the released checkpoint). Masks m_r
# of this pipeline are saved per round, so 10 trained rounds give m_10; the released loop
# `for ro in range(10 + 1)` trains 11 rounds because its round-r checkpoint (which the stage-2
# script reads with --rewind-path) is only written while round r trains.
TICKET_ROUND = 10
IMP_ROUNDS_RELEASED = 11


def _released_advaug(section):
    """AdvAug as ``functions_adv.train_adv_gd`` with the README's ``--gamma 0.01 --step 1``.

    Perturbs D's pooled 128-d feature (input of ``l5``) for reals and fakes in the D step and
    G's first-layer output (``l1``, 256x4x4) in the G step; one signed-gradient step of 0.01, no
    random start, no projection (``clip=False``); clean and adversarial losses averaged 50/50.
    The released PGD ascends the mean D logit on every branch: direction "reference_code"
    (seed_repos.md 1.3; the paper's Eq. 5 describes a worst case, direction "paper").
    """
    section.mode = "pgd"
    section.networks = "gd"
    section.num_steps = 1
    section.step_size = 0.01
    section.radius = 0.0
    section.random_start = False
    section.lam = 0.5
    section.direction = "reference_code"


def _no_advaug(section):
    section.mode = "none"


def get_config(arg=None):
    """SNGAN / CIFAR-10 (10%) config of one variant.

    Args:
      arg: variant name (see ``VARIANTS``); None or "" = ``DEFAULT_VARIANT``.

    Raises:
      ValueError: an unknown variant, naming the accepted ones.
    """
    variant = arg or DEFAULT_VARIANT
    if variant not in VARIANTS:
        raise ValueError(
            f"configs/sngan_cifar10.py: unknown variant {variant!r}; accepted: "
            f"{', '.join(VARIANTS)} (default {DEFAULT_VARIANT})."
        )
    config = default.base_config()

    # ---- data: the first 10% of CIFAR-10 train (datasets.ImageDatasetLess, np.arange) ----------
    config.data.name = "cifar10"
    config.data.resolution = 32
    config.data.channels = 3
    config.data.subset_fraction = 0.1
    config.data.sampling = "epoch"  # the released code's shuffled DataLoader (no replacement)
    config.data.subset_selection = "first"
    config.data.random_flip = False

    # ---- model and optimisation (SNGAN/cfg.py, models/sngan_cifar10.py) -------------------------
    config.model.name = "sngan"
    config.model.latent_dim = 128
    config.model.g_channels = 256
    config.model.d_channels = 128
    config.model.conditional = False

    config.train.num_steps = NUM_STEPS
    config.train.n_dis = 5
    # -gen_bs 128 -dis_bs 64 (README commands); the paper's section 4 says "batch sizes of 64"
    config.train.g_batch_size = 128
    config.train.d_batch_size = 64
    config.train.loss = "hinge"
    config.train.g_lr = 2e-4
    config.train.d_lr = 2e-4
    config.train.g_betas = (0.0, 0.9)
    config.train.d_betas = (0.0, 0.9)
    config.train.lr_decay = False
    config.train.ema_decay = 0.999
    config.train.ema_start = 0
    config.train.ema_buffers = "copy"  # gen_avg_param = parameters only; BN stats are G's

    # ---- augmentation of dense training and of the IMP rounds: none ------------------------------
    # (train_less.py / train_impg_less.py call functions.train: no DiffAugment, no AdvAug;
    # paper footnote 1: augmentations in ticket finding had no visible impact)
    config.diffaug.policy = ""
    _no_advaug(config.advaug)

    # ---- sparsity and IMP (train_impg_less.py, utils.pruning_generate) --------------------------
    config.sparsity.prune = "g"  # G-only tickets; D trained dense from its initial weights
    config.sparsity.method = "global"  # prune.global_unstructured over all G conv weights
    config.sparsity.g_ratio = 0.2  # --percent 0.2: 20% of the remaining weights per round
    # Two mask chains, as released (default since issue 27): train_impg_less.py lines 146-147
    # prunes G on its own magnitudes (the chain the IMP rounds train under) and the EMA copy on
    # the EMA's magnitudes, a chain of its own; the stage-2 scripts read the ticket's mask from
    # the checkpoint's `avg_gen_state_dict` (train_with_masks_adv_gd_less.py lines 92-93).
    # The EMA there averages G's dense weight_orig, so it holds theta_0 where G's chain pruned
    # (jaxgan_lth/sparsity/pruning.py ema_chain_weights). Before issue 27 (the one chain that
    # the ticket reads, pruned on EMA magnitudes, also for the rounds):
    # --config.sparsity.mask_chains=one --config.sparsity.magnitudes=ema
    config.sparsity.mask_chains = "two"
    config.sparsity.magnitudes = "g"
    config.imp.rounds = TICKET_ROUND
    config.imp.num_steps = NUM_STEPS
    config.imp.rewind_step = 0  # rewind_weight(): back to the initial weights theta_0
    config.imp.reset_d = True  # D <- initial_dis_net.pth every round (no --finetune-D)

    # ---- the ticket (train_with_masks_*_less.py: G = theta_0 * m, D = its initial weights) -----
    config.ticket.round = TICKET_ROUND
    config.ticket.target_sparsity = 0.0
    config.ticket.mask_workdir = ""
    config.ticket.mask_type = "imp"
    config.ticket.num_steps = NUM_STEPS
    config.ticket.diffaug.policy = ""  # the released SNGAN ticket uses no DiffAugment
    _released_advaug(config.ticket.advaug)

    # ---- evaluation (functions.validate; seed_repos.md section 7) -------------------------------
    config.eval.enabled = True
    config.eval.num_samples = 50_000  # --num_eval_imgs 50000
    config.eval.reference_split = "train"  # fid_stats_cifar10_train.npz: all 50k train images
    config.eval.every = EVAL_EVERY  # --val_freq 20 epochs (conversion above); best FID kept
    config.eval.raw_generator = False  # the released code evaluates the EMA generator only

    config.log_every = 100
    config.sample_every = 2_000
    config.checkpoint_every = 2_000

    # ---- variants --------------------------------------------------------------------------------
    if variant == "dense":
        # train_less.py: dense G and D, plain hinge training on the 10% subset.
        config.stages = "train"
    elif variant == "dense_advaug":
        # train_adv_gd_less.py --gamma 0.01 --step 1: dense, AdvAug on G and D.
        config.stages = "train"
        _released_advaug(config.advaug)
    elif variant == "imp":
        # train_impg_less.py --percent 0.2: `for ro in range(10 + 1)`, 11 rounds of 50k G
        # steps; masks m_0 .. m_11 (density 0.8^11 = 8.59% last). The round trained with m_r is
        # the plain-trained ticket at density 0.8^r (the Fig. 4 / Table A9 curve).
        config.stages = "imp"
        config.imp.rounds = IMP_ROUNDS_RELEASED
    elif variant == "ticket":
        # IMP to m_10, then train_with_masks_less.py: the ticket trained plainly.
        config.stages = "imp,ticket"
        _no_advaug(config.ticket.advaug)
    elif variant == "ticket_advaug":
        # IMP to m_10, then train_with_masks_adv_gd_less.py --gamma 0.01 --step 1.
        config.stages = "imp,ticket"
    return config
