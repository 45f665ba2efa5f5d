"""The few-shot study of issue 28: StyleGAN2 (CPU preset) on N-shot subsets of the 100-shot sets.

The seeds' few-shot claims (DiffAugment, Zhao et al. NeurIPS 2020, Table 3 / Fig. 1: DiffAugment
far better than no augmentation at 100-shot; ADA, Karras et al. NeurIPS 2020; the lottery
paper, Chen et al. NeurIPS 2021, Table 5: a ticket + DiffAugment + AdvAug beats the dense
network) hold where D memorises the few real images. This config puts the CPU preset of
``configs/stylegan2_fewshot.py`` (32x32, batch 16, lazy R1, 3,000 G steps = 48 kimg) in that
regime on a 2-core CPU by training on ``SHOTS`` (25) images of a 100-shot folder: 48 kimg are
1,920 epochs of 25 images, and the other 75 images of the folder are held out
(``data.heldout_split = "rest"``), so D's accuracy on training reals against held-out reals
shows the memorising. FID/KID: ``eval.num_samples`` (500) EMA samples against all 100 images of
the folder (the folder is the reference: the held-out 75 make it a test of generalisation as
well as of fit), every ``EVAL_EVERY`` G steps, so the FID-over-steps curve shows a rise after
its best where the baseline overfits.

One study = one folder ROOT per 100-shot set with one workdir per *arm*
(``launch/study_fewshot.sh FOLDER ROOT`` runs them in order, 3 seeds each, at equal G steps,
and writes each arm's digest when it finishes):

================  ========  ===================================================================
arm               stage     what it trains
================  ========  ===================================================================
baseline          imp       no augmentation; IMP with one round: round 0 is the **baseline**
                            row, and its mask m_1 (20% of G's weights pruned by magnitude after
                            the baseline's training, rewound to theta_0) is the ticket
diffaug           train     DiffAugment ``color,translation,cutout`` (the paper's 100-shot
                            policy)
ada               train     ADA ``bgc``, target 0.6, interval 4; ``ada.kimg`` = ``ADA_KIMG``
                            (see below)
ticket_da         ticket    the ticket m_1 of ``baseline`` + DiffAugment
ticket_da_adv     ticket    the same ticket + DiffAugment + AdvAug PGD-1 (step size 0.01 at
                            D's pooled features and G's first layer, ``reference_code`` signs,
                            as ``configs/stylegan2_fewshot.py:ticket``)
================  ========  ===================================================================

Choices (ours, each a constant below):

* The ticket is one round of IMP, i.e. one-shot magnitude pruning of the baseline's trained G
  at 20% (density 0.8), rewound to theta_0 (Chen et al. §3, Algorithm 1 with R = 1). One round
  because it reuses the baseline arm's training: the ticket costs no training beyond the arms,
  which keeps both studies inside issue 28's 12-hour budget on 2 cores. IMP against one-shot and
  random tickets is tested in the Fashion-MNIST study (``configs/study_fashion_mnist.py``).
* ``ADA_KIMG``: stylegan2-ada-pytorch moves p by 1 in 500 kimg (``ada_kimg``) for runs of
  thousands of kimg; in a 48-kimg run that would cap p near 0.1, so ADA could not respond.
  Here p can move by 1 in 10 kimg (a fifth of the run), the same order as the reference's
  speed relative to its early training, where few-shot p saturates.
* Subsets: ``subset_selection = "random"`` with ``subset_seed`` 0 (DiffAugment's loader rule),
  the same 25 images for every arm and seed; seeds 0, 1, 2 change the initialisation, the
  latents and the batches.

Usage (the launcher passes the same)::

    python -m jaxgan_lth.main --config=configs/study_fewshot.py:arm=ticket_da \\
      --config.data.folder=DIR/100-shot-obama --config.ticket.imp_workdir=ROOT/baseline \\
      --workdir=ROOT/ticket_da
"""

import ml_collections

from configs import default, stylegan2_fewshot
from jaxgan_lth import parts

ARMS = ("baseline", "diffaug", "ada", "ticket_da", "ticket_da_adv")
SEEDS = "0,1,2"
SHOTS = 25  # training images drawn from the 100 of a folder; the other 75 are held out
NUM_STEPS = 3000  # G steps of every arm (48 kimg at batch 16): the CPU preset's budget
EVAL_EVERY = 500  # G steps between FID/KID evaluations (the FID-over-steps curve)
POLICY = "color,translation,cutout"  # DiffAugment's 100-shot policy (Zhao et al. §5.2)
ADA_KIMG = 10.0  # kimg for ADA's p to move by 1 (reference 500; see the module docstring)


def _parse(arg: str | None) -> dict:
    out = {"arm": "baseline", "shots": str(SHOTS), "steps": str(NUM_STEPS)}
    out.update(default.parse_arg(arg, tuple(out), "arm=ticket_da"))
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The config of one arm; ``arg`` = ``"arm=A[,shots=N][,steps=S]"``.

    Raises:
      ValueError: an unknown arm (accepted: :data:`ARMS`), or shots / steps not a positive
        integer.
    """
    a = _parse(arg)
    arm = a["arm"]
    if arm not in ARMS:
        raise ValueError(f"study arm {arm!r}; accepted: {ARMS}.")
    try:
        shots, steps = int(a["shots"]), int(a["steps"])
    except ValueError:
        raise ValueError(f"shots={a['shots']!r}, steps={a['steps']!r}: accepted positive "
                         "integers.") from None
    if shots < 1 or steps < 1:
        raise ValueError(f"shots={shots}, steps={steps}: accepted positive integers.")
    config = stylegan2_fewshot.get_config("cpu")
    config.diffaug.policy = ""
    # ---- data: N images of the folder train, the rest are held out ----
    config.data.allow_folder_subset = True
    config.data.subset_fraction = 0.0
    config.data.subset_count = shots
    config.data.subset_selection = "random"
    config.data.subset_seed = 0
    config.data.heldout_split = "rest"
    # ---- budget and evaluation ----
    config.train.num_steps = config.imp.num_steps = config.ticket.num_steps = steps
    config.eval.every = EVAL_EVERY
    config.sample_every = EVAL_EVERY
    config.checkpoint_every = EVAL_EVERY
    # ---- the ticket (the lottery paper's few-shot pipeline, one IMP round) ----
    config.sparsity.prune = "g"
    config.imp.rounds = 1
    config.ticket.diffaug = parts.DiffAugment.default_config(policy=POLICY)
    config.ticket.advaug.mode = "none"
    config.ticket.advaug.networks = "gd"
    config.ticket.advaug.num_steps = 1
    config.ticket.advaug.step_size = 0.01
    config.ticket.advaug.direction = "reference_code"
    stage = {"baseline": "imp", "diffaug": "train", "ada": "train"}.get(arm, "ticket")
    config.stages = stage
    config.sweep.stages = stage
    config.sweep.seeds = SEEDS
    config.sweep.strategy = "loop"
    if arm == "diffaug":
        config.diffaug.policy = POLICY
    elif arm == "ada":
        config.ada = parts.ADA.default_config("bgc")
        config.ada.kimg = ADA_KIMG
    elif arm == "ticket_da_adv":
        config.ticket.advaug.mode = "pgd"
    return config
