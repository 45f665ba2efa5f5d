"""The lottery-paper study at equal G-step budget on Fashion-MNIST (issue 14; docs/results.md).

Chen et al., NeurIPS 2021 (``../shared/seeds/001_*``, Tables 1-3) claim an ordering at an equal
training budget: dense < IMP ticket < ticket + DiffAugment < ticket + DiffAugment + AdvAug, with
the largest gains when data are scarcest, and IMP tickets better than random or one-shot (OMP)
pruned ones. This config tests that on the CPU default networks (dcgan, 28x28 grayscale) with
1% or 10% of the Fashion-MNIST train split, 3 seeds per method, every method trained
``NUM_STEPS`` G steps from the same theta_0 of its seed. DiffAugment fills translated-in and
cut-out pixels with black (``FILL``), the background of the data, not the reference's mid-grey.

One study = one folder ROOT with one workdir per *arm* (``launch/study.sh`` runs them in order
and then ``python -m jaxgan_lth.report``):

===============  =========  ========================================================
arm              stage      what it trains (3 seeds each, NUM_STEPS G steps)
===============  =========  ========================================================
imp              imp        IMP, ``ROUNDS`` rounds of 20%; round 0 is the **dense** row
dense_da         train      dense + DiffAugment
dense_da_adv     train      dense + DiffAugment + AdvAug
ticket           ticket     the IMP ticket (density 0.8^ROUNDS), no augmentation
ticket_random    ticket     random ticket with the IMP ticket's per-layer densities
ticket_omp       ticket     one-shot magnitude ticket (from round 0's trained weights)
ticket_da        ticket     IMP ticket + DiffAugment
ticket_da_adv    ticket     IMP ticket + DiffAugment + AdvAug
===============  =========  ========================================================

The ticket arms take masks, theta_0 and round 0 from ``ROOT/imp`` (``ticket.imp_workdir``, set
by the launcher), so the IMP runs once per seed and every ticket of seed s is rewound to the
theta_0 of seed s. FID/KID protocol: 1,000 generated images of the EMA generator against the
first 2,000 images of the test split, once at the end of every run (and of every IMP round).

Usage (the launcher passes the same)::

    python -m jaxgan_lth.main \\
      --config=configs/study_fashion_mnist.py:fraction=0.01,arm=ticket_da \\
      --config.ticket.imp_workdir=ROOT/imp --workdir=ROOT/ticket_da
"""

import ml_collections

from configs import default

ARMS = ("imp", "dense_da", "dense_da_adv", "ticket", "ticket_random", "ticket_omp",
        "ticket_da", "ticket_da_adv")
FRACTIONS = (0.01, 0.1)
SEEDS = "0,1,2"
NUM_STEPS = 600  # G steps of every method (the equal budget; the default pipeline's too)
ROUNDS = 3  # IMP rounds: the ticket has density 0.8^3 = 0.512 (sparsity 48.8%, paper Table 1)
POLICY = "translation,cutout"  # DiffAugment policy of the default ticket (see docs/results.md)
# DiffAugment's fill of translated-in and cut-out pixels: black, the data's background. With the
# reference's mid-grey (0) the 1% study's DiffAugment runs drew grey borders (a leak; the leak
# table of docs/results.md at commit 5cfbe8e: border grey level 0.14-0.20 vs 0.06 without).
FILL = -1.0


def _parse(arg: str | None) -> dict:
    out = {"fraction": "0.1", "arm": "imp"}
    for item in (arg or "").split(","):
        if item.strip():
            if "=" not in item:
                raise ValueError(f"config argument item {item!r}: expected key=value with keys "
                                 "fraction, arm, steps (e.g. 'fraction=0.01,arm=ticket_da').")
            k, v = (x.strip() for x in item.split("=", 1))
            if k not in ("fraction", "arm", "steps"):
                raise ValueError(f"config argument key {k!r}; accepted: fraction, arm, steps.")
            out[k] = v
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The config of one arm; ``arg`` = ``"fraction=F,arm=A[,steps=N]"``.

    Raises:
      ValueError: an unknown arm (accepted: :data:`ARMS`) or a fraction not in (0, 1].
    """
    a = _parse(arg)
    arm, fraction = a["arm"], float(a["fraction"])
    steps = int(a.get("steps", NUM_STEPS))
    if arm not in ARMS:
        raise ValueError(f"study arm {arm!r}; accepted: {ARMS}.")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"study fraction {fraction}; accepted: a number in (0, 1], e.g. "
                         f"{FRACTIONS}.")
    config = default.base_config()
    config.data.subset_fraction = fraction
    config.imp.rounds = ROUNDS
    config.imp.num_steps = steps
    config.train.num_steps = steps
    config.ticket.num_steps = steps
    # every arm starts without augmentation; the arm switches on its own below
    config.ticket.diffaug.policy = ""
    config.ticket.advaug.mode = "none"
    stage = {"imp": "imp", "dense_da": "train", "dense_da_adv": "train"}.get(arm, "ticket")
    config.stages = stage
    config.sweep.stages = stage
    config.sweep.seeds = SEEDS
    config.sweep.strategy = "loop"  # CPUs: one compiled run after the other (loop.py)
    config.diffaug.fill = FILL
    config.ticket.diffaug.fill = FILL
    if arm in ("dense_da", "dense_da_adv"):
        config.diffaug.policy = POLICY
        if arm == "dense_da_adv":
            config.advaug.mode = "pgd"
    if stage == "ticket":
        config.ticket.mask_type = {"ticket_random": "random_like",
                                   "ticket_omp": "omp"}.get(arm, "imp")
        if arm in ("ticket_da", "ticket_da_adv"):
            config.ticket.diffaug.policy = POLICY
        if arm == "ticket_da_adv":
            config.ticket.advaug.mode = "pgd"
    # FID/KID protocol of the study (the same for every arm and fraction)
    config.eval.num_samples = 1000
    config.eval.reference_split = "test[:2000]"
    config.eval.every = 0
    config.log_every = 100
    config.sample_every = steps
    config.checkpoint_every = 200
    return config
