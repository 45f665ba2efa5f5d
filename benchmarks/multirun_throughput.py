"""Multi-run throughput: K runs in one compiled program against the same K runs one by one.

For each config and K, three ways to advance K runs (seeds 0..K-1) by one iteration each:

* ``sequential``: the single-run compiled iteration (``jax.jit(fns.iteration)``) called K
  times, once per run state (K separate runs);
* ``vmap``: one call of ``run_axis.RunAxis(fns, K, "vmap")``
  (``jax.jit(jax.vmap(fns.iteration, in_axes=(0, 0, None, 0)))``) on the stacked states;
* ``loop``: one call of ``run_axis.RunAxis(fns, K, "loop")`` (the single-run step once per run,
  the CPU choice of ``config.sweep.strategy``; its overhead over ``sequential`` is the
  Python dispatch). Since the engine refactor the loop strategy keeps per-run states and no
  longer slices a stacked state, so rows measured before it include slicing.

Reported: seconds per round (every run one iteration), total images/s (real images shown to D
by all K runs: K x n_dis x D batch / seconds) and the speedup over sequential. Timing is
``benchmarks.common.time_calls``: ``--warmup`` rounds (the first one compiles), then the median
of ``--repeats`` timed runs of ``--iters`` rounds. Data are random images of the config's shape
on the device, as in ``train_throughput.py``. A config may carry overrides of its ``train``
section, e.g. ``sngan_cifar10:g_batch_size=8,d_batch_size=8,n_dis=1``.

    python benchmarks/multirun_throughput.py [--configs default,sngan_cifar10] [--ks 1,4,8,16]
        [--warmup 1] [--iters 2] [--repeats 3] [--modes sequential,vmap,loop]
        [--skip_on_cpu sngan_cifar10] [--note TEXT]

Configs named in ``--skip_on_cpu`` are not run when the backend is the CPU (written to the
result file as skipped, with ``--skip_reason``). Rows of configs not measured in this run are
kept from this machine's existing result file, with their notes; this run's notes are added
under a line naming its configs.
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
from jaxgan_lth.training import run_axis  # noqa: E402


def split_configs(arg: str) -> list[str]:
    """``"default,sngan_cifar10:g_batch_size=8,n_dis=1"`` -> ``["default",
    "sngan_cifar10:g_batch_size=8,n_dis=1"]``: a ``key=value`` item belongs to the config
    before it.

    Raises:
      ValueError: an override before any config, or a config with no ``configs/<name>.py``.
    """
    out: list[str] = []
    for item in filter(None, arg.split(",")):
        if "=" in item and ":" not in item:
            if not out:
                raise ValueError(f"--configs {arg!r}: override {item!r} before any config name")
            out[-1] += "," + item
        else:
            out.append(item)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for label in out:
        name = label.partition(":")[0]
        if not os.path.exists(os.path.join(here, "configs", f"{name}.py")):
            raise ValueError(f"--configs: no config {name!r} (no configs/{name}.py)")
    return out


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


MODES = ("sequential", "vmap", "loop")


def seconds_per_round(mode: str, k: int, fns, masks, data, protocol: dict) -> float:
    """Seconds to advance K runs (seeds 0..K-1) by one iteration each, in ``mode``."""
    init = jax.jit(fns.init)
    holder = {}
    if mode == "sequential":
        single = jax.jit(fns.iteration, donate_argnums=(0,))
        holder["s"] = [init(jax.random.key(s)) for s in range(k)]

        def call():
            for i in range(k):
                holder["s"][i], m = single(holder["s"][i], masks, data, fns.hparams)
            return m

    else:
        axis = run_axis.RunAxis(fns, k, mode)  # K = 1 runs as one program whatever the mode
        holder["s"] = axis.join([init(jax.random.key(s)) for s in range(k)])
        if axis.strategy == "vmap":
            masks_in, hparams_in = run_axis.stack([masks] * k), run_axis.stack([fns.hparams] * k)
        else:
            masks_in, hparams_in = [masks] * k, [fns.hparams] * k

        def call():
            holder["s"], m = axis(holder["s"], masks_in, data, hparams_in)
            return m

    return common.time_calls(call, **protocol)


def run(label: str, name: str, overrides: dict, ks: list[int], protocol: dict,
        modes: list[str]) -> list[dict]:
    """Rows for one config: seconds per round, images/s and speedups per K and mode."""
    config, fns, masks, data = setup(name, overrides)
    tc = config.train
    images_per_it = tc.n_dis * tc.d_batch_size
    rows = []
    for k in ks:
        t0 = time.perf_counter()
        row = {"config": label, "model": config.model.name, "d_batch": tc.d_batch_size,
               "g_batch": tc.g_batch_size, "n_dis": tc.n_dis, "K": k}
        for mode in modes:
            sec = seconds_per_round(mode, k, fns, masks, data, protocol)
            row[f"{mode}_s"] = sec
            row[f"{mode}_img_s"] = k * images_per_it / sec
        for mode in modes:
            if mode != "sequential" and "sequential" in modes:
                row[f"{mode}_speedup"] = row["sequential_s"] / row[f"{mode}_s"]
        row["timing"] = common.protocol_tag(protocol)
        row["wall_s_incl_compile"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(row, flush=True)
    return rows


def grouped_conv_check(k: int = 4, reps: int = 5) -> dict:
    """Why vmap may be slow: one 3x3 conv (64x14x14x128 -> 128) per run, K separate vs vmapped.

    ``jax.vmap`` over per-run weights turns every convolution into a grouped convolution
    (``feature_group_count = K``); this times its forward pass and its weight gradient against
    K calls of the plain convolution (ms per K convolutions).
    """
    from jax import lax

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def loss(w, x):
        return jnp.sum(conv(x, w) ** 2)

    x = jax.random.normal(jax.random.key(0), (k, 64, 14, 14, 128))
    w = jax.random.normal(jax.random.key(1), (k, 3, 3, 128, 128)) * 0.05
    fwd, grad = jax.jit(conv), jax.jit(jax.grad(loss))
    fwd_v, grad_v = jax.jit(jax.vmap(conv)), jax.jit(jax.vmap(jax.grad(loss)))
    ms = lambda fn: 1e3 * common.time_calls(fn, warmup=1, iters=reps)  # noqa: E731
    return {
        "K": k,
        "forward_separate_ms": ms(lambda: [fwd(x[i], w[i]) for i in range(k)]),
        "forward_vmapped_ms": ms(lambda: fwd_v(x, w)),
        "weight_grad_separate_ms": ms(lambda: [grad(w[i], x[i]) for i in range(k)]),
        "weight_grad_vmapped_ms": ms(lambda: grad_v(w, x)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="default,sngan_cifar10")
    p.add_argument("--ks", default="1,4,8,16")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds (the first compiles)")
    p.add_argument("--iters", type=int, default=2, help="rounds per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    p.add_argument("--modes", default=",".join(MODES), help=f"subset of {MODES}")
    p.add_argument("--skip_on_cpu", default="", help="configs not run on a CPU backend")
    p.add_argument("--skip_reason", default="too slow on this CPU")
    p.add_argument("--note", default="", help="free text written into the result file")
    p.add_argument("--no_conv_check", action="store_true", help="skip grouped_conv_check")
    args = p.parse_args()
    info = common.machine()
    ks = [int(k) for k in args.ks.split(",")]
    skip = set(filter(None, args.skip_on_cpu.split(","))) if info["backend"] == "cpu" else set()
    load_before = os.getloadavg()
    t0 = time.time()
    protocol = {"warmup": args.warmup, "iters": args.iters, "repeats": args.repeats}
    labels = split_configs(args.configs)
    rows, skipped = common.previous_rows("multirun_throughput", info, exclude=labels), []
    old_notes = info.pop("notes", [])
    info.pop("grouped_conv_check", None)
    for arg in labels:
        name, overrides = parse_config_arg(arg)
        if arg in skip or name in skip:
            skipped.append(arg)
            continue
        rows += run(arg, name, overrides, ks, protocol, args.modes.split(","))
    modes = args.modes.split(",")
    cols = ["config", "model", "d_batch", "g_batch", "n_dis", "K"]
    cols += [f"{m}_img_s" for m in modes] + [f"{m}_speedup" for m in modes if m != "sequential"]
    cols += [f"{m}_s" for m in modes] + ["timing", "wall_s_incl_compile"]
    table = common.markdown_table(rows, cols)
    notes = [
        f"- Run of {time.strftime('%Y-%m-%d')} with --configs {args.configs} --ks {args.ks} "
        f"--modes {args.modes}:",
        f"- Total wall time {time.time() - t0:.0f} s; 1/5/15-min load average before "
        f"{[round(x, 2) for x in load_before]}, after {[round(x, 2) for x in os.getloadavg()]} "
        f"({os.cpu_count()} cores; a load above that means other processes shared them).",
        f"- K runs differ in seed; timing = median of {args.repeats} runs of {args.iters} "
        f"rounds after {args.warmup} warm-up round(s) (benchmarks/common.time_calls); "
        "images/s = K x n_dis x D batch / s; *_s = seconds per round (every run one "
        "iteration); speedup = sequential_s / mode_s.",
    ]
    notes += [f"- Skipped on this backend: {s} ({args.skip_reason})." for s in skipped]
    conv = None if args.no_conv_check else grouped_conv_check()
    print(conv, flush=True)
    notes += [] if conv is None else [
        f"- Grouped-convolution check (grouped_conv_check: one 3x3 conv 64x14x14x128 -> 128 "
        f"per run, K = {conv['K']}): forward {conv['forward_separate_ms']:.0f} ms as K separate "
        f"convs vs {conv['forward_vmapped_ms']:.0f} ms vmapped (grouped); weight gradient "
        f"{conv['weight_grad_separate_ms']:.0f} vs {conv['weight_grad_vmapped_ms']:.0f} ms."
    ]
    if args.note:
        notes.append(f"- {args.note}")
    notes = old_notes + notes
    text = "\n".join(notes) + "\n\n" + table
    print(text)
    info = dict(info, notes=notes)
    print("wrote", common.write_result("multirun_throughput", info, rows, text))


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before timing anything
    main()
