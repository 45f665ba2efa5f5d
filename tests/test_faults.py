"""Fault injection (issue 29): concurrent runs, flipped bytes, kills during a checkpoint, a full
disk, config changes, an unfinished IMP and bad values; each fault gives a clear error before
any write or a resume that loses nothing (bit-identical to an uninterrupted run)."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import helpers
import numpy as np
import pytest

from jaxgan_lth import checkpointing, pipeline, workdir_lock
from jaxgan_lth.stages import ticket_source
from jaxgan_lth.training import loop

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _snapshot(workdir):
    """{relative path: bytes} of every file of ``workdir`` (to show that nothing changed)."""
    out = {}
    for root, _, files in os.walk(workdir):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, workdir)] = fh.read()
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return helpers.make_image_folder(tmp_path_factory.mktemp("imgs"), n=10, size=20, channels=1)


@pytest.fixture(scope="module")
def full6(folder, tmp_path_factory):
    """An uninterrupted 6-step run (checkpoints at 0, 2, 4, 6; two latest kept)."""
    config = helpers.tiny_config(folder, num_steps=6)
    config.keep_checkpoints = 2
    workdir = str(tmp_path_factory.mktemp("full6"))
    pipeline.train_and_evaluate(config, workdir)
    return config, workdir


def _flip(path, offset=None, n=64):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        start = len(data) // 2 if offset is None else offset
        for i in range(start, min(start + n, len(data))):
            data[i] ^= 0xFF
        f.seek(0)
        f.write(bytes(data))


def _largest_data_file(step_dir):
    files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs
             if os.sep + "d" + os.sep in os.path.join(r, f) + os.sep and "state" in r]
    return max(files, key=os.path.getsize)


# ---- verified checkpoints --------------------------------------------------------------------


def test_flipped_byte_falls_back_to_previous_step_and_resumes_bit_identically(
        full6, tmp_path, monkeypatch, caplog):
    config, full_dir = full6
    killed = str(tmp_path / "killed")
    with monkeypatch.context() as m:
        helpers.kill_at(m, 4)  # after the checkpoint at step 4
        with pytest.raises(KeyboardInterrupt):
            pipeline.train_and_evaluate(config, killed)
    ck_dir = os.path.join(killed, "train", "checkpoints")
    assert checkpointing.steps_in(ck_dir) == [0, 2, 4]
    _flip(_largest_data_file(os.path.join(ck_dir, "4")))
    # evaluate's restore refuses the corrupt step, naming it
    engine = loop.build_engine(config, killed)
    with pytest.raises(checkpointing.CorruptCheckpointError, match=r"step 4 .* is corrupt"):
        loop.load_run_state(engine, os.path.join(killed, "train"), "4")
    with caplog.at_level(logging.WARNING):
        pipeline.train_and_evaluate(config, killed)  # the same command again
    assert any("step 4" in r.getMessage() and "corrupt" in r.getMessage() and
               "falling back" in r.getMessage() for r in caplog.records)
    assert os.path.isdir(os.path.join(ck_dir, "corrupt_4"))  # kept aside, not deleted
    helpers.assert_trees_equal(helpers.final_state(config, full_dir, 6),
                               helpers.final_state(config, killed, 6))


def test_kill_between_orbax_and_the_checksum_resumes_bit_identically(full6, tmp_path,
                                                                       monkeypatch, caplog):
    config, full_dir = full6
    killed = str(tmp_path / "killed")
    real = checkpointing._digests

    def digests(step_dir):
        if step_dir.endswith(os.sep + "4"):
            raise KeyboardInterrupt("killed after Orbax finalised step 4")
        return real(step_dir)

    with monkeypatch.context() as m:
        m.setattr(checkpointing, "_digests", digests)
        with pytest.raises(KeyboardInterrupt):
            pipeline.train_and_evaluate(config, killed)
    step4 = os.path.join(killed, "train", "checkpoints", "4")
    assert not os.path.exists(os.path.join(step4, checkpointing.CHECKSUM_FILE))
    with caplog.at_level(logging.WARNING):
        pipeline.train_and_evaluate(config, killed)
    assert any("restored unverified" in r.getMessage() for r in caplog.records)
    helpers.assert_trees_equal(helpers.final_state(config, full_dir, 6),
                               helpers.final_state(config, killed, 6))


def test_checksums_written_with_every_step_cover_every_file(full6):
    _, full_dir = full6
    ck_dir = os.path.join(full_dir, "train", "checkpoints")
    for step in checkpointing.steps_in(ck_dir):
        step_dir = os.path.join(ck_dir, str(step))
        with open(os.path.join(step_dir, checkpointing.CHECKSUM_FILE)) as f:
            sums = json.load(f)
        files = {os.path.relpath(os.path.join(r, x), step_dir)
                 for r, _, fs in os.walk(step_dir) for x in fs} - {checkpointing.CHECKSUM_FILE}
        assert set(sums) == files and len(files) > 5
        import hashlib

        rel = sorted(files)[0]
        with open(os.path.join(step_dir, rel), "rb") as f:
            assert sums[rel] == hashlib.sha256(f.read()).hexdigest()


# ---- the workdir lock ------------------------------------------------------------------------


def test_second_process_is_refused_and_a_dead_holders_lock_is_taken_over(folder, tmp_path,
                                                                         caplog):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    code = textwrap.dedent(f"""
        import time
        from jaxgan_lth.workdir_lock import WorkdirLock
        WorkdirLock({workdir!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        config = helpers.tiny_config(folder, num_steps=2)
        with pytest.raises(workdir_lock.WorkdirLockedError,
                           match=rf"PID {proc.pid} on host {os.uname().nodename}"):
            pipeline.train_and_evaluate(config, workdir)
        assert not os.path.exists(os.path.join(workdir, "config.json"))  # nothing written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the killed holder's record is still in the file: the next run takes over and says so
    with caplog.at_level(logging.WARNING):
        with workdir_lock.WorkdirLock(workdir):
            pass
    msgs = [r.getMessage() for r in caplog.records]
    assert any(f"left by PID {proc.pid}" in m and "no longer running" in m for m in msgs)


# ---- config changes, bad values, read-only workdirs ------------------------------------------


def test_changed_model_with_allow_config_change_leaves_the_workdir_untouched(full6, tmp_path):
    config, full_dir = full6
    before = _snapshot(full_dir)
    changed = config.copy_and_resolve_references()
    changed.model.g_channels = 16
    with pytest.raises(checkpointing.CheckpointError) as err:
        pipeline.train_and_evaluate(changed, full_dir, allow_config_change=True)
    assert "does not match the model" in str(err.value)
    assert "corrupt" not in str(err.value)  # intact files are not called corrupt
    after = _snapshot(full_dir)
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == {
        k: v for k, v in before.items() if not k.endswith(".lock")}
    pipeline.train_and_evaluate(config, full_dir)  # the original command is still accepted


@pytest.mark.parametrize("key,value,match", [
    (("train", "g_lr"), float("nan"), r"config.train.g_lr = nan is not a finite number"),
    (("train", "ema_decay"), float("nan"), r"train.ema_decay"),
    (("lecam", "weight"), float("inf"), r"config.lecam.weight = inf is not a finite"),
])
def test_non_finite_values_fail_before_anything_is_written(folder, tmp_path, key, value, match):
    config = helpers.tiny_config(folder)
    config[key[0]][key[1]] = value
    with pytest.raises(ValueError, match=match):
        pipeline.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_subset_fraction_and_count_both_zero_name_both_keys(folder, tmp_path):
    config = helpers.tiny_config(folder)
    config.data.name = "fashion_mnist"
    config.data.subset_fraction, config.data.subset_count = 0.0, 0
    with pytest.raises(ValueError, match=r"data.subset_fraction=0 and data.subset_count=0"):
        pipeline.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_read_only_workdir_is_refused_before_any_work(folder, tmp_path, monkeypatch):
    workdir = tmp_path / "ro"
    workdir.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.abspath(p) == str(
        workdir) else real(p, mode))  # as on a read-only mount (root ignores chmod)
    with pytest.raises(PermissionError, match=rf"{workdir} is not writable"):
        pipeline.train_and_evaluate(helpers.tiny_config(folder), str(workdir))
    assert os.listdir(workdir) == []


# ---- tickets need a finished IMP -------------------------------------------------------------


def test_ticket_after_a_killed_imp_fails_naming_the_missing_round(folder, tmp_path,
                                                                  monkeypatch):
    config = helpers.tiny_config(folder, num_steps=2)
    config.stages = "imp,ticket"
    config.imp.rounds = 2
    config.sample_every = 100
    workdir = str(tmp_path / "imp")
    with monkeypatch.context() as m:
        helpers.kill_at(m, call=3)  # rounds take 2 iterations: die in round 1's first
        with pytest.raises(KeyboardInterrupt):
            pipeline.train_and_evaluate(config, workdir)
    assert checkpointing.steps_in(os.path.join(workdir, "masks")) == [0, 1]
    before = _snapshot(workdir)
    ticket = config.copy_and_resolve_references()
    ticket.stages = "ticket"
    with pytest.raises(ValueError, match=r"ticket.round=-1 .* finished IMP of 2 rounds .* "
                                         r"missing: \[2\].* run imp first"):
        pipeline.train_and_evaluate(ticket, workdir, allow_config_change=True)
    assert _snapshot(workdir) == before and not os.path.exists(os.path.join(workdir, "ticket"))
    ticket.ticket.round = 1  # an explicit, existing round is the user's choice
    ticket_source.check_before_writing(ticket, workdir, ["ticket"])
    # another model with --allow_config_change: the masks are intact, not "corrupt", and the
    # workdir stays as it was
    ticket.model.g_channels = 16
    with pytest.raises(ValueError, match="masks of round 1 .* do not match the model") as err:
        pipeline.train_and_evaluate(ticket, workdir, allow_config_change=True)
    assert "corrupt" not in str(err.value) and "SHA-256 check" in str(err.value)
    assert _snapshot(workdir) == before
    # on a fresh workdir: "run imp first", and nothing is created
    fresh = str(tmp_path / "fresh")
    with pytest.raises(ValueError, match="holds no IMP masks.*run imp first"):
        pipeline.train_and_evaluate(ticket, fresh)
    assert not os.path.exists(fresh)


# ---- a full disk and the last line of a failed run -------------------------------------------


def test_full_disk_ends_with_the_error_and_the_rerun_resumes_bit_identically(full6, tmp_path):
    config, full_dir = full6
    workdir = str(tmp_path / "run")
    cfg_file = tmp_path / "cfg.py"
    cfg_file.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
        import helpers

        def get_config():
            c = helpers.tiny_config({config.data.folder!r}, num_steps=6)
            c.keep_checkpoints = 2
            return c
    """))
    launch = textwrap.dedent("""
        import resource, runpy, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        limit = int(sys.argv.pop(1))
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        sys.argv[0] = "jaxgan_lth.main"
        runpy.run_module("jaxgan_lth.main", run_name="__main__")
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    args = [f"--config={cfg_file}", f"--workdir={workdir}"]
    out = subprocess.run([sys.executable, "-c", launch, "10000", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    lines = [x for x in out.stderr.strip().splitlines() if x.strip()]
    # the last line is the cause (the step, folder and OS error), not a shutdown traceback
    assert lines[-1].startswith("error: CheckpointError: writing checkpoint step 0 in "
                                f"{workdir}/train/checkpoints failed"), out.stderr[-3000:]
    assert "File too large" in lines[-1]
    assert not os.path.exists(os.path.join(workdir, "config.json"))  # no checkpoint, no commit
    out = subprocess.run([sys.executable, "-c", launch, "0", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    helpers.assert_trees_equal(helpers.final_state(config, full_dir, 6),
                  helpers.final_state(config, workdir, 6))


# ---- evaluate, fid, report, few-shot folders -------------------------------------------------


def test_evaluate_cache_dir_falls_back_to_xdg_for_a_read_only_workdir(folder, tmp_path,
                                                                      monkeypatch):
    from jaxgan_lth import evaluate
    from jaxgan_lth.evaluation.reference import reference_statistics_path

    config = helpers.tiny_config(folder)
    workdir = tmp_path / "run"
    workdir.mkdir()
    real = os.access
    read_only = {str(workdir), str(tmp_path / "ro_cache")}
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.abspath(p) in read_only
                        else real(p, mode))  # as on a read-only mount (root ignores chmod)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got = evaluate.choose_cache_dir(config, str(workdir))
    assert got == str(tmp_path / "xdg" / "jaxgan_lth" / "fid_stats")
    assert evaluate.choose_cache_dir(config, str(workdir), str(tmp_path / "mine")) == str(
        tmp_path / "mine")
    (tmp_path / "ro_cache").mkdir()
    with pytest.raises(PermissionError, match="ro_cache is not writable"):
        evaluate.choose_cache_dir(config, str(workdir), str(tmp_path / "ro_cache"))
    # statistics already in the read-only run folder: read there, nothing to write
    stats = reference_statistics_path(config.data, config.eval.reference_split,
                                      str(workdir / "fid_stats"))
    os.makedirs(os.path.dirname(stats))
    open(stats, "wb").close()
    read_only.add(str(workdir / "fid_stats"))
    assert evaluate.choose_cache_dir(config, str(workdir)) == str(workdir / "fid_stats")


def test_fid_checks_both_folders_before_any_features_and_names_small_ones(tmp_path,
                                                                          monkeypatch, capsys):
    from jaxgan_lth import fid as fid_cli
    from jaxgan_lth.evaluation import features as features_lib

    built = []
    monkeypatch.setattr(features_lib, "FeatureExtractor",
                        lambda *a, **k: built.append(1) or pytest.fail("features computed"))
    a = helpers.make_image_folder(tmp_path / "a", n=10, size=12, channels=3)
    b = helpers.make_image_folder(tmp_path / "b", n=10, size=12, channels=3, seed=1)
    with open(os.path.join(b, "zz_bad.png"), "wb") as f:
        f.write(b"not a png")
    with pytest.raises(ValueError, match=r"zz_bad\.png"):
        fid_cli.main([a, b])
    assert not built  # found before A's features
    one = helpers.make_image_folder(tmp_path / "one", n=1, size=12, channels=3)
    with pytest.raises(ValueError, match=rf"B = '{one}' holds 1 image"):
        fid_cli.main([a, one])
    os.remove(os.path.join(b, "zz_bad.png"))
    fid_cli.check_folder(a, "A")
    assert "holds 10 images, fewer than 2048" in capsys.readouterr().err


def test_a_1x1_image_warns_before_upscaling(tmp_path):
    from PIL import Image

    from jaxgan_lth.data import images as images_lib

    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "dot.png")
    with pytest.warns(UserWarning, match=r"dot\.png' is 1x1 px and is upscaled to 64x64"):
        images_lib.read_image_file(str(tmp_path / "dot.png"), 64, 3)


def test_report_names_the_missing_stages_of_a_half_finished_workdir(full6, tmp_path):
    import shutil

    from jaxgan_lth import report

    _, full_dir = full6
    workdir = str(tmp_path / "half")
    shutil.copytree(full_dir, workdir)
    cfg = json.load(open(os.path.join(workdir, "config.json")))
    cfg["stages"], cfg["imp"]["rounds"] = "train,imp,ticket", 2
    json.dump(cfg, open(os.path.join(workdir, "config.json"), "w"))
    assert report.missing_stages(workdir) == ["imp/round_00", "imp/round_01", "ticket"]
    out = report.write_report([workdir], str(tmp_path / "rep"))
    assert out["missing_stages"] == {"half": ["imp/round_00", "imp/round_01", "ticket"]}
    assert "**Unfinished**: `half` has no finished run of imp/round_00, imp/round_01, ticket" in (
        open(tmp_path / "rep" / "report.md").read())
