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


# ---- the limited-data regime of issue 28 (``shots=N``): the recipe, N images, FID over steps ----
#: G steps of every arm in the regime (the recipe's budget per stage).
REGIME_STEPS = 3000
#: G steps between FID/KID evaluations in the regime (the FID-over-steps curve).
REGIME_EVAL_EVERY = 500


def _parse(arg: str | None) -> dict:
    out = {"fraction": "0.1", "arm": "imp"}
    out.update(default.parse_arg(arg, ("fraction", "shots", "arm", "steps"),
                                 "fraction=0.01,arm=ticket_da"))
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The config of one arm; ``arg`` = ``"fraction=F,arm=A[,steps=N]"``.

    Raises:
      ValueError: an unknown arm (accepted: :data:`ARMS`) or a fraction not in (0, 1].
    """
    a = _parse(arg)
    arm = a["arm"]
    if arm not in ARMS:
        raise ValueError(f"study arm {arm!r}; accepted: {ARMS}.")
    if "shots" in a:
        return _regime_config(arm, a)
    fraction = float(a["fraction"])
    steps = int(a.get("steps", NUM_STEPS))
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"study fraction {fraction}; accepted: a number in (0, 1], e.g. "
                         f"{FRACTIONS}.")
    config = default.base_config()
    config.data.subset_fraction = fraction
    config.imp.rounds = ROUNDS
    _arms(config, arm, steps)
    # FID/KID protocol of the study (the same for every arm and fraction)
    config.eval.num_samples = 1000
    config.eval.reference_split = "test[:2000]"
    config.eval.every = 0
    config.log_every = 100
    config.sample_every = steps
    config.checkpoint_every = 200
    return config


def _regime_config(arm: str, a: dict) -> ml_collections.ConfigDict:
    """The study in issue 28's limited-data regime: ``shots`` images, the CPU recipe.

    The recipe of :func:`configs.default.get_config` (dcgan 32 channels with DCGAN's flattened
    D head, TTUR, EMA 0.995) trained on the first ``shots`` images of the train split for
    ``steps`` (default :data:`REGIME_STEPS`) G steps, FID/KID of 500 EMA samples against the
    first 500 test images and the D-overfitting diagnostic (256 training reals against 256
    test reals) every :data:`REGIME_EVAL_EVERY` G steps, class coverage of 1,000 samples. IMP
    with :data:`ROUNDS` rounds as in the fraction study, DiffAugment :data:`POLICY` with the
    black fill, AdvAug PGD-1 (step size 0.01, lambda 0.5) at G's first layer and D's features.

    Raises:
      ValueError: shots or steps not a positive integer.
    """
    try:
        shots, steps = int(a["shots"]), int(a.get("steps", REGIME_STEPS))
    except ValueError:
        raise ValueError(f"shots={a['shots']!r}, steps={a.get('steps')!r}: accepted positive "
                         "integers.") from None
    if shots < 1 or steps < 1:
        raise ValueError(f"shots={shots}, steps={steps}: accepted positive integers.")
    config = default.get_config()
    config.data.subset_fraction = 0.0
    config.data.subset_count = shots
    config.imp.rounds = ROUNDS
    config.advaug.networks = config.ticket.advaug.networks = "gd"
    _arms(config, arm, steps)
    config.eval.every = REGIME_EVAL_EVERY
    config.sample_every = REGIME_EVAL_EVERY
    config.checkpoint_every = REGIME_EVAL_EVERY
    return config


def _arms(config: ml_collections.ConfigDict, arm: str, steps: int) -> None:
    """Switches on what ``arm`` trains (stage, augmentation, ticket type), 3 seeds each."""
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
