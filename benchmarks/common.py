"""Shared benchmark helpers: machine description, peak FLOP/s estimate, timing, result files."""

from __future__ import annotations

import json
import os
import platform
import time

import jax

#: Folder of the result files: ``$JAXGAN_BENCH_RESULTS`` when set (benchmarks/device_check.py
#: points it at its run folder), else benchmarks/results.
RESULTS = os.environ.get("JAXGAN_BENCH_RESULTS") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results")

# Dense FP32 peak per device. CPU: cores x clock x FLOPs/cycle; AMD Zen 2-4 and Intel AVX2
# cores issue two 256-bit FMAs per cycle = 32 FP32 FLOPs/cycle. GPUs: vendor FP32 (non-tensor)
# figures, the fair ceiling for the FP32 convolutions these models run.
GPU_PEAK_FP32 = {"H100": 67e12, "H200": 67e12, "A100": 19.5e12, "V100": 15.7e12}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cpu_mhz() -> float:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1])
    except OSError:
        pass
    return 0.0


def machine() -> dict:
    """Backend, device kind and count, CPU model, cores; the machine named in result files."""
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "num_devices": jax.device_count(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_mhz": round(_cpu_mhz()),
        "jax": jax.__version__,
        # None = the backend's default (on GPUs: TF32 for float32 convolutions and matmuls)
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
    }


def peak_flops() -> float:
    """Estimated dense FP32 peak FLOP/s of all local devices (see GPU_PEAK_FP32)."""
    if jax.default_backend() == "cpu":
        return (os.cpu_count() or 1) * _cpu_mhz() * 1e6 * 32
    kind = jax.devices()[0].device_kind
    for name, peak in GPU_PEAK_FP32.items():
        if name in kind:
            return peak * jax.local_device_count()
    return float("nan")


def compile_with_flops(jitted, *args):
    """``(compiled, flops)``: the executable for ``args`` and the FLOPs of one call from XLA's
    cost analysis (nan if unavailable). Calling ``compiled`` avoids a second compilation."""
    compiled = jitted.lower(*args).compile()
    try:
        cost = compiled.cost_analysis()
        if isinstance(cost, list):
            cost = cost[0]
        flops = float(cost.get("flops", float("nan")))
    except Exception:  # cost analysis is best-effort on some backends
        flops = float("nan")
    return compiled, flops


def time_calls(fn, warmup: int, iters: int, repeats: int = 3) -> float:
    """Seconds per call of ``fn()`` (which returns something to block on): ``warmup`` untimed
    calls, then the median over ``repeats`` runs of ``iters`` calls each."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = fn()
        jax.block_until_ready(out)
        runs.append((time.perf_counter() - t0) / iters)
    return sorted(runs)[len(runs) // 2]


def slug(info: dict) -> str:
    """A short file-name tag for the machine, e.g. ``cpu-2core`` or ``gpu-H100x1``."""
    if info["backend"] == "cpu":
        return f"cpu-{info['cpu_cores']}core"
    return f"{info['backend']}-{info['device_kind'].replace(' ', '_')}x{info['num_devices']}"


def previous_rows(name: str, info: dict, exclude: list[str], key: str = "config") -> list[dict]:
    """Rows of ``results/<name>_<machine>.json`` whose ``key`` is not in ``exclude``.

    Lets a benchmark re-run one config (e.g. a slow model on its own) without losing the
    rows of the others; notes stored in the old file's machine block are carried over too.
    """
    path = os.path.join(RESULTS, f"{name}_{slug(info)}.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        old = json.load(f)
    for field, value in old.get("machine", {}).items():
        if field not in ("backend", "device_kind", "num_devices", "cpu", "cpu_cores",
                         "cpu_mhz", "jax", "jax_default_matmul_precision"):
            info.setdefault(field, value)
    return [r for r in old["rows"] if r.get(key) not in exclude]


def write_result(name: str, info: dict, rows: list[dict], table: str) -> str:
    """Writes ``results/<name>_<machine>.json`` and ``.md``; returns the JSON path."""
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, f"{name}_{slug(info)}")
    with open(base + ".json", "w") as f:
        json.dump({"machine": info, "rows": rows}, f, indent=2)
    with open(base + ".md", "w") as f:
        f.write(f"# {name}\n\nMachine: {json.dumps(info)}\n\n{table}\n")
    return base + ".json"


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows of dicts as a GitHub markdown table over ``columns``."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def time_iteration(step, fns, state, masks, data, protocol: dict) -> float:
    """Seconds per call of a jitted ``step(state, masks, data, fns.hparams)`` iteration,
    threading the returned state through the calls (state buffers may be donated).

    The step is compiled ahead of time first, so ``protocol["warmup"]`` may be 0 without the
    compilation landing in the timing; ``protocol`` is ``{"warmup", "iters", "repeats"}``
    (see :func:`timing_protocol`).
    """
    compiled = step.lower(state, masks, data, fns.hparams).compile()
    holder = {"state": state}

    def call():
        holder["state"], metrics = compiled(holder["state"], masks, data, fns.hparams)
        return metrics

    return time_calls(call, **protocol)


def parse_config_args(doc: str, default_configs: str = "default,sngan_cifar10",
                      extra: dict | None = None):
    """``--configs`` (comma-separated config names), and ``--warmup``, ``--iters``,
    ``--repeats`` (-1 = the :func:`timing_protocol` default) of the per-config step
    benchmarks; ``extra`` maps more option names to ``add_argument`` keyword dicts."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, kwargs in (extra or {}).items():
        p.add_argument(flag, **kwargs)
    p.add_argument("--configs", default=default_configs)
    p.add_argument("--warmup", type=int, default=-1, help="untimed calls after compiling")
    p.add_argument("--iters", type=int, default=-1, help="timed calls per repeat")
    p.add_argument("--repeats", type=int, default=-1, help="repeats; the median is reported")
    return p.parse_args()


def protocol_tag(protocol: dict) -> str:
    """``"W+NxR"``: the ``timing`` column of result rows (warm-up calls + timed calls x
    repeats)."""
    return "{warmup}+{iters}x{repeats}".format(**protocol)


def timing_protocol(name: str, info: dict, args=None) -> dict:
    """``{"warmup", "iters", "repeats"}`` for config ``name``: 2 warm-up calls and the median of
    3 runs of 20 calls; for the paper models on a CPU (a minute or more per iteration) one
    timed call right after compiling. Values >= 0 in ``args`` override the defaults."""
    fast = name == "default" or info["backend"] != "cpu"
    protocol = {"warmup": 2, "iters": 20, "repeats": 3} if fast else \
        {"warmup": 0, "iters": 1, "repeats": 1}
    for field in protocol:
        value = getattr(args, field, -1) if args is not None else -1
        if value >= 0:
            protocol[field] = value
    return protocol
