"""Cost of one DST mask update (prune and grow) and its share of training time.

For each config: the compiled training iteration and the compiled mask update
(:func:`jaxgan_lth.sparsity.dst.make_update`, G by gradient, D at random, both networks
explored so every leaf's sort runs) are timed side by side on the same state, at the config's
``dst`` densities with ERK masks. The share of training time is
``t_update / (update_frequency * t_iteration + t_update)`` at the config's default
``dst.update_frequency`` (the host-side drop counts, mask saving and density table of the stage
are not included: they are measured separately as ``host_ms``: :func:`drop_counts` and the
copy of the masks to the host).

    python benchmarks/dst_cost.py [--configs default,sngan_cifar10] [--warmup W] [--iters N]
        [--repeats R]

Timing per :func:`benchmarks.common.timing_protocol` (recorded in every row); rows of configs not
named in ``--configs`` are kept from this machine's existing result file.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common, train_throughput  # noqa: E402
from jaxgan_lth.stages import dst as dst_stage  # noqa: E402
from jaxgan_lth.sparsity import dst as dst_lib  # noqa: E402


def run(name: str, protocol: dict) -> dict:
    """ms per iteration, ms per mask update and the update's share at the default frequency."""
    def edit(config):
        if "dst" not in config:  # paper configs without the section: the default's values
            from configs import default
            config.dst = default.get_config().dst
        config.dst.explore = "gd"
        config.dst.d_density = min(float(config.dst.d_density), 0.5)

    config, fns, state, _, data = train_throughput.setup(name, edit=edit)
    like = jax.eval_shape(fns.init, jax.random.key(0))
    masks = dst_stage.initial_masks(config, like, seed=0)
    state = dst_lib.zero_outside(state, masks, fns.optimizers)
    masks = jax.tree.map(jax.numpy.asarray, masks)
    t_iter = common.time_iteration(jax.jit(fns.iteration), fns, state, masks, data, protocol)
    update = jax.jit(dst_lib.make_update(fns, {"g": config.dst.g_growth,
                                               "d": config.dst.d_growth}))
    host = jax.device_get(masks)
    counts = {n: dst_lib.drop_counts(host[n], 0.25) for n in ("g", "d")}
    key = jax.random.key(1)
    compiled = update.lower(state, masks, data, key, counts, fns.hparams).compile()
    t_update = common.time_calls(
        lambda: compiled(state, masks, data, key, counts, fns.hparams), **protocol)
    t0 = time.perf_counter()
    for _ in range(5):
        host = jax.tree.map(np.asarray, jax.device_get(masks))
        {n: dst_lib.drop_counts(host[n], 0.25) for n in ("g", "d")}
    t_host = (time.perf_counter() - t0) / 5
    freq = int(config.dst.update_frequency)
    return {"config": name, "model": config.model.name, "g_density": config.dst.g_density,
            "d_density": config.dst.d_density, "iteration_ms": 1e3 * t_iter,
            "update_ms": 1e3 * t_update, "host_ms": 1e3 * t_host,
            "update_over_iteration": t_update / t_iter, "update_frequency": freq,
            "share_pct": 100.0 * (t_update + t_host) / (freq * t_iter + t_update + t_host),
            "timing": common.protocol_tag(protocol)}


def main():
    args = common.parse_config_args(__doc__)
    info = common.machine()
    names = args.configs.split(",")
    rows = common.previous_rows("dst_cost", info, exclude=names)
    for name in names:
        rows.append(run(name, common.timing_protocol(name, info, args)))
        print(rows[-1], flush=True)
        cols = ["config", "model", "g_density", "d_density", "iteration_ms", "update_ms",
                "host_ms", "update_over_iteration", "update_frequency", "share_pct", "timing"]
        table = common.markdown_table(rows, cols)
        print(table)
        print("wrote", common.write_result("dst_cost", info, rows, table))


if __name__ == "__main__":
    main()
