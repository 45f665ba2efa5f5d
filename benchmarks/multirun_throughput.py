"""Multi-run throughput: K vmapped runs in one program against the same K runs one after another.

For each config and K, two ways to advance K runs (different seeds) by one iteration each:

* ``sequential``: the single-run compiled iteration (``jax.jit(fns.iteration)``) called K
  times, once per run state;
* ``vmapped``: one call of ``multirun.make_multi_iteration(fns)``
  (``jax.jit(jax.vmap(fns.iteration, in_axes=(0, 0, None, 0)))``) on the stacked states.

Reported: seconds per K-run round, total images/s (real images shown to D by all K runs:
K x n_dis x D batch / seconds) and the speedup of vmapped over sequential. Timing is
``benchmarks.common.time_calls`` (warm-up calls, then the median of 3 timed runs of ``--iters``
rounds). Data are random images of the config's shape on the device, as in
``train_throughput.py``. A config may carry overrides of its ``train`` section, e.g.
``sngan_cifar10:g_batch_size=8,d_batch_size=8,n_dis=1``.

    python benchmarks/multirun_throughput.py [--configs default,sngan_cifar10] [--ks 1,4,8,16]
        [--iters 2] [--skip_on_cpu sngan_cifar10]

Configs named in ``--skip_on_cpu`` are not run when the backend is the CPU (each is written
to the result file as skipped, with the reason given in ``--skip_reason``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import train_throughput  # noqa: E402
from jaxgan_lth import multirun  # noqa: E402


def parse_config_arg(arg: str) -> tuple[str, dict]:
    """``"name:key=value,key=value"`` -> ``(name, {key: int/float value})`` (train overrides)."""
    name, _, rest = arg.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=", 1)
        overrides[key] = float(value) if "." in value else int(value)
    return name, overrides


def setup(name: str, overrides: dict):
    """Config, step functions, synthetic data and a single-run mask for ``name``."""
    import importlib

    if overrides:  # patch get_config so train_throughput.setup sees the overrides
        module = importlib.import_module(f"configs.{name}")
        original = module.get_config

        def patched():
            config = original()
            for key, value in overrides.items():
                config.train[key] = value
            return config

        module.get_config = patched
        try:
            config, fns, state, masks, data = train_throughput.setup(name)
        finally:
            module.get_config = original
    else:
        config, fns, state, masks, data = train_throughput.setup(name)
    return config, fns, masks, data


def run(label: str, name: str, overrides: dict, ks: list[int], iters: int) -> list[dict]:
    """Rows for one config: sequential and vmapped seconds, images/s and speedup per K."""
    config, fns, masks, data = setup(name, overrides)
    tc = config.train
    images_per_it = tc.n_dis * tc.d_batch_size
    init = jax.jit(fns.init)
    single = jax.jit(fns.iteration, donate_argnums=(0,))
    rows = []
    for k in ks:
        t0 = time.perf_counter()
        runs = [multirun.RunSpec(f"seed{s}", s, {}) for s in range(k)]
        seq_states = [init(jax.random.key(s)) for s in range(k)]
        holder = {"seq": seq_states}

        def sequential():
            for i in range(k):
                holder["seq"][i], m = single(holder["seq"][i], masks, data, fns.hparams)
            return m

        sec_seq = common.time_calls(sequential, warmup=1, iters=iters)
        del holder["seq"], seq_states
        states = multirun.stack([init(jax.random.key(s)) for s in range(k)])
        stacked_masks = multirun.stack([masks] * k)
        hparams = multirun.stack_hparams(fns.hparams, runs)
        step = multirun.make_multi_iteration(fns)
        holder["vm"] = states
        del states

        def vmapped():
            holder["vm"], m = step(holder["vm"], stacked_masks, data, hparams)
            return m

        sec_vm = common.time_calls(vmapped, warmup=1, iters=iters)
        del holder["vm"]
        row = {
            "config": label,
            "model": config.model.name,
            "d_batch": tc.d_batch_size,
            "g_batch": tc.g_batch_size,
            "n_dis": tc.n_dis,
            "K": k,
            "seq_s_per_round": sec_seq,
            "vmap_s_per_round": sec_vm,
            "seq_images_per_s": k * images_per_it / sec_seq,
            "vmap_images_per_s": k * images_per_it / sec_vm,
            "speedup": sec_seq / sec_vm,
            "timed_iters": iters,
            "wall_s_incl_compile": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        print(row, flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="default,sngan_cifar10")
    p.add_argument("--ks", default="1,4,8,16")
    p.add_argument("--iters", type=int, default=2, help="rounds per timed run (3 runs)")
    p.add_argument("--skip_on_cpu", default="", help="configs not run on a CPU backend")
    p.add_argument("--skip_reason", default="too slow on this CPU")
    p.add_argument("--note", default="", help="free text written into the result file")
    args = p.parse_args()
    info = common.machine()
    ks = [int(k) for k in args.ks.split(",")]
    skip = set(filter(None, args.skip_on_cpu.split(","))) if info["backend"] == "cpu" else set()
    load_before = os.getloadavg()
    t0 = time.time()
    rows, skipped = [], []
    for arg in args.configs.split(","):
        name, overrides = parse_config_arg(arg)
        if arg in skip or name in skip:
            skipped.append(arg)
            continue
        rows += run(arg, name, overrides, ks, args.iters)
    cols = ["config", "model", "d_batch", "g_batch", "n_dis", "K", "seq_s_per_round",
            "vmap_s_per_round", "seq_images_per_s", "vmap_images_per_s", "speedup",
            "wall_s_incl_compile"]
    table = common.markdown_table(rows, cols)
    notes = [
        f"- Total wall time {time.time() - t0:.0f} s; 1/5/15-min load average before "
        f"{[round(x, 2) for x in load_before]}, after {[round(x, 2) for x in os.getloadavg()]} "
        "(other processes share the cores).",
        f"- K runs differ in seed; timing = median of 3 runs of {args.iters} rounds after 1 "
        "warm-up round (benchmarks/common.time_calls); images/s = K x n_dis x D batch / s.",
    ]
    notes += [f"- Skipped on this backend: {s} ({args.skip_reason})." for s in skipped]
    if args.note:
        notes.append(f"- {args.note}")
    text = "\n".join(notes) + "\n\n" + table
    print(text)
    info = dict(info, notes=notes)
    print("wrote", common.write_result("multirun_throughput", info, rows, text))


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before timing anything
    main()
