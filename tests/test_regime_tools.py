"""Issue 28's regime tools (launch/regime_digest.py, regime_plot.py) on a hand-made workdir."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "launch", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_run(folder, fids, accs, summary=None):
    os.makedirs(folder, exist_ok=True)
    hist = [{"step": s, "kimg": s * 0.016, "fid": f, "kid": f / 1000,
             "protocol": {"generated": 500, "reference": "folder:train"}} for s, f in fids]
    with open(os.path.join(folder, "eval.json"), "w") as f:
        json.dump({"history": hist}, f)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        for s, tr, ho in accs:
            f.write(json.dumps({"step": s, "d_loss": 1.0, "d_acc_train_real": tr,
                                "d_acc_heldout_real": ho, "d_acc_fake": 0.9}) + "\n")
            f.write(json.dumps({"step": s + 1, "d_loss": 1.0}) + "\n")  # a line without them
    if summary:
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump(summary, f)


@pytest.fixture
def swept(tmp_path):
    wd = tmp_path / "baseline"
    runs = wd / "imp" / "round_00" / "runs"
    accs = [(s, 0.9, 0.9 - s / 1000) for s in range(100, 1100, 100)]  # held-out 0.8 .. -0.1
    _write_run(str(runs / "seed0"), [(500, 200.0), (1000, 150.0), (1500, 170.0)], accs,
               {"seed": 0, "steps": 1500, "final_fid": 170.0, "secret": 1})
    _write_run(str(runs / "seed1"), [(500, 220.0), (1000, 130.0), (1500, 160.0)], accs)
    os.makedirs(runs / "seed2")  # a run that has not evaluated yet: skipped
    with open(wd / "config.json", "w") as f:
        json.dump({"data": {"name": "folder", "folder": "/x/100-shot-obama", "subset_count": 25},
                   "diffaug": {"policy": ""}}, f)
    return str(wd)


def test_digest_reads_every_run_of_a_swept_stage(swept):
    d = _load("regime_digest").digest(swept, "imp/round_00")
    assert sorted(d["runs"]) == ["seed0", "seed1"]
    assert [h["fid"] for h in d["runs"]["seed1"]["fid_history"]] == [220.0, 130.0, 160.0]
    assert len(d["runs"]["seed0"]["d_overfitting"]) == 10  # lines without the diagnostic skipped
    assert d["runs"]["seed0"]["summary"] == {"seed": 0, "steps": 1500, "final_fid": 170.0}
    assert "summary" not in d["runs"]["seed1"]
    assert d["settings"]["data"]["folder"] == "100-shot-obama"  # no user path in the digest
    assert d["protocol"] == {"generated": 500, "reference": "folder:train"}


def test_table_verdicts_by_hand(swept, tmp_path):
    d = _load("regime_digest").digest(swept, "imp/round_00")
    plot = _load("regime_plot")
    text = "\n".join(plot.table(d))
    # mean FIDs 210, 140, 165: best 140 at step 1000, the last (165) above it
    assert "| 1000 | 150.0 | 130.0 | 140.0 |" in text
    assert "Best mean FID 140.0 at G step 1000; last 165.0 at step 1500 (+17.9%): FID rose" in text
    flat = json.loads(json.dumps(d))
    flat["runs"]["seed0"]["fid_history"][-1]["fid"] = 130.0  # mean 145: +3.6%
    assert "(+3.6%): FID did not rise" in "\n".join(plot.table(flat))
    # last log step 1000: running mean of the last 5 points (steps 600..1000): train 0.9,
    # held-out 0.9 - 0.8 = 0.1 -> gap 0.8
    assert "gap (train - held-out reals) at step 1000: 0.80 (at least 0.15)" in text
    out = tmp_path / "curves.png"
    assert plot.main([str(out), _dump(d, tmp_path)]) == 0
    assert out.stat().st_size > 1000 and (tmp_path / "curves.md").read_text().count("| 1500 |") == 1


def _dump(d, tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(d))
    return str(p)
