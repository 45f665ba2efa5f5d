"""Cost of masking per training iteration: masked vs unmasked step of the same model.

"unmasked" compiles the same iteration with the mask multiplications removed (the masking helper
replaced by the identity at trace time); "masked dense" and "masked 80% sparse" run the real
step with an all-ones mask and with a random mask of density 0.2 on the prunable conv kernels.
Sparsity does not change the time: the weights stay dense arrays with zeros.

    python benchmarks/masking_cost.py [--configs default,sngan_cifar10]
        [--warmup W] [--iters N] [--repeats R]

Timing per :func:`benchmarks.common.timing_protocol` (recorded in every row); rows of configs not
named in ``--configs`` are kept from this machine's existing result file.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common, train_throughput  # noqa: E402
from jaxgan_lth.sparsity import masks as masks_lib  # noqa: E402
from jaxgan_lth.sparsity import pruning  # noqa: E402


def _time(fns, state, masks, data, protocol):
    return common.time_iteration(jax.jit(fns.iteration), fns, state, masks, data, protocol)


def run(name: str, protocol: dict) -> dict:
    """Unmasked, masked-dense and masked-80%-sparse ms per iteration of config ``name``."""
    real_apply = masks_lib.apply
    masks_lib.apply = lambda params, mask: params  # trace the step without masking ops
    try:
        _, fns0, state, masks, data = train_throughput.setup(name)
        t_plain = _time(fns0, state, masks, data, protocol)
    finally:
        masks_lib.apply = real_apply
    config, fns, state, masks, data = train_throughput.setup(name)
    t_dense = _time(fns, state, masks, data, protocol)
    sparse = {n: pruning.random_prune_global(0, state[n]["params"], 0.8) for n in ("g", "d")}
    sparse = jax.tree.map(np.asarray, sparse)
    t_sparse = _time(fns, state, sparse, data, protocol)
    return {"config": name, "model": config.model.name,
            "unmasked_ms": 1e3 * t_plain, "masked_dense_ms": 1e3 * t_dense,
            "masked_sparse80_ms": 1e3 * t_sparse,
            "overhead_pct": 100.0 * (t_dense / t_plain - 1.0),
            "timing": common.protocol_tag(protocol)}


def main():
    args = common.parse_config_args(__doc__)
    info = common.machine()
    names = args.configs.split(",")
    rows = common.previous_rows("masking_cost", info, exclude=names)
    for name in names:
        rows.append(run(name, common.timing_protocol(name, info, args)))
        print(rows[-1], flush=True)
        cols = ["config", "model", "unmasked_ms", "masked_dense_ms", "masked_sparse80_ms",
                "overhead_pct", "timing"]
        table = common.markdown_table(rows, cols)
        print(table)
        print("wrote", common.write_result("masking_cost", info, rows, table))


if __name__ == "__main__":
    main()
