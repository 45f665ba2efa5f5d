"""The equal-budget study: its arms, the shared IMP (ticket.imp_workdir) and its write-up."""

import os

import jax
import numpy as np
import pytest

from configs import study_fashion_mnist as study_cfg
from jaxgan_lth import config_lib, io_utils, pipeline
from jaxgan_lth import stages as stages_lib
from jaxgan_lth.proj import study
from jaxgan_lth.training import loop
from tests.helpers import make_image_folder, tiny_lottery_config


def _fake_imp_workdir(root, config):
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    io_utils.write_json(os.path.join(root, "config.json"), config_lib.to_dict(config))
    return str(root)


def test_every_arm_validates_and_trains_the_same_budget(tmp_path):
    imp = study_cfg.get_config("fraction=0.01,arm=imp")
    src = _fake_imp_workdir(tmp_path / "imp", imp)
    budgets, parts = {}, {}
    for arm in study_cfg.ARMS:
        c = study_cfg.get_config(f"fraction=0.01,arm={arm}")
        if arm.startswith("ticket"):
            c.ticket.imp_workdir = src
        stage_cfgs = pipeline.validate_config(c)
        (stage,) = stage_cfgs
        budgets[arm] = int(stage_cfgs[stage].train.num_steps)
        parts[arm] = (stage_cfgs[stage].diffaug.policy, stage_cfgs[stage].advaug.mode,
                      c.ticket.mask_type if stage == "ticket" else None)
        assert c.data.subset_fraction == 0.01
        assert c.sweep.seeds == study_cfg.SEEDS and c.sweep.stages == stage
        assert (c.eval.num_samples, c.eval.reference_split) == (1000, "test[:2000]")
    assert set(budgets.values()) == {study_cfg.NUM_STEPS}
    pol = study_cfg.POLICY
    assert parts == {
        "imp": ("", "none", None), "dense_da": (pol, "none", None),
        "dense_da_adv": (pol, "pgd", None), "ticket": ("", "none", "imp"),
        "ticket_random": ("", "none", "random_like"), "ticket_omp": ("", "none", "omp"),
        "ticket_da": (pol, "none", "imp"), "ticket_da_adv": (pol, "pgd", "imp")}


def test_bad_study_arguments_are_named():
    with pytest.raises(ValueError, match="arm 'nope'.*accepted"):
        study_cfg.get_config("arm=nope")
    with pytest.raises(ValueError, match="fraction 2.0"):
        study_cfg.get_config("fraction=2")
    with pytest.raises(ValueError, match="key 'foo'"):
        study_cfg.get_config("foo=1")


def test_imp_workdir_errors_name_the_folder_and_the_keys(tmp_path):
    c = study_cfg.get_config("fraction=0.01,arm=ticket")
    c.ticket.imp_workdir = str(tmp_path / "none")
    with pytest.raises(ValueError, match=r"imp_workdir='.*none' is not a workdir with IMP masks"):
        pipeline.validate_config(c)
    other = study_cfg.get_config("fraction=0.01,arm=imp")
    other.model.g_channels = 32
    c.ticket.imp_workdir = _fake_imp_workdir(tmp_path / "imp", other)
    with pytest.raises(ValueError, match=r"model.g_channels: 32 there, 64 here"):
        pipeline.validate_config(c)
    c.ticket.mask_workdir = "x"
    with pytest.raises(ValueError, match="both set"):
        pipeline.validate_config(c)
    c.ticket.mask_workdir = ""
    c.stages = "imp,ticket"
    with pytest.raises(ValueError, match="runs imp here"):
        pipeline.validate_config(c)
    assert not os.path.exists(tmp_path / "ticket")  # nothing written


@pytest.mark.slow
def test_a_ticket_from_a_shared_imp_equals_the_ticket_trained_in_place(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", n=16, size=16, channels=1)
    config = tiny_lottery_config(folder)
    pipeline.train_and_evaluate(config, str(tmp_path / "both"))
    shared = tiny_lottery_config(folder, "ticket", "ticket")
    shared.ticket.imp_workdir = str(tmp_path / "both")
    pipeline.train_and_evaluate(shared, str(tmp_path / "ticket_only"))
    engine = loop.build_engine(stages_lib.stage_config(config, "ticket"), str(tmp_path / "both"))
    for run in ("seed0", "seed1"):
        a, _ = loop.load_run_state(engine, str(tmp_path / "both" / "ticket"), run=run)
        b, _ = loop.load_run_state(engine, str(tmp_path / "ticket_only" / "ticket"), run=run)
        for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the one-shot baseline reads round 0's trained weights from the shared IMP
    omp = tiny_lottery_config(folder, "ticket", "ticket")
    omp.ticket.imp_workdir = str(tmp_path / "both")
    omp.ticket.mask_type = "omp"
    pipeline.train_and_evaluate(omp, str(tmp_path / "omp"))
    s = io_utils.read_json(str(tmp_path / "omp" / "ticket" / "runs" / "seed1" / "summary.json"))
    assert s["mask_type"] == "omp" and abs(s["g_density"] - 0.64) < 0.01


def test_compare_against_welch_by_hand():
    c = study.compare(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    # t = (2 - 5) / sqrt(1/3 + 1/3) = -3.674, Welch df = 4, two-sided p = 0.02131
    assert c["diff"] == pytest.approx(3.0)
    assert c["p"] == pytest.approx(0.02131, abs=1e-4)
    assert c["verdict"] == "holds"
    c = study.compare(np.array([4.0, 5.0, 6.0]), np.array([1.0, 2.0, 3.0]))
    assert c["verdict"] == "reversed" and c["diff"] == pytest.approx(-3.0)
    c = study.compare(np.array([1.0, 5.0, 9.0]), np.array([2.0, 6.0, 10.0]))
    assert c["verdict"] == "holds within the seeds' spread" and c["p"] > 0.5


def _fake_study(root, fraction, fids):
    """A study root whose report holds the given FIDs per method (3 seeds)."""
    groups, runs = [], []
    for label, arm, stage in study.METHODS:
        vals = np.asarray(fids[label], float)
        groups.append({"workdir": arm, "stage": stage, "g_density": 1.0, "steps": 800,
                       "n": len(vals), "fid_mean": vals.mean(), "fid_std": vals.std(ddof=1),
                       "kid_mean": vals.mean() / 1000, "kid_std": vals.std(ddof=1) / 1000})
        runs += [{"workdir": arm, "stage": stage, "summary": {"final_fid": v}} for v in vals]
    os.makedirs(os.path.join(root, "report"))
    os.makedirs(os.path.join(root, "imp"))
    io_utils.write_json(os.path.join(root, "report", "report.json"),
                        {"protocol": {"generated": 1000}, "groups": groups, "runs": runs})
    io_utils.write_json(os.path.join(root, "imp", "config.json"),
                        {"data": {"subset_fraction": fraction}})
    return str(root)


def test_write_results_tables_and_claims(tmp_path):
    base = {label: [100.0 + i, 101.0 + i, 102.0 + i] for i, (label, _, _) in
            enumerate(study.METHODS)}
    base["ticket + DiffAugment + AdvAug"] = [50.0, 52.0, 54.0]
    small = _fake_study(tmp_path / "s1", 0.01, base)
    big = dict(base)
    big["ticket + DiffAugment + AdvAug"] = [95.0, 97.0, 99.0]
    large = _fake_study(tmp_path / "s10", 0.1, big)
    for start, sec in ((1000, 600), (5000, 1200)):  # two invocations (a resumed study)
        io_utils.append_jsonl(str(tmp_path / "s10" / "wall_times.jsonl"),
                              {"start": start, "seconds": sec, "commit": "abc",
                               "loadavg_end": "2.0 2.0 2.0"})
    # ... and one killed in between: its heartbeat file, last seen 300 s after its start
    io_utils.write_json(str(tmp_path / "s10" / ".invocation_2000.json"),
                        {"start": 2000, "last_seen": 2300, "commit": "def"})
    text = study.write_results([small, large], str(tmp_path / "results.md"), "# Study")
    assert text.startswith("# Study")
    assert "| ticket + DiffAugment + AdvAug | 1.000 | 800 | 3 | 52.00 ± 2.00 |" in text
    # dense (100,101,102) vs IMP ticket (103,104,105): the ticket is worse, p < 0.05
    assert "| IMP ticket < dense | Table 1: tickets match or beat the dense GAN | -3.00 |" in text
    line = [x for x in text.splitlines() if x.startswith("| IMP ticket < dense")][0]
    assert line.endswith("| reversed |")
    assert "0.01: 49.00, 0.1: 4.00" in text and "largest at the smallest fraction" in text
    assert ("10.0 min (commit abc, load average at the end 2.0 2.0 2.0) + 5.0 min (commit def, "
            "not completed: running or killed; to its last heartbeat, to the minute) + 20.0 min "
            "(commit abc, load average at the end 2.0 2.0 2.0) = 35.0 min.") in text
    assert "Wall time: not recorded" in text
    # each finished root left its digest beside the page; the page from the digests alone (the
    # study folders gone, as after a session) is the same, number for number
    digests = [str(tmp_path / "results" / n / "digest.json") for n in ("s1", "s10")]
    d = io_utils.read_json(digests[1])
    assert d["fraction"] == 0.1 and d["methods"]["ticket + DiffAugment + AdvAug"]["fids"] == [
        95.0, 97.0, 99.0] and len(d["wall_times"]) == 3
    import shutil
    shutil.rmtree(small)
    shutil.rmtree(large)
    assert study.write_results(digests, str(tmp_path / "results.md"), "# Study") == text
    with pytest.raises(ValueError, match="not a study digest"):
        study.write_results([str(tmp_path / "results.md")],
                            str(tmp_path / "y.md"))
    other = _fake_study(tmp_path / "o", 0.1, base)
    data = io_utils.read_json(os.path.join(other, "report", "report.json"))
    data["protocol"] = {"generated": 200}
    io_utils.write_json(os.path.join(other, "report", "report.json"), data)
    with pytest.raises(ValueError, match="different FID protocols"):
        study.write_results([digests[0], other], str(tmp_path / "x.md"))


def test_an_unfinished_study_is_an_error_or_a_section_saying_so(tmp_path):
    base = {label: [100.0, 101.0, 102.0] for label, _, _ in study.METHODS}
    done = _fake_study(tmp_path / "s1", 0.01, base)
    running = tmp_path / "s10"
    for arm in ("imp", "dense_da"):  # two arms finished, no report yet
        os.makedirs(running / arm)
        io_utils.write_json(str(running / arm / "summary.json"), {"stages": {}})
    io_utils.write_json(str(running / "imp" / "config.json"),
                        {"data": {"subset_fraction": 0.1}})
    io_utils.write_json(str(running / ".invocation_7.json"), {"start": 7, "last_seen": 607})
    with pytest.raises(ValueError, match=f"{running}.*no report/report.json"):
        study.write_results([done, str(running)], str(tmp_path / "r.md"))
    with open(os.path.join(done, "report", "samples.png"), "wb") as f:
        f.write(b"png bytes")
    text = study.write_results([done, str(running)], str(tmp_path / "r.md"),
                               allow_unfinished=True)
    # the report's plots are copied beside the page and shown with relative links
    assert "![last sample grid of each method (first seed)](results/s1/samples.png)" in text
    with open(tmp_path / "results" / "s1" / "samples.png", "rb") as f:
        assert f.read() == b"png bytes"
    assert "fid_vs_density.png" not in text  # not in that report
    assert "## 0.01 of the training split (1%)\n" in text
    assert "## 0.1 of the training split (10%): not finished" in text
    assert "Arms finished: 2 of 8 (imp, dense_da)." in text
    assert ("10.0 min (commit None, not completed: running or killed; to its last heartbeat, to "
            "the minute) = 10.0 min.") in text
    assert study.main([str(running), "--out", str(tmp_path / "x.md")]) == 2
    assert study.main([str(running), "--out", str(tmp_path / "x.md"), "--allow-unfinished"]) == 0


def test_hole_rate_counts_enclosed_dark_squares_and_grid_tiles_reads_the_grid(tmp_path):
    from PIL import Image

    solid = np.zeros((28, 28))
    solid[4:24, 6:22] = 0.8  # a garment on a black background
    holed = solid.copy()
    holed[10:14, 10:14] = 0.0  # a 4x4 cutout square inside it
    edge = solid.copy()
    edge[4:8, 6:10] = 0.0  # a notch at the border: not enclosed, not a hole
    tiny = solid.copy()
    tiny[12, 12] = 0.0  # one dark pixel: under min_pixels
    assert study.hole_rate(np.stack([solid, holed, edge, tiny])) == 0.25
    assert study.hole_rate(holed[None], min_pixels=17) == 0.0
    grid = np.block([[solid, holed], [edge, tiny]])  # 2 x 2 tiles, no padding
    Image.fromarray(np.round(grid * 255).astype(np.uint8)).save(tmp_path / "g.png")
    tiles = study.grid_tiles(str(tmp_path / "g.png"), 28)
    np.testing.assert_allclose(tiles, np.stack([solid, holed, edge, tiny]), atol=1 / 255)
    with pytest.raises(ValueError, match="not a grid of 27 px tiles"):
        study.grid_tiles(str(tmp_path / "g.png"), 27)


def test_border_level_is_the_mean_of_the_outer_ring():
    t = np.zeros((2, 6, 6))
    t[0, 0, :] = 1.0  # top row bright: 6 of the 20 ring pixels
    t[1, 2:4, 2:4] = 1.0  # an object inside: ring dark
    assert study.border_level(t) == pytest.approx((6 / 20 + 0.0) / 2)
