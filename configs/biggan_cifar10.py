"""BigGAN on CIFAR-10 at 10% data: the lottery-ticket paper's BigGAN protocol, by variant.

Chen et al., NeurIPS 2021 ("Data-Efficient GAN Training Beyond (Just) Augmentations: A Lottery
Ticket Perspective"), released code VITA-Group/Ultra-Data-Efficient-GAN-Training, folder
``BigGAN and DiffAugGAN/`` (a PyTorch-StudioGAN-0.2 fork; ../shared/reference/seed_repos.md
sections 1, 5, 6, 7). Choose a variant after the file name, as big_vision's ``get_config(arg)``:

  python -m jaxgan_lth.main --config=configs/biggan_cifar10.py:ticket_diffaug_advaug --workdir=DIR

The variants are the rows of the paper's Table 3 (CIFAR-10, 10% data), AdvAug without
DiffAugment (ticket: Figure 1 "Stage 1+2 (AdvAug)"; dense: as the "+ AdvAug" rows of Table 1,
Tiny-ImageNet) and IMP alone. ``X.json`` = ``configs/CIFAR10_less/X.json`` of the
released code, ``--ratio 0.1``:

| variant               | stages     | released code                            | G steps    |
|-----------------------|------------|------------------------------------------|------------|
| dense                 | train      | main.py BigGAN.json                      | 100k       |
| dense_advaug          | train      | main.py BigGAN_adv.json                  | 100k       |
| dense_diffaug         | train      | main.py DiffAugGAN.json                  | 200k       |
| dense_diffaug_advaug  | train      | main.py DiffAugGAN_adv.json              | 200k       |
| imp                   | imp        | main_impg.py BigGAN.json (10 rounds)     | 10 x 100k  |
| ticket                | imp,ticket | main_impg.py; main_ompg.py BigGAN.json   | 9 x 100k + 100k |
| ticket_advaug         | imp,ticket | ...; main_ompg.py BigGAN_adv.json        | 9 x 100k + 100k |
| ticket_diffaug        | imp,ticket | ...; main_ompg.py DiffAugGAN.json        | 9 x 100k + 200k |
| ticket_diffaug_advaug | imp,ticket | ...; main_ompg.py DiffAugGAN_adv.json    | 9 x 100k + 200k |

(main_ompg.py with ``--mask_round 9 --gamma 0.01``.)

These rows are the *paper's reading* (PGD-1, paper section 4; DiffAugment doubles the
iterations to 200k, section 4). The released code differs in two places, so every variant that
one of them touches also exists *as released*, with the suffix ``_released``:

* ``main_ompg.py`` defaults to ``--steps 0`` (and ``--gamma 0``, line 52-53) and neither README
  ticket command passes ``--steps`` (README lines 95, 110), so the released ticket runs have no
  effective PGD: ``PGD`` / ``PGD_G`` (``train_eval.py`` lines 900-938) loop ``range(0)`` times
  and the "adversarial" features are the clean ones, still attached to the graph. Emulated here
  by PGD-1 with step size 0 (the same forward values and gradients; ``advaug.num_steps`` >= 1 is
  required). What remains of AdvAug is the G step's 50/50 average with the un-augmented branch
  (``augment_adv_branch=False``) with DiffAugment.
* the CIFAR-10 ``DiffAugGAN.json`` / ``DiffAugGAN_adv.json`` say ``"total_step": 100000``:
  100k G steps with DiffAugment, not 200k.
* ``dense_advaug_released`` / ``dense_diffaug_advaug_released``: no README command exists for
  dense AdvAug; ``main.py``'s defaults are ``--gamma 1/255 --steps 1`` (lines 50-51), used here
  (the paper-reading rows use the tickets' 0.01).

| variant                        | differs from the paper-reading row by                   |
|--------------------------------|---------------------------------------------------------|
| dense_advaug_released          | PGD step size 1/255                                     |
| dense_diffaug_released         | 100k G steps                                            |
| dense_diffaug_advaug_released  | 100k G steps, PGD step size 1/255                       |
| ticket_advaug_released         | PGD step size 0 (= PGD-0)                               |
| ticket_diffaug_released        | ticket 100k G steps                                     |
| ticket_diffaug_advaug_released | ticket 100k G steps, PGD step size 0 (= PGD-0)          |

Which produced the published numbers (Table 3), as far as can be known: neither can be
excluded. The paper's text states PGD-1 with step 0.01 and doubled iterations (the paper
reading); the released README commands and JSONs, which the released checkpoint's name matches
(13.42%, DiffAug + AdvAug), run the ``_released`` form. The checkpoint files (Dropbox) and the
training logs are not available here to decide; no issue on the repository discusses it.

LeCam on this protocol (``*_lecam``): google/lecam-gan's BigGAN CIFAR setting, ``--LC 0.3``
(every ``biggan_cifar/scripts/lc-*.sh``), anchor decay 0.9 and start iteration 1000
(``biggan_cifar/train.py`` line 28, ``utils.ema_losses(start_itr=1000)``; ``decay=0.9`` is the
default of ``third_party/utils.py`` ``ema_losses``, line 638), on D; the architecture,
DiffAugment policy, steps and evaluation stay this file's (lecam-gan trains BigGAN-PyTorch with
its own settings):

| variant               | stages     | LeCam on                    | G steps          |
|-----------------------|------------|-----------------------------|------------------|
| dense_lecam           | train      | train                       | 100k             |
| dense_diffaug_lecam   | train      | train, + DiffAugment        | 200k             |
| ticket_diffaug_lecam  | imp,ticket | the ticket, + DiffAugment   | 9 x 100k + 200k  |

No variant argument = ``ticket_diffaug_advaug``, the paper's best BigGAN CIFAR-10 result
(Table 3 "Sparse BigGAN Tickets + DiffAug + AdvAug") and the released checkpoint ("BigGAN,
CIFAR-10, 10% data, 13.42% remaining weights, DiffAug + AdvAug"; 13.42% = 0.8^9).

Common to every variant (the JSON configs; seed_repos.md 1.4, 5.1, 6): class-conditional
BigGAN (G 384 ch from g_conv_dim 96, D 192 ch, hierarchical z of 80 dims, shared class embedding
128, self-attention, projection D, SN in G and D, orthogonal init), hinge loss, Adam 2e-4/2e-4
with betas (0.5, 0.999) and eps 1e-6, 5 D steps per G step, batch 64, EMA 0.9999 from step 1,000
over parameters *and buffers* (StudioGAN's ``ema_`` averages the whole ``state_dict``:
``train.ema_buffers="average"``), random horizontal flips of reals, the first 10% of the
training split (``cifar10_less``: ``np.arange(int(50000 * ratio))``).
FID protocol (seed_repos.md section 7; ``train_eval.py``, ``--eval_type test``): 10,000 samples of
the EMA generator against the 10,000 CIFAR-10 *test* images, every ``--save_every 2000`` steps,
best FID over training. CIFAR-10 needs internet (or a prepared tfds copy) on first use.
"""

from configs import default

#: variant -> released code it follows (VITA-Group/Ultra-Data-Efficient-GAN-Training,
#: folder "BigGAN and DiffAugGAN"; JSONs under configs/CIFAR10_less/).
VARIANTS = {
    "dense": "main.py -c BigGAN.json",
    "dense_advaug": "main.py -c BigGAN_adv.json",
    "dense_diffaug": "main.py -c DiffAugGAN.json",
    "dense_diffaug_advaug": "main.py -c DiffAugGAN_adv.json",
    "imp": "main_impg.py -c BigGAN.json",
    "ticket": "main_impg.py, then main_ompg.py -c BigGAN.json --mask_round 9",
    "ticket_advaug": "main_impg.py, then main_ompg.py -c BigGAN_adv.json --mask_round 9",
    "ticket_diffaug": "main_impg.py, then main_ompg.py -c DiffAugGAN.json --mask_round 9",
    "ticket_diffaug_advaug":
        "main_impg.py, then main_ompg.py -c DiffAugGAN_adv.json --mask_round 9",
    # as released (module docstring): main_ompg.py --steps 0, the JSONs' 100k steps
    "dense_advaug_released": "main.py -c BigGAN_adv.json (defaults --gamma 1/255 --steps 1)",
    "dense_diffaug_released": "main.py -c DiffAugGAN.json (total_step 100000)",
    "dense_diffaug_advaug_released": "main.py -c DiffAugGAN_adv.json (total_step 100000)",
    "ticket_advaug_released": "main_ompg.py -c BigGAN_adv.json --gamma 0.01 (--steps 0)",
    "ticket_diffaug_released": "main_ompg.py -c DiffAugGAN.json (total_step 100000)",
    "ticket_diffaug_advaug_released":
        "main_ompg.py -c DiffAugGAN_adv.json --gamma 0.01 (--steps 0, total_step 100000)",
    # LeCam (google/lecam-gan BigGAN CIFAR: --LC 0.3, decay 0.9, start 1000) on this protocol
    "dense_lecam": "main.py -c BigGAN.json + lecam-gan lc-biggan-cifar10-0.1.sh's LeCam",
    "dense_diffaug_lecam": "main.py -c DiffAugGAN.json + lecam-gan's LeCam",
    "ticket_diffaug_lecam": "main_ompg.py -c DiffAugGAN.json + lecam-gan's LeCam",
}
DEFAULT_VARIANT = "ticket_diffaug_advaug"

NUM_STEPS = 100_000  # "total_step": 100000 in every CIFAR10_less JSON
# Paper section 4: "same as the setting in [DiffAugment], training iterations will be doubled
# when training GANs with DiffAug" (the iteration counts themselves are lost from the text copy
# in ../shared/seeds/001_*). The released DiffAugGAN*.json keep "total_step": 100000; the
# doubled 200k is what the paper states and what StudioGAN's own BigGAN-DiffAug.yaml uses
# (total_steps 200000, seed_repos.md 5.1). Override with --config.train.num_steps /
# --config.ticket.num_steps=100000 to run the JSONs as released.
NUM_STEPS_DIFFAUG = 2 * NUM_STEPS
#: main.py's default --gamma (the PGD step size of a dense AdvAug run as released).
STEP_SIZE_MAIN_DEFAULT = 1 / 255
#: lecam-gan BigGAN CIFAR: --LC 0.3 (scripts/lc-*.sh), ema_losses decay 0.9, start_itr 1000.
LECAM_BIGGAN_CIFAR = {"weight": 0.3, "decay": 0.9, "start": 1000}
DIFFAUG_POLICY = "color,translation,cutout"  # train_eval.py: self.policy, hard-coded
EVAL_EVERY = 2_000  # --save_every 2000: evaluation and checkpoint interval (G steps)
# Headline ticket: --mask_round 9, density 0.8^9 = 13.42% (README commands, released
# checkpoint). Masks m_r are saved per round here, so 9 trained rounds give m_9; the released
# loop `for round_ in range(start_round, 10)` trains 10 rounds because main_ompg.py reads the
# mask from the round-9 checkpoint (model=G-9-best-*.pth), written while round 9 trains.
TICKET_ROUND = 9
IMP_ROUNDS_RELEASED = 10


def _released_advaug(section):
    """AdvAug as ``train_eval.py`` (``conditional_strategy: ProjGAN_adv``) with ``--gamma 0.01``.

    Perturbs D's pooled 192-d feature (input of ``linear1`` + projection) for reals and fakes in
    the D step and G's ``linear0`` output (384x4x4) in the G step; signed-gradient steps of 0.01
    (README ``--gamma 0.01``; paper section 4: "PGD-1 and step size 0.01" on CIFAR), no random
    start, no projection; clean and adversarial losses averaged 50/50 (lam 0.5).

    PGD steps: the paper's PGD-1. NB the released ``main_ompg.py`` defaults to ``--steps 0``
    and the README's ticket commands do not pass ``--steps``, so as released the PGD loop runs
    zero times and the "adversarial" features equal the clean ones (``main.py`` and
    ``main_impg.py`` default to 1). PGD-1 follows the paper; the ``*_released`` variants set
    the step size to 0 instead (module docstring).

    Direction "reference_code": the released PGD ascends ``-mean(relu(1 - D))`` for real *and*
    fake features (``loss_real`` passed for both, train_eval.py line 297) and ``mean D`` on the G
    side, i.e. it raises D's output on every branch, as the SNGAN code does; the one difference
    (samples already past the hinge margin, D > 1, get no perturbation there) is not modelled
    (jaxgan_lth/augment/advaug.py).

    ``augment_adv_branch`` False: in the G step only the clean branch's fakes go through
    DiffAugment; ``fake_images_adv`` reaches D un-augmented (seed_repos.md 1.3, last bullet).
    In the D step reals and fakes are augmented before D either way.
    """
    section.mode = "pgd"
    section.networks = "gd"
    section.num_steps = 1
    section.step_size = 0.01
    section.radius = 0.0
    section.random_start = False
    section.lam = 0.5
    section.direction = "reference_code"
    section.augment_adv_branch = False


def _no_advaug(section):
    section.mode = "none"
    section.augment_adv_branch = False


def get_config(arg=None):
    """BigGAN / CIFAR-10 (10%) config of one variant.

    Args:
      arg: variant name (see ``VARIANTS``); None or "" = ``DEFAULT_VARIANT``.

    Raises:
      ValueError: an unknown variant, naming the accepted ones.
    """
    variant = arg or DEFAULT_VARIANT
    if variant not in VARIANTS:
        raise ValueError(
            f"configs/biggan_cifar10.py: unknown variant {variant!r}; accepted: "
            f"{', '.join(VARIANTS)} (default {DEFAULT_VARIANT})."
        )
    config = default.base_config()

    # ---- data: cifar10_less, the first 10% of the training split, random flips -----------------
    config.data.name = "cifar10"
    config.data.resolution = 32
    config.data.channels = 3
    config.data.subset_fraction = 0.1
    config.data.sampling = "epoch"  # the released code's shuffled DataLoader (no replacement)
    config.data.subset_selection = "first"
    config.data.random_flip = True  # "random_flip_preprocessing": true

    # ---- model and optimisation (the JSONs; models/big_resnet.py) -------------------------------
    config.model.name = "biggan"
    config.model.latent_dim = 80
    config.model.g_channels = 96
    config.model.d_channels = 96
    config.model.conditional = True

    config.train.num_steps = NUM_STEPS
    config.train.n_dis = 5
    config.train.g_batch_size = 64
    config.train.d_batch_size = 64
    config.train.loss = "hinge"
    config.train.g_lr = 2e-4
    config.train.d_lr = 2e-4
    config.train.g_betas = (0.5, 0.999)
    config.train.d_betas = (0.5, 0.999)
    config.train.adam_eps = 1e-6
    config.train.lr_decay = False
    config.train.ema_decay = 0.9999
    config.train.ema_start = 1000
    config.train.ema_buffers = "average"  # utils/biggan_utils.py ema_: the whole state_dict

    # ---- augmentation of dense training and of the IMP rounds: none ------------------------------
    # BigGAN.json ("diff_aug": false, "conditional_strategy": "ProjGAN"); the variants below
    # switch DiffAugment / AdvAug on. IMP without augmentation: paper Algorithm 1 and footnote 1
    # ("we also tried to add augmentations in the lottery ticket finding stage, but did not
    # observe visible impact"). Which JSON the released IMP runs used is not stated (the README's
    # CIFAR-100 DiffAug command reads masks from a folder named diffauggan_cifar100_0.2).
    config.diffaug.policy = ""
    _no_advaug(config.advaug)

    # ---- sparsity and IMP (load_framework_impg.py, utils/prune.py::pruning_generate_sn) --------
    config.sparsity.prune = "g"  # G-only tickets; D reset to its initial weights, dense
    config.sparsity.method = "global"  # one threshold over all G conv weights (incl. attention)
    config.sparsity.g_ratio = 0.2  # 20% of the remaining conv weights per round
    # main_ompg.py reads the mask from the non-EMA G checkpoint (pruning_generate_extract on
    # model=G-<round>-best), and IMP prunes the trained G (`pruning_generate_sn(Gen, 0.2, ...)`).
    config.sparsity.magnitudes = "g"
    config.imp.rounds = TICKET_ROUND
    config.imp.num_steps = NUM_STEPS  # every round trains the full schedule
    config.imp.rewind_step = 0  # model.load_state_dict(initial_weight): theta_0
    config.imp.reset_d = True  # Dis.load_state_dict(initial_D_weight) every round

    # ---- the ticket (load_framework_ompg.py: G = theta_0 * m, D = its initial weights) ---------
    config.ticket.round = TICKET_ROUND
    config.ticket.target_sparsity = 0.0
    config.ticket.mask_workdir = ""
    config.ticket.mask_type = "imp"
    config.ticket.num_steps = NUM_STEPS_DIFFAUG
    config.ticket.diffaug.policy = DIFFAUG_POLICY
    _released_advaug(config.ticket.advaug)

    # ---- evaluation (train_eval.py with --eval_type test; seed_repos.md section 7) -------------
    config.eval.enabled = True
    config.eval.num_samples = 10_000  # num_eval["test"] = len(eval set) = 10,000
    config.eval.reference_split = "test"  # the whole CIFAR-10 test split (10,000 images)
    config.eval.every = EVAL_EVERY  # best FID kept (model=G-*-best-*.pth)
    config.eval.raw_generator = False  # the G_ema is evaluated

    config.log_every = 100
    config.sample_every = 2_000
    config.checkpoint_every = 2_000

    # ---- variants --------------------------------------------------------------------------------
    if variant == "imp":
        # main_impg.py: `for round_ in range(start_round, 10)`, 10 rounds of 100k G steps;
        # masks m_0 .. m_10 (the round trained with m_r is the plain-trained ticket at 0.8^r).
        config.stages = "imp"
        config.imp.rounds = IMP_ROUNDS_RELEASED
        return config

    released = variant.endswith("_released")
    lecam = variant.endswith("_lecam")
    name = variant.removesuffix("_released").removesuffix("_lecam")
    base, _, augs = name.partition("_")  # "dense" | "ticket", then "", "advaug", ...
    diffaug = augs.startswith("diffaug")
    advaug = augs.endswith("advaug")
    policy = DIFFAUG_POLICY if diffaug else ""
    # the released DiffAugGAN*.json: "total_step": 100000; the paper: doubled
    steps = NUM_STEPS_DIFFAUG if diffaug and not released else NUM_STEPS
    if base == "dense":
        config.stages = "train"
        config.train.num_steps = steps
        config.diffaug.policy = policy
        if advaug:
            # No README command for dense AdvAug; main.py defaults to --gamma 1/255, --steps 1.
            # The paper reading uses the step size of the ticket commands and the paper (0.01).
            _released_advaug(config.advaug)
            if released:
                config.advaug.step_size = STEP_SIZE_MAIN_DEFAULT
        if lecam:
            config.lecam.update(LECAM_BIGGAN_CIFAR)
    else:
        config.stages = "imp,ticket"
        config.ticket.num_steps = steps
        config.ticket.diffaug.policy = policy
        if not advaug:
            _no_advaug(config.ticket.advaug)
        elif released:  # main_ompg.py --steps 0: no PGD step; = PGD-1 of step size 0
            config.ticket.advaug.step_size = 0.0
        if lecam:
            config.ticket.lecam.update(LECAM_BIGGAN_CIFAR)
    return config
