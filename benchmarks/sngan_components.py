"""Where the SNGAN step's time goes: its parts jitted and timed one by one.

Components at batch ``--batch`` (64) of configs/sngan_cifar10.py (G 256 / D 128 channels):
G forward (train mode: batch statistics), G forward + backward (gradient of a scalar of its
output with respect to G's parameters), D forward (train mode: spectral-norm power iteration)
on 2 x batch images, D forward + backward, the nearest x2 upsampling and batch norm of one G
block alone (forward + backward at the 16x16 -> 32x32 block's shape), the spectral-norm power
iteration of all of D's layers alone, one Adam update of G and D, the EMA update of G, and the
whole D and G steps. Each row is ``benchmarks.common.time_calls`` (2 warm-up calls, median of
3 runs of ``--iters`` calls) of its own compiled function, so the rows do not add up to the
step exactly (XLA fuses across them inside the step).

    python benchmarks/sngan_components.py [--batch 64] [--iters 3] [--note TEXT]

Writes ``benchmarks/results/sngan_components_<machine>.{json,md}`` (``--out-tag`` appends a
tag); records ``XLA_FLAGS`` and the load averages.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import common, train_throughput  # noqa: E402
from jaxgan_lth import models  # noqa: E402
from jaxgan_lth.training import updates  # noqa: E402
from jaxgan_lth.models import layers  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--g_channels", type=int, default=256)
    p.add_argument("--d_channels", type=int, default=128)
    p.add_argument("--note", default="")
    p.add_argument("--out-tag", default="")
    args = p.parse_args(argv)
    b = args.batch

    def edit(config):
        config.model.g_channels, config.model.d_channels = args.g_channels, args.d_channels
        config.train.g_batch_size = config.train.d_batch_size = b

    _, fns, state, masks, data = train_throughput.setup("sngan_cifar10", edit=edit)
    pair = models.get_model("sngan", resolution=32, channels=3, g_channels=args.g_channels,
                            d_channels=args.d_channels)
    G, D = pair.generator, pair.discriminator
    key = jax.random.key(0)
    z = jax.random.normal(key, (b, 128))
    x2 = jax.random.uniform(key, (2 * b, 32, 32, 3), minval=-1, maxval=1)
    gv, dv = state["g"], state["d"]
    protocol = {"warmup": 2, "iters": args.iters, "repeats": 3}
    rows = []

    def row(name, fn, *fargs):
        compiled, flops = common.compile_with_flops(jax.jit(fn), *fargs)
        sec = common.time_calls(lambda: compiled(*fargs), **protocol)
        rows.append({"component": name, "ms": sec * 1e3, "GFLOP": flops / 1e9,
                     "GFLOP_per_s": flops / sec / 1e9})
        print(rows[-1], flush=True)

    def g_fwd(gv, z):
        return G.apply(gv, z, train=True, mutable=["batch_stats"])[0]

    def g_fwd_bwd(params, z):
        def loss(p):
            x, _ = G.apply({"params": p, "batch_stats": gv["batch_stats"]}, z, train=True,
                           mutable=["batch_stats"])
            return jnp.mean(x)
        return jax.grad(loss)(params)

    def d_fwd(dv, x):
        return D.apply(dv, x, train=True, mutable=["batch_stats"])[0]

    def d_fwd_bwd(params, x):
        def loss(p):
            out, _ = D.apply({"params": p, "batch_stats": dv["batch_stats"]}, x, train=True,
                             mutable=["batch_stats"])
            return jnp.mean(out)
        return jax.grad(loss)(params)

    def d_input_grad(x):  # what the G step needs from D: gradient w.r.t. the images only
        return jax.grad(lambda xx: jnp.mean(D.apply(dv, xx, train=False)))(x)

    h16 = jax.random.normal(key, (b, 16, 16, args.g_channels))

    def upsample_bn(h):
        bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
        v = bn.init(key, h)

        def f(hh):
            y, _ = bn.apply(v, hh, mutable=["batch_stats"])
            return jnp.sum(layers.upsample2x(nn.relu(y)))
        return jax.grad(f)(h)

    def sn_power(dv):
        def one(w, u):
            w = w.reshape(-1, w.shape[-1])
            v = w @ u.reshape(-1)
            v = v * jax.lax.rsqrt(jnp.sum(v * v) + 1e-12)
            u2 = v @ w
            return u2 * jax.lax.rsqrt(jnp.sum(u2 * u2) + 1e-12)
        flat = jax.tree_util.tree_leaves_with_path(dv["params"])
        return [one(leaf, jnp.ones((leaf.shape[-1],))) for p, leaf in flat
                if jax.tree_util.keystr(p).endswith("['kernel']")]

    tx = updates.make_optimizer(2e-4, (0.0, 0.9), 1e-8, None)

    def adam(params, opt, grads):
        return updates.masked_update(tx, grads, opt, params, masks["g"])

    def ema(e, g):
        return updates.ema_update(e, g, masks["g"], jnp.float32(0.999), jnp.int32(1), 0)

    row("G forward (train)", g_fwd, gv, z)
    row("G forward+backward", g_fwd_bwd, gv["params"], z)
    row("D forward (train, 2B)", d_fwd, dv, x2)
    row("D forward+backward (2B)", d_fwd_bwd, dv["params"], x2)
    row("D input gradient (B, eval)", d_input_grad, x2[:b])
    row("BN+ReLU+upsample x2 fwd+bwd (16->32)", upsample_bn, h16)
    row("SN power iterations of D", sn_power, dv)
    row("Adam update of G (masked)", adam, gv["params"], state["g_opt"], gv["params"])
    row("EMA update of G", ema, state["ema"], gv)
    k = jax.random.key(3)
    row("D step", lambda s: fns.d_step(s, masks, data, k, fns.hparams)[1], state)
    row("G step", lambda s: fns.g_step(s, masks, data, k, fns.hparams)[1], state)
    info = common.machine()
    info.update({"xla_flags": os.environ.get("XLA_FLAGS", ""), "batch": b,
                 "load_avg_after": os.getloadavg(), "note": args.note})
    table = common.markdown_table(rows, ["component", "ms", "GFLOP", "GFLOP_per_s"])
    print(table)
    name = "sngan_components" + (f"_{args.out_tag}" if args.out_tag else "")
    print("wrote", common.write_result(name, info, rows, table))


if __name__ == "__main__":
    main()
