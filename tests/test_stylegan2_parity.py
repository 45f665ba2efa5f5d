"""Parity of the Flax StyleGAN2 with NVIDIA's stylegan2-ada-pytorch modules (weights copied over).

Always (no torch, no checkout needed): the committed fixture ``fixtures/stylegan2_ada_tiny.npz``,
written by ``fixtures/make_stylegan2_fixture.py`` from stylegan2-ada-pytorch ``d72cc7d``
(torch 2.13 CPU, the reference's pure-torch op paths, fp32), holds a tiny perturbed G and D
(32 px, channel_base 256, 16-channel caps, z = w = 8, 2 mapping layers) as plain arrays, their
inputs and the reference's outputs (mapping ws, G images, one upsampling ``SynthesisLayer``,
D logits); see that script's docstring. It is read with ``numpy.load(allow_pickle=False)``.

Optionally, with ``torch`` installed and ``$STYLEGAN2_ADA_DIR`` naming a checkout (the folder
holding ``training/`` and ``torch_utils/``), the same arrays are rebuilt from the live
reference modules (the ``live`` cases; skipped otherwise) and the committed fixture is checked
to be what the script writes.

The weights are copied into the flax variables (kernels to ``[kh, kw, in, out]``; the
upsampling convs spatially flipped, since the reference runs them as true convolutions; D's
``fc`` rows permuted from NCHW to NHWC flattening); G uses truncation psi 0.7 on the first 3
ws and the const noise buffers, D one batch of 4 = one minibatch-stddev group. Measured on the
2-core development machine: max |diff| 3.1e-6 (G, outputs ~0.9), 2.4e-7 (ws) and 2.1e-7 (D
logits ~0.05).
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxgan_lth.models import get_model
from jaxgan_lth.models import sg2_ops as ops
from jaxgan_lth.models.stylegan2_synthesis import SynthesisLayer

RES, BASE, CAP, ZD = 32, 256, 16, 8
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "stylegan2_ada_tiny.npz")
SCRIPT = os.path.join(HERE, "fixtures", "make_stylegan2_fixture.py")
REF = os.environ.get("STYLEGAN2_ADA_DIR", "")


def _load_fixture():
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _live_arrays():
    pytest.importorskip("torch")
    if not os.path.isdir(os.path.join(REF, "training")):
        pytest.skip("set STYLEGAN2_ADA_DIR to a stylegan2-ada-pytorch checkout")
    spec = importlib.util.spec_from_file_location("make_stylegan2_fixture", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_arrays(REF)


@pytest.fixture(scope="module", params=["fixture", "live"])
def ref(request):
    return _load_fixture() if request.param == "fixture" else _live_arrays()


class _Flat(dict):
    """Flattened flax variables that remember which paths were set from the reference."""

    def __init__(self, tree):
        super().__init__(traverse_util.flatten_dict(jax.device_get(tree), sep="/"))
        self.done = set()

    def tree(self):
        return traverse_util.unflatten_dict(dict(self), sep="/")


def _set(flat, key, value):
    assert flat[key].shape == value.shape, (key, flat[key].shape, value.shape)
    flat[key] = np.array(value)  # a copy (0-d stays 0-d)
    flat.done.add(key)


def _all_set(*flats):
    """Every flax variable was overwritten from the reference (none left at its init)."""
    left = [k for f in flats for k in f if k not in f.done]
    assert not left, left


def _set_layer(p, s, a, t, j, flip):
    """Reference ``SynthesisLayer``/``ToRGBLayer`` ``t`` -> flax module path ``j``."""
    w = a[t + "weight"].transpose(2, 3, 1, 0)
    _set(p, j + "kernel", w[::-1, ::-1] if flip else w)
    _set(p, j + "bias", a[t + "bias"])
    _set(p, j + "linear_affine/kernel", a[t + "affine.weight"].T)
    _set(p, j + "linear_affine/bias", a[t + "affine.bias"])
    if t + "noise_strength" in a:
        _set(p, j + "noise_strength", a[t + "noise_strength"])
        _set(s, j + "noise_const", a[t + "noise_const"])


def _models():
    return get_model("stylegan2", resolution=RES, channels=3, latent_dim=ZD, g_channels=CAP,
                     d_channels=CAP, channel_base=BASE, mapping_layers=2)


def _g_variables(a):
    G, _ = _models()
    v = G.init(jax.random.key(0), jnp.zeros((1, ZD)), train=False)
    p = _Flat(v["params"])
    s = _Flat(v["batch_stats"])
    for i in range(2):
        _set(p, f"mapping_net/linear{i}/kernel", a[f"g.mapping.fc{i}.weight"].T)
        _set(p, f"mapping_net/linear{i}/bias", a[f"g.mapping.fc{i}.bias"])
    _set(s, "mapping_net/w_avg", a["g.mapping.w_avg"])
    for r in (4, 8, 16, 32):
        t, j = f"g.synthesis.b{r}.", f"blocks_b{r}/"
        if r == 4:
            _set(p, j + "const", a[t + "const"].transpose(1, 2, 0))
        for c in (["conv1"] if r == 4 else ["conv0", "conv1"]):
            _set_layer(p, s, a, t + c + ".", j + c + "/", flip=(c == "conv0"))
        _set_layer(p, s, a, t + "torgb.", j + "conv_rgb/", flip=False)
    _all_set(p, s)
    return G, {"params": p.tree(),
               "batch_stats": s.tree()}


def test_fixture_is_small_and_plain():
    assert os.path.getsize(FIXTURE) < 1_000_000
    a = _load_fixture()  # allow_pickle=False: a pickled entry would raise here
    assert str(a["ref_commit"]) == "d72cc7d"
    assert all(v.dtype == np.float32 for k, v in a.items() if k not in ("ref_commit",
                                                                           "torch_version"))


def test_fir_filter_matches_reference(ref):
    # upfirdn2d.setup_filter([1, 3, 3, 1]): the outer product, normalised to sum 1
    f = ops.fir_filter()
    np.testing.assert_allclose(ref["g.synthesis.b8.conv0.resample_filter"], np.outer(f, f),
                               rtol=1e-6)


@pytest.mark.slow
def test_mapping_matches_reference(ref):
    G, v = _g_variables(ref)
    got = G.apply(v, jnp.asarray(ref["z"]), method="mapping", psi=0.7, cutoff=3)
    assert float(np.std(ref["ws"])) > 0.1
    np.testing.assert_allclose(np.asarray(got), ref["ws"], atol=1e-5)


def test_modulated_conv_matches_reference(ref):
    layer = SynthesisLayer(16, 8, up=2)
    x = jnp.asarray(ref["modconv_x"].transpose(0, 2, 3, 1))
    w = jnp.asarray(ref["modconv_w"])
    v = layer.init(jax.random.key(0), x, w, "const")
    p = _Flat(v["params"])
    s = _Flat(v["batch_stats"])
    _set_layer(p, s, ref, "g.synthesis.b8.conv0.", "", flip=True)
    _all_set(p, s)
    got = layer.apply({"params": p.tree(),
                       "batch_stats": s.tree()}, x, w, "const")
    want = ref["modconv_out"].transpose(0, 2, 3, 1)
    assert float(np.std(want)) > 0.1
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


@pytest.mark.slow
def test_generator_matches_reference(ref):
    G, v = _g_variables(ref)
    got = G.apply(v, jnp.asarray(ref["z"]), method="generate", psi=0.7, cutoff=3,
                  noise_mode="const")
    want = ref["img"].transpose(0, 2, 3, 1)
    assert float(np.std(want)) > 0.1
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


@pytest.mark.slow
def test_discriminator_matches_reference(ref):
    _, D = _models()
    v = D.init(jax.random.key(0), jnp.zeros((4, RES, RES, 3)), train=False)
    p = _Flat(v["params"])
    for r in (32, 16, 8):
        names = [("conv0", "conv0"), ("conv1", "conv1"), ("skip", "conv_skip")]
        names += [("fromrgb", "conv_rgb")] if r == RES else []
        for tn, jn in names:
            _set(p, f"blocks_b{r}/{jn}/kernel", ref[f"d.b{r}.{tn}.weight"].transpose(2, 3, 1, 0))
            if tn != "skip":
                _set(p, f"blocks_b{r}/{jn}/bias", ref[f"d.b{r}.{tn}.bias"])
    _set(p, "conv/kernel", ref["d.b4.conv.weight"].transpose(2, 3, 1, 0))
    _set(p, "conv/bias", ref["d.b4.conv.bias"])
    fc = ref["d.b4.fc.weight"]  # [out, C*4*4] over NCHW flattening -> [4*4*C, out] over NHWC
    c4 = fc.shape[0]
    _set(p, "linear_fc/kernel", fc.reshape(c4, -1, 4, 4).transpose(2, 3, 1, 0).reshape(-1, c4))
    _set(p, "linear_fc/bias", ref["d.b4.fc.bias"])
    _set(p, "linear_out/kernel", ref["d.b4.out.weight"].T)
    _set(p, "linear_out/bias", ref["d.b4.out.bias"])
    _all_set(p)
    got = D.apply({"params": p.tree()},
                  jnp.asarray(ref["d_x"].transpose(0, 2, 3, 1)), train=False)
    want = ref["d_logits"]
    assert float(np.max(np.abs(want))) > 1e-2
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_committed_fixture_is_what_the_script_writes():
    live = _live_arrays()
    a = _load_fixture()
    assert sorted(live) == sorted(a)
    for k in a:
        if a[k].dtype == np.float32:
            np.testing.assert_allclose(live[k], a[k], atol=1e-5, err_msg=k)
