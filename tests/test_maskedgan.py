"""MaskedGAN (a reconstruction): shifted spatial masking, balanced spectral masking checked with
numpy.fft, the band controller by hand, validation, no retrace, resume after a kill, and both
new parts (NICE, MaskedGAN) with every model, a ticket mask, DiffAugment and AdvAug."""


import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxgan_lth import models, parallel, parts, pipeline
from jaxgan_lth.augment import masking
from jaxgan_lth.parts import base as parts_base
from jaxgan_lth.parts import maskedgan as mg
from jaxgan_lth.training import loop
from jaxgan_lth.training import step as step_lib

# ---- shifted spatial masking ----------------------------------------------------------------


@pytest.mark.parametrize("size,ratio,cells", [(32, 0.25, 16), (28, 0.25, 12), (32, 0.0, 0),
                                              (32, 1.0, 64), (28, 0.5, 24)])
def test_spatial_masking_removes_exactly_the_configured_patches(size, ratio, cells):
    """round(ratio * n) whole cells of the shifted 4-px grid are zeroed in every image."""
    b, p = 6, 4
    x = np.asarray(jax.random.uniform(jax.random.key(0), (b, size, size, 3), minval=0.5,
                                      maxval=1.0))  # no zeros of its own
    out = np.asarray(masking.spatial_mask(jax.random.key(1), jnp.asarray(x), ratio, p))
    _, shift = masking.sample_spatial(jax.random.key(1), b, (size // p) ** 2, p,
                                      ratio)  # the draws spatial_mask made
    shift = np.asarray(shift)
    for i in range(b):
        zero = np.all(out[i] == 0.0, axis=-1)
        np.testing.assert_array_equal(out[i][~zero], x[i][~zero])  # the rest untouched
        assert zero.sum() == cells * p * p
        back = np.roll(zero, (-shift[i, 0], -shift[i, 1]), axis=(0, 1))  # undo the grid shift
        blocks = back.reshape(size // p, p, size // p, p).transpose(0, 2, 1, 3).reshape(-1, p * p)
        assert set(blocks.sum(axis=1)) <= {0, p * p}  # only whole cells
        assert (blocks.sum(axis=1) == p * p).sum() == cells
    assert len({tuple(s) for s in shift}) > 1  # shifts differ between images


def test_spatial_shift_moves_the_grid():
    masked = jnp.zeros((1, 64), bool).at[0, jnp.array([0, 9, 63])].set(True)
    keep0 = np.asarray(masking.spatial_keep(masked, jnp.zeros((1, 2), jnp.int32), 32, 32, 4))
    # unshifted: cell 0 = rows 0-3 x cols 0-3; cell 9 = rows 4-7 x cols 4-7; cell 63 the corner
    want = np.ones((32, 32))
    want[0:4, 0:4] = want[4:8, 4:8] = want[28:32, 28:32] = 0
    np.testing.assert_array_equal(keep0[0], want)
    for s in [(1, 2), (3, 0), (0, 3)]:
        keep = np.asarray(masking.spatial_keep(masked, jnp.array([s], jnp.int32), 32, 32, 4))
        np.testing.assert_array_equal(keep[0], np.roll(want, s, axis=(0, 1)))
        assert not np.array_equal(keep[0], want)
        assert keep.sum() == keep0.sum()


# ---- balanced spectral masking ----------------------------------------------------------------


def _bands_by_loop(h, w, k):
    """The band of every FFT bin, written out independently of masking.band_index."""
    r_max = max(h // 2, w // 2)
    out = np.zeros((h, w), int)
    for u in range(h):
        for v in range(w):
            r = max(min(u, h - u), min(v, w - v))
            out[u, v] = int(np.floor(r * k / (r_max + 1)))
    return out


@pytest.mark.parametrize("size,k", [(28, 8), (32, 8), (32, 17), (16, 1)])
def test_band_index_rings_are_non_empty_and_hermitian(size, k):
    bands = masking.band_index(size, size, k)
    np.testing.assert_array_equal(bands, _bands_by_loop(size, size, k))
    assert set(np.unique(bands)) == set(range(k)) and bands[0, 0] == 0
    flip = bands[(-np.arange(size)) % size][:, (-np.arange(size)) % size]
    np.testing.assert_array_equal(bands, flip)  # band(u, v) = band(-u, -v)
    with pytest.raises(ValueError, match=r"num_bands = .* must be in \[1, "):
        masking.band_index(size, size, size // 2 + 2)


def test_spectral_masking_with_no_band_dropped_returns_the_input():
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 3), minval=-1.0, maxval=1.0)
    out = masking.spectral_filter(x, jnp.ones((3, 8)), 8)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x), atol=2e-6)
    out = masking.spectral_mask(jax.random.key(1), x, jnp.zeros((8,)))  # probabilities 0
    np.testing.assert_allclose(np.asarray(out), np.asarray(x), atol=2e-6)


@pytest.mark.parametrize("band", [0, 3, 7])
def test_dropping_one_band_removes_exactly_its_energy(band):
    size, k = 32, 8
    x = np.asarray(jax.random.uniform(jax.random.key(2), (2, size, size, 3), minval=-1.0,
                                      maxval=1.0), np.float64)
    keep = np.ones((2, k), np.float32)
    keep[:, band] = 0.0
    out = np.asarray(masking.spectral_filter(jnp.asarray(x, jnp.float32), jnp.asarray(keep), k),
                     np.float64)
    spec = np.fft.fft2(x, axes=(1, 2))
    in_band = _bands_by_loop(size, size, k) == band
    band_energy = np.sum(np.abs(spec[:, in_band, :]) ** 2) / (size * size)  # Parseval
    assert band_energy > 0
    np.testing.assert_allclose(np.sum((x - out) ** 2), band_energy, rtol=1e-4)
    np.testing.assert_allclose(np.sum(out ** 2), np.sum(x ** 2) - band_energy, rtol=1e-4)
    spec_out = np.fft.fft2(out, axes=(1, 2))
    assert np.abs(spec_out[:, in_band, :]).max() < 1e-3 * np.abs(spec[:, in_band, :]).max()
    np.testing.assert_allclose(spec_out[:, ~in_band, :], spec[:, ~in_band, :], atol=2e-3)
    # the masked spectrum is Hermitian: its inverse has no imaginary part to discard
    mask = (~in_band).astype(float)[None, :, :, None]
    assert np.abs(np.fft.ifft2(spec * mask, axes=(1, 2)).imag).max() < 1e-12


# ---- the band controller by hand ----------------------------------------------------------


def test_band_reliance_and_balance_update_by_hand():
    drops = jnp.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], bool)
    logits = jnp.array([1.0, 2.0, 3.0, 5.0])
    rel, valid = masking.band_reliance(drops, logits)
    # band 0: kept rows 1, 2 -> 2.5, dropped rows 0, 3 -> 3  => -0.5
    # band 1: kept rows 0, 2 -> 2,   dropped rows 1, 3 -> 3.5 => -1.5 ; band 2 never dropped
    np.testing.assert_allclose(np.asarray(rel), [-0.5, -1.5, 0.0])
    np.testing.assert_array_equal(np.asarray(valid), [True, True, False])
    state = {"offsets": jnp.array([0.0, 0.2, -0.1]), "credit": jnp.array([1.0, 0.0, 0.3])}
    new = masking.balance_update(state, rel, valid, 0.8, 0.05)
    # credit = [0.8 - 0.1, 0 - 0.3, 0.3 (unchanged, invalid)] = [0.7, -0.3, 0.3]; mean 0.2333
    # s = sign(credit - mean) = [1, -1, 1]; mean(s) = 1/3; offsets += 0.05 * (s - 1/3)
    np.testing.assert_allclose(np.asarray(new["credit"]), [0.7, -0.3, 0.3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new["offsets"]),
                               [0.05 * 2 / 3, 0.2 - 0.05 * 4 / 3, -0.1 + 0.05 * 2 / 3],
                               rtol=1e-5)
    # probabilities: clip(ratio * (1 + o), 0, p_max)
    np.testing.assert_allclose(
        np.asarray(masking.band_probs(jnp.array([-2.0, 0.0, 0.5, 3.0]), 0.2, 0.5)),
        [0.0, 0.2, 0.3, 0.5], rtol=1e-6)


def _part(ops="spectral", **kw):
    config = default.get_config()
    config.data.resolution = 32
    config.maskedgan = parts.MaskedGAN.default_config(ops=ops)
    for k, v in kw.items():
        config.maskedgan[k] = v
    return mg.MaskedGAN(config)


def _hp(part):
    return {k: jnp.float32(v) for k, v in part.hparams().items()}


def test_observe_redraws_the_band_drops_augment_made():
    part = _part(spectral_ratio=0.4)
    hp = _hp(part)
    state = part.init_state()
    key = jax.random.key(7)
    x = jax.random.uniform(jax.random.key(8), (8, 32, 32, 3), minval=-1.0, maxval=1.0)
    out = part.augment(key, x, state, hp)
    drops = masking.sample_band_drops(jax.random.split(key)[1], 8, jnp.full((8,), 0.4))
    want = masking.spectral_filter(x, 1.0 - drops.astype(jnp.float32), 8)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(want))
    logits = jnp.arange(4.0)  # B = 4 reals, then 4 fakes
    obs = parts_base.AugObservation(logits_real=logits, key=key, x_shape=(8, 32, 32, 3))
    new = part.observe_d_step(state, obs, hp)
    rel, valid = masking.band_reliance(drops[:4], logits)
    want = masking.balance_update(state, rel, valid, hp["mask_band_decay"], hp["mask_band_step"])
    jax.tree.map(np.testing.assert_array_equal, new, want)
    assert _part(ops="spatial").init_state() is None


def test_spatial_ratio_is_traced_and_both_ops_compose():
    part = _part(ops="spatial,spectral", spectral_ratio=0.0)
    x = jnp.ones((2, 32, 32, 1))
    f = jax.jit(helpers.max_traces(part.augment))  # a retrace raises
    counts = []
    for r in (0.25, 0.5):
        hp = dict(_hp(part), mask_spatial_ratio=jnp.float32(r))
        out = np.asarray(f(jax.random.key(0), x, part.init_state(), hp))
        counts.append(int(np.sum(np.abs(out[..., 0]) < 1e-5)))
    assert counts == [2 * 16 * 16, 2 * 32 * 16]


# ---- config validation ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return helpers.make_image_folder(tmp_path_factory.mktemp("imgs"), n=4, size=20, channels=1)


@pytest.mark.parametrize("key,value,match", [
    ("ops", "spatial,fft", r"config\.maskedgan\.ops: unknown op\(s\) \['fft'\].*accepted.*"
                           r"\('spatial', 'spectral'\)"),
    ("spatial_ratio", 1.5, r"config\.maskedgan\.spatial_ratio: mask_spatial_ratio = 1\.5 must "
                           r"be in \[0\.0, 1\.0\]"),
    ("spectral_ratio", -0.1, r"config\.maskedgan\.spectral_ratio: .* must be in \[0\.0, 1\.0\]"),
    ("band_p_max", 2.0, r"config\.maskedgan\.band_p_max"),
    ("band_decay", 1.0, r"config\.maskedgan\.band_decay: mask_band_decay = 1\.0 must be in "
                        r"\[0\.0, 1\.0\)"),
    ("band_step", -1.0, r"config\.maskedgan\.band_step"),
    ("patch_size", 5, r"config\.maskedgan\.patch_size = 5 must divide the resolution 28; "
                      r"accepted: \[1, 2, 4, 7, 14, 28\]"),
    ("num_bands", 16, r"config\.maskedgan\.num_bands = 16: accepted 1\.\.15 at resolution 28"),
    ("num_bands", 0, r"config\.maskedgan\.num_bands = 0 must be an integer >= 1"),
])
def test_bad_maskedgan_values_are_named_with_accepted_values(folder, key, value, match):
    config = helpers.tiny_config(folder)
    config.maskedgan.ops = "spatial,spectral"
    config.maskedgan[key] = value
    with pytest.raises(ValueError, match=match):
        pipeline.validate_config(config)


def test_ticket_section_and_strengths_of_inactive_ops_are_refused(folder):
    config = helpers.tiny_config(folder)
    config.ticket.maskedgan.ops = "spectral,cutout"
    with pytest.raises(ValueError, match=r"config\.ticket\.maskedgan\.ops: unknown op"):
        pipeline.validate_config(config)
    config.ticket.maskedgan.ops = "spectral"
    config.stages = "ticket"
    config.sweep.stages = "ticket"
    config.sweep.hparams = "mask_spatial_ratio=0.1,0.2"  # spatial is off in the ticket
    with pytest.raises(ValueError, match=r"unknown or inactive strength 'mask_spatial_ratio'"):
        pipeline.validate_config(config)
    config.sweep.hparams = "mask_spectral_ratio=0.1,0.2; mask_band_step=0,0.01"
    pipeline.validate_config(config)


# ---- compiled step ----------------------------------------------------------------------------


@pytest.mark.slow
def test_iteration_traces_once_across_every_mask_strength_and_band_state(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=12, size=20, channels=1)
    config = helpers.tiny_config(folder)
    config.maskedgan.ops = "spatial,spectral"
    engine = loop.build_engine(config, str(tmp_path / "work"))
    assert {n for n in engine.fns.hparams if n.startswith("mask_")} == set(mg.MaskedGAN.HPARAMS)
    state = loop.initial_state(engine, 0)
    masks = loop.dense_masks(state)
    step = jax.jit(helpers.max_traces(engine.fns.iteration))  # a retrace raises
    hp = dict(engine.fns.hparams)
    state, m = step(state, masks, engine.data, hp)
    assert {"mask_band_offset_min", "mask_band_offset_max"} <= set(m)
    for name in sorted(mg.MaskedGAN.HPARAMS):
        hp = dict(hp, **{name: jnp.float32(0.5 * float(hp[name]) + 0.05)})
        state, m = step(state, masks, engine.data, hp)
    band = {"offsets": jnp.linspace(-0.5, 0.5, 8), "credit": jnp.zeros(8)}
    state = dict(state, parts={"maskedgan": parallel.replicate(band, engine.mesh)})
    state, m = step(state, masks, engine.data, hp)
    assert all(np.isfinite(float(v)) for v in m.values())
    assert float(state["parts"]["maskedgan"]["offsets"][0]) != -0.5  # the state is an input


@pytest.mark.slow
def test_band_state_resumes_after_kill(tmp_path, monkeypatch):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=10, size=20, channels=1)
    config = helpers.tiny_config(folder, num_steps=4)
    config.maskedgan.ops = "spatial,spectral"
    config.maskedgan.band_step = 0.05
    full, resumed = helpers.full_and_resumed(config, tmp_path, monkeypatch, 2, 4)
    assert np.abs(full["parts"]["maskedgan"]["offsets"]).max() > 0  # the controller moved
    jax.tree.map(np.testing.assert_array_equal, full["parts"], resumed["parts"])
    jax.tree.map(np.testing.assert_array_equal, full, resumed)


MODELS = {
    "dcgan": dict(resolution=28, channels=1, num_classes=0),
    "sngan": dict(resolution=32, channels=3, num_classes=0),
    "biggan": dict(resolution=32, channels=3, num_classes=3),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_nice_and_maskedgan_with_every_model_a_ticket_diffaugment_and_advaug(name):
    kw = MODELS[name]
    config = default.get_config()
    helpers.use_model(config, name)
    config.model.conditional = name == "biggan"
    config.model.latent_dim, config.model.g_channels, config.model.d_channels = 8, 8, 8
    config.data.resolution, config.data.channels = kw["resolution"], kw["channels"]
    config.train.d_batch_size = config.train.g_batch_size = 4
    config.train.n_dis = 2
    config.diffaug.policy = "color,translation,cutout"
    config.advaug.mode = "pgd"
    config.nice.enabled = True
    config.nice.beta_init = 0.2
    config.nice.target = -1.0  # beta rises on every D step
    config.maskedgan.ops = "spatial,spectral"
    pair = models.get_model(name, resolution=kw["resolution"], channels=kw["channels"],
                            num_classes=kw["num_classes"], latent_dim=8, g_channels=8,
                            d_channels=8, conditional=name == "biggan")
    fns = step_lib.make_step_fns(config, pair.generator, pair.discriminator,
                                 image_shape=(kw["resolution"],) * 2 + (kw["channels"],),
                                 num_classes=kw["num_classes"])
    assert [p.name for p in fns.parts] == ["diffaug", "advaug", "nice", "maskedgan"]
    key = jax.random.key(0)
    r, c = kw["resolution"], kw["channels"]
    data = {"images": jax.random.uniform(key, (16, r, r, c), minval=-1.0, maxval=1.0),
            "labels": jax.random.randint(key, (16,), 0, max(kw["num_classes"], 1))}
    state = jax.jit(fns.init)(key)
    rng = np.random.default_rng(0)
    masks = {"g": jax.tree.map(lambda p: jnp.asarray(rng.random(p.shape) > 0.5),
                               state["g"]["params"]),
             "d": jax.tree.map(lambda p: jnp.ones(p.shape, bool), state["d"]["params"])}
    state, m = jax.jit(fns.iteration)(state, masks, data, fns.hparams)
    assert all(np.isfinite(float(v)) for v in m.values()), m
    assert float(m["nice_consistency"]) > 0.0
    assert float(state["parts"]["nice"]["beta"]) == pytest.approx(0.2 + 2 * 0.001, abs=1e-6)
    assert set(state["parts"]["maskedgan"]) == {"offsets", "credit"}
    pruned = jax.tree.map(lambda p, k: np.asarray(p)[~np.asarray(k)], state["g"]["params"],
                          masks["g"])
    assert all(np.all(v == 0) for v in jax.tree.leaves(pruned))  # the ticket stays sparse
