"""Multi-run training: K runs vmapped in one program, on the 4-device data mesh."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers
from configs import advaug_sweep
from jaxgan_lth import checkpointing, multirun, parallel, train

KNOWN = ("ema_decay", "adv_step_size", "adv_radius", "adv_lam", "adv_noise_scale")


def _config(folder, seeds=(0, 1), hparams="", product=False, **advaug):
    config = helpers.tiny_config(folder)
    config.stages = "multirun"
    config.train.n_dis = 1  # quicker compile
    # See test_parallel: keeps rounding noise of zero gradients out of Adam's steps.
    config.train.adam_eps = 1e-4
    for k, v in advaug.items():
        config.advaug[k] = v
    config.multirun = advaug_sweep.multirun_config(seeds, hparams, product)
    return config


# ---- the multirun section -------------------------------------------------------------------


def test_zip_broadcast_product_and_names():
    config = _config("/x", seeds=(0, 1, 2, 3), hparams="adv_step_size=0.0,0.01,0.05,0.1")
    runs = multirun.parse_runs(config, KNOWN)
    assert [r.name for r in runs] == [
        "seed0_adv_step_size0", "seed1_adv_step_size0.01", "seed2_adv_step_size0.05",
        "seed3_adv_step_size0.1",
    ]
    assert runs[1].seed == 1 and runs[1].hparams == {"adv_step_size": 0.01}
    # One seed (or one value) is shared by all runs.
    config = _config("/x", seeds=(5,), hparams="adv_step_size=0.01,0.05; adv_lam=0.3")
    runs = multirun.parse_runs(config, KNOWN)
    assert [(r.seed, r.hparams) for r in runs] == [
        (5, {"adv_step_size": 0.01, "adv_lam": 0.3}),
        (5, {"adv_step_size": 0.05, "adv_lam": 0.3}),
    ]
    config = _config("/x", seeds="0,1", hparams="adv_step_size=0.0,0.1", product=True)
    runs = multirun.parse_runs(config, KNOWN)
    assert [r.name for r in runs] == [
        "seed0_adv_step_size0", "seed0_adv_step_size0.1",
        "seed1_adv_step_size0", "seed1_adv_step_size0.1",
    ]
    hp = multirun.stack_hparams({"ema_decay": 0.9, "adv_step_size": 0.01}, runs)
    np.testing.assert_allclose(hp["adv_step_size"], [0.0, 0.1, 0.0, 0.1])
    np.testing.assert_allclose(hp["ema_decay"], [0.9] * 4)
    assert multirun.parse_runs(_config("/x", seeds=(3,)), KNOWN)[0].name == "seed3"


def test_mismatched_run_lists_name_both_lengths():
    config = _config("/x", seeds=(0, 1, 2), hparams="adv_step_size=0.0,0.01,0.05,0.1")
    with pytest.raises(ValueError, match="seeds has 3 entries but adv_step_size has 4"):
        multirun.parse_runs(config, KNOWN)
    config = _config("/x", seeds=(0,), hparams="adv_step_size=0.0,0.01; adv_lam=0.1,0.2,0.3")
    with pytest.raises(ValueError, match="adv_step_size has 2 entries but adv_lam has 3"):
        multirun.parse_runs(config, KNOWN)


@pytest.mark.parametrize(
    "section,match",
    [
        ({"hparams": "adv_stepsize=0.1"}, "unknown hyper-parameter 'adv_stepsize'"),
        ({"hparams": "adv_step_size 0.1"}, "must look like 'name=v1,v2"),
        ({"hparams": "adv_step_size=0.1,abc"}, "not a number"),
        ({"hparams": "adv_step_size=0.1;adv_step_size=0.2"}, "twice"),
        ({"seeds": (0, 0)}, "identical runs"),
        ({"strategy": "pmap"}, "strategy = 'pmap'"),
    ],
)
def test_bad_multirun_sections_are_named(section, match):
    config = _config("/x")
    config.multirun.update(section)
    with pytest.raises(ValueError, match=match):
        multirun.parse_runs(config, KNOWN)


def test_bad_seeds_are_named():
    assert multirun.parse_seeds("0, 2") == [0, 2] and multirun.parse_seeds(3) == [3]
    with pytest.raises(ValueError, match="'x' is not an integer seed"):
        multirun.parse_seeds("0,x")
    with pytest.raises(ValueError, match="0.5 is not an integer seed"):
        multirun.parse_seeds((0, 0.5))
    with pytest.raises(ValueError, match="holds no seed"):
        multirun.parse_seeds("")


def test_sweeps_that_change_nothing_or_are_out_of_range_are_refused():
    config = _config("/x", hparams="adv_step_size=0.0,0.1")  # advaug.mode is "none"
    with pytest.raises(ValueError, match="sweeps adv_step_size but config.advaug.mode = 'none'"):
        multirun.validate_runs(config, multirun.parse_runs(config, KNOWN))
    config = _config("/x", hparams="adv_radius=0.1,0.2", mode="pgd")
    with pytest.raises(ValueError, match="advaug.radius = 0"):
        multirun.validate_runs(config, multirun.parse_runs(config, KNOWN))
    config = _config("/x", hparams="ema_decay=0.9,1.0")
    with pytest.raises(ValueError, match=r"ema_decay = 1.0 must be in \[0, 1\)"):
        multirun.validate_runs(config, multirun.parse_runs(config, KNOWN))
    with pytest.raises(ValueError, match="no 'multirun' section"):
        multirun.parse_runs(helpers.tiny_config("/x"), KNOWN)


def test_run_axis_not_matching_the_hyperparameters_is_refused():
    states = {"step": jnp.zeros((3,), jnp.int32)}
    masks = {"g": {"w": jnp.ones((3, 2), bool)}}
    hparams = {"adv_step_size": jnp.zeros((4,))}
    with pytest.raises(ValueError, match=r"3 runs but hparams\['adv_step_size'\] has 4 entries"):
        multirun.check_run_axis(states, masks, hparams)
    with pytest.raises(ValueError, match="no run axis"):
        multirun.check_run_axis({"step": jnp.int32(0)}, masks, hparams)
    fns = train.StepFns(*(lambda *a: a,) * 5, hparams={})
    step = multirun.make_multi_iteration(fns)
    with pytest.raises(ValueError, match=r"masks\['g'\]\['w'\] has 2 entries"):
        step(states, {"g": {"w": jnp.ones((2, 2), bool)}}, None, {"x": jnp.zeros((3,))})


def test_advaug_sweep_config_describes_eight_runs():
    config = advaug_sweep.get_config()
    assert config.stages == "multirun" and config.advaug.mode == "pgd"
    runs = multirun.parse_runs(config, KNOWN)
    multirun.validate_runs(config, runs)
    assert len(runs) == 8 and runs[0].name == "seed0_adv_step_size0"


# ---- vmapped runs = separate runs ------------------------------------------------------------


def test_vmapped_runs_equal_separate_runs(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=12, size=20, channels=1)
    config = _config(folder, seeds=(0, 1, 2), hparams="adv_step_size=0.0,0.02,0.1",
                     mode="pgd", networks="d")
    setup = train.build(config, str(tmp_path / "w"))  # 4-device data mesh
    assert setup.mesh.devices.size == 4
    runs = multirun.parse_runs(config, tuple(setup.fns.hparams))
    seeds = [r.seed for r in runs]
    hparams = multirun.stack_hparams(setup.fns.hparams, runs)
    states = multirun.initial_states(setup, seeds)
    masks = multirun.dense_masks(states)
    step = multirun.make_multi_iteration(setup.fns, donate=False)
    metrics = []
    for _ in range(3):
        states, m = step(states, masks, setup.data, hparams)
        metrics.append(jax.device_get(m))
    states = jax.device_get(states)

    for i, seed in enumerate(seeds):
        state = train.initial_state(setup, seed)
        mask = multirun.unstack(masks, i)
        hp = multirun.unstack(hparams, i)
        for t in range(3):
            state, m = jax.jit(setup.fns.iteration)(state, mask, setup.data, hp)
            for k, v in jax.device_get(m).items():
                assert float(metrics[t][k][i]) == pytest.approx(float(v), rel=1e-5, abs=1e-6), (
                    i, t, k)
        flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
        for (path, x), y in zip(flat, jax.tree.leaves(multirun.unstack(states, i))):
            np.testing.assert_allclose(
                np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5,
                err_msg=f"run {i} {jax.tree_util.keystr(path)}",
            )
    # strategy "loop" (the single-run step once per run) gives the same runs.
    mapped = multirun.make_multi_iteration(setup.fns, donate=False, strategy="loop")
    states_m = multirun.initial_states(setup, seeds)
    for _ in range(3):
        states_m, _ = mapped(states_m, masks, setup.data, hparams)
    for x, y in zip(jax.tree.leaves(jax.device_get(states_m)), jax.tree.leaves(states)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)
    # The step sizes really differ in effect: AdvAug's adversarial loss grows with gamma.
    adv = metrics[0]["d_loss_adv"] - metrics[0]["d_loss_clean"]
    assert adv[0] == pytest.approx(0.0, abs=1e-6) and adv[2] > adv[1] > 0


# ---- the stage end to end, resume ------------------------------------------------------------


def _final_state(workdir, config, step):
    setup = train.build(config, workdir)
    ck = checkpointing.Checkpointer(os.path.join(workdir, "runs", "checkpoints"))
    return ck.restore(step, multirun.abstract_states(setup, 2))[0]


class _FakeEvaluator:
    """Stands in for the Inception FID (minutes on this CPU): 'FID' = mean |EMA params|."""

    def evaluate(self, state):
        assert np.ndim(state["step"]) == 0, "one run's state expected"
        leaves = jax.tree.leaves(state["ema"]["params"])
        value = float(np.mean([np.mean(np.abs(np.asarray(x))) for x in leaves]))
        return {"fid": value, "kid": 0.0, "kid_std": 0.0}


def test_train_multirun_writes_every_run_and_resumes(tmp_path, monkeypatch):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=10, size=20, channels=1)
    config = _config(folder, seeds=(0, 1), hparams="ema_decay=0.5,0.9")
    config.keep_checkpoints = 2
    config.eval.enabled = True
    monkeypatch.setattr(train, "make_evaluator", lambda *a: _FakeEvaluator())
    full = str(tmp_path / "full")
    summary = multirun.train_multirun(config, full)
    names = ["seed0_ema_decay0.5", "seed1_ema_decay0.9"]
    assert summary["num_runs"] == 2 and summary["devices"] == 4
    assert sorted(summary["runs"]) == names
    for name in names:
        run_dir = os.path.join(full, "runs", name)
        assert sorted(os.listdir(os.path.join(run_dir, "samples"))) == [
            "step_000002.png", "step_000004.png"]
        assert any("tfevents" in f for f in os.listdir(run_dir))
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
        assert s["steps"] == 4 and s["diverged_at_step"] is None
        assert np.isfinite(s["last_metrics"]["g_loss"])
    assert summary["runs"][names[1]]["hparams"]["ema_decay"] == pytest.approx(0.9)
    fids = [summary["runs"][n]["final_fid"] for n in names]  # one evaluation per run
    assert fids[0] != fids[1] and all(summary["runs"][n]["eval_step"] == 4 for n in names)
    ck = checkpointing.Checkpointer(os.path.join(full, "runs", "checkpoints"))
    assert ck.all_steps() == [0, 2, 4]

    # A run killed after the step-2 checkpoint: the same command continues from step 2.
    killed = str(tmp_path / "killed")
    shutil.copytree(full, killed)
    shutil.rmtree(os.path.join(killed, "runs", "checkpoints", "4"))
    again = multirun.train_multirun(config, killed)
    assert again["steps_this_session"] == 2
    a, b = _final_state(full, config, 4), _final_state(killed, config, 4)
    assert int(a["step"][0]) == 4
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    # Another sweep in the same workdir is refused (config.json guard).
    config.multirun.hparams = "ema_decay=0.5,0.8"
    with pytest.raises(ValueError, match="multirun.hparams"):
        multirun.train_multirun(config, full)


def test_train_multirun_refuses_a_batch_not_divisible_by_the_devices(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=4, size=20, channels=1)
    config = _config(folder)
    config.train.g_batch_size = 10
    with pytest.raises(ValueError, match=r"g_batch_size 10 is not divisible by the 4 devices"):
        multirun.train_multirun(config, str(tmp_path / "w"))
    with pytest.raises(ValueError, match="by the 3 devices"):
        multirun.train_multirun(config, str(tmp_path / "w"), devices=jax.devices()[:3])
    assert parallel.create_mesh().devices.size == 4  # the device scope ended
