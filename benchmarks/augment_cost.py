"""Step time with DiffAugment and AdvAug relative to the plain step.

Variants of one training iteration (n_dis D steps + 1 G step) of the same model:
plain; DiffAugment `color,translation,cutout`; AdvAug PGD-1 and PGD-3 on G's first layer and D's
pooled features (paper defaults: step size 0.01, lambda 0.5, no projection); the feature-noise
baseline.

    python benchmarks/augment_cost.py [--configs default,sngan_cifar10] [--iters N]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks import common, train_throughput  # noqa: E402

VARIANTS = {
    "plain": {},
    "diffaug": {"policy": "color,translation,cutout"},
    "advaug_pgd1": {"mode": "pgd", "num_steps": 1},
    "advaug_pgd3": {"mode": "pgd", "num_steps": 3},
    "noise": {"mode": "noise"},
}


def _edit(variant):
    def edit(config):
        for k, v in VARIANTS[variant].items():
            if k == "policy":
                config.diffaug.policy = v
            else:
                config.advaug[k] = v
    return edit


def run(name: str, iters: int) -> list[dict]:
    rows, base = [], None
    for variant in VARIANTS:
        config, fns, state, masks, data = train_throughput.setup(name, edit=_edit(variant))
        sec = common.time_iteration(jax.jit(fns.iteration), fns, state, masks, data, iters)
        base = base or sec
        rows.append({"config": name, "model": config.model.name, "variant": variant,
                     "ms_per_it": 1e3 * sec, "relative": sec / base})
        print(rows[-1], flush=True)
    return rows


def main():
    args = common.parse_config_args(__doc__)
    info = common.machine()
    rows = []
    for name in args.configs.split(","):
        iters = args.iters or common.default_iters(name, info)
        rows += run(name, iters)
    table = common.markdown_table(rows, ["config", "model", "variant", "ms_per_it", "relative"])
    print(table)
    print("wrote", common.write_result("augment_cost", info, rows, table))


if __name__ == "__main__":
    main()
