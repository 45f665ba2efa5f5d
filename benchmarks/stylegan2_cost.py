"""StyleGAN2 costs: the modulated conv's two formulations, and one training iteration at 32 px.

1. ``modconv``: forward + backward (w.r.t. input, weight and styles) of one modulated,
   demodulated 3x3 conv, ``[8, 32, 32, 128] -> 128`` channels, computed as
   ``sg2_ops.modulated_conv2d`` does (scale the input, one shared-weight conv, scale the
   output) and as the reference's "fused" path (per-sample kernels, one grouped convolution
   with ``feature_group_count = B``), side by side.
2. ``iteration``: one iteration (1 D step + 1 G step, non-saturating loss, batch 8 for D and
   G) of a small StyleGAN2 at 32 px (channel_base 4096, 128-channel cap, 2 mapping layers):
   plain, + R1 every step (gamma 1), + path length every step (weight 2).

    python benchmarks/stylegan2_cost.py [--warmup W] [--iters N] [--repeats R]

Timing: compiled ahead of time, then the median of ``repeats`` runs of ``iters`` calls.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxgan_lth.models import sg2_ops as ops  # noqa: E402


def grouped_modconv(x, w, s):
    """The "fused" modulated conv: B per-sample demodulated kernels, one grouped conv."""
    b, h, wd, cin = x.shape
    ww = w[None] * s[:, None, None, :, None]  # [B, k, k, Cin, Cout]
    ww = ww * jax.lax.rsqrt(jnp.sum(ww ** 2, axis=(1, 2, 3), keepdims=True) + ops.EPS)
    kernel = jnp.transpose(ww, (1, 2, 3, 0, 4)).reshape(3, 3, cin, b * w.shape[-1])
    xg = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h, wd, b * cin)
    y = jax.lax.conv_general_dilated(xg, kernel, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     feature_group_count=b)
    return jnp.transpose(y.reshape(h, wd, b, -1), (2, 0, 1, 3))


def modconv_rows(protocol):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 32, 32, 128)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 128, 128)), jnp.float32)
    s = jnp.asarray(rng.uniform(0.5, 1.5, (8, 128)), jnp.float32)
    fns = {"input_scaling (ours)": lambda x, w, s: ops.modulated_conv2d(x, w, s),
           "grouped (fused)": grouped_modconv}
    np.testing.assert_allclose(fns["grouped (fused)"](x, w, s),
                               fns["input_scaling (ours)"](x, w, s), rtol=2e-3, atol=2e-4)
    rows = []
    for name, f in fns.items():
        g = jax.jit(jax.grad(lambda x, w, s, f=f: jnp.sum(f(x, w, s) ** 2), argnums=(0, 1, 2)))
        compiled = g.lower(x, w, s).compile()
        sec = common.time_calls(lambda c=compiled: c(x, w, s), **protocol)
        rows.append({"bench": "modconv", "variant": name, "ms": 1e3 * sec})
    rows[1]["ratio_to_ours"] = rows[1]["ms"] / rows[0]["ms"]
    return rows


def iteration_rows(protocol, tmp):
    from jaxgan_lth import parts
    from jaxgan_lth.training import loop
    from tests.helpers import make_image_folder, tiny_config

    folder = make_image_folder(os.path.join(tmp, "imgs"), n=16, size=32, channels=3)
    rows = []
    for variant in ("plain", "r1", "pathlen"):
        config = tiny_config(folder, resolution=32, channels=3)
        config.model.name = "stylegan2"
        config.model.latent_dim = 128
        config.model.g_channels = config.model.d_channels = 128
        config.model.channel_base = 4096
        config.model.mapping_layers = 2
        config.train.loss = "nonsaturating"
        config.train.n_dis = 1
        config.train.g_batch_size = config.train.d_batch_size = 8
        if variant == "r1":
            config.r1 = parts.R1.default_config(1.0)
        if variant == "pathlen":
            config.pathlen = parts.PathLength.default_config(2.0)
            config.pathlen.interval = 1
        engine = loop.build_engine(config, tmp)
        state = loop.initial_state(engine, 0)
        masks = loop.dense_masks(state)
        sec = common.time_iteration(jax.jit(engine.fns.iteration), engine.fns, state, masks,
                                    engine.data, protocol)
        rows.append({"bench": "iteration_32px", "variant": variant, "ms": 1e3 * sec})
    for r in rows[1:]:
        r["ratio_to_ours"] = r["ms"] / rows[0]["ms"]
    return rows


def main():
    """Runs both benchmarks and writes ``results/stylegan2_cost_<machine>.{json,md}``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--note", default="", help="e.g. the machine's load while measuring")
    args = p.parse_args()
    protocol = {"warmup": args.warmup, "iters": args.iters, "repeats": args.repeats}
    import tempfile

    info = common.machine()
    if args.note:
        info["note"] = args.note
    with tempfile.TemporaryDirectory() as tmp:
        rows = modconv_rows(protocol) + iteration_rows(protocol, tmp)
    for r in rows:
        r["timing"] = common.protocol_tag(protocol)
    table = common.markdown_table(rows, ["bench", "variant", "ms", "ratio_to_ours", "timing"])
    print(table)
    print(common.write_result("stylegan2_cost", info, rows, table))


if __name__ == "__main__":
    main()
