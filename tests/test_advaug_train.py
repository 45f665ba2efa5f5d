"""AdvAug and DiffAugment inside the compiled D/G steps."""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan_lth import pipeline
from jaxgan_lth.training import loop


def _setup(tmp_path, **advaug):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=8, size=20, channels=1)
    config = helpers.tiny_config(folder)
    config.diffaug.policy = advaug.pop("policy", "")
    for k, v in advaug.items():
        config.advaug[k] = v
    pipeline.validate_config(config)  # as train_and_evaluate does before building
    setup = loop.build_engine(config, str(tmp_path / "work"))
    state = loop.initial_state(setup, config.seed)
    return setup, state, loop.dense_masks(state)


def _hp(setup, **kw):
    hp = dict(setup.fns.hparams)
    hp.update({k: jnp.float32(v) for k, v in kw.items()})
    return hp


@pytest.fixture(scope="module")
def adv(tmp_path_factory):
    return _setup(tmp_path_factory.mktemp("adv"), mode="pgd", networks="gd", num_steps=2)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _setup(tmp_path_factory.mktemp("plain"))


@pytest.mark.slow
def test_step_size_zero_gives_exactly_the_plain_step(adv, plain):
    (sa, state, masks), (sp, _, _) = adv, plain
    key = jax.random.key(3)
    hp = _hp(sa, adv_step_size=0.0)
    for step in ("d_step", "g_step"):
        a, ma = jax.jit(getattr(sa.fns, step))(state, masks, sa.data, key, hp)
        p, mp = jax.jit(getattr(sp.fns, step))(state, masks, sp.data, key, sp.fns.hparams)
        loss = "d_loss" if step == "d_step" else "g_loss"
        assert float(ma[loss]) == float(mp[loss])  # delta = 0 exactly: same loss value
        # The gradient is the sum of two identical halves; XLA may fuse them differently
        # from the single plain term, so parameters agree to float32 rounding (1 ulp).
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(p)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_paper_direction_adversarial_loss_is_at_least_clean_loss(adv):
    setup, state, masks = adv
    hp = _hp(setup, adv_step_size=0.05)
    for i in range(3):
        key = jax.random.key(10 + i)
        _, md = jax.jit(setup.fns.d_step)(state, masks, setup.data, key, hp)
        assert float(md["d_loss_adv"]) >= float(md["d_loss_clean"])
        _, mg = jax.jit(setup.fns.g_step)(state, masks, setup.data, key, hp)
        assert float(mg["g_loss_adv"]) > float(mg["g_loss_clean"])
        # total = (1 - lam) clean + lam adv with lam = 0.5
        assert float(mg["g_loss"]) == pytest.approx(
            0.5 * float(mg["g_loss_clean"]) + 0.5 * float(mg["g_loss_adv"]), rel=1e-5)


@pytest.mark.slow
def test_changing_strengths_does_not_retrace(adv):
    setup, state, masks = adv
    step = jax.jit(helpers.max_traces(setup.fns.iteration))  # a retrace raises
    for gamma, lam in ((0.01, 0.5), (0.1, 0.3), (0.0, 1.0)):
        state, m = step(state, masks, setup.data, _hp(setup, adv_step_size=gamma, adv_lam=lam))
        assert np.isfinite(float(m["g_loss"]))


@pytest.mark.slow
def test_noise_baseline_and_diffaugment_run_in_the_step(tmp_path):
    setup, state, masks = _setup(tmp_path, mode="noise", networks="d",
                                 policy="color,translation,cutout")
    key = jax.random.key(0)
    _, m0 = jax.jit(setup.fns.d_step)(state, masks, setup.data, key,
                                      _hp(setup, adv_noise_scale=0.0))
    assert float(m0["d_loss_adv"]) == float(m0["d_loss_clean"])
    _, m1 = jax.jit(setup.fns.d_step)(state, masks, setup.data, key,
                                      _hp(setup, adv_noise_scale=1.0))
    assert float(m1["d_loss_adv"]) != float(m1["d_loss_clean"])
    assert "g_loss_adv" not in jax.jit(setup.fns.g_step)(
        state, masks, setup.data, key, setup.fns.hparams)[1]


def test_bad_advaug_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="advaug.mode"):
        _setup(tmp_path, mode="fgsm")
    with pytest.raises(ValueError, match="random_start"):
        _setup(tmp_path, mode="pgd", random_start=True)
    with pytest.raises(ValueError, match="rotate"):
        _setup(tmp_path, policy="rotate")
