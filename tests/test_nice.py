"""NICE (a reconstruction): the noise points in D, the consistency term, the beta controller,
validation, no retrace across strengths and state, and resume of beta after a kill."""


import flax.linen as nn
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxgan_lth import models, parallel, parts, pipeline
from jaxgan_lth import stages as stages_lib
from jaxgan_lth.models import base as model_base
from jaxgan_lth.parts import nice as nice_lib
from jaxgan_lth.training import loop

MODELS = {
    "dcgan": dict(resolution=28, channels=1, latent_dim=8, g_channels=8, d_channels=8),
    "sngan": dict(resolution=32, channels=3, latent_dim=8, g_channels=8, d_channels=8),
    "biggan": dict(resolution=32, channels=3, num_classes=3, latent_dim=8, g_channels=8,
                   d_channels=8),
}


def _d_and_vars(name):
    kw = MODELS[name]
    _, d = models.get_model(name, **kw)
    x = jax.random.uniform(jax.random.key(0), (4, kw["resolution"], kw["resolution"],
                                               kw["channels"]), minval=-1.0, maxval=1.0)
    y = jnp.array([0, 1, 2, 0], jnp.int32) if name == "biggan" else None
    return d, d.init(jax.random.key(1), x, y, train=False), x, y


def _noisy(variables, d, beta, k):
    return {**variables, model_base.D_NOISE: model_base.d_noise_variables(d, beta, k)}


# ---- the noise points in D --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_beta_zero_is_exactly_the_plain_d_for_every_model(name):
    d, v, x, y = _d_and_vars(name)
    rngs = {model_base.D_NOISE: jax.random.key(5)}
    plain_h, plain_upd = d.apply(v, x, y, train=True, method="features",
                                 mutable=["batch_stats"])
    plain_logits = d.apply(v, x, y, train=False)
    for k in range(1, len(d.noise_paths) + 1):
        nv = _noisy(v, d, jnp.float32(0.0), k)
        h, upd = d.apply(nv, x, y, train=True, method="features", mutable=["batch_stats"],
                         rngs=rngs)
        np.testing.assert_array_equal(np.asarray(h), np.asarray(plain_h))
        jax.tree.map(np.testing.assert_array_equal, upd, plain_upd)
        np.testing.assert_array_equal(np.asarray(d.apply(nv, x, y, train=False, rngs=rngs)),
                                      np.asarray(plain_logits))
    # beta > 0 changes the features; the same key gives the same noise, another key other noise
    nv = _noisy(v, d, jnp.float32(0.3), len(d.noise_paths))
    h1 = d.apply(nv, x, y, train=False, method="features", rngs=rngs)
    h2 = d.apply(nv, x, y, train=False, method="features", rngs=rngs)
    h3 = d.apply(nv, x, y, train=False, method="features",
                 rngs={model_base.D_NOISE: jax.random.key(6)})
    np.testing.assert_array_equal(np.asarray(h1), np.asarray(h2))
    assert not np.allclose(h1, plain_h) and not np.allclose(h1, h3)


@pytest.mark.slow
def test_noise_paths_select_the_last_blocks_and_reject_too_many():
    d_sn = _d_and_vars("sngan")[0]
    assert model_base.d_noise_variables(d_sn, 0.5, 2) == {"block3": {"beta": 0.5},
                                                          "block4": {"beta": 0.5}}
    d_dc = _d_and_vars("dcgan")[0]
    assert model_base.d_noise_variables(d_dc, 0.5, 1) == {"beta_conv2": 0.5}
    with pytest.raises(ValueError, match=r"num_blocks = 3 must be in \[1, 2\]"):
        model_base.d_noise_variables(d_dc, 0.5, 3)


@pytest.mark.slow
def test_prefix_blocks_run_without_noise():
    d, v, x, y = _d_and_vars("sngan")
    nv = _noisy(v, d, jnp.float32(0.5), 2)  # block3 and block4 only

    def blocks(variables):
        _, st = d.apply(variables, x, y, train=False, method="features",
                        rngs={model_base.D_NOISE: jax.random.key(2)},
                        capture_intermediates=True, mutable=["intermediates"])
        return {b: st["intermediates"][b]["__call__"][0] for b in ("block2", "block3")}

    plain, noisy = blocks(v), blocks(nv)
    np.testing.assert_array_equal(np.asarray(plain["block2"]), np.asarray(noisy["block2"]))
    assert not np.allclose(plain["block3"], noisy["block3"])


class _Point(nn.Module):
    @nn.compact
    def __call__(self, x):
        return model_base.noise_point(self, "beta", model_base.noise_point(self, "beta", x))


def test_noise_point_is_multiplicative_gaussian_with_mean_one_and_std_beta():
    x = jnp.full((200_000,), 2.0)
    m = _Point()
    assert np.array_equal(m.apply({}, x), x)  # no collection: the input itself

    class Single(nn.Module):
        @nn.compact
        def __call__(self, x):
            return model_base.noise_point(self, "beta", x)

    z = np.asarray(Single().apply({model_base.D_NOISE: {"beta": 0.25}}, x,
                                  rngs={model_base.D_NOISE: jax.random.key(0)})) / 2.0
    assert abs(z.mean() - 1.0) < 3e-3 and abs(z.std() - 0.25) < 3e-3
    # two points of one module draw independent noise
    zz = np.asarray(m.apply({model_base.D_NOISE: {"beta": 0.25}}, x,
                            rngs={model_base.D_NOISE: jax.random.key(0)})) / 2.0
    assert abs(zz.var() - ((1 + 0.25**2) ** 2 - 1)) < 3e-3  # var of a product of two N(1, b^2)


@pytest.mark.slow
def test_second_draw_shares_weights_with_the_training_forward():
    """f1 (train=True forward, SN power iteration) and f2 (train=False from the pre-step SN
    state) use the same normalised weights: with the same noise key they are equal."""
    for name in sorted(MODELS):
        d, v, x, y = _d_and_vars(name)
        nv = _noisy(v, d, jnp.float32(0.2), 2)
        rngs = {model_base.D_NOISE: jax.random.key(3)}
        f1, _ = d.apply(nv, x, y, train=True, method="features", mutable=["batch_stats"],
                        rngs=rngs)
        f2 = d.apply(nv, x, None, train=False, method="features", rngs=rngs)
        np.testing.assert_allclose(np.asarray(f1), np.asarray(f2), rtol=1e-6, atol=1e-6)
        assert float(nice_lib.consistency(f1, f2)) < 1e-9


# ---- consistency term and controller by hand ------------------------------------------------


def _nice(**overrides):
    config = default.get_config()
    config.nice = parts.NICE.default_config(enabled=True)
    for k, v in overrides.items():
        config.nice[k] = v
    return config, nice_lib.NICE(config)


def _hp(**kw):
    hp = {"nice_weight": 2.0, "nice_target": 0.2, "nice_step": 0.01, "nice_beta_max": 0.12,
          "nice_ema": 0.5}
    hp.update(kw)
    return {k: jnp.float32(v) for k, v in hp.items()}


def _ctx(real, step=0, f1=None, f2=None, seen=None):
    def d_features(x, key):
        if seen is not None:
            seen.append(key)
        return f2
    return parts.DContext(logits_real=jnp.asarray(real, jnp.float32), logits_fake=None,
                          x_real=None, d_apply=None, step=jnp.int32(step), x=jnp.zeros((2, 1)),
                          features=f1, d_features=d_features, key=jax.random.key(0))


def test_consistency_zero_for_equal_draws_and_hand_value():
    f1 = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    f2 = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    assert float(nice_lib.consistency(f1, f1)) == 0.0
    # per-sample squared norms 1 + 4 = 5 and 9 + 16 = 25, mean 15
    assert float(nice_lib.consistency(f1, f2)) == pytest.approx(15.0)
    _, part = _nice(beta_init=0.1)
    seen = []
    val, metrics, _ = part.d_term(_ctx([1.0, -1.0], f1=f1, f2=f2, seen=seen),
                                  part.init_state(), _hp(nice_weight=2.0))
    assert float(metrics["nice_consistency"]) == pytest.approx(15.0)
    assert float(val) == pytest.approx(30.0)
    assert len(seen) == 1  # one second draw
    val, metrics, _ = part.d_term(_ctx([1.0], f1=f1, f2=f1), part.init_state(), _hp())
    assert float(val) == 0.0
    _, off = _nice(consistency=False)
    val, metrics, _ = off.d_term(_ctx([1.0], f1=f1, f2=f2), off.init_state(), _hp())
    assert val == 0.0 and metrics == {}


def test_controller_beta_after_a_fixed_sequence():
    _, part = _nice(beta_init=0.1, start=1)
    state = part.init_state()
    assert float(state["beta"]) == pytest.approx(0.1) and float(state["r"]) == 0.0
    # ema 0.5, step 0.01, target 0.2, clamp [0, 0.12]; r <- 0.5 r + 0.5 mean(sign(D(real)))
    seq = [
        # (logits, G step, r, beta)
        ([1.0, 2.0, -1.0, 3.0], 0, 0.25, 0.1),  # step 0 < start 1: r moves, beta does not
        ([1.0, 2.0, -1.0, 3.0], 1, 0.375, 0.11),  # r 0.375 > 0.2: +0.01
        ([1.0, 1.0, 1.0, 1.0], 1, 0.6875, 0.12),  # +0.01
        ([1.0, 1.0, 1.0, 1.0], 2, 0.84375, 0.12),  # clamped at beta_max
        ([-1.0, -1.0, -1.0, -1.0], 2, -0.078125, 0.11),  # r < target: -0.01
        ([0.0, 0.0, -0.5, 0.0], 3, -0.1640625, 0.10),  # sign(0) = 0: mean -0.25
    ]
    hp = _hp()
    for i, (logits, step, r, beta) in enumerate(seq):
        _, _, state = part.d_term(_ctx(logits, step=step, f1=jnp.zeros((1, 1)),
                                       f2=jnp.zeros((1, 1))), state, hp)
        assert float(state["r"]) == pytest.approx(r, abs=1e-7), i
        assert float(state["beta"]) == pytest.approx(beta, abs=1e-7), i
    # the lower clamp at 0
    s = {"beta": jnp.float32(0.005), "r": jnp.float32(-1.0)}
    new = nice_lib.controller(s, jnp.array([-1.0]), hp, True)
    assert float(new["beta"]) == 0.0
    assert set(part.metrics_of_state(state)) == {"nice_beta", "nice_r"}


# ---- config validation ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return helpers.make_image_folder(tmp_path_factory.mktemp("imgs"), n=4, size=20, channels=1)



@pytest.mark.parametrize("key,value,match", [
    ("weight", -1.0, r"config\.nice\.weight: nice_weight = -1\.0 must be in \[0\.0, inf\)"),
    ("target", 1.5, r"config\.nice\.target: nice_target = 1\.5 must be in \[-1\.0, 1\.0\]"),
    ("ema", 1.0, r"config\.nice\.ema: nice_ema = 1\.0 must be in \[0\.0, 1\.0\)"),
    ("step", -0.1, r"config\.nice\.step"),
    ("beta_max", -1.0, r"config\.nice\.beta_max"),
    ("beta_init", 2.0, r"config\.nice\.beta_init = 2\.0 must be in \[0, beta_max"),
    ("num_blocks", 3, r"config\.nice\.num_blocks = 3: model 'dcgan' has 2 noise blocks in D; "
                      r"accepted: 1\.\.2"),
    ("num_blocks", 0, r"config\.nice\.num_blocks = 0 must be an integer >= 1"),
    ("start", -2, r"config\.nice\.start = -2"),
])
def test_bad_nice_values_are_named_with_accepted_values(folder, key, value, match):
    config = helpers.tiny_config(folder)
    config.nice.enabled = True
    config.nice[key] = value
    with pytest.raises(ValueError, match=match):
        pipeline.validate_config(config)


def test_ticket_section_and_unknown_strength_names(folder):
    config = helpers.tiny_config(folder)
    config.ticket.nice.weight = -1.0
    with pytest.raises(ValueError, match=r"config\.ticket\.nice\.weight"):
        pipeline.validate_config(config)
    config.ticket.nice.weight = 1.0
    config.ticket.nice.enabled = True
    ticket = stages_lib.stage_config(config, "ticket")
    assert "nice" in [p.name for p in parts.build(ticket)]
    assert "nice" not in [p.name for p in parts.build(config)]
    # sweeps: the part's strengths are accepted names, a misspelt one is refused with the list
    config.stages = "ticket"
    config.sweep.stages = "ticket"
    config.sweep.hparams = "nice_wieght=0,1"
    with pytest.raises(ValueError, match=r"unknown or inactive strength 'nice_wieght'.*"
                                         r"nice_weight"):
        pipeline.validate_config(config)
    config.sweep.hparams = "nice_weight=0,1; nice_target=0.4,0.6"
    pipeline.validate_config(config)


# ---- compiled step: no retrace, every model, resume -----------------------------------------


def _engine(root, **nice):
    folder = helpers.make_image_folder(root / "imgs", n=12, size=20, channels=1)
    config = helpers.tiny_config(folder)
    config.nice.enabled = True
    for k, v in nice.items():
        config.nice[k] = v
    return loop.build_engine(config, str(root / "work"))


@pytest.mark.slow
def test_iteration_traces_once_across_every_nice_strength_and_beta(tmp_path):
    engine = _engine(tmp_path, beta_init=0.1)
    assert {n for n in engine.fns.hparams if n.startswith("nice_")} == set(nice_lib.NICE.HPARAMS)
    state = loop.initial_state(engine, 0)
    masks = loop.dense_masks(state)
    step = jax.jit(helpers.max_traces(engine.fns.iteration))  # a retrace raises
    hp = dict(engine.fns.hparams)
    state, m = step(state, masks, engine.data, hp)
    assert {"nice_consistency", "nice_beta", "nice_r"} <= set(m)
    assert float(m["nice_consistency"]) > 0.0  # beta 0.1: the two draws differ
    for name in sorted(nice_lib.NICE.HPARAMS):
        hp = dict(hp, **{name: jnp.float32(0.5 * float(hp[name]) + 0.05)})
        state, m = step(state, masks, engine.data, hp)
    nice_state = {"beta": jnp.float32(0.0), "r": jnp.float32(-1.0)}  # beta stays 0
    state = dict(state, parts={"nice": parallel.replicate(nice_state, engine.mesh)})
    state, m = step(state, masks, engine.data, hp)
    assert float(m["nice_consistency"]) == 0.0  # beta 0 (the G step's update comes after)
    assert all(np.isfinite(float(v)) for v in m.values())


@pytest.mark.slow
def test_beta_resumes_after_kill(tmp_path, monkeypatch):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=10, size=20, channels=1)
    config = helpers.tiny_config(folder, num_steps=4)
    config.nice.enabled = True
    config.nice.beta_init = 0.05
    config.nice.target = -1.0  # r > -1: beta rises by `step` on every D step
    config.nice.step = 0.01
    full, resumed = helpers.full_and_resumed(config, tmp_path, monkeypatch, 2, 4)
    # 4 iterations x n_dis 2 D steps, +0.01 each
    assert float(full["parts"]["nice"]["beta"]) == pytest.approx(0.05 + 8 * 0.01, abs=1e-6)
    jax.tree.map(np.testing.assert_array_equal, full["parts"], resumed["parts"])
    jax.tree.map(np.testing.assert_array_equal, full, resumed)
