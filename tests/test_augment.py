"""Tests of jaxgan_lth.augment: DiffAugment ops against hand-computed numpy, AdvAug PGD by hand."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan_lth.augment import advaug as aa
from jaxgan_lth.augment import diffaugment as da


def _images(b=2, h=8, w=8, c=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(b, h, w, c)).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# DiffAugment: policy parsing
# ------------------------------------------------------------------------------------------------


def test_parse_policy_accepts_combinations_and_whitespace():
    assert da.parse_policy("") == ()
    assert da.parse_policy("   ") == ()
    assert da.parse_policy("color") == ("color",)
    assert da.parse_policy(" translation ,cutout ") == ("translation", "cutout")
    assert da.parse_policy("cutout,color,translation") == ("cutout", "color", "translation")
    assert da.policy_ops("color,cutout") == ("brightness", "saturation", "contrast", "cutout")


def test_parse_policy_bad_name_errors():
    with pytest.raises(ValueError, match=r"'colour'.*color, translation, cutout"):
        da.parse_policy("colour,translation")
    with pytest.raises(ValueError):
        da.diff_augment(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), "color,flip")
    with pytest.raises(TypeError):
        da.parse_policy(None)


def test_empty_policy_is_identity():
    x = jnp.asarray(_images())
    y = da.diff_augment(jax.random.key(0), x, "")
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


# ------------------------------------------------------------------------------------------------
# DiffAugment: deterministic ops vs numpy
# ------------------------------------------------------------------------------------------------


def test_translation_plus1_minus2_moves_pixels_and_zero_fills():
    x = _images(b=3, h=6, w=7, c=2)
    shift_h = np.array([1, -3, 0], np.int32)
    shift_w = np.array([-2, 4, 0], np.int32)
    y = np.asarray(da.translate(jnp.asarray(x), jnp.asarray(shift_h), jnp.asarray(shift_w)))
    expected = np.zeros_like(x)
    # Sample 0, (+1, -2): pixel (i, j) -> (i + 1, j - 2); row 0 and the last two columns uncovered.
    expected[0, 1:, :-2] = x[0, :-1, 2:]
    # Sample 1, (-3, +4): pixel (i, j) -> (i - 3, j + 4).
    expected[1, :-3, 4:] = x[1, 3:, :-4]
    expected[2] = x[2]
    np.testing.assert_array_equal(y, expected)
    # Exactly the uncovered cells are zero (inputs are non-zero almost surely).
    assert np.all(y[0, 0] == 0) and np.all(y[0, :, -2:] == 0)
    assert np.count_nonzero(y[0]) == (6 - 1) * (7 - 2) * 2


def test_translation_matches_reference_gather_with_negated_draw():
    # The reference gathers out[i, j] = pad(x)[clip(i + t_h + 1, 0, H + 1), clip(j + t_w + 1, ...)]
    # with a 1-pixel zero pad; our shift is -t.
    x = _images(b=2, h=5, w=5, c=1)
    t_h, t_w = np.array([2, -1]), np.array([-3, 1])
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = np.clip(np.arange(5)[None, :] + t_h[:, None] + 1, 0, 6)
    cols = np.clip(np.arange(5)[None, :] + t_w[:, None] + 1, 0, 6)
    ref = np.stack([pad[b][rows[b]][:, cols[b]] for b in range(2)])
    y = da.translate(jnp.asarray(x), jnp.asarray(-t_h), jnp.asarray(-t_w))
    np.testing.assert_array_equal(np.asarray(y), ref)


def test_cutout_centre_square_and_clipped_border():
    x = np.ones((3, 32, 32, 2), np.float32)
    size = da.cutout_size(32, 32)
    assert size == (16, 16)
    y = np.asarray(
        da.cutout(jnp.asarray(x), jnp.array([16, 0, 31]), jnp.array([16, 32, 5]), size)
    )
    expected = np.ones_like(x)
    expected[0, 8:24, 8:24] = 0  # centre: one full 16x16 square
    expected[1, 0:8, 24:32] = 0  # centre (0, 32): clipped to 8x8 in the top-right corner
    expected[2, 23:32, 0:13] = 0  # centre (31, 5): rows 23..38 -> 23..31, cols -3..12 -> 0..12
    np.testing.assert_array_equal(y, expected)
    assert (y[0] == 0).sum() == 16 * 16 * 2


def test_color_ops_match_formulas():
    x = _images(b=2, h=3, w=4, c=3)
    b = np.array([0.3, -0.45], np.float32)
    s = np.array([0.0, 1.7], np.float32)
    c = np.array([0.5, 1.4], np.float32)
    np.testing.assert_allclose(
        np.asarray(da.brightness(jnp.asarray(x), jnp.asarray(b))), x + b[:, None, None, None],
        rtol=1e-6)
    m_pix = x.mean(axis=3, keepdims=True)
    np.testing.assert_allclose(
        np.asarray(da.saturation(jnp.asarray(x), jnp.asarray(s))),
        (x - m_pix) * s[:, None, None, None] + m_pix, rtol=1e-5, atol=1e-6)
    m_img = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(
        np.asarray(da.contrast(jnp.asarray(x), jnp.asarray(c))),
        (x - m_img) * c[:, None, None, None] + m_img, rtol=1e-5, atol=1e-6)
    # Saturation factor 0 makes every pixel grey (all channels equal to the channel mean).
    y0 = np.asarray(da.saturation(jnp.asarray(x), jnp.asarray(s)))[0]
    np.testing.assert_allclose(y0, np.broadcast_to(m_pix[0], y0.shape), rtol=1e-6)


def test_saturation_is_identity_for_grayscale():
    x = jnp.asarray(_images(c=1))
    y = da.saturation(x, jnp.array([0.0, 1.9]))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


def test_color_policy_composes_ops_with_documented_keys():
    x = jnp.asarray(_images())
    key = jax.random.key(3)
    k_b, k_s, k_c = jax.random.split(key, 3)
    expected = da.contrast(
        da.saturation(da.brightness(x, da.sample_brightness(k_b, 2)), da.sample_saturation(k_s, 2)),
        da.sample_contrast(k_c, 2))
    np.testing.assert_allclose(
        np.asarray(da.diff_augment(key, x, "color")), np.asarray(expected), rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# DiffAugment: gradients, draws, jit
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_gradient_flows_through_every_op():
    x = jnp.asarray(_images(b=2, h=8, w=8, c=3))
    w = jnp.asarray(_images(b=2, h=8, w=8, c=3, seed=1))
    ops = {
        "brightness": lambda v: da.brightness(v, jnp.array([0.2, -0.1])),
        "saturation": lambda v: da.saturation(v, jnp.array([0.5, 1.5])),
        "contrast": lambda v: da.contrast(v, jnp.array([0.7, 1.2])),
        "translation": lambda v: da.translate(v, jnp.array([1, -2]), jnp.array([0, 3])),
        "cutout": lambda v: da.cutout(v, jnp.array([4, 0]), jnp.array([4, 8]), 4),
        "policy": lambda v: da.diff_augment(jax.random.key(1), v, "color,translation,cutout"),
    }
    for name, op in ops.items():
        g = jax.grad(lambda v: jnp.sum(w * op(v)))(x)
        assert np.all(np.isfinite(np.asarray(g))), name
        assert np.count_nonzero(np.asarray(g)) > 0, name
    # Exact adjoints of the linear ops.
    g = jax.grad(lambda v: jnp.sum(w * da.brightness(v, jnp.array([0.2, -0.1]))))(x)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    g = jax.grad(lambda v: jnp.sum(w * ops["translation"](v)))(x)
    np.testing.assert_array_equal(
        np.asarray(g), np.asarray(da.translate(w, jnp.array([-1, 2]), jnp.array([0, -3]))))
    g = jax.grad(lambda v: jnp.sum(w * ops["cutout"](v)))(x)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(ops["cutout"](w)))


def test_draws_ranges_and_differ_across_samples():
    key = jax.random.key(0)
    n = 512
    b = np.asarray(da.sample_brightness(key, n))
    s = np.asarray(da.sample_saturation(key, n))
    c = np.asarray(da.sample_contrast(key, n))
    assert b.min() >= -0.5 and b.max() < 0.5 and len(np.unique(b)) > n // 2
    assert s.min() >= 0.0 and s.max() < 2.0
    assert c.min() >= 0.5 and c.max() < 1.5
    sh, sw = (np.asarray(v) for v in da.sample_translation(key, n, 32, 32))
    assert set(sh.tolist()) == set(range(-4, 5)) and set(sw.tolist()) == set(range(-4, 5))
    assert not np.array_equal(sh, sw)
    ch, cw = (np.asarray(v) for v in da.sample_cutout(key, n, 32, 32))
    assert set(ch.tolist()) == set(range(0, 33)) and set(cw.tolist()) == set(range(0, 33))
    assert da.translation_max_shift(28) == 3 and da.cutout_size(28, 28) == (14, 14)
    # Same image repeated in a batch -> different augmented images per sample.
    x = jnp.broadcast_to(jnp.asarray(_images(b=1, h=16, w=16)), (4, 16, 16, 3))
    for policy in ("color", "translation", "cutout"):
        y = np.asarray(da.diff_augment(jax.random.key(5), x, policy))
        assert len({y[i].tobytes() for i in range(4)}) > 1, policy


def test_diff_augment_jit_shapes_and_determinism():
    x = jnp.asarray(_images(b=2, h=8, w=8, c=3))
    fn = jax.jit(da.diff_augment, static_argnames="policy")
    y1 = fn(jax.random.key(2), x, policy="color,translation,cutout")
    y2 = fn(jax.random.key(2), x, policy="color,translation,cutout")
    y3 = fn(jax.random.key(3), x, policy="color,translation,cutout")
    assert y1.shape == x.shape and y1.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    assert not np.array_equal(np.asarray(y1), np.asarray(y3))
    with pytest.raises(ValueError):
        da.diff_augment(jax.random.key(0), jnp.zeros((4, 4, 3)), "color")


# ------------------------------------------------------------------------------------------------
# AdvAug
# ------------------------------------------------------------------------------------------------

# Linear head h @ w with B=4, F=3; w has no zero entries.
_W = np.array([0.5, -2.0, 1.0], np.float32)
# Logits h @ w = [2.0, 0.5, -0.5, -3.0]: rows 0 (hinge real) and 3 (hinge fake) are inactive.
_H = np.array([[4.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [-6.0, 0.0, 0.0]], np.float32)


def _linear_head(h):
    return h @ jnp.asarray(_W)


def test_step_size_zero_gives_zero_delta_and_clean_loss():
    h = jnp.asarray(_H)
    for branch in aa.BRANCHES:
        delta = aa.adversarial_delta(_linear_head, h, branch, step_size=0.0, num_steps=3)
        np.testing.assert_array_equal(np.asarray(delta), np.zeros_like(_H))
    delta = aa.adversarial_delta(_linear_head, h, "d_real", step_size=0.0)
    clean = aa.d_real_loss(_linear_head(h))
    adv = aa.d_real_loss(_linear_head(h + delta))
    assert float(adv) == float(clean)
    assert float(aa.combine(clean, adv)) == pytest.approx(float(clean))


def test_one_pgd_step_equals_step_times_sign_of_hand_gradient():
    h = jnp.asarray(_H)
    step = 0.01
    sw = np.sign(_W)
    active_real = (_H @ _W < 1.0)[:, None]  # relu(1 - s) active: [F, T, T, T]
    active_fake = (_H @ _W > -1.0)[:, None]  # relu(1 + s) active: [T, T, T, F]
    expected = {
        # reference_code: grad of mean(h @ w) = w / B on every row, for every branch.
        ("reference_code", "d_real"): np.broadcast_to(step * sw, _H.shape),
        ("reference_code", "d_fake"): np.broadcast_to(step * sw, _H.shape),
        ("reference_code", "g"): np.broadcast_to(step * sw, _H.shape),
        # paper/hinge: d_real grad = -w / B where 1 - s > 0 else 0 (sign(0) = 0).
        ("paper", "d_real"): np.where(active_real, -step * sw, 0.0),
        # d_fake grad = +w / B where 1 + s > 0 else 0.
        ("paper", "d_fake"): np.where(active_fake, step * sw, 0.0),
        # g: grad of -mean(h @ w) = -w / B.
        ("paper", "g"): np.broadcast_to(-step * sw, _H.shape),
    }
    for (direction, branch), exp in expected.items():
        delta = aa.adversarial_delta(
            _linear_head, h, branch, direction=direction, loss="hinge", step_size=step)
        np.testing.assert_allclose(
            np.asarray(delta), exp, rtol=1e-6, err_msg=f"{direction} {branch}")
    # The hand gradient itself (before the sign), via pgd_perturbation's objective.
    obj = aa.branch_objective(_linear_head, "d_real", direction="paper")
    g = jax.grad(lambda d: obj(h + d))(jnp.zeros_like(h))
    np.testing.assert_allclose(np.asarray(g), np.where(active_real, -_W / 4, 0.0), rtol=1e-6)
    # Non-saturating: softplus terms are never flat, so every row moves.
    for branch, sgn in (("d_real", -1), ("d_fake", 1), ("g", -1)):
        delta = aa.adversarial_delta(_linear_head, h, branch, loss="nonsaturating", step_size=step)
        np.testing.assert_allclose(
            np.asarray(delta), np.broadcast_to(sgn * step * sw, _H.shape), rtol=1e-6)
    # A zero weight has zero gradient -> sign(0) = 0 -> no perturbation of that coordinate.
    w0 = jnp.array([0.0, 1.0, -1.0])
    delta = aa.pgd_perturbation(lambda d: jnp.mean((h + d) @ w0), h, step_size=step)
    np.testing.assert_allclose(np.asarray(delta), np.broadcast_to([0.0, step, -step], _H.shape))
    # Descending flips the sign.
    delta = aa.pgd_perturbation(lambda d: jnp.mean((h + d) @ w0), h, step_size=step, ascend=False)
    np.testing.assert_allclose(np.asarray(delta), np.broadcast_to([0.0, -step, step], _H.shape))


def test_projection_keeps_delta_in_ball_and_random_start():
    h = jnp.asarray(_H)
    obj = aa.branch_objective(_linear_head, "g", direction="paper")
    radius = 0.025
    delta = aa.pgd_perturbation(
        lambda d: obj(h + d), h, num_steps=5, step_size=0.01, radius=radius, project=True)
    assert np.max(np.abs(np.asarray(delta))) <= radius + 1e-7
    # Saturates at the radius along -sign(w) (linear objective).
    np.testing.assert_allclose(np.asarray(delta), np.broadcast_to(-radius * np.sign(_W), _H.shape),
                               rtol=1e-6)
    # Without projection it keeps walking: 5 steps of 0.01.
    delta = aa.pgd_perturbation(lambda d: obj(h + d), h, num_steps=5, step_size=0.01)
    np.testing.assert_allclose(np.abs(np.asarray(delta)), 0.05, rtol=1e-5)
    # Random start lies in the ball; zero steps return it unchanged.
    d0 = aa.pgd_perturbation(lambda d: obj(h + d), h, key=jax.random.key(0), num_steps=0,
                             step_size=0.01, radius=radius, random_start=True)
    assert np.max(np.abs(np.asarray(d0))) <= radius and np.count_nonzero(np.asarray(d0)) > 0
    with pytest.raises(ValueError):
        aa.pgd_perturbation(lambda d: obj(h + d), h, step_size=0.01, project=True)
    with pytest.raises(ValueError):
        aa.pgd_perturbation(lambda d: obj(h + d), h, step_size=0.01, radius=0.1, random_start=True)
    with pytest.raises(ValueError):
        aa.branch_objective(_linear_head, "d_real", direction="paper_v2")
    with pytest.raises(ValueError):
        aa.branch_objective(_linear_head, "d", direction="paper")
    with pytest.raises(ValueError):
        aa.d_real_loss(jnp.zeros(2), "wgan")


def test_paper_direction_increases_loss_on_nonlinear_head():
    rng = np.random.default_rng(0)
    w1 = jnp.asarray(rng.normal(size=(6, 5)).astype(np.float32))
    w2 = jnp.asarray(rng.normal(size=(5,)).astype(np.float32))

    def head(h):
        return jnp.tanh(h @ w1) @ w2

    h = jnp.asarray(rng.normal(size=(8, 6)).astype(np.float32) * 0.3)
    losses = {"d_real": aa.d_real_loss, "d_fake": aa.d_fake_loss, "g": aa.g_loss}
    for loss_kind in aa.LOSS_KINDS:
        for branch, fn in losses.items():
            for num_steps, project in ((1, False), (3, True)):
                delta = aa.adversarial_delta(head, h, branch, loss=loss_kind, num_steps=num_steps,
                                             step_size=0.01, radius=0.02, project=project)
                clean = float(fn(head(h), loss_kind))
                adv = float(fn(head(h + delta), loss_kind))
                assert adv >= clean, (loss_kind, branch, num_steps)
                assert np.count_nonzero(np.asarray(delta)) > 0


def test_delta_is_a_constant_offset_for_training_gradients():
    h = jnp.asarray(_H)

    def adv_loss(h, step):
        delta = aa.adversarial_delta(_linear_head, h, "d_fake", step_size=step)
        return aa.d_fake_loss(_linear_head(h + delta)), delta

    delta = adv_loss(h, 0.01)[1]
    g_h = jax.grad(lambda v: adv_loss(v, 0.01)[0])(h)
    g_const = jax.grad(lambda v: aa.d_fake_loss(_linear_head(v + delta)))(h)
    np.testing.assert_allclose(np.asarray(g_h), np.asarray(g_const), rtol=1e-6)
    # No gradient reaches the strength through delta's construction.
    g_step = jax.grad(lambda s: jnp.sum(adv_loss(h, s)[1]))(0.01)
    assert float(g_step) == 0.0


def test_strengths_are_traced_no_retrace():
    h = jnp.asarray(_H)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(h, key, step_size, radius, scale, lam):
        delta = aa.adversarial_delta(_linear_head, h, "d_real", num_steps=2, step_size=step_size,
                                     radius=radius, project=True)
        noise = aa.noise_perturbation(key, h, scale, "gaussian")
        clean = aa.d_real_loss(_linear_head(h))
        adv = aa.d_real_loss(_linear_head(h + delta + noise))
        return aa.combine(clean, adv, lam), delta

    chex.clear_trace_counter()
    key = jax.random.key(0)
    outs = [step(h, key, s, r, n, lam) for s, r, n, lam in
            ((0.01, 0.02, 0.0, 0.5), (0.05, 0.1, 0.1, 0.25), (0.0, 1.0, 0.0, 0.0))]
    # Different strengths gave different results from one compiled function.
    assert np.max(np.abs(np.asarray(outs[0][1]))) == pytest.approx(0.02)
    assert np.max(np.abs(np.asarray(outs[1][1]))) == pytest.approx(0.1)
    assert np.count_nonzero(np.asarray(outs[2][1])) == 0


def test_noise_perturbation_and_combine():
    key = jax.random.key(0)
    u = np.asarray(aa.noise_perturbation(key, (256, 4), 0.1, "uniform"))
    assert u.shape == (256, 4) and u.min() >= 0.0 and u.max() < 0.1
    g = np.asarray(aa.noise_perturbation(key, (256, 4), 0.1, "gaussian"))
    assert g.min() < 0.0 and 0.05 < g.std() < 0.15
    z = np.asarray(aa.noise_perturbation(key, jnp.zeros((3, 2)), 0.0, "gaussian"))
    np.testing.assert_array_equal(z, np.zeros((3, 2)))
    with pytest.raises(ValueError):
        aa.noise_perturbation(key, (2,), 0.1, "laplace")
    assert float(aa.combine(jnp.float32(1.0), jnp.float32(3.0))) == pytest.approx(2.0)
    assert float(aa.combine(jnp.float32(1.0), jnp.float32(3.0), 0.25)) == pytest.approx(1.5)
    assert float(aa.combine(jnp.float32(1.0), jnp.float32(3.0), 0.0)) == 1.0


def test_fill_value_is_used_for_uncovered_and_cut_pixels_and_is_traced():
    # translation: the uncovered row/columns take the fill; everything else is the shifted image
    x = _images(b=2, h=6, w=7, c=1)
    sh, sw = jnp.array([1, 0]), jnp.array([-2, 0])
    y0 = np.asarray(da.translate(jnp.asarray(x), sh, sw))
    y1 = np.asarray(da.translate(jnp.asarray(x), sh, sw, fill=-1.0))
    uncovered = np.zeros(x.shape, bool)
    uncovered[0, 0] = True
    uncovered[0, :, -2:] = True
    np.testing.assert_array_equal(y1[uncovered], -1.0)
    np.testing.assert_array_equal(y1[~uncovered], y0[~uncovered])
    # cutout: the rectangle takes the fill
    ones = jnp.ones((1, 8, 8, 2))
    c = np.asarray(da.cutout(ones, jnp.array([4]), jnp.array([4]), 4, fill=-0.5))
    expected = np.ones((1, 8, 8, 2), np.float32)
    expected[0, 2:6, 2:6] = -0.5
    np.testing.assert_array_equal(c, expected)
    # the policy driver: a traced fill compiles once for two values, and fill = 0 is the reference
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(fill):
        return da.diff_augment(jax.random.key(3), jnp.asarray(x), "translation,cutout", fill=fill)

    a, b = np.asarray(f(jnp.float32(0.0))), np.asarray(f(jnp.float32(-1.0)))
    np.testing.assert_array_equal(
        a, np.asarray(da.diff_augment(jax.random.key(3), jnp.asarray(x), "translation,cutout")))
    changed = a != b
    assert changed.any() and np.all(a[changed] == 0.0) and np.all(b[changed] == -1.0)


def test_diffaug_fill_outside_range_is_refused_with_its_key():
    from configs import default
    from jaxgan_lth.parts.diffaug import DiffAugment

    config = default.get_config()
    config.diffaug.policy = "translation"
    config.diffaug.fill = 1.5
    with pytest.raises(ValueError, match=r"config\.diffaug\.fill.*1\.5.*\[-1\.0, 1\.0\]"):
        DiffAugment.validate(config)
    config.diffaug.fill = -1.0
    DiffAugment.validate(config)
