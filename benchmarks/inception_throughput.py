"""Throughput of FID Inception feature extraction (images/s) through the public API.

Times ``FeatureExtractor.features`` end to end (host uint8 batch -> device -> resize to 299 ->
Inception-v3 -> features back on the host) on random uint8 images, after one warm-up batch per
batch size (compilation excluded). Prints a table and writes JSON + Markdown to
``benchmarks/results/inception_throughput_<machine>.{json,md}`` naming the machine (CPU model
from /proc/cpuinfo, usable cores, JAX backend and device).

Usage::

    python benchmarks/inception_throughput.py [--batch_sizes 50 100] [--num_batches 2]
        [--input_size 256] [--precision highest] [--weights PATH] [--random_weights]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import time

import jax
import numpy as np

from jaxgan_lth.evaluation import features as features_lib
from jaxgan_lth.evaluation import inception_weights as weights_lib

RESULTS_DIR = os.environ.get("JAXGAN_BENCH_RESULTS") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results")


def machine_info() -> dict:
    """CPU model, core counts, JAX backend/devices and versions."""
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    device = jax.devices()[0]
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "jax_backend": jax.default_backend(),
        "jax_device": f"{device.platform}:{getattr(device, 'device_kind', '?')}",
        "num_devices": jax.device_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def machine_tag(info: dict) -> str:
    if info["jax_backend"] == "cpu":
        name = f"cpu_{info['cpu_model']}_{info['usable_cores']}cores"
    else:
        name = f"{info['jax_backend']}_{info['jax_device'].split(':', 1)[1]}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--num_batches", type=int, default=2, help="timed batches per size")
    parser.add_argument("--input_size", type=int, default=256,
                        help="square input resolution (256 = the 100-shot sets; 299 = no resize)")
    parser.add_argument("--precision", default="highest", choices=("highest", "high", "default"))
    parser.add_argument("--weights", default=None, help="weights archive (default: fid-helper)")
    parser.add_argument("--random_weights", action="store_true",
                        help="random weights (no weights file needed; same cost)")
    parser.add_argument("--out_dir", default=RESULTS_DIR)
    args = parser.parse_args()

    weights = (weights_lib.random_inception_weights() if args.random_weights
               else weights_lib.load_inception_weights(args.weights))
    extractor = features_lib.FeatureExtractor(weights=weights, precision=args.precision)
    info = machine_info()
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    rows = []
    for bs in args.batch_sizes:
        images = rng.integers(0, 256, (bs * args.num_batches, args.input_size, args.input_size, 3),
                              dtype=np.uint8)
        start = time.perf_counter()
        extractor.features(images[:bs], batch_size=bs)  # compile + warm-up
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        feats = extractor.features(images, batch_size=bs)
        elapsed = time.perf_counter() - start
        assert feats.shape == (len(images), 2048)
        rows.append({"batch_size": bs, "images": len(images), "seconds": round(elapsed, 3),
                     "images_per_s": round(len(images) / elapsed, 2),
                     "first_batch_with_compile_s": round(compile_s, 2)})
        print(f"batch {bs}: {rows[-1]['images_per_s']} images/s", flush=True)

    result = {
        "benchmark": "FID Inception-v3 feature extraction (FeatureExtractor.features)",
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "input": f"uint8 [{args.input_size}, {args.input_size}, 3] random images, resized to 299",
        "precision": args.precision,
        "weights": "random" if args.random_weights else os.path.basename(weights.path),
        "load_average_1min_before_after": [round(load_before[0], 2),
                                           round(os.getloadavg()[0], 2)],
        "results": rows,
    }
    tag = machine_tag(info)
    os.makedirs(args.out_dir, exist_ok=True)
    json_path = os.path.join(args.out_dir, f"inception_throughput_{tag}.json")
    md_path = os.path.join(args.out_dir, f"inception_throughput_{tag}.md")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    lines = [
        "# FID Inception feature extraction throughput", "",
        f"- Machine: {info['cpu_model']}, {info['usable_cores']} usable cores "
        f"({info['cpu_count']} logical CPUs); JAX {info['jax_version']} backend "
        f"`{info['jax_backend']}` device `{info['jax_device']}`",
        f"- Date (UTC): {result['date_utc']}",
        f"- Input: {result['input']}; precision `{args.precision}`; weights {result['weights']}",
        "- Timed: `FeatureExtractor.features` end to end (host -> device -> features on host), "
        "after one warm-up batch per batch size",
        f"- 1-min load average before/after: {result['load_average_1min_before_after']} "
        "(other processes on the machine share the cores)", "",
        "| batch size | images | seconds | images/s | first batch incl. compile (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['batch_size']} | {r['images']} | {r['seconds']} | {r['images_per_s']} | "
              f"{r['first_batch_with_compile_s']} |" for r in rows]
    table = "\n".join(lines) + "\n"
    with open(md_path, "w") as f:
        f.write(table)
    print(table)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
