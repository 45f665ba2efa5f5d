"""Tests of the training loop: losses, masked updates, EMA, no-retrace, end-to-end and resume."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import helpers
from jaxgan_lth import checkpointing, config_lib, losses, train
from jaxgan_lth.sparsity import masks as masks_lib


# ---- losses (hand-computed) -----------------------------------------------------------------


def test_hinge_and_nonsaturating_losses_match_hand_values():
    real = jnp.array([2.0, 0.5, -1.0])
    fake = jnp.array([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0, 0.5, 2] -> 2.5/3 ; relu(1 + fake) = [0, 1, 2] -> 1
    assert float(losses.d_loss(real, fake, "hinge")) == pytest.approx(2.5 / 3 + 1.0)
    assert float(losses.g_loss(fake, "hinge")) == pytest.approx(1.0 / 3)  # -mean(-2,0,1)
    sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
    want_d = np.mean(sp(-np.array([2.0, 0.5, -1.0]))) + np.mean(sp(np.array([-2.0, 0.0, 1.0])))
    assert float(losses.d_loss(real, fake, "nonsaturating")) == pytest.approx(want_d, rel=1e-6)
    assert float(losses.g_loss(fake, "nonsaturating")) == pytest.approx(
        np.mean(sp(np.array([2.0, 0.0, -1.0]))), rel=1e-6
    )
    with pytest.raises(ValueError, match="wasserstein"):
        losses.g_loss(fake, "wasserstein")


# ---- masked optimizer update and EMA ----------------------------------------------------------


def test_masked_update_keeps_pruned_weights_exactly_zero_despite_momentum():
    tx = optax.adam(0.1)
    params = {"w": jnp.array([1.0, -2.0, 3.0, 0.5])}
    dense = {"w": jnp.ones(4, bool)}
    opt = tx.init(params)
    grads = {"w": jnp.array([1.0, 1.0, -1.0, 1.0])}
    # Build up momentum densely, then prune two weights (their Adam moments are non-zero).
    params, opt = train._masked_update(tx, grads, opt, params, dense)
    mask = {"w": jnp.array([True, False, True, False])}
    params = masks_lib.apply(params, mask)
    for _ in range(3):
        params, opt = train._masked_update(tx, grads, opt, params, mask)
    w = np.asarray(params["w"])
    assert w[1] == 0.0 and w[3] == 0.0
    assert w[0] != 0.0 and w[2] != 0.0


def test_ema_update_formula_start_and_mask():
    ema = {"params": {"w": jnp.array([1.0, 1.0])}, "batch_stats": {}}
    g = {"params": {"w": jnp.array([3.0, 5.0])}, "batch_stats": {"m": jnp.array(7.0)}}
    mask = {"w": jnp.array([True, False])}
    out = train.ema_update(ema, g, mask, jnp.float32(0.9), jnp.int32(10), start=5)
    np.testing.assert_allclose(out["params"]["w"], [0.9 * 1 + 0.1 * 3, 0.0], rtol=1e-6)
    assert float(out["batch_stats"]["m"]) == 7.0
    before = train.ema_update(ema, g, mask, jnp.float32(0.9), jnp.int32(2), start=5)
    np.testing.assert_allclose(before["params"]["w"], [3.0, 0.0])  # copy before ema_start


# ---- compiled steps --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    folder = helpers.make_image_folder(root / "imgs", n=12, size=20, channels=1)
    config = helpers.tiny_config(folder)
    return train.build(config, str(root / "work"))


def test_iteration_does_not_retrace_for_new_masks_batches_and_hparams(tiny_setup):
    setup = tiny_setup
    state = train.initial_state(setup)
    traced = []

    def counted(state, masks, data, hparams):
        traced.append(1)
        return setup.fns.iteration(state, masks, data, hparams)

    step = jax.jit(counted)
    masks = {
        "g": masks_lib.ones_like(state["g"]["params"]),
        "d": masks_lib.ones_like(state["d"]["params"]),
    }
    state, m1 = step(state, masks, setup.data, setup.fns.hparams)
    rng = np.random.default_rng(0)
    masks2 = jax.tree.map(lambda m: jnp.asarray(rng.random(m.shape) > 0.5), masks)
    data2 = {"images": -setup.data["images"], "labels": setup.data["labels"]}
    hp2 = dict(setup.fns.hparams, ema_decay=jnp.float32(0.5))
    state, m2 = step(state, masks2, data2, hp2)
    state, m3 = step(state, masks2, setup.data, setup.fns.hparams)
    assert len(traced) == 1
    assert int(state["step"]) == 3
    for m in (m1, m2, m3):
        assert all(np.isfinite(float(v)) for v in m.values())


def test_chex_max_traces_on_d_step(tiny_setup):
    setup = tiny_setup
    state = train.initial_state(setup)
    masks = {
        "g": masks_lib.ones_like(state["g"]["params"]),
        "d": masks_lib.ones_like(state["d"]["params"]),
    }
    d_step = jax.jit(chex.assert_max_traces(setup.fns.d_step, n=1))
    key = jax.random.key(1)
    state, _ = d_step(state, masks, setup.data, key, setup.fns.hparams)
    masks = jax.tree.map(lambda m: m.at[(0,) * m.ndim].set(False), masks)
    state, _ = d_step(state, masks, setup.data, jax.random.key(2), setup.fns.hparams)


def test_d_step_changes_only_d_params_and_decreases_nothing_it_should_not(tiny_setup):
    setup = tiny_setup
    state = train.initial_state(setup)
    masks = {
        "g": masks_lib.ones_like(state["g"]["params"]),
        "d": masks_lib.ones_like(state["d"]["params"]),
    }
    new, metrics = jax.jit(setup.fns.d_step)(
        state, masks, setup.data, jax.random.key(0), setup.fns.hparams
    )
    chex.assert_trees_all_equal(new["g"]["params"], state["g"]["params"])
    diffs = jax.tree.leaves(
        jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new["d"]["params"],
                     state["d"]["params"])
    )
    assert max(diffs) > 0
    # Hinge loss = mean relu(1 - D(x)) + mean relu(1 + D(G(z))) >= 0.
    assert float(metrics["d_loss"]) >= 0.0


# ---- end to end and resume -------------------------------------------------------------------


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_end_to_end_writes_outputs(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=10, size=24, channels=3)
    config = helpers.tiny_config(folder, num_steps=4, resolution=32, channels=3)
    workdir = str(tmp_path / "run")
    summary = train.train_and_evaluate(config, workdir)
    assert summary["stages"]["train"]["steps"] == 4
    assert os.path.exists(os.path.join(workdir, "config.json"))
    with open(os.path.join(workdir, "summary.json")) as f:
        assert json.load(f)["stages"]["train"]["steps"] == 4
    samples = sorted(os.listdir(os.path.join(workdir, "train", "samples")))
    assert samples == ["step_000002.png", "step_000004.png"]
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "train", "checkpoints"), keep=1)
    assert ckpt.all_steps() == [0, 4]  # step 0 kept, latest 1 kept
    events = [f for f in os.listdir(os.path.join(workdir, "train")) if "tfevents" in f]
    assert events, "no TensorBoard event file"


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, monkeypatch):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=10, size=20, channels=1)
    config = helpers.tiny_config(folder, num_steps=6)
    full_dir = str(tmp_path / "full")
    train.train_and_evaluate(config, full_dir)

    # Kill the second run inside step 5 (after the checkpoint at step 4, before step 6's).
    real_build = train.build

    def build_with_kill(cfg, workdir):
        setup = real_build(cfg, workdir)
        inner = setup.jit_iteration

        def iteration(state, *args):
            if int(state["step"]) == 4:
                raise KeyboardInterrupt("simulated kill")
            return inner(state, *args)

        setup.jit_iteration = iteration
        return setup

    killed_dir = str(tmp_path / "killed")
    monkeypatch.setattr(train, "build", build_with_kill)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, killed_dir)
    monkeypatch.setattr(train, "build", real_build)
    train.train_and_evaluate(config, killed_dir)  # the same command again

    def final(workdir):
        setup = train.build(config, workdir)
        ck = checkpointing.Checkpointer(os.path.join(workdir, "train", "checkpoints"))
        state, _ = ck.restore(6, train.initial_state(setup))
        return state

    _leaves_equal(final(full_dir), final(killed_dir))


def test_changed_config_in_existing_workdir_is_refused(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=4, size=20, channels=1)
    config = helpers.tiny_config(folder)
    config_lib.write_or_check(config, str(tmp_path))
    config.train.g_lr = 1e-3
    with pytest.raises(ValueError, match=r"train\.g_lr: 0\.0002 -> 0\.001"):
        config_lib.write_or_check(config, str(tmp_path))
    config.train.g_lr = 2e-4
    config.train.num_steps = 100  # extending a run is allowed
    config_lib.write_or_check(config, str(tmp_path))


def test_unknown_config_key_is_rejected_with_its_name():
    config = helpers.tiny_config("/nonexistent")
    config.lock()
    with pytest.raises(AttributeError, match="num_step"):
        config.train.num_step = 5


@pytest.mark.parametrize(
    "key,value,match",
    [
        (("train", "loss"), "wgan", "train.loss"),
        (("train", "n_dis"), 0, "train.n_dis"),
        (("train", "g_betas"), (0.5, 1.5), "train.g_betas"),
        (("train", "ema_decay"), 1.0, "ema_decay"),
    ],
)
def test_bad_config_values_are_named(key, value, match):
    config = helpers.tiny_config("/nonexistent")
    config[key[0]][key[1]] = value
    with pytest.raises(ValueError, match=match):
        config_lib.validate(config)


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    ck = checkpointing.Checkpointer(str(tmp_path / "ck"), keep=1)
    state = {"w": jnp.arange(4.0), "step": jnp.int32(0)}
    ck.save(0, state, {"round": 0})
    ck.close()
    # Damage every data file of step 0.
    for root, _, files in os.walk(tmp_path / "ck" / "0"):
        for f in files:
            if "state" in root:
                with open(os.path.join(root, f), "wb") as fh:
                    fh.write(b"garbage")
    ck = checkpointing.Checkpointer(str(tmp_path / "ck"), keep=1)
    with pytest.raises(checkpointing.CheckpointError, match="corrupt"):
        ck.restore(0, state)
    with pytest.raises(checkpointing.CheckpointError, match="no checkpoint for step 3"):
        ck.restore(3, state)


def test_evaluation_during_training_writes_fid_kid_best_and_diagnostic(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=12, size=20, channels=1)
    config = helpers.tiny_config(folder, num_steps=4)
    config.eval.enabled = True
    config.eval.every = 2
    config.eval.num_samples = 10
    config.eval.batch_size = 10
    config.eval.reference_split = "train"  # an image folder has a single split
    config.eval.diagnostic_samples = 8
    config.log_every = 2
    workdir = str(tmp_path / "run")
    summary = train.train_and_evaluate(config, workdir)["stages"]["train"]
    with open(os.path.join(workdir, "train", "eval.json")) as f:
        log = json.load(f)
    assert [h["step"] for h in log["history"]] == [2, 4]
    best = min(log["history"], key=lambda h: h["fid"])
    assert summary["best_fid"] == best["fid"] and summary["best_step"] == best["step"]
    assert summary["final_fid"] == log["history"][-1]["fid"] > 0
    assert np.isfinite(summary["final_kid"])
    ck = checkpointing.Checkpointer(os.path.join(workdir, "train", "best"))
    assert ck.all_steps() == [best["step"]]
    assert os.path.exists(os.path.join(workdir, "fid_stats"))
    m = summary["last_metrics"]
    for k in ("d_acc_train_real", "d_acc_fake"):
        assert 0.0 <= m[k] <= 1.0
    assert "d_acc_heldout_real" not in m  # image folders have no held-out split
