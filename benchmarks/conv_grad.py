"""Kernel gradient of a convolution: XLA's transposed convolution vs one matmul per tap.

For each shape (batch, output size, channels, kernel, stride) of the project's models, times
``d loss / d kernel`` of an NHWC convolution computed two ways, alternating in one process:

* ``xla``: ``jax.vjp`` of ``jax.lax.conv_general_dilated`` w.r.t. the kernel (what JAX emits);
* ``matmul``: ``jaxgan_lth.models.conv_ops._kernel_grad_matmul`` (``kh * kw`` matmuls of strided
  slices of the padded input with the cotangent), the CPU path of ``conv_ops.conv2d``;

and the ratio ``xla / matmul`` (> 1: the matmuls are faster), with the largest relative
difference of the two results. ``conv_ops.MATMUL_GRAD_MIN_ROWS`` is chosen from these rows.

    python benchmarks/conv_grad.py [--repeats 5] [--note TEXT]

Writes ``benchmarks/results/conv_grad_<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxgan_lth.models import conv_ops  # noqa: E402

#: ``(where it occurs, B, H_in, Cin, Cout, k, stride, padding)``.
SHAPES = (
    ("SNGAN G conv2 at 32x32", 64, 32, 256, 256, 3, 1, 1),
    ("SNGAN G conv2 at 16x16", 64, 16, 256, 256, 3, 1, 1),
    ("SNGAN G conv2 at 8x8", 64, 8, 256, 256, 3, 1, 1),
    ("SNGAN G shortcut 1x1 at 32x32", 64, 32, 256, 256, 1, 1, 0),
    ("SNGAN D conv at 32x32", 64, 32, 128, 128, 3, 1, 1),
    ("SNGAN D conv at 16x16", 64, 16, 128, 128, 3, 1, 1),
    ("SNGAN D pooled conv 4x4/2 at 32x32", 64, 32, 128, 128, 4, 2, 1),
    ("dcgan D conv 4x4/2 at 16x16", 64, 16, 64, 128, 4, 2, 1),
    ("dcgan G conv at 14x14", 64, 14, 128, 64, 3, 1, 1),
)


def _fns(b, h, cin, cout, k, s, p):
    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.normal(size=(b, h, h, cin)), "float32")
    w = jax.numpy.asarray(rng.normal(size=(k, k, cin, cout)) * 0.02, "float32")
    pads = ((p, p), (p, p))

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (s, s), pads,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    g = jax.numpy.asarray(rng.normal(size=conv(x, w).shape), "float32")
    xla = jax.jit(lambda x, g: jax.vjp(lambda v: conv(x, v), w)[1](g)[0])
    mm = jax.jit(lambda x, g: conv_ops._kernel_grad_matmul(x, g, w.shape, (s, s), pads, None))
    a, c = np.asarray(xla(x, g)), np.asarray(mm(x, g))
    err = float(np.abs(a - c).max() / np.abs(a).max())
    return (lambda: xla(x, g).block_until_ready()), (lambda: mm(x, g).block_until_ready()), \
        err, g.shape[0] * g.shape[1] * g.shape[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--note", default="")
    a = ap.parse_args(argv)
    info = common.machine()
    info["load_before"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    if a.note:
        info["note"] = a.note
    rows = []
    for where, b, h, cin, cout, k, s, p in SHAPES:
        xla, mm, err, positions = _fns(b, h, cin, cout, k, s, p)
        times = {"xla": [], "matmul": []}
        for r in range(a.repeats):
            for name, fn in (("xla", xla), ("matmul", mm)) if r % 2 == 0 else \
                    (("matmul", mm), ("xla", xla)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        tx, tm = statistics.median(times["xla"]), statistics.median(times["matmul"])
        rows.append({"shape": where, "B": b, "H_in": h, "Cin": cin, "Cout": cout,
                     "kernel": k, "stride": s, "B_OH_OW": positions, "xla_ms": 1e3 * tx,
                     "matmul_ms": 1e3 * tm, "ratio_xla_over_matmul": tx / tm,
                     "max_rel_diff": err, "uses_matmul": k == 1 or
                     positions >= conv_ops.MATMUL_GRAD_MIN_ROWS})
        print(rows[-1], flush=True)
    info["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    info["repeats"] = a.repeats
    cols = ["shape", "B_OH_OW", "xla_ms", "matmul_ms", "ratio_xla_over_matmul", "max_rel_diff",
            "uses_matmul"]
    table = common.markdown_table(rows, cols)
    print(table)
    print("wrote", common.write_result("conv_grad", info, rows, table))


if __name__ == "__main__":
    main()
