"""The parts of the composed step, by hand arithmetic (LeCam's anchors and penalty)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxgan_lth import parts
from jaxgan_lth.parts.lecam import LeCam


def _lecam(weight=0.3, decay=0.9, start=2, anchor_init=7.0):
    config = default.get_config()
    config.lecam = parts.LeCam.default_config(weight=weight)
    config.lecam.decay = decay
    config.lecam.start = start
    config.lecam.anchor_init = anchor_init
    return config, LeCam(config)


def _ctx(real, fake, step):
    return parts.DContext(logits_real=jnp.asarray(real, jnp.float32),
                          logits_fake=jnp.asarray(fake, jnp.float32), x_real=None,
                          d_apply=None, step=jnp.int32(step))


# Three D outputs (reals, fakes) at G iterations step = 0, 1, 2 (1-based itr = 1, 2, 3).
SEQUENCE = [
    ([1.0, 3.0], [-1.0, 0.0]),  # means  2, -0.5
    ([0.0, 2.0], [1.0, -3.0]),  # means  1, -1
    ([-2.0, 4.0], [3.0, 1.0]),  # means  1,  2
]


def test_lecam_d_term_anchors_reg_and_start_by_hand():
    config, lecam = _lecam(start=2)
    hp = {"lecam_weight": jnp.float32(0.3), "lecam_decay": jnp.float32(0.9)}
    state = lecam.init_state()
    assert float(state["real"]) == float(state["fake"]) == 7.0
    # itr 1 < start 2: decay 0, the anchors become the batch means (anchor_init overwritten);
    # reg = mean(relu([1, 3] - -0.5)^2) + mean(relu(2 - [-1, 0])^2) = 7.25 + 6.5; not added.
    # itr 2 = start: decay 0.9: R = 0.9*2 + 0.1*1 = 1.9, F = 0.9*-0.5 + 0.1*-1 = -0.55;
    # reg = mean([0.55, 2.55]^2) + mean([0.9, 4.9]^2) = 3.4025 + 12.41; still not added.
    # itr 3 > start: R = 0.9*1.9 + 0.1*1 = 1.81, F = 0.9*-0.55 + 0.1*2 = -0.295;
    # reg = mean(relu([-1.705, 4.295])^2) + mean(relu([-1.19, 0.81])^2) = 9.2235125 + 0.32805,
    # added with weight 0.3.
    want = [
        ((2.0, -0.5), 7.25 + 6.5, 0.0),
        ((1.9, -0.55), 3.4025 + 12.41, 0.0),
        ((1.81, -0.295), 9.2235125 + 0.32805, 0.3 * (9.2235125 + 0.32805)),
    ]
    for step, ((real, fake), (anchors, reg, value)) in enumerate(zip(SEQUENCE, want)):
        val, metrics, state = lecam.d_term(_ctx(real, fake, step), state, hp)
        assert float(state["real"]) == pytest.approx(anchors[0], rel=1e-6), step
        assert float(state["fake"]) == pytest.approx(anchors[1], rel=1e-6), step
        assert float(metrics["lecam_reg"]) == pytest.approx(reg, rel=1e-6), step
        assert float(val) == pytest.approx(value, rel=1e-6, abs=0.0), step
    assert set(lecam.metrics_of_state(state)) == {"lecam_anchor_real", "lecam_anchor_fake"}


def test_lecam_anchors_carry_no_gradient():
    _, lecam = _lecam(start=0)
    hp = {"lecam_weight": jnp.float32(0.3), "lecam_decay": jnp.float32(0.9)}
    state = {"real": jnp.float32(1.9), "fake": jnp.float32(-0.55)}
    real, fake = SEQUENCE[2]

    def value(r, f):
        return lecam.d_term(_ctx(r, f, 5), state, hp)[0]

    gr, gf = jax.grad(value, argnums=(0, 1))(jnp.asarray(real), jnp.asarray(fake))
    # With the anchors constant (R = 1.81, F = -0.295): d/dr_i = 0.3 * 2 relu(r_i - F) / 2,
    # d/df_i = -0.3 * 2 relu(R - f_i) / 2.
    np.testing.assert_allclose(gr, [0.0, 0.3 * 4.295], rtol=1e-5)
    np.testing.assert_allclose(gf, [0.0, -0.3 * 0.81], rtol=1e-5)


def test_lecam_start_zero_decays_from_anchor_init_and_adds_reg_at_once():
    _, lecam = _lecam(start=0, anchor_init=7.0)
    hp = {"lecam_weight": jnp.float32(0.3), "lecam_decay": jnp.float32(0.9)}
    real, fake = SEQUENCE[0]
    val, m, state = lecam.d_term(_ctx(real, fake, 0), lecam.init_state(), hp)
    # R = 0.9*7 + 0.1*2 = 6.5, F = 0.9*7 + 0.1*-0.5 = 6.25
    assert float(state["real"]) == pytest.approx(6.5, rel=1e-6)
    assert float(state["fake"]) == pytest.approx(6.25, rel=1e-6)
    # reg = mean(relu([1, 3] - 6.25)^2) + mean(relu(6.5 - [-1, 0])^2) = 0 + (56.25 + 42.25)/2
    assert float(m["lecam_reg"]) == pytest.approx(49.25, rel=1e-6)
    assert float(val) == pytest.approx(0.3 * 49.25, rel=1e-6)


def test_lecam_zero_debiased_anchors_by_hand():
    """lecam_loss.py's TF zero-debiased EMA (decay 0.99), no start delay.

    The debiased average after t updates is the mean of the batch means weighted by
    d^(t - i) (sum_i (1 - d) d^(t - i) v_i / (1 - d^t)), and R_LC is added from step 0.
    """
    config = default.get_config()
    config.lecam = parts.LeCam.stylegan2_config(weight=1e-6)
    parts.validate_config(config)
    lecam = LeCam(config)
    assert (lecam.cfg.decay, lecam.cfg.start, lecam.zero_debias) == (0.99, 0, True)
    hp = {"lecam_weight": jnp.float32(1e-6), "lecam_decay": jnp.float32(0.99)}
    state = lecam.init_state()
    d = 0.99
    for t, (real, fake) in enumerate(SEQUENCE, start=1):
        val, m, state = lecam.d_term(_ctx(real, fake, t - 1), state, hp)
        w = np.array([d ** (t - i) for i in range(1, t + 1)])
        ar = sum(wi * np.mean(r) for wi, (r, _) in zip(w, SEQUENCE[:t])) / w.sum()
        af = sum(wi * np.mean(f) for wi, (_, f) in zip(w, SEQUENCE[:t])) / w.sum()
        assert float(state["real"]) == pytest.approx(ar, rel=1e-5), t
        assert float(state["fake"]) == pytest.approx(af, rel=1e-5), t
        reg = (np.mean(np.maximum(np.array(real) - af, 0) ** 2)
               + np.mean(np.maximum(ar - np.array(fake), 0) ** 2))
        assert float(m["lecam_reg"]) == pytest.approx(reg, rel=1e-5), t
        assert float(val) == pytest.approx(1e-6 * reg, rel=1e-5), t
        if t == 1:  # the first update is the batch mean itself (no pull towards 0)
            assert (float(state["real"]), float(state["fake"])) == pytest.approx((2.0, -0.5))
        if t == 2:  # (0.99 * 2 + 1) / 1.99 and (0.99 * -0.5 - 1) / 1.99
            assert float(state["real"]) == pytest.approx(2.98 / 1.99, rel=1e-5)
            assert float(state["fake"]) == pytest.approx(-1.495 / 1.99, rel=1e-5)
    config.lecam.start = 5
    with pytest.raises(ValueError, match=r"lecam\.start = 5 with zero_debias"):
        parts.validate_config(config)


def test_lecam_is_built_only_when_weighted_and_bad_values_are_named():
    config, _ = _lecam(weight=0.0)
    assert "lecam" not in [p.name for p in parts.build(config)]
    config.lecam.weight = 0.3
    assert "lecam" in [p.name for p in parts.build(config)]
    config.lecam.decay = 1.0
    with pytest.raises(ValueError, match=r"lecam\.decay"):
        parts.validate_config(config)
    config.lecam.decay = 0.9
    config.lecam.start = -1
    with pytest.raises(ValueError, match=r"lecam\.start"):
        parts.validate_config(config)


def test_a_part_missing_a_required_hook_cannot_be_built():
    """The Part interface's hooks are abstract: a subclass without them fails at construction."""
    from jaxgan_lth.parts import base

    class NoAugment(base.Augmentation):
        name, section = "no_augment", "lecam"

        @classmethod
        def enabled(cls, config):
            return True

    with pytest.raises(TypeError, match="augment"):
        NoAugment(default.get_config())

    class NoEnabled(base.LossTerm):
        name, section = "no_enabled", "lecam"

    with pytest.raises(TypeError, match="enabled"):
        NoEnabled(default.get_config())

    class NoSection(base.LossTerm):  # its config section undeclared (no default_config)
        name, section = "no_section", "lecam"

        @classmethod
        def enabled(cls, config):
            return True

    with pytest.raises(TypeError, match="default_config"):
        NoSection(default.get_config())
    # the registered parts implement every hook
    for name, cls in parts.REGISTRY.items():
        assert not cls.__abstractmethods__, (name, cls.__abstractmethods__)
