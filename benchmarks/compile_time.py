"""Compile time of one training iteration (trace + lower, then XLA compile) per config.

Wall seconds and the process's CPU seconds (less sensitive to other jobs on a shared machine).

The iteration runs ``n_dis`` D steps; since the engine refactor they are one ``jax.lax.scan``
body instead of ``n_dis`` unrolled copies, which is what this benchmark watches (sngan and
biggan use n_dis = 5). Data are random images of the config's shape, as in
``train_throughput.py``.

    python benchmarks/compile_time.py [--configs default,sngan_cifar10,biggan_cifar10]

Writes ``benchmarks/results/compile_time_<machine>.{json,md}`` (rows merge across runs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

from benchmarks import common, train_throughput  # noqa: E402


def run(name: str, unroll: int = 0) -> dict:
    """One row: seconds to trace and lower, and to compile, the jitted iteration.

    ``unroll`` sets ``train.n_dis_unroll`` (0 = automatic, 1 = a rolled scan).
    """

    def edit(config):
        config.train.n_dis_unroll = unroll

    config, fns, state, masks, data = train_throughput.setup(name, edit=edit)
    t0, c0 = time.perf_counter(), time.process_time()
    lowered = jax.jit(fns.iteration, donate_argnums=(0,)).lower(state, masks, data, fns.hparams)
    t1, c1 = time.perf_counter(), time.process_time()
    lowered.compile()
    t2, c2 = time.perf_counter(), time.process_time()
    return {"config": name, "model": config.model.name, "n_dis": int(config.train.n_dis),
            "trace_lower_s": round(t1 - t0, 2), "compile_s": round(t2 - t1, 2),
            "trace_lower_cpu_s": round(c1 - c0, 2), "compile_cpu_s": round(c2 - c1, 2)}


_MEASURE = """
import json, sys, time
import jax
from benchmarks import train_throughput
config, fns, state, masks, data = train_throughput.setup(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
lowered = jax.jit(fns.iteration, donate_argnums=(0,)).lower(state, masks, data, fns.hparams)
t1, c1 = time.perf_counter(), time.process_time()
lowered.compile()
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"config": sys.argv[1], "model": config.model.name,
                  "n_dis": int(config.train.n_dis), "trace_lower_s": round(t1 - t0, 2),
                  "compile_s": round(t2 - t1, 2), "trace_lower_cpu_s": round(c1 - c0, 2),
                  "compile_cpu_s": round(c2 - c1, 2)}))
"""


def run_other_checkout(repo: str, name: str) -> dict:
    """The same measurement in another checkout of this repository (e.g. a git worktree of an
    older commit), in a subprocess importing that checkout's code."""
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "PYTHONPATH": repo}
    out = subprocess.run([sys.executable, "-c", _MEASURE, name], cwd=repo, env=env,
                         capture_output=True, text=True, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    row["variant"] = f"checkout {commit}"
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="default,sngan_cifar10,biggan_cifar10")
    p.add_argument("--unroll", type=int, default=0,
                   help="train.n_dis_unroll: 0 = automatic (unrolled on CPU), 1 = rolled scan")
    p.add_argument("--label", default="", help="variant name of the rows (default: unroll=N)")
    p.add_argument("--repo", default="",
                   help="measure another checkout instead (e.g. `git worktree add /tmp/old "
                        "2131328`: the code before the n_dis scan)")
    args = p.parse_args()
    info = common.machine()
    rows = []
    for name in args.configs.split(","):
        if args.repo:
            row = run_other_checkout(args.repo, name)
        else:
            row = run(name, args.unroll)
            row["variant"] = args.label or f"n_dis_unroll={args.unroll}"
        print(row, flush=True)
        rows.append(row)
    write(info, rows)


def write(info: dict, rows: list[dict]) -> None:
    """Result files; rows of other (config, variant) pairs from earlier runs are kept."""
    keys = {(r["config"], r.get("variant", "")) for r in rows}
    old = [r for r in common.previous_rows("compile_time", info, exclude=[])
           if (r["config"], r.get("variant", "")) not in keys]
    rows = old + rows
    cols = ["config", "variant", "n_dis", "trace_lower_s", "compile_s", "trace_lower_cpu_s",
            "compile_cpu_s"]
    print(common.write_result("compile_time", info, rows, common.markdown_table(rows, cols)))


if __name__ == "__main__":
    main()
