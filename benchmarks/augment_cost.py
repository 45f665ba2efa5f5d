"""Step time with DiffAugment, AdvAug, LeCam, NICE and MaskedGAN relative to the plain step.

Variants of one training iteration (n_dis D steps + 1 G step) of the same model:
plain; DiffAugment `color,translation,cutout`; AdvAug PGD-1 and PGD-3 on G's first layer and D's
pooled features (paper defaults: step size 0.01, lambda 0.5, no projection); the feature-noise
baseline; LeCam (weight 0.3, from step 0); NICE (adaptive noise in D's last 2 blocks, beta
0.1, with the consistency term: one extra D forward, and noise only); MaskedGAN (shifted
spatial masking, balanced spectral masking, both); ADA (``bgc`` at p = 0.5 with its
controller).

    python benchmarks/augment_cost.py [--configs default,sngan_cifar10] [--variants plain,...]
        [--warmup W] [--iters N] [--repeats R]

Timing per :func:`benchmarks.common.timing_protocol` (recorded in every row). Rows of configs not
named in ``--configs``, and of variants not named in ``--variants``, are kept from this
machine's existing result file, so a slow config or a new variant can be measured in a run of
its own.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks import common, train_throughput  # noqa: E402

VARIANTS = {
    "plain": {},
    "diffaug": {"diffaug.policy": "color,translation,cutout"},
    "advaug_pgd1": {"advaug.mode": "pgd", "advaug.num_steps": 1},
    "advaug_pgd3": {"advaug.mode": "pgd", "advaug.num_steps": 3},
    "noise": {"advaug.mode": "noise"},
    "lecam": {"lecam.weight": 0.3, "lecam.start": 0},
    "nice": {"nice.enabled": True, "nice.beta_init": 0.1},
    "nice_noise_only": {"nice.enabled": True, "nice.beta_init": 0.1, "nice.consistency": False},
    "maskedgan_spatial": {"maskedgan.ops": "spatial"},
    "maskedgan_spectral": {"maskedgan.ops": "spectral"},
    "maskedgan": {"maskedgan.ops": "spatial,spectral"},
    # ADA bgc at a fixed p = 0.5 (every op runs on about half the samples: the cost does not
    # depend on p, the per-sample ops are selected with jnp.where); the controller is on
    "ada": {"ada.pipeline": "bgc", "ada.p_init": 0.5},
}


def _edit(variant):
    def edit(config):
        for path, v in VARIANTS[variant].items():
            section, key = path.split(".")
            config[section][key] = v
    return edit


def run(name: str, protocol: dict, variants=tuple(VARIANTS)) -> list[dict]:
    """One row per variant: ms per iteration and the ratio to the first (plain) iteration."""
    rows, base = [], None
    for variant in variants:
        config, fns, state, masks, data = train_throughput.setup(name, edit=_edit(variant))
        sec = common.time_iteration(jax.jit(fns.iteration), fns, state, masks, data, protocol)
        base = base or sec
        rows.append({"config": name, "model": config.model.name, "variant": variant,
                     "ms_per_it": 1e3 * sec, "relative": sec / base,
                     "timing": common.protocol_tag(protocol)})
        print(rows[-1], flush=True)
    return rows


def main():
    args = common.parse_config_args(__doc__, extra={"--variants": {
        "default": ",".join(VARIANTS), "help": f"comma list, plain first; of {list(VARIANTS)}"}})
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; accepted: {list(VARIANTS)}")
    info = common.machine()
    names = args.configs.split(",")
    # keep the rows this run does not re-measure: other configs, and other variants of these
    # (their ``relative`` stays the ratio to the plain step measured in their own run)
    old = common.previous_rows("augment_cost", info, exclude=[])
    rows = [r for r in old if r["config"] not in names or r["variant"] not in variants]
    order = {v: i for i, v in enumerate(VARIANTS)}
    for name in names:
        rows += run(name, common.timing_protocol(name, info, args), variants)
        rows.sort(key=lambda r: (r["config"] != "sngan_cifar10", r["config"],
                                 order.get(r["variant"], len(order))))
        table = common.markdown_table(
            rows, ["config", "model", "variant", "ms_per_it", "relative", "timing"])
        table += ("\n\ntiming = warm-up calls + timed calls x repeats (median); "
                  "one iteration = n_dis D steps + 1 G step.")
        print(table)
        print("wrote", common.write_result("augment_cost", info, rows, table))


if __name__ == "__main__":
    main()
