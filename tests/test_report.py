"""python -m jaxgan_lth.report on a tiny finished workdir: numbers, statistics, plots, errors."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from jaxgan_lth import io_utils, pipeline, report
from tests.helpers import make_image_folder, tiny_config, tiny_lottery_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tiny_lottery(tmp_path, name="lottery", eval_on=True):
    folder = make_image_folder(tmp_path / "imgs", n=16, size=16, channels=1)
    config = tiny_lottery_config(folder)
    config.eval.enabled = eval_on
    config.eval.reference_split = "train"
    config.eval.num_samples = 4
    config.eval.batch_size = 4
    config.eval.every = 0  # at the end of each run only (Inception is slow on CPU)
    config.eval.diagnostic_samples = 4
    config.eval.cache_dir = str(tmp_path / "fid_stats")
    workdir = str(tmp_path / name)
    pipeline.train_and_evaluate(config, workdir)
    return config, workdir


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    config, workdir = _tiny_lottery(tmp)
    out = str(tmp / "out")
    result = report.write_report([workdir], out)
    return config, workdir, out, result


def _summaries(workdir):
    out = {}
    for root, _, files in os.walk(workdir):
        if "summary.json" in files and os.path.normpath(root) != os.path.normpath(workdir):
            if "best" in root.split(os.sep):
                continue
            out[os.path.relpath(root, workdir)] = io_utils.read_json(
                os.path.join(root, "summary.json"))
    return out


@pytest.mark.slow
def test_every_run_row_equals_its_summary(finished):
    _, workdir, out, _ = finished
    sums = _summaries(workdir)
    # 2 IMP rounds x 2 seeds + a ticket sweep of 2 seeds
    assert len(sums) == 6
    md = open(os.path.join(out, "report.md")).read()
    rows = [line for line in md.splitlines() if line.startswith("| lottery |")]
    assert len(rows) == 6
    for rel, s in sums.items():
        stage, run = rel.split(os.sep + "runs" + os.sep)
        row = [r for r in rows if f"| {stage.replace(os.sep, '/')} | {run} |" in r]
        assert len(row) == 1, rel
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        assert cells[3] == str(s["seed"])
        assert cells[4] == f"{s['g_density']:.4f}"
        assert cells[5] == str(s["steps"])
        assert cells[6] == f"{s['final_fid']:.2f}"
        assert cells[7] == f"{s['final_kid'] * 1e3:.2f}"
        assert cells[8] == f"{s['final_kid_std'] * 1e3:.2f}"


@pytest.mark.slow
def test_group_mean_and_std_over_seeds_match_numpy(finished):
    _, workdir, out, result = finished
    sums = _summaries(workdir)
    md = open(os.path.join(out, "report.md")).read()
    groups = {g["stage"]: g for g in result["groups"]}
    assert set(groups) == {"imp/round_00", "imp/round_01", "ticket"}
    for stage, g in groups.items():
        fids = np.array([s["final_fid"] for rel, s in sums.items()
                         if rel.startswith(stage.replace("/", os.sep) + os.sep)])
        kids = np.array([s["final_kid"] for rel, s in sums.items()
                         if rel.startswith(stage.replace("/", os.sep) + os.sep)])
        assert g["n"] == len(fids) == 2
        np.testing.assert_allclose(g["fid_mean"], fids.mean(), rtol=1e-12)
        np.testing.assert_allclose(g["fid_std"], fids.std(ddof=1), rtol=1e-12)
        np.testing.assert_allclose(g["kid_std"], kids.std(ddof=1), rtol=1e-12)
        cell = f"{fids.mean():.2f} ± {fids.std(ddof=1):.2f}"
        assert re.search(rf"\| lottery/{stage} \|.*\| {re.escape(cell)} \|", md), cell
    # densities of the IMP rounds: dense, then 80% of the prunable G weights
    assert groups["imp/round_00"]["g_density"] == 1.0
    assert abs(groups["imp/round_01"]["g_density"] - 0.8) < 0.01
    assert "4 generated images of the ema generator vs 16 reference images" in md
    # every FID record states its G step and kimg: 4 G steps x n_dis 2 x D batch 4 = 0.032
    hist = io_utils.read_json(os.path.join(workdir, "ticket", "runs", "seed0", "eval.json"))
    assert [(h["step"], h["kimg"]) for h in hist["history"]] == [(4, 0.032)]


@pytest.mark.slow
def test_plots_are_pngs_with_the_expected_points(finished):
    config, _, out, result = finished
    for png in ("fid_vs_density.png", "fid_over_steps.png", "kid_over_steps.png",
                "d_overfitting.png", "samples.png"):
        with open(os.path.join(out, png), "rb") as f:
            assert f.read(8) == PNG_MAGIC, png
    plots = result["plots"]
    (line,) = plots["fid_vs_density.png"].values()  # one workdir, one line over 2 rounds
    assert len(line["g_density"]) == len(line["fid"]) == config.imp.rounds
    # every run evaluated once, at its end (step 4)
    assert len(plots["fid_over_steps.png"]) == len(plots["kid_over_steps.png"]) == 6
    for series in plots["fid_over_steps.png"].values():
        assert series["step"] == [4]
    # diagnostic logged every step (log_every = 1), mean over the 2 seeds of each group
    diag = plots["d_overfitting.png"]
    assert len(diag) == 3
    for curves in diag.values():
        assert curves["d_acc_train_real"]["step"] == [1, 2, 3, 4]
        assert curves["d_acc_fake"]["step"] == [1, 2, 3, 4]


def test_not_a_workdir_is_named(tmp_path):
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"empty.*no config.json"):
        report.write_report([str(tmp_path / "empty")], str(tmp_path / "out"))
    with pytest.raises(ValueError, match="missing.*not a folder"):
        report.write_report([str(tmp_path / "missing")], str(tmp_path / "out"))
    assert report.main([str(tmp_path / "empty")]) == 2


@pytest.mark.slow
def test_different_protocols_are_refused(finished, tmp_path):
    _, workdir, _, _ = finished
    other = str(tmp_path / "other")
    shutil.copytree(workdir, other)
    path = os.path.join(other, "ticket", "runs", "seed1", "eval.json")
    data = json.load(open(path))
    for h in data["history"]:
        h["protocol"]["generated"] = 50_000
    io_utils.write_json(path, data)
    with pytest.raises(ValueError, match=r"protocols differ between .*lottery.* and .*other"
                                         r".*generated: 4 vs 50000"):
        report.write_report([workdir, other], str(tmp_path / "out"))


@pytest.mark.slow
def test_metrics_log_holds_each_step_once_after_a_resume(tmp_path, monkeypatch):
    from tests.helpers import kill_at

    folder = make_image_folder(tmp_path / "imgs", n=16, size=16, channels=1)
    config = tiny_config(folder, num_steps=6)
    with monkeypatch.context() as m:
        kill_at(m, 4)
        with pytest.raises(KeyboardInterrupt):
            pipeline.train_and_evaluate(config, str(tmp_path / "w"))
    pipeline.train_and_evaluate(config, str(tmp_path / "w"))
    pipeline.train_and_evaluate(config, str(tmp_path / "u"))  # uninterrupted
    a = io_utils.read_jsonl(str(tmp_path / "w" / "train" / "metrics.jsonl"))
    b = io_utils.read_jsonl(str(tmp_path / "u" / "train" / "metrics.jsonl"))
    assert [r["step"] for r in a] == [1, 2, 3, 4, 5, 6]
    assert a == b  # resumed bit-for-bit on CPU: the same logged values
