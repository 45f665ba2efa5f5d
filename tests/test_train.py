"""Tests of the training step and loop: losses, masked updates, EMA, no-retrace, the n_dis scan,
end-to-end and resume (also of the LeCam anchors)."""

import json
import os

import chex
import helpers
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan_lth import checkpointing, config_lib, parallel, pipeline
from jaxgan_lth.sparsity import masks as masks_lib
from jaxgan_lth.training import loop, losses, updates

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
    params, opt = updates.masked_update(tx, grads, opt, params, dense)
    mask = {"w": jnp.array([True, False, True, False])}
    params = masks_lib.apply(params, mask)
    for _ in range(3):
        params, opt = updates.masked_update(tx, grads, opt, params, mask)
    w = np.asarray(params["w"])
    assert w[1] == 0.0 and w[3] == 0.0
    assert w[0] != 0.0 and w[2] != 0.0


def test_ema_update_formula_start_and_mask():
    ema = {"params": {"w": jnp.array([1.0, 1.0])}, "batch_stats": {}}
    g = {"params": {"w": jnp.array([3.0, 5.0])}, "batch_stats": {"m": jnp.array(7.0)}}
    mask = {"w": jnp.array([True, False])}
    out = updates.ema_update(ema, g, mask, jnp.float32(0.9), jnp.int32(10), start=5)
    np.testing.assert_allclose(out["params"]["w"], [0.9 * 1 + 0.1 * 3, 0.0], rtol=1e-6)
    assert float(out["batch_stats"]["m"]) == 7.0
    before = updates.ema_update(ema, g, mask, jnp.float32(0.9), jnp.int32(2), start=5)
    np.testing.assert_allclose(before["params"]["w"], [3.0, 0.0])  # copy before ema_start


def test_ema_update_buffers_average_or_copy():
    ema = {"params": {"w": jnp.array([1.0])},
           "batch_stats": {"bn": {"mean": jnp.array([2.0, 4.0]), "var": jnp.array(1.0)}}}
    g = {"params": {"w": jnp.array([3.0])},
         "batch_stats": {"bn": {"mean": jnp.array([10.0, 0.0]), "var": jnp.array(5.0)}}}
    mask = {"w": jnp.array([True])}
    avg = updates.ema_update(ema, g, mask, jnp.float32(0.75), jnp.int32(3), start=0,
                              buffers="average")
    # 0.75 * ema + 0.25 * g, for the parameters and the statistics alike
    np.testing.assert_allclose(avg["params"]["w"], [0.75 * 1 + 0.25 * 3], rtol=1e-6)
    np.testing.assert_allclose(avg["batch_stats"]["bn"]["mean"], [4.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(avg["batch_stats"]["bn"]["var"], 2.0, rtol=1e-6)
    copy = updates.ema_update(ema, g, mask, jnp.float32(0.75), jnp.int32(3), start=0,
                               buffers="copy")
    np.testing.assert_allclose(copy["params"]["w"], [1.5], rtol=1e-6)
    np.testing.assert_array_equal(copy["batch_stats"]["bn"]["mean"], [10.0, 0.0])
    assert float(copy["batch_stats"]["bn"]["var"]) == 5.0
    # before ema_start the statistics are G's under "average" too (decay 0)
    early = updates.ema_update(ema, g, mask, jnp.float32(0.75), jnp.int32(3), start=5,
                                buffers="average")
    np.testing.assert_array_equal(early["batch_stats"]["bn"]["mean"], [10.0, 0.0])
    np.testing.assert_array_equal(early["params"]["w"], [3.0])


# ---- compiled steps --------------------------------------------------------------------------


def _engine(root, **overrides):
    folder = helpers.make_image_folder(root / "imgs", n=12, size=20, channels=1)
    config = helpers.tiny_config(folder)
    for path, value in overrides.items():
        section, key = path.split("__")
        config[section][key] = value
    return loop.build_engine(config, str(root / "work"))


def _state_and_masks(engine):
    state = loop.initial_state(engine, engine.config.seed)
    return state, loop.dense_masks(state)


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    return _engine(tmp_path_factory.mktemp("tiny"))


@pytest.mark.slow
def test_iteration_does_not_retrace_for_new_masks_batches_and_hparams(tiny_engine):
    engine = tiny_engine
    state, masks = _state_and_masks(engine)
    step = jax.jit(helpers.max_traces(engine.fns.iteration))  # a retrace raises
    state, m1 = step(state, masks, engine.data, engine.fns.hparams)
    rng = np.random.default_rng(0)
    masks2 = jax.tree.map(lambda m: jnp.asarray(rng.random(m.shape) > 0.5), masks)
    data2 = {"images": -engine.data["images"], "labels": engine.data["labels"]}
    hp2 = dict(engine.fns.hparams, ema_decay=jnp.float32(0.5))
    state, m2 = step(state, masks2, data2, hp2)
    state, m3 = step(state, masks2, engine.data, engine.fns.hparams)
    assert int(state["step"]) == 3
    for m in (m1, m2, m3):
        assert all(np.isfinite(float(v)) for v in m.values())


@pytest.fixture(scope="module")
def lecam_engine(tmp_path_factory):
    return _engine(tmp_path_factory.mktemp("lecam"), lecam__weight=0.3, lecam__start=1)


@pytest.mark.slow
def test_iteration_traces_once_across_masks_every_strength_and_part_state(lecam_engine):
    engine = lecam_engine
    assert set(engine.fns.hparams) == {"ema_decay", "lecam_weight", "lecam_decay"}
    state, masks = _state_and_masks(engine)
    assert set(state["parts"]) == {"lecam"}
    step = jax.jit(helpers.max_traces(engine.fns.iteration))  # a retrace raises
    hp = dict(engine.fns.hparams)
    state, m = step(state, masks, engine.data, hp)
    assert "lecam_reg" in m and "lecam_anchor_real" in m
    rng = np.random.default_rng(1)
    # new masks
    masks = jax.tree.map(lambda x: jnp.asarray(rng.random(x.shape) > 0.3), masks)
    state, m = step(state, masks, engine.data, hp)
    # every traced strength, one at a time
    for name in sorted(hp):
        hp = dict(hp, **{name: jnp.float32(0.5 * float(hp[name]) + 0.05)})
        state, m = step(state, masks, engine.data, hp)
    # the LeCam part's state (its anchors) replaced from outside, placed like the loop places
    # states (replicated over the mesh: a committed sharding change would be a new signature)
    anchors = {"real": jnp.float32(5.0), "fake": jnp.float32(-3.0)}
    state = dict(state, parts={"lecam": parallel.replicate(anchors, engine.mesh)})
    state, m = step(state, masks, engine.data, hp)
    assert int(state["step"]) == 3 + len(hp)
    assert all(np.isfinite(float(v)) for v in m.values())
    # the anchors moved away from the values set above (the state really is an input)
    assert float(state["parts"]["lecam"]["real"]) != 5.0


@pytest.fixture(scope="module", params=[0, 1], ids=["unroll_auto", "rolled"])
def scan_engine(request, tmp_path_factory):
    """The tiny engine with the n_dis scan as configured by default (unrolled on CPUs) and as
    a rolled while loop (train.n_dis_unroll = 1, what accelerators run)."""
    if request.param == 0:
        return request.getfixturevalue("tiny_engine")
    return _engine(tmp_path_factory.mktemp("rolled"), train__n_dis_unroll=request.param)


@pytest.mark.slow
def test_n_dis_scan_equals_explicit_d_steps_then_g_step(scan_engine):
    engine = scan_engine
    assert int(engine.config.train.n_dis) == 2
    state, masks = _state_and_masks(engine)
    hp = engine.fns.hparams
    iteration = jax.jit(engine.fns.iteration)
    state, _ = iteration(state, masks, engine.data, hp)  # start from step 1, not theta_0
    state = jax.device_get(state)  # host copy, reused by both paths
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    d_step, g_step = jax.jit(engine.fns.d_step), jax.jit(engine.fns.g_step)
    s1, md1 = d_step(state, masks, engine.data, jax.random.fold_in(key, 0), hp)
    s2, md2 = d_step(s1, masks, engine.data, jax.random.fold_in(key, 1), hp)
    s3, mg = g_step(s2, masks, engine.data, jax.random.fold_in(key, 2), hp)
    got, metrics = iteration(state, masks, engine.data, hp)
    assert int(got["step"]) == int(state["step"]) + 1 == int(s3["step"]) + 1
    for net in ("g", "d", "ema"):
        flat = jax.tree_util.tree_flatten_with_path(s3[net])[0]
        for (path, want), have in zip(flat, jax.tree.leaves(got[net])):
            np.testing.assert_allclose(np.asarray(have), np.asarray(want), rtol=1e-6,
                                       atol=1e-7, err_msg=net + jax.tree_util.keystr(path))
    # D's parameters really moved in both D steps (the comparison is not trivial)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                         s1["d"]["params"], s2["d"]["params"]))
    assert max(moved) > 0
    for k in md1:
        want = (float(md1[k]) + float(md2[k])) / 2
        assert float(metrics[k]) == pytest.approx(want, rel=1e-6, abs=1e-7), k
    assert float(md1["d_loss"]) != float(md2["d_loss"])
    for k in mg:
        assert float(metrics[k]) == pytest.approx(float(mg[k]), rel=1e-6, abs=1e-7), k


def test_chex_max_traces_on_d_step(tiny_engine):
    engine = tiny_engine
    state, masks = _state_and_masks(engine)
    d_step = jax.jit(chex.assert_max_traces(engine.fns.d_step, n=1))
    key = jax.random.key(1)
    state, _ = d_step(state, masks, engine.data, key, engine.fns.hparams)
    masks = jax.tree.map(lambda m: m.at[(0,) * m.ndim].set(False), masks)
    state, _ = d_step(state, masks, engine.data, jax.random.key(2), engine.fns.hparams)


def test_d_step_changes_only_d_params_and_decreases_nothing_it_should_not(tiny_engine):
    engine = tiny_engine
    state, masks = _state_and_masks(engine)
    new, metrics = jax.jit(engine.fns.d_step)(
        state, masks, engine.data, jax.random.key(0), engine.fns.hparams
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


@pytest.mark.slow
def test_end_to_end_writes_outputs(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=10, size=24, channels=3)
    config = helpers.tiny_config(folder, num_steps=4, resolution=32, channels=3)
    workdir = str(tmp_path / "run")
    summary = pipeline.train_and_evaluate(config, workdir)
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


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, monkeypatch):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=10, size=20, channels=1)
    config = helpers.tiny_config(folder, num_steps=6)
    full_dir = str(tmp_path / "full")
    pipeline.train_and_evaluate(config, full_dir)

    # Kill the second run inside step 5 (after the checkpoint at step 4, before step 6's).
    killed_dir = str(tmp_path / "killed")
    with monkeypatch.context() as m:
        helpers.kill_at(m, 4)
        with pytest.raises(KeyboardInterrupt):
            pipeline.train_and_evaluate(config, killed_dir)
    ck = checkpointing.Checkpointer(os.path.join(killed_dir, "train", "checkpoints"))
    assert ck.all_steps() == [0, 4]
    ck.close()
    pipeline.train_and_evaluate(config, killed_dir)  # the same command again

    helpers.assert_trees_equal(helpers.final_state(config, full_dir, 6),
                  helpers.final_state(config, killed_dir, 6))


@pytest.mark.slow
def test_lecam_anchors_resume_after_kill(tmp_path, monkeypatch):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=10, size=20, channels=1)
    config = helpers.tiny_config(folder, num_steps=4)
    config.lecam.weight = 0.3
    config.lecam.start = 1  # anchors decay and R_LC is on from the second iteration
    full_dir, killed_dir = str(tmp_path / "full"), str(tmp_path / "killed")
    pipeline.train_and_evaluate(config, full_dir)
    # 2 steps (checkpoint at step 2), killed inside step 3, then the same command to step 4.
    with monkeypatch.context() as m:
        helpers.kill_at(m, 2)
        with pytest.raises(KeyboardInterrupt):
            pipeline.train_and_evaluate(config, killed_dir)
    pipeline.train_and_evaluate(config, killed_dir)
    full = helpers.final_state(config, full_dir, 4)
    resumed = helpers.final_state(config, killed_dir, 4)
    anchors = full["parts"]["lecam"]
    assert set(anchors) == {"real", "fake"}
    assert float(anchors["real"]) != 0.0 and float(anchors["fake"]) != 0.0  # moved from init
    helpers.assert_trees_equal(anchors, resumed["parts"]["lecam"])
    helpers.assert_trees_equal(full, resumed)


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


@pytest.mark.slow
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
    summary = pipeline.train_and_evaluate(config, workdir)["stages"]["train"]
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
