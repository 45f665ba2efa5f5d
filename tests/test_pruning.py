"""Tests of masks and pruning against hand-computed masks and counting properties."""

import numpy as np
import pytest

from jaxgan_lth.sparsity import pruning


def _tree():
    return {
        "conv1": {"kernel": np.array([[0.5, -0.1], [0.3, -0.9]]), "bias": np.array([0.01, 5.0])},
        "block": {"conv_sc": {"layer_instance": {"kernel": np.array([0.2, -0.05, 0.7])}}},
        "linear": {"kernel": np.array([[0.001, 0.002]])},
    }


def _dense(tree):
    return {k: _dense(v) if isinstance(v, dict) else np.ones(np.shape(v), bool)
            for k, v in tree.items()}


def test_prunable_paths_default_selects_conv_kernels_only():
    assert pruning.prunable_paths(_tree()) == [
        "block/conv_sc/layer_instance/kernel", "conv1/kernel"]


def test_global_magnitude_prune_matches_hand_computed_mask():
    params = _tree()
    # 7 prunable weights: |w| = conv1 [.5 .1 .3 .9], conv_sc [.2 .05 .7]
    # 20% of 7 = 1.4 -> round -> prune 1: the smallest is conv_sc[1] (0.05).
    m1 = pruning.global_magnitude_prune(params, _dense(params), 0.2)
    np.testing.assert_array_equal(m1["conv1"]["kernel"], [[True, True], [True, True]])
    np.testing.assert_array_equal(
        m1["block"]["conv_sc"]["layer_instance"]["kernel"], [True, False, True])
    # Non-prunable leaves stay dense even with tiny magnitudes.
    assert m1["linear"]["kernel"].all() and m1["conv1"]["bias"].all()
    # Next: 50% of the 6 remaining = 3 -> prune 0.1, 0.2, 0.3.
    m2 = pruning.global_magnitude_prune(params, m1, 0.5)
    np.testing.assert_array_equal(m2["conv1"]["kernel"], [[True, False], [False, True]])
    np.testing.assert_array_equal(
        m2["block"]["conv_sc"]["layer_instance"]["kernel"], [False, False, True])


def test_ties_are_broken_deterministically_by_path_then_index():
    params = {"conv_a": {"kernel": np.ones(4)}, "conv_b": {"kernel": np.ones(4)}}
    m = pruning.global_magnitude_prune(params, _dense(params), 0.25)  # prune 2 of 8
    np.testing.assert_array_equal(m["conv_a"]["kernel"], [False, False, True, True])
    np.testing.assert_array_equal(m["conv_b"]["kernel"], [True, True, True, True])


def test_layerwise_prunes_each_layer_by_the_ratio():
    params = _tree()
    m = pruning.layerwise_magnitude_prune(params, _dense(params), 0.5)
    np.testing.assert_array_equal(m["conv1"]["kernel"], [[True, False], [False, True]])
    # round(0.5 * 3) = 2 (Python rounds half to even) -> prune 0.05 and 0.2.
    np.testing.assert_array_equal(
        m["block"]["conv_sc"]["layer_instance"]["kernel"], [False, False, True])


def test_density_after_r_rounds_is_0_8_to_the_r():
    rng = np.random.default_rng(0)
    params = {"conv1": {"kernel": rng.normal(size=(3, 3, 16, 32))},
              "conv2": {"kernel": rng.normal(size=(3, 3, 32, 8))},
              "linear": {"kernel": rng.normal(size=(8, 4))}}
    n = 3 * 3 * 16 * 32 + 3 * 3 * 32 * 8
    mask = _dense(params)
    for r in range(1, 8):
        mask = pruning.global_magnitude_prune(params, mask, 0.2)
        assert abs(pruning.density(mask) - 0.8 ** r) <= r / n + 1e-12
    assert mask["linear"]["kernel"].all()


def test_one_shot_reaches_target_sparsity():
    rng = np.random.default_rng(1)
    params = {"conv1": {"kernel": rng.normal(size=(50,))},
              "conv2": {"kernel": rng.normal(size=(150,))}}
    m = pruning.one_shot_magnitude_prune(params, 0.7)
    assert pruning.density(m) == pytest.approx(0.3)
    kept = np.concatenate([np.abs(params[k]["kernel"])[m[k]["kernel"]] for k in params])
    dropped = np.concatenate([np.abs(params[k]["kernel"])[~m[k]["kernel"]] for k in params])
    assert kept.min() >= dropped.max()


def test_random_pruning_keeps_per_layer_densities_and_global_sparsity():
    rng = np.random.default_rng(2)
    params = {"conv1": {"kernel": rng.normal(size=(40,))},
              "conv2": {"kernel": rng.normal(size=(60,))}}
    ref = pruning.global_magnitude_prune(params, _dense(params), 0.6)
    rnd = pruning.random_prune_like(0, ref)
    for k in params:
        assert rnd[k]["kernel"].sum() == ref[k]["kernel"].sum()
    assert any((rnd[k]["kernel"] != ref[k]["kernel"]).any() for k in params)
    g = pruning.random_prune_global(0, params, 0.25)
    assert sum(g[k]["kernel"].sum() for k in params) == 75


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_ratio_outside_open_unit_interval_is_rejected(ratio):
    params = _tree()
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        pruning.global_magnitude_prune(params, _dense(params), ratio)


def test_mask_mismatch_names_first_bad_path():
    params = _tree()
    mask = _dense(params)
    mask["conv1"]["kernel"] = np.ones((2, 3), bool)
    with pytest.raises(ValueError, match="conv1/kernel"):
        pruning.check_mask(mask, params)
    mask = _dense(params)
    del mask["linear"]
    with pytest.raises(ValueError, match="linear/kernel.*missing"):
        pruning.check_mask(mask, params)


def test_no_prunable_match_is_an_error():
    with pytest.raises(ValueError, match="no parameter path matches"):
        pruning.prunable_paths({"dense": {"kernel": np.ones(3)}})


def test_density_table_text():
    params = _tree()
    rows = pruning.density_table(pruning.global_magnitude_prune(params, _dense(params), 0.2))
    assert [r["kept"] for r in rows] == [2, 4]
    text = pruning.format_density_table(rows)
    assert "total" in text and "0.8571" in text
