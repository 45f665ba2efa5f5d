"""Training throughput: G-iterations/s, images/s, model FLOPs per iteration, fraction of peak.

One iteration = n_dis D steps + 1 G step at the config's batch sizes (SNGAN: D 64 / G 128,
n_dis 5; BigGAN: 64 / 64, n_dis 5; default: 64 / 64, n_dis 1; ``stylegan2_fewshot``: the
DiffAugment paper's 256x256 StyleGAN2, 16 / 16, n_dis 1, R1 every step). images/s counts real
images shown to D: iterations/s x n_dis x D batch. FLOPs come from XLA's cost analysis of the
compiled iteration; the peak is the dense FP32 estimate of benchmarks/common.py. Each row
records the 1-minute load average at its end (above the core count: other jobs shared the CPU).
Data are random images of the config's shape kept on the device (the loop's own layout), so
the figure is the step's speed, independent of a data set download.

    python benchmarks/train_throughput.py [--configs default,sngan_cifar10,biggan_cifar10,
        stylegan2_fewshot]
        [--warmup W] [--iters N] [--repeats R] [--batch B] [--set KEY=VALUE ...]

``--configs`` takes ``NAME[:VARIANT]`` (e.g. ``stylegan2_fewshot:diffaug_ada``, the config's
``get_config(VARIANT)``); ``--set KEY=VALUE`` (repeatable) overrides config values (YAML
scalars: ``--set model.dtype=bfloat16 --set diffaug.policy=''``) and is recorded in the
rows. ``s_per_kimg`` = seconds per 1,000 real images shown to D (StyleGAN2's kimg).

Timing per :func:`benchmarks.common.timing_protocol` (recorded in every row); rows of configs not
named in ``--configs`` are kept from this machine's existing result file.
"""

from __future__ import annotations

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxgan_lth import models  # noqa: E402
from jaxgan_lth.training import step as step_lib  # noqa: E402
from jaxgan_lth.sparsity import masks as masks_lib  # noqa: E402


def load_config(config_name: str):
    """``configs/NAME.py``'s ``get_config()``, or ``get_config(VARIANT)`` for ``NAME:VARIANT``."""
    name, _, variant = config_name.partition(":")
    module = importlib.import_module(f"configs.{name}")
    return module.get_config(variant) if variant else module.get_config()


def apply_overrides(config, overrides: list[str]) -> None:
    """Sets ``KEY=VALUE`` items (dotted keys, YAML scalar values) on ``config`` in place.

    Raises:
        ValueError: an item without ``=``, or a key the config does not have.
    """
    import yaml

    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise ValueError(f"--set {item!r}: the config has no key {key!r}")
        value = yaml.safe_load(text)
        node[leaf] = "" if value is None else value


def setup(config_name: str, num_classes: int = 10, n_images: int | None = None, edit=None):
    """Step functions, state, dense masks and synthetic data for one config.

    ``config_name`` is ``NAME`` or ``NAME:VARIANT`` (:func:`load_config`). ``edit(config)`` may
    change the config first (e.g. switch augmentations on). ``n_images`` random training images
    (default: 100 for the image-folder configs, the 100-shot sets, so that 256x256 data stay
    small; 5,000 otherwise).
    """
    config = load_config(config_name)
    if edit is not None:
        edit(config)
    if n_images is None:
        n_images = 100 if config.data.name == "folder" else 5000
    r, c = config.data.resolution, config.data.channels
    ncls = num_classes if config.model.conditional else 0
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    pair = models.get_model(config.model.name, resolution=r, channels=c, num_classes=ncls,
                            **kwargs)
    fns = step_lib.make_step_fns(config, pair.generator, pair.discriminator,
                              image_shape=(r, r, c), num_classes=ncls, num_real=n_images)
    key = jax.random.key(0)
    data = {"images": jax.random.uniform(key, (n_images, r, r, c), minval=-1.0, maxval=1.0),
            "labels": jax.random.randint(key, (n_images,), 0, max(ncls, 1))}
    state = jax.jit(fns.init)(key)
    masks = {n: masks_lib.ones_like(state[n]["params"]) for n in ("g", "d")}
    return config, fns, state, masks, data


def run(config_name: str, protocol: dict, batch: int = 0, overrides=()) -> dict:
    """One row: iterations/s, images/s, s/kimg, FLOPs per iteration and fraction of peak.

    ``batch`` > 0 replaces the config's D and G batch sizes (the row says so in its batch
    columns): StyleGAN2 at 256x256 and batch 16 needs ~28 GB of temporary memory on a CPU.
    ``overrides``: ``KEY=VALUE`` items (:func:`apply_overrides`).
    """
    def edit(config):
        apply_overrides(config, list(overrides))
        if batch > 0:
            config.train.d_batch_size = config.train.g_batch_size = batch

    config, fns, state, masks, data = setup(config_name, edit=edit)
    step, flops = common.compile_with_flops(
        jax.jit(fns.iteration, donate_argnums=(0,)), state, masks, data, fns.hparams)
    holder = {"state": state}

    def call():
        holder["state"], m = step(holder["state"], masks, data, fns.hparams)
        return m

    sec = common.time_calls(call, **protocol)
    tc = config.train
    return {
        "config": row_key(config_name, overrides),
        "model": config.model.name,
        "d_batch": tc.d_batch_size,
        "g_batch": tc.g_batch_size,
        "n_dis": tc.n_dis,
        "G_it_per_s": 1.0 / sec,
        "images_per_s": tc.n_dis * tc.d_batch_size / sec,
        "s_per_kimg": 1000.0 * sec / (tc.n_dis * tc.d_batch_size),
        "GFLOP_per_it": flops / 1e9,
        "TFLOP_per_s": flops / sec / 1e12,
        "frac_of_peak": flops / sec / common.peak_flops(),
        "timing": common.protocol_tag(protocol),
        "load_1min": round(os.getloadavg()[0], 2),  # > cores: other jobs shared the CPU
    }


def row_key(config_name: str, overrides=()) -> str:
    """The ``config`` column: the name, then the overrides (``NAME[:VARIANT] [K=V ...]``)."""
    return " ".join([config_name, *overrides])


def main():
    args = common.parse_config_args(
        __doc__, "default,sngan_cifar10,biggan_cifar10",
        extra={"--batch": {"type": int, "default": 0,
                           "help": "D and G batch in place of each config's own (0: theirs)"},
               "--set": {"action": "append", "default": [], "metavar": "KEY=VALUE",
                         "help": "config override, repeatable"}})
    info = common.machine()
    names = args.configs.split(",")
    rows = common.previous_rows("train_throughput", info,
                                exclude=[row_key(n, args.set) for n in names])
    for name in names:
        protocol = common.timing_protocol(name.split(":")[0], info, args)
        rows.append(run(name, protocol, args.batch, args.set))
        print(rows[-1], flush=True)
        write(info, rows)  # after every config: a slow model cannot lose the others' rows


def write(info: dict, rows: list[dict]) -> None:
    """Prints the table and writes it to ``benchmarks/results/train_throughput_<machine>``."""
    cols = ["config", "model", "d_batch", "g_batch", "n_dis", "G_it_per_s", "images_per_s",
            "s_per_kimg", "GFLOP_per_it", "TFLOP_per_s", "frac_of_peak", "timing", "load_1min"]
    table = common.markdown_table(rows, cols)
    table += f"\n\nPeak FP32 estimate: {common.peak_flops():.3g} FLOP/s."
    print(table)
    print("wrote", common.write_result("train_throughput", info, rows, table))


if __name__ == "__main__":
    main()
