"""Parity of the Flax StyleGAN2 with NVIDIA's stylegan2-ada-pytorch modules (weights copied over).

Needs ``torch`` (CPU) and a checkout of NVlabs/stylegan2-ada-pytorch named by
``$STYLEGAN2_ADA_DIR`` (the folder holding ``training/`` and ``torch_utils/``); skipped when
either is missing. The reference's custom CUDA ops are switched to their reference paths.

A tiny pair (32 px, channel_base 256, 16-channel caps, z = w = 8, 2 mapping layers) is built on
both sides, the torch weights are perturbed, copied into the flax variables (kernels to
``[kh, kw, in, out]``; the upsampling convs spatially flipped, since the reference runs them as
true convolutions; D's ``fc`` rows permuted from NCHW to NHWC flattening) and G (truncation psi
0.7 on the first 3 ws, const noise) and D (one batch of 4 = one minibatch-stddev group) are
compared. Measured on the 2-core development machine (stylegan2-ada-pytorch d72cc7d, torch 2.13
CPU): max |diff| 3.1e-6 (G, outputs ~0.7) and 2.1e-7 (D logits ~0.1). Asserted: 1e-4.
"""

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
REF = os.environ.get("STYLEGAN2_ADA_DIR", "")
pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(REF, "training")),
    reason="set STYLEGAN2_ADA_DIR to a stylegan2-ada-pytorch checkout")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402

from jaxgan_lth.models import get_model  # noqa: E402

RES, BASE, CAP, ZD = 32, 256, 16, 8


@pytest.fixture(scope="module")
def ref():
    sys.path.insert(0, REF)
    from torch_utils.ops import bias_act, upfirdn2d
    from training import networks

    upfirdn2d._init = lambda: False  # the reference (pure torch) paths
    bias_act._init = lambda: False
    torch.manual_seed(0)
    g = networks.Generator(z_dim=ZD, c_dim=0, w_dim=ZD, img_resolution=RES, img_channels=3,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=BASE, channel_max=CAP)).eval()
    d = networks.Discriminator(c_dim=0, img_resolution=RES, img_channels=3, channel_base=BASE,
                               channel_max=CAP, architecture="resnet",
                               epilogue_kwargs=dict(mbstd_group_size=4)).eval()
    with torch.no_grad():
        for p in list(g.parameters()) + list(d.parameters()):
            p.add_(0.1 * torch.randn_like(p))  # biases, strengths away from their zero init
        g.mapping.w_avg.normal_()
    return g, d


def _np(t):
    return t.detach().numpy()


def _set(flat, key, value):
    assert flat[key].shape == value.shape, (key, flat[key].shape, value.shape)
    flat[key] = np.array(value)  # a copy (0-d stays 0-d)


def test_generator_matches_reference(ref):
    gt, _ = ref
    G, _ = get_model("stylegan2", resolution=RES, channels=3, latent_dim=ZD, g_channels=CAP,
                     d_channels=CAP, channel_base=BASE, mapping_layers=2)
    v = G.init(jax.random.key(0), jnp.zeros((1, ZD)), train=False)
    p = traverse_util.flatten_dict(jax.device_get(v["params"]), sep="/")
    s = traverse_util.flatten_dict(jax.device_get(v["batch_stats"]), sep="/")
    sd = {k: _np(t) for k, t in gt.state_dict().items()}
    for i in range(2):
        _set(p, f"mapping_net/linear{i}/kernel", sd[f"mapping.fc{i}.weight"].T)
        _set(p, f"mapping_net/linear{i}/bias", sd[f"mapping.fc{i}.bias"])
    _set(s, "mapping_net/w_avg", sd["mapping.w_avg"])
    for r in (4, 8, 16, 32):
        t, j = f"synthesis.b{r}.", f"blocks_b{r}/"
        if r == 4:
            _set(p, j + "const", sd[t + "const"].transpose(1, 2, 0))
        for c in (["conv1"] if r == 4 else ["conv0", "conv1"]):
            w = sd[t + c + ".weight"].transpose(2, 3, 1, 0)
            _set(p, j + c + "/kernel", w[::-1, ::-1] if c == "conv0" else w)
            for a, b in (("bias", "bias"), ("noise_strength", "noise_strength")):
                _set(p, j + c + "/" + a, sd[t + c + "." + b])
            _set(s, j + c + "/noise_const", sd[t + c + ".noise_const"])
            _set(p, j + c + "/linear_affine/kernel", sd[t + c + ".affine.weight"].T)
            _set(p, j + c + "/linear_affine/bias", sd[t + c + ".affine.bias"])
        _set(p, j + "conv_rgb/kernel", sd[t + "torgb.weight"].transpose(2, 3, 1, 0))
        _set(p, j + "conv_rgb/bias", sd[t + "torgb.bias"])
        _set(p, j + "conv_rgb/linear_affine/kernel", sd[t + "torgb.affine.weight"].T)
        _set(p, j + "conv_rgb/linear_affine/bias", sd[t + "torgb.affine.bias"])
    v = {"params": traverse_util.unflatten_dict(p, sep="/"),
         "batch_stats": traverse_util.unflatten_dict(s, sep="/")}
    z = np.random.default_rng(1).standard_normal((3, ZD)).astype(np.float32)
    with torch.no_grad():
        want = _np(gt(torch.tensor(z), None, truncation_psi=0.7, truncation_cutoff=3,
                      noise_mode="const")).transpose(0, 2, 3, 1)
    got = G.apply(v, jnp.asarray(z), method="generate", psi=0.7, cutoff=3, noise_mode="const")
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


def test_discriminator_matches_reference(ref):
    _, dt = ref
    _, D = get_model("stylegan2", resolution=RES, channels=3, latent_dim=ZD, g_channels=CAP,
                     d_channels=CAP, channel_base=BASE, mapping_layers=2)
    v = D.init(jax.random.key(0), jnp.zeros((4, RES, RES, 3)), train=False)
    p = traverse_util.flatten_dict(jax.device_get(v["params"]), sep="/")
    sd = {k: _np(t) for k, t in dt.state_dict().items()}
    for r in (32, 16, 8):
        names = [("conv0", "conv0"), ("conv1", "conv1"), ("skip", "conv_skip")]
        names += [("fromrgb", "conv_rgb")] if r == RES else []
        for tn, jn in names:
            _set(p, f"blocks_b{r}/{jn}/kernel", sd[f"b{r}.{tn}.weight"].transpose(2, 3, 1, 0))
            if tn != "skip":
                _set(p, f"blocks_b{r}/{jn}/bias", sd[f"b{r}.{tn}.bias"])
    _set(p, "conv/kernel", sd["b4.conv.weight"].transpose(2, 3, 1, 0))
    _set(p, "conv/bias", sd["b4.conv.bias"])
    fc = sd["b4.fc.weight"]  # [out, C*4*4] over NCHW flattening -> [4*4*C, out] over NHWC
    c4 = fc.shape[0]
    _set(p, "linear_fc/kernel", fc.reshape(c4, -1, 4, 4).transpose(2, 3, 1, 0).reshape(-1, c4))
    _set(p, "linear_fc/bias", sd["b4.fc.bias"])
    _set(p, "linear_out/kernel", sd["b4.out.weight"].T)
    _set(p, "linear_out/bias", sd["b4.out.bias"])
    x = np.random.default_rng(2).standard_normal((4, 3, RES, RES)).astype(np.float32)
    with torch.no_grad():
        want = _np(dt(torch.tensor(x), None))[:, 0]
    got = D.apply({"params": traverse_util.unflatten_dict(p, sep="/")},
                  jnp.asarray(x.transpose(0, 2, 3, 1)), train=False)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)
