"""Model zoo: generator / discriminator pairs selected by name.

Usage::

    from jaxgan_lth.models import get_model
    G, D = get_model("sngan", resolution=32, channels=3, num_classes=10,
                     latent_dim=128, g_channels=256, d_channels=128, conditional=False)
    g_vars = G.init({"params": key}, z, train=False)            # {"params", "batch_stats"}
    x, g_upd = G.apply(g_vars, z, train=True, mutable=["batch_stats"])
    logits, d_upd = D.apply(d_vars, x, train=True, mutable=["batch_stats"])
    h, d_upd = D.apply(d_vars, x, train=True, method="features", mutable=["batch_stats"])
    logits = D.apply(d_vars, h, method="head")                  # never mutates

Registered models (see each module's docstring for the architecture and its source):

* ``dcgan``  -- small DCGAN-style pair for 28x28 / 32x32 (CPU-friendly), optional conditioning.
* ``sngan``  -- SNGAN CIFAR ResNet of the lottery-ticket code (unconditional, 32x32).
* ``biggan`` -- StudioGAN BigGAN (class-conditional, 32x32).
* ``stylegan2`` -- StyleGAN2 config F (skip G, resnet D; unconditional, 32..1024), NVIDIA's
  stylegan2-ada-pytorch; its G draws noise / style mixing from the ``g_noise`` PRNG stream.

Interface shared by every model:

* Generator ``G(z [B, latent_dim], y [B] int32 | None, train) -> [B, H, W, C]`` float32 in
  [-1, 1]; attributes ``latent_dim``, ``num_classes`` (0 = unconditional). The first layer's output
  goes through ``perturb('g_first', .)``.
* Discriminator ``features(x, y, train) -> [B, F]``, ``head(h, y) -> [B]``,
  ``__call__ = head(perturb('d_features', features(...)), y)``; property ``feature_dim`` = F.
* Compute dtype: every builder takes ``dtype`` (``model.dtype``), ``"float32"`` (default) or
  ``"bfloat16"``: the layers compute in it while parameters, optimizer state, batch-norm
  statistics and spectral-norm state stay float32, and images, features and logits leave the
  model as float32 (:mod:`jaxgan_lth.models.layers`).
* Variables: ``params`` and ``batch_stats`` (BatchNorm statistics and spectral-norm ``u``/``sigma``,
  updated only when ``train=True``). ``perturb`` is skipped in ``init``.
* Prunable conv kernels are exactly the params whose '/'-joined path matches
  :data:`PRUNABLE_KERNEL_REGEX`.
"""

from jaxgan_lth.models.base import D_PERTURB, G_NOISE, G_PERTURB  # noqa: F401
from jaxgan_lth.models.layers import PRUNABLE_KERNEL_REGEX  # noqa: F401
from jaxgan_lth.models.registry import (  # noqa: F401
    ModelPair,
    available_models,
    get_model,
    register_model,
)

# isort: split
# Importing the model modules registers them.
from jaxgan_lth.models import biggan, dcgan, sngan, stylegan2  # noqa: F401

__all__ = [
    "ModelPair",
    "register_model",
    "get_model",
    "available_models",
    "PRUNABLE_KERNEL_REGEX",
    "G_PERTURB",
    "D_PERTURB",
    "G_NOISE",
]
