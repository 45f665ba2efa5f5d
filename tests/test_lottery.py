"""The lottery-ticket pipeline: masked training, IMP rounds with rewinding, resume, bad input."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import helpers
from jaxgan_lth import checkpointing, train
from jaxgan_lth.sparsity import lottery, pruning
from jaxgan_lth.sparsity import masks as masks_lib


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


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return helpers.make_image_folder(tmp_path_factory.mktemp("imgs"), n=8, size=20, channels=1)


@pytest.fixture(scope="module")
def finished(folder, tmp_path_factory):
    """An uninterrupted 3-round pipeline pruning G and D (shared by several tests)."""
    workdir = str(tmp_path_factory.mktemp("full"))
    config = _pipeline_config(folder, prune="gd")
    summary = train.train_and_evaluate(config, workdir)
    return config, workdir, summary


def test_training_under_a_mask_keeps_pruned_weights_zero_in_params_ema_and_adam(folder, tmp_path):
    config = helpers.tiny_config(folder)
    setup = train.build(config, str(tmp_path))
    state = train.initial_state(setup)
    rng = np.random.default_rng(0)
    masks = {n: jax.tree.map(lambda p: jnp.asarray(rng.random(p.shape) > 0.5),
                             state[n]["params"]) for n in ("g", "d")}
    state = lottery.Lottery._apply_masks(state, masks)
    before = {n: _flat(state[n]["params"]) for n in ("g", "d")}
    step = jax.jit(setup.fns.iteration)
    for _ in range(3):
        state, _ = step(state, masks, setup.data, setup.fns.hparams)
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


def test_rewinding_restores_step0_values_bit_for_bit(finished):
    config, workdir, _ = finished
    lot = lottery.Lottery(config, workdir)
    theta0 = lot.theta0()
    m2 = lot.load_mask(2, theta0)
    ck = checkpointing.Checkpointer(os.path.join(lot.round_dir(2), "checkpoints"))
    start, _ = ck.restore(0, theta0)
    for net in ("g", "d"):
        t0, s0, m = (_flat(theta0[net]["params"]), _flat(start[net]["params"]),
                     _flat(m2[net]))
        for path in t0:
            np.testing.assert_array_equal(s0[path][m[path]], t0[path][m[path]])
            assert np.all(s0[path][~m[path]] == 0)
    # the final trained round-2 weights differ from theta_0 (training happened)
    end, _ = ck.restore(config.imp.num_steps, theta0)
    assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(jax.device_get(end["g"])),
                                              jax.tree.leaves(jax.device_get(start["g"]))))


def test_kill_inside_round_2_then_rerun_gives_same_masks(folder, finished, tmp_path, monkeypatch):
    config, full_dir, full_summary = finished
    killed = str(tmp_path / "killed")
    real_build = train.build
    calls = {"n": 0}

    def build_with_kill(cfg, workdir):
        setup = real_build(cfg, workdir)
        inner = setup.jit_iteration

        def iteration(state, *args):
            calls["n"] += 1
            # rounds 0 and 1 take 3 iterations each; die in the 2nd iteration of round 2
            if calls["n"] == 8:
                raise KeyboardInterrupt("simulated kill")
            return inner(state, *args)

        setup.jit_iteration = iteration
        return setup

    monkeypatch.setattr(train, "build", build_with_kill)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, killed)
    monkeypatch.setattr(train, "build", real_build)
    assert checkpointing.Checkpointer(os.path.join(killed, "masks")).all_steps() == [0, 1, 2]
    summary = train.train_and_evaluate(config, killed)
    a = lottery.Lottery(config, full_dir)
    b = lottery.Lottery(config, killed)
    theta0 = a.theta0()
    for r in range(4):
        ma, mb = a.load_mask(r, theta0), b.load_mask(r, theta0)
        for x, y in zip(jax.tree.leaves(ma), jax.tree.leaves(mb)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert summary["stages"]["ticket"]["g_density"] == full_summary["stages"]["ticket"]["g_density"]


def test_ticket_baselines_and_target_sparsity(finished, tmp_path):
    config, workdir, _ = finished
    lot = lottery.Lottery(config, workdir)
    theta0 = lot.theta0()
    config = config.copy_and_resolve_references()
    config.ticket.target_sparsity = 0.3  # nearest round: r=2 (sparsity 0.36)
    masks, info = lottery.Lottery(config, workdir).ticket_masks(theta0)
    assert info["round"] == 2
    config.ticket.target_sparsity = 0.0
    config.ticket.round = 3
    ref, _ = lottery.Lottery(config, workdir).ticket_masks(theta0)
    config.ticket.mask_type = "random_like"
    rnd, _ = lottery.Lottery(config, workdir).ticket_masks(theta0)
    for a, b in zip(pruning.density_table(ref["g"]), pruning.density_table(rnd["g"])):
        assert a["kept"] == b["kept"]
    config.ticket.mask_type = "omp"
    omp, _ = lottery.Lottery(config, workdir).ticket_masks(theta0)
    assert pruning.density(omp["g"]) == pytest.approx(pruning.density(ref["g"]), abs=1e-4)


def test_mask_transfer_from_another_workdir_and_bad_sources(finished, folder, tmp_path):
    config, workdir, _ = finished
    config = config.copy_and_resolve_references()
    config.ticket.mask_workdir = workdir
    other = str(tmp_path / "other")
    lot = lottery.Lottery(config, other)
    masks, info = lot.ticket_masks(lot.theta0())
    assert info["mask_source"].startswith(workdir)
    config.ticket.mask_workdir = str(tmp_path / "empty")
    with pytest.raises(ValueError, match="holds no masks"):
        lottery.Lottery(config, other).ticket_masks(lot.theta0())
    config.ticket.mask_workdir = ""
    config.ticket.round = 7
    with pytest.raises(ValueError, match=r"round 7 does not exist.*\[0, 1, 2, 3\]"):
        lottery.Lottery(config, workdir).ticket_masks(lot.theta0())


def test_mask_of_a_different_model_names_first_mismatching_path(finished, tmp_path):
    config, workdir, _ = finished
    config = config.copy_and_resolve_references()
    config.model.g_channels = 16  # a different G: stored masks no longer fit
    lot = lottery.Lottery(config, workdir)
    with pytest.raises(ValueError, match="does not match the model"):
        lot.load_mask(1, lot.theta0())
    params = lot.theta0()["g"]["params"]
    bad = masks_lib.ones_like(params)
    bad = jax.tree.map(lambda m: m, bad)
    bad["linear_in"] = {"kernel": jnp.ones((3, 3), bool)}
    with pytest.raises(ValueError, match="linear_in"):
        pruning.check_mask(bad, params)


@pytest.mark.parametrize("key,value,match", [
    ("g_ratio", 1.0, "sparsity.g_ratio"), ("d_ratio", 0.0, "sparsity.d_ratio"),
    ("prune", "x", "sparsity.prune"), ("method", "random", "sparsity.method")])
def test_bad_sparsity_config(folder, key, value, match):
    config = _pipeline_config(folder)
    config.sparsity[key] = value
    with pytest.raises(ValueError, match=match):
        lottery.validate(config)
