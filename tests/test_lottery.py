"""The lottery-ticket pipeline: masked training, IMP rounds with rewinding, resume, bad input."""

import json
import os

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxgan_lth import checkpointing, pipeline
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.sparsity import pruning
from jaxgan_lth.stages import lottery, lottery_config
from jaxgan_lth.training import loop, run_axis


def _flat(tree):
    return {"/".join(k): np.asarray(v) for k, v in
            traverse_util.flatten_dict(jax.device_get(tree)).items()}


def _pipeline_config(folder, rounds=3, steps=3, prune="g"):
    config = helpers.tiny_config(folder, num_steps=steps)
    config.stages = "imp,ticket"
    config.imp.rounds = rounds
    config.imp.num_steps = steps
    config.ticket.num_steps = steps
    config.ticket.diffaug.policy = "translation"
    config.ticket.advaug.mode = "pgd"
    config.sparsity.prune = prune
    config.sample_every = 100
    config.checkpoint_every = 2
    return config


def _lottery(config, workdir):
    return lottery.Lottery(config, workdir, pipeline.validate_config(config))


def _like(lot):
    """Shapes of one run's state (what the pipeline checks masks against)."""
    return jax.eval_shape(lot.engine("imp").fns.init, jax.random.key(0))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return helpers.make_image_folder(tmp_path_factory.mktemp("imgs"), n=8, size=20, channels=1)


@pytest.fixture(scope="module")
def finished(folder, tmp_path_factory):
    """An uninterrupted 3-round pipeline pruning G and D (shared by several tests)."""
    workdir = str(tmp_path_factory.mktemp("full"))
    config = _pipeline_config(folder, prune="gd")
    summary = pipeline.train_and_evaluate(config, workdir)
    return config, workdir, summary


@pytest.mark.slow
def test_training_under_a_mask_keeps_pruned_weights_zero_in_params_ema_and_adam(folder, tmp_path):
    config = helpers.tiny_config(folder)
    engine = loop.build_engine(config, str(tmp_path))
    state = loop.initial_state(engine, 0)
    rng = np.random.default_rng(0)
    masks = {n: jax.tree.map(lambda p: jnp.asarray(rng.random(p.shape) > 0.5),
                             state[n]["params"]) for n in ("g", "d")}
    state = lottery._apply_masks(state, masks)
    before = {n: _flat(state[n]["params"]) for n in ("g", "d")}
    step = jax.jit(engine.fns.iteration)
    for _ in range(3):
        state, _ = step(state, masks, engine.data, engine.fns.hparams)
    for net, trees in (("g", [state["g"]["params"], state["ema"]["params"]]),
                       ("d", [state["d"]["params"]])):
        m = _flat(masks[net])
        # Adam moments of pruned weights never see a gradient: their updates are exactly 0.
        adam = state[f"{net}_opt"].inner_state[0]
        trees = trees + [adam.mu, adam.nu]
        for tree in trees:
            for path, value in _flat(tree).items():
                assert np.all(value[~m[path]] == 0.0), (net, path)
        # ... while kept weights did train.
        after = _flat(state[net]["params"])
        assert any(np.any(after[p][m[p]] != before[net][p][m[p]]) for p in m)


@pytest.mark.slow
def test_imp_densities_follow_0_8_power_and_summary(finished):
    config, workdir, summary = finished
    rounds = summary["stages"]["imp"]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for r in rounds:
        for net in ("g", "d"):
            # whole weights: |density - 0.8^r| <= r / n_prunable
            assert abs(r[f"{net}_density"] - 0.8 ** r["round"]) < 1e-3
            assert r[f"{net}_sparsity"] == pytest.approx(1 - r[f"{net}_density"])
        assert r["steps"] == config.imp.num_steps
    ticket = summary["stages"]["ticket"]
    assert ticket["round"] == 3 and abs(ticket["g_density"] - 0.8 ** 3) < 1e-3
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f)["stages"]["ticket"]["round"] == 3
    with open(os.path.join(workdir, "imp", "round_01", "densities.json")) as f:
        rows = json.load(f)["g"]
    assert sum(r["kept"] for r in rows) / sum(r["size"] for r in rows) == pytest.approx(
        rounds[1]["g_density"], abs=1e-6)
    # the ticket trained under m_3: its final weights are zero outside the mask
    lot = _lottery(config, workdir)
    m3 = lot.load_masks(3, _like(lot))[0]
    state, step = loop.load_run_state(lot.engine("ticket"), os.path.join(workdir, "ticket"))
    assert step == config.ticket.num_steps
    for net, tree in (("g", state["g"]["params"]), ("g", state["ema"]["params"]),
                      ("d", state["d"]["params"])):
        m = _flat(m3[net])
        for path, value in _flat(tree).items():
            assert np.all(value[~m[path]] == 0.0), (net, path)


@pytest.mark.slow
def test_rewinding_restores_step0_values_bit_for_bit(finished):
    config, workdir, _ = finished
    lot = _lottery(config, workdir)
    theta0 = lot.theta0()
    assert len(theta0) == 1
    theta0 = jax.device_get(theta0[0])
    m2 = lot.load_masks(2, theta0)[0]
    ck = checkpointing.Checkpointer(os.path.join(lot.round_dir(2), "checkpoints"))
    target = loop.abstract_state(lot.engine("imp"), 1)
    start = run_axis.unstack(jax.device_get(ck.restore(0, target)[0]), 1)[0]
    for net in ("g", "d"):
        t0, s0, m = (_flat(theta0[net]["params"]), _flat(start[net]["params"]),
                     _flat(m2[net]))
        for path in t0:
            np.testing.assert_array_equal(s0[path][m[path]], t0[path][m[path]])
            assert np.all(s0[path][~m[path]] == 0)
    # the final trained round-2 weights differ from theta_0 (training happened)
    end = run_axis.unstack(jax.device_get(ck.restore(config.imp.num_steps, target)[0]), 1)[0]
    ck.close()
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(end["g"]),
                                              jax.tree.leaves(start["g"])))


@pytest.mark.slow
def test_kill_inside_round_2_then_rerun_gives_same_masks(folder, finished, tmp_path, monkeypatch):
    config, full_dir, full_summary = finished
    killed = str(tmp_path / "killed")
    with monkeypatch.context() as m:
        # rounds 0 and 1 take 3 iterations each; die in the 3rd iteration of round 2, after
        # its step-2 checkpoint, so the rerun resumes inside the round
        helpers.kill_at(m, call=9)
        with pytest.raises(KeyboardInterrupt):
            pipeline.train_and_evaluate(config, killed)
    assert checkpointing.Checkpointer(os.path.join(killed, "masks")).all_steps() == [0, 1, 2]
    assert checkpointing.Checkpointer(
        os.path.join(killed, "imp", "round_02", "checkpoints")).all_steps() == [0, 2]
    summary = pipeline.train_and_evaluate(config, killed)
    a, b = _lottery(config, full_dir), _lottery(config, killed)
    like = _like(a)
    for r in range(4):
        ma, mb = a.load_masks(r, like), b.load_masks(r, like)
        for x, y in zip(jax.tree.leaves(ma), jax.tree.leaves(mb)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert summary["stages"]["ticket"]["g_density"] == full_summary["stages"]["ticket"]["g_density"]
    # the resumed round 2 ends with exactly the weights of the uninterrupted one
    sa, _ = loop.load_run_state(a.engine("imp"), a.round_dir(2))
    sb, _ = loop.load_run_state(b.engine("imp"), b.round_dir(2))
    for x, y in zip(jax.tree.leaves(jax.device_get(sa)), jax.tree.leaves(jax.device_get(sb))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_ticket_baselines_and_target_sparsity(finished, tmp_path):
    config, workdir, _ = finished
    like = _like(_lottery(config, workdir))
    config = config.copy_and_resolve_references()
    config.ticket.target_sparsity = 0.3  # nearest round: r=2 (sparsity 0.36)
    masks, info = _lottery(config, workdir).ticket_masks(like)
    assert info["round"] == 2 and len(masks) == 1
    config.ticket.target_sparsity = 0.0
    config.ticket.round = 3
    ref, _ = _lottery(config, workdir).ticket_masks(like)
    ref = ref[0]
    config.ticket.mask_type = "random_like"
    rnd, info = _lottery(config, workdir).ticket_masks(like)
    assert info["mask_type"] == "random_like"
    for net in ("g", "d"):
        for a, b in zip(pruning.density_table(ref[net]), pruning.density_table(rnd[0][net])):
            assert a["kept"] == b["kept"]
        assert any(np.any(np.asarray(x) != np.asarray(y)) for x, y in
                   zip(jax.tree.leaves(ref[net]), jax.tree.leaves(rnd[0][net])))
    config.ticket.mask_type = "random_global"
    glob, _ = _lottery(config, workdir).ticket_masks(like)
    assert pruning.density(glob[0]["g"]) == pytest.approx(pruning.density(ref["g"]), abs=1e-3)
    config.ticket.mask_type = "omp"
    omp, _ = _lottery(config, workdir).ticket_masks(like)
    assert pruning.density(omp[0]["g"]) == pytest.approx(pruning.density(ref["g"]), abs=1e-4)
    config.ticket.mask_type = "dense"
    dense, _ = _lottery(config, workdir).ticket_masks(like)
    assert pruning.density(dense[0]["g"]) == 1.0


@pytest.mark.slow
def test_mask_transfer_from_another_workdir_and_bad_sources(finished, folder, tmp_path):
    config, workdir, _ = finished
    config = config.copy_and_resolve_references()
    config.ticket.mask_workdir = workdir
    other = str(tmp_path / "other")
    lot = _lottery(config, other)
    like = _like(lot)
    masks, info = lot.ticket_masks(like)
    assert info["mask_source"].startswith(workdir) and info["round"] == 3
    config.ticket.mask_workdir = str(tmp_path / "empty")
    with pytest.raises(ValueError, match="holds no masks"):
        _lottery(config, other).ticket_masks(like)
    config.ticket.mask_workdir = ""
    config.ticket.round = 7
    with pytest.raises(ValueError, match=r"round 7 does not exist.*\[0, 1, 2, 3\]"):
        _lottery(config, workdir).ticket_masks(like)


@pytest.mark.slow
def test_mask_of_a_different_model_names_first_mismatching_path(finished, tmp_path):
    config, workdir, _ = finished
    config = config.copy_and_resolve_references()
    config.model.g_channels = 16  # a different G: stored masks no longer fit
    lot = _lottery(config, workdir)
    with pytest.raises(ValueError, match="does not match the model"):
        lot.load_masks(1, _like(lot))
    params = jax.device_get(loop.initial_state(lot.engine("imp"), 0)["g"]["params"])
    bad = masks_lib.ones_like(params)
    bad = jax.tree.map(lambda m: m, bad)
    bad["linear_in"] = {"kernel": jnp.ones((3, 3), bool)}
    with pytest.raises(ValueError, match="linear_in"):
        pruning.check_mask(bad, params)


def test_ema_chain_weights_and_prune_on_a_hand_case():
    """The released SNGAN EMA chain (train_impg_less.py: `pruning_generate(avg_gen_net, 0.2)`).

    One layer of 5 weights after round 1: G's chain m_1 = [1 1 1 1 0], the EMA chain
    a_1 = [1 1 1 0 1]. The EMA (masked by m_1 here) is [0.9 0.1 0.5 0.3 0]; theta_0 of the
    weight G's chain pruned (index 4) is 0.7: in the reference the EMA averages G's dense
    weight_orig, which stays 0.7 there (no gradient), so the EMA chain ranks it at 0.7. Pruning
    round(0.2 * 4) = 1 of a_1's 4 weights removes index 1 (0.1): a_2 = [1 0 1 0 1], keeping
    index 4, which the training chain has pruned. With the masked EMA (0 at index 4) one would
    prune index 4 instead.
    """
    ema = {"conv": {"kernel": np.array([0.9, 0.1, 0.5, 0.3, 0.0], np.float32)}}
    theta0 = {"conv": {"kernel": np.array([0.2, 0.4, -0.6, 0.8, -0.7], np.float32)}}
    m1 = {"conv": {"kernel": np.array([1, 1, 1, 1, 0], bool)}}
    a1 = {"conv": {"kernel": np.array([1, 1, 1, 0, 1], bool)}}
    w = pruning.ema_chain_weights(ema, m1, theta0)
    np.testing.assert_array_equal(w["conv"]["kernel"], np.float32([0.9, 0.1, 0.5, 0.3, -0.7]))
    a2 = pruning.global_magnitude_prune(w, a1, 0.2)
    np.testing.assert_array_equal(a2["conv"]["kernel"], [1, 0, 1, 0, 1])
    masked = pruning.global_magnitude_prune(ema, a1, 0.2)
    np.testing.assert_array_equal(masked["conv"]["kernel"], [1, 1, 1, 0, 0])


@pytest.mark.slow
def test_two_mask_chains_as_the_released_sngan_imp(folder, tmp_path):
    """sparsity.mask_chains="two": rounds train on the G chain, the ticket reads the EMA chain.

    Checked against independent prunings of the saved round states: m_{r+1} = prune(G_r, m_r),
    a_{r+1} = prune(where(m_r, EMA_r, theta_0), a_r); the two chains differ (a large lr and an
    EMA decay of 0.9 make G and its EMA rank the weights differently), and the ticket trains
    under a_2 (its final G is zero outside a_2, not outside m_2).
    """
    config = _pipeline_config(folder, rounds=2, steps=3)
    config.sparsity.mask_chains = "two"
    config.train.g_lr = 0.05
    bad = config.copy_and_resolve_references()
    bad.sparsity.magnitudes = "ema"
    with pytest.raises(ValueError, match="'two' with magnitudes 'g'"):
        lottery_config.validate_lottery(bad)
    workdir = str(tmp_path / "two")
    summary = pipeline.train_and_evaluate(config, workdir)
    lot = _lottery(config, workdir)
    like = _like(lot)
    theta0 = jax.device_get(lot.theta0()[0])
    m = {r: lot.load_masks(r, like)[0] for r in (0, 1, 2)}
    a = {r: lot.load_masks(r, like, lot.ema_ckpt)[0] for r in (0, 1, 2)}
    for r in (0, 1):
        state, _ = loop.load_run_state(lot.engine("imp"), lot.round_dir(r))
        state = jax.device_get(state)
        want_m = pruning.global_magnitude_prune(state["g"]["params"], m[r]["g"], 0.2)
        fill = jax.tree.map(lambda e, k, t: np.where(k, e, t), state["ema"]["params"],
                            m[r]["g"], theta0["g"]["params"])
        want_a = pruning.global_magnitude_prune(fill, a[r]["g"], 0.2)
        for got, want in ((m[r + 1]["g"], want_m), (a[r + 1]["g"], want_a)):
            for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                np.testing.assert_array_equal(x, y)
        assert abs(pruning.density(a[r + 1]["g"]) - 0.8 ** (r + 1)) < 1e-3
    fm2, fa2, fm1 = _flat(m[2]["g"]), _flat(a[2]["g"]), _flat(m[1]["g"])
    assert sum(int((fm2[k] != fa2[k]).sum()) for k in fm2) > 0  # the chains differ
    # a_2 keeps weights G's chain pruned in round 1 (ranked by their theta_0 in the EMA chain)
    assert sum(int((fa2[k] & ~fm1[k]).sum()) for k in fm1) > 0
    ticket = summary["stages"]["ticket"]
    assert ticket["mask_source"].endswith("masks_ema") and ticket["round"] == 2
    state, _ = loop.load_run_state(lot.engine("ticket"), os.path.join(workdir, "ticket"))
    g = _flat(jax.device_get(state)["g"]["params"])
    for k in fa2:
        assert np.all(g[k][~fa2[k]] == 0.0), k
    assert any(np.any(g[k][fa2[k] & ~fm2[k]] != 0.0) for k in fa2)  # trained where m_2 is off


@pytest.mark.parametrize("key,value,match", [
    ("g_ratio", 1.0, "sparsity.g_ratio"), ("d_ratio", 0.0, "sparsity.d_ratio"),
    ("g_ratio", -0.2, r"sparsity.g_ratio = -0.2 must be in \(0, 1\)"),
    ("prune", "x", "sparsity.prune"), ("method", "random", "sparsity.method"),
    ("mask_chains", "three", r"sparsity.mask_chains = 'three'.*accepted: \('one', 'two'\)")])
def test_bad_sparsity_config(folder, tmp_path, key, value, match):
    config = _pipeline_config(folder)
    config.sparsity[key] = value
    with pytest.raises(ValueError, match=match):
        lottery_config.validate_lottery(config)
    workdir = tmp_path / "w"
    with pytest.raises(ValueError, match=match):
        pipeline.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()
