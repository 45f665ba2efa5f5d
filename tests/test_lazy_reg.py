"""Lazy regularisation as its own Adam step (jaxgan_lth/training/lazy_reg.py), by hand and in the
step.

stylegan2-ada-pytorch ``training/training_loop.py`` lines 197-208 and 270-290: for interval k,
Adam(lr * c, betas ** c), c = k / (k + 1), for the main and the reg steps; the reg step (loss =
k x penalty) follows the main step every k-th minibatch.
"""

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxgan_lth import parts, pipeline
from jaxgan_lth.training import lazy_reg, loop
from jaxgan_lth.training.updates import make_optimizer, masked_update


def _r1(gamma, interval, lazy="separate_step"):
    config = default.get_config()
    config.r1 = parts.R1.default_config(gamma)
    config.r1.interval = interval
    config.r1.lazy = lazy
    config.r1.through_augment = False
    parts.validate_config(config)
    return [p for p in parts.build(config) if p.name == "r1"]


def _adam(p, g, m, v, t, lr, b1, b2, eps=1e-8):
    """One textbook Adam step (Kingma & Ba, Algorithm 1), numpy, float64."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), m, v


def test_scaled_adam_and_one_reg_step_by_hand():
    """A linear D(x) = sum(x * W): dD/dx_b = W for every b, so R1 = sum(W^2) and the reg
    step's loss k * gamma / 2 * R1 has the gradient k * gamma * W."""
    k, gamma, lr, betas = 4, 0.5, 0.01, (0.5, 0.9)
    terms = _r1(gamma, k)
    d_terms, interval = lazy_reg.phase_terms(terms, "d")
    assert interval == k and lazy_reg.phase_terms(terms, "g") == ([], None)
    lr_s, betas_s, ds = lazy_reg.adam_settings(lr, betas, 100, interval)
    assert lr_s == pytest.approx(0.008)  # 0.01 * 4 / 5
    assert betas_s == pytest.approx((0.5 ** 0.8, 0.9 ** 0.8))  # (0.5743, 0.9192)
    assert ds == 125  # the linear decay spread over 100 main + 25 reg steps
    assert lazy_reg.adam_settings(lr, betas, None, None) == (lr, betas, None)
    tx = make_optimizer(lr_s, betas_s, 1e-8, None)

    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((2, 3, 1)).astype(np.float32)
    w0[0, 0, 0] = 0.0
    mask = {"W": jnp.asarray(np.arange(6).reshape(2, 3, 1) != 0)}  # W[0, 0] pruned
    params = {"W": jnp.asarray(w0)}
    opt = tx.init(params)
    g1 = rng.standard_normal((2, 3, 1)).astype(np.float32)
    params, opt = masked_update(tx, {"W": jnp.asarray(g1)}, opt, params, mask)  # main step
    x = jnp.asarray(rng.standard_normal((3, 2, 3, 1)), jnp.float32)

    def ctx_of(p):
        return parts.DContext(logits_real=None, logits_fake=None, x_real=x, step=jnp.int32(0),
                              d_apply=lambda xr: jnp.sum(xr * p["W"], axis=(1, 2, 3)),
                              key=jax.random.key(0))

    pstates = {"r1": d_terms[0].init_state()}
    hp = {"r1_gamma": jnp.float32(gamma)}
    new_params, new_opt, new_p = lazy_reg.run_phase(
        d_terms, k, ctx_of, tx, params, opt, mask, pstates, hp, jnp.int32(8))
    # by hand: Adam step 1 on g1, step 2 on k * gamma * W1 (both masked), scaled settings
    m1 = np.asarray(mask["W"], np.float64)
    b1, b2 = 0.5 ** 0.8, 0.9 ** 0.8
    w1, m, v = _adam(w0.astype(np.float64), g1 * m1, 0.0, 0.0, 1, 0.008, b1, b2)
    w1 *= m1
    np.testing.assert_allclose(np.asarray(params["W"]), w1, rtol=1e-5, atol=1e-7)
    w2, _, _ = _adam(w1, k * gamma * w1 * m1, m, v, 2, 0.008, b1, b2)
    np.testing.assert_allclose(np.asarray(new_params["W"]), w2 * m1, rtol=1e-5, atol=1e-7)
    assert float(new_params["W"][0, 0, 0]) == 0.0
    assert float(new_p["r1"]["penalty"]) == pytest.approx(float(np.sum(w1 ** 2)), rel=1e-5)
    # not a multiple of k: nothing changes, the optimizer's step count included
    same_params, same_opt, same_p = lazy_reg.run_phase(
        d_terms, k, ctx_of, tx, params, opt, mask, pstates, hp, jnp.int32(9))
    np.testing.assert_array_equal(np.asarray(same_params["W"]), np.asarray(params["W"]))
    assert int(same_opt.count) == int(opt.count) == 1 and int(new_opt.count) == 2
    assert float(same_p["r1"]["penalty"]) == 0.0


@pytest.fixture(scope="module", params=["separate_step", "loss_gain"])
def engine(request, tmp_path_factory):
    return _engine(tmp_path_factory.mktemp(request.param), request.param)


def _engine(tmp_path, lazy, interval=2, policy="color,translation,cutout"):
    from tests.helpers import make_image_folder, tiny_config

    folder = make_image_folder(tmp_path / "imgs", n=8, size=28, channels=1)
    config = tiny_config(folder, num_steps=2)
    config.train.n_dis = 1
    config.train.g_lr, config.train.d_lr = 0.001, 0.004
    config.train.d_betas = (0.0, 0.9)
    config.r1 = parts.R1.default_config(1.0)
    config.r1.interval = interval
    config.r1.lazy = lazy
    config.diffaug.policy = policy
    pipeline.validate_config(config)
    return loop.build_engine(config, str(tmp_path / "work"))


def _count(opt_state):
    return int(opt_state.count)  # inject_hyperparams: updates applied so far


@pytest.mark.slow
def test_step_takes_the_extra_d_step_with_scaled_adam(engine):
    lazy = engine.config.r1.lazy
    fns = engine.fns
    state = loop.initial_state(engine, 0)
    masks = loop.dense_masks(state)
    it = jax.jit(helpers.max_traces(fns.iteration))  # a retrace raises
    s = state
    for _ in range(3):  # steps 0, 1, 2: reg steps after steps 0 and 2 (interval 2)
        s, m = it(s, masks, engine.data, fns.hparams)
    hp = s["d_opt"].hyperparams
    if lazy == "separate_step":
        assert _count(s["d_opt"]) == 5 and _count(s["g_opt"]) == 3
        assert float(hp["learning_rate"]) == pytest.approx(0.004 * 2 / 3, rel=1e-6)
        assert float(hp["b2"]) == pytest.approx(0.9 ** (2 / 3), rel=1e-6)
    else:  # no extra step, Adam as configured
        assert _count(s["d_opt"]) == 3
        assert float(hp["learning_rate"]) == pytest.approx(0.004, rel=1e-6)
        assert float(hp["b2"]) == pytest.approx(0.9, rel=1e-6)
    assert float(s["g_opt"].hyperparams["learning_rate"]) == pytest.approx(0.001, rel=1e-6)
    assert float(m["r1_penalty"]) > 0


@pytest.mark.slow
def test_r1_shares_the_main_losss_augmentation_of_the_reals(engine):
    """DContext.augment_real(x_real_clean) is exactly the reals D saw in the main loss."""
    fns = engine.fns
    state = loop.initial_state(engine, 0)
    masks = loop.dense_masks(state)
    _, (_, _, x, _, _, _, (reg, _)) = fns.d_grads(state, masks, engine.data,
                                                  jax.random.key(3), fns.hparams)
    b = engine.config.train.d_batch_size
    again = reg.augment_real(reg.x_real_clean)
    np.testing.assert_allclose(np.asarray(again), np.asarray(x[:b]), atol=1e-6)
    assert not np.allclose(np.asarray(x[:b]), np.asarray(reg.x_real_clean))  # augmented
    redrawn = reg.augment(jax.random.key(9), reg.x_real_clean)
    assert not np.allclose(np.asarray(redrawn), np.asarray(x[:b]))
