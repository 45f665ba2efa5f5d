"""The class-coverage diagnostic: the shipped classifier, the coverage numbers, their plumbing."""

import json
import os

import numpy as np
import pytest

from jaxgan_lth import io_utils, report
from jaxgan_lth.evaluation import coverage
from jaxgan_lth.evaluation.evaluator import Evaluator, validate_config
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def fmnist_test():
    from jaxgan_lth.evaluation.train_classifier import fashion_mnist

    return fashion_mnist("test")


@pytest.mark.slow
def test_shipped_classifier_reaches_90_percent_on_the_test_split(fmnist_test):
    images, labels = fmnist_test
    assert images.shape == (10_000, 28, 28, 1) and labels.shape == (10_000,)
    probs = coverage.predict_proba(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    acc = float(np.mean(np.argmax(probs, axis=1) == labels))
    assert acc >= 0.90, acc
    # the accuracy recorded by the training script is the one measured here
    _, info = coverage.load_weights()
    assert abs(info["test_accuracy"] - acc) < 2e-3, (info, acc)
    # well under 1 MB in git
    assert os.path.getsize(coverage.WEIGHTS_PATH) < 600_000


@pytest.mark.slow
def test_real_test_images_cover_every_class_evenly(fmnist_test):
    images, labels = fmnist_test
    cov = coverage.coverage_from_probs(coverage.predict_proba(images[:2000]))
    # the first 2,000 test images hold ~200 per class; a 90% classifier keeps each near 10%
    true_hist = np.bincount(labels[:2000], minlength=10) / 2000
    assert cov["coverage_classes"] == 10
    np.testing.assert_allclose(cov["coverage_hist"], true_hist, atol=0.04)
    assert 0.8 < cov["coverage_confidence"] <= 1.0


def test_coverage_numbers_against_a_hand_made_histogram():
    # 100 samples: class 0 x 50, class 1 x 30, class 2 x 15, class 3 x 3, class 4 x 2, rest 0
    counts = [50, 30, 15, 3, 2, 0, 0, 0, 0, 0]
    labels = np.repeat(np.arange(10), counts)
    conf = np.linspace(0.3, 0.9, 100)
    probs = np.zeros((100, 10))
    for i, (c, p) in enumerate(zip(labels, conf)):
        probs[i] = (1 - p) / 9
        probs[i, c] = p
    cov = coverage.coverage_from_probs(probs, min_fraction=0.02)
    assert cov["coverage_hist"] == [0.5, 0.3, 0.15, 0.03, 0.02, 0, 0, 0, 0, 0]
    assert cov["coverage_classes"] == 5  # 2 of 100 is exactly 2%: covered
    assert cov["coverage_confidence"] == pytest.approx(0.6, abs=1e-6)  # mean of linspace
    assert coverage.coverage_from_probs(probs, min_fraction=0.05)["coverage_classes"] == 3
    with pytest.raises(ValueError, match="min_fraction=0"):
        coverage.coverage_from_probs(probs, min_fraction=0)
    with pytest.raises(ValueError, match="N >= 1"):
        coverage.coverage_from_probs(np.zeros((0, 10)))


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\[N, 28, 28, 1\].*\(4, 32, 32, 1\)"):
        coverage.predict_proba(np.zeros((4, 32, 32, 1)))
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"conv0/kernel": np.zeros((3, 3, 1, 8))})
    with pytest.raises(ValueError, match="does not hold CoverageClassifier's weights"):
        coverage.load_weights(str(bad))
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        coverage.load_weights(str(tmp_path / "missing.npz"))


def test_weights_round_trip_through_the_npz_layout():
    params, _ = coverage.load_weights()
    again = coverage.arrays_to_params(coverage.params_to_arrays(params))
    flat_a, flat_b = coverage.params_to_arrays(params), coverage.params_to_arrays(again)
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        np.testing.assert_array_equal(flat_a[k], flat_b[k])


def _fmnist_config(tmp_path):
    config = tiny_config(str(tmp_path))
    config.data.name = "fashion_mnist"
    config.data.resolution, config.data.channels = 28, 1
    return config


@pytest.mark.slow
def test_evaluator_coverage_classifies_the_sample_functions_images(tmp_path, fmnist_test):
    images, labels = fmnist_test
    config = _fmnist_config(tmp_path)
    config.eval.coverage_samples = 64
    config.eval.batch_size = 16
    ev = Evaluator(config, str(tmp_path), latent_dim=8, num_classes=10,
                   train_images=images[:4], train_labels=labels[:4])
    # a "generator" that returns test images of class 1 (trousers) and 7 (sneakers) by z's sign
    trousers, sneakers = images[labels == 1][:1], images[labels == 7][:1]

    def sample_fn(z, y, key):  # any batch of z (the evaluator draws latents in fixed blocks)
        return np.where(np.asarray(z[:, :1, None, None]) > 0, trousers, sneakers)

    cov = ev.coverage(sample_fn)
    assert cov["coverage_classes"] == 2
    hist = np.asarray(cov["coverage_hist"])
    assert hist[1] + hist[7] == pytest.approx(1.0)
    assert 0.3 < hist[1] < 0.7  # z's first coordinate is positive about half the time
    # off on other data, and with 0 samples
    config.eval.coverage_samples = 0
    assert ev.coverage(sample_fn) == {}
    config.eval.coverage_samples = 64
    config.data.resolution = 32
    assert ev.coverage(sample_fn) == {}


def test_config_validation_of_the_coverage_keys(tmp_path):
    config = _fmnist_config(tmp_path)
    config.eval.enabled = True
    config.eval.reference_split = "test[:10]"
    validate_config(config)
    config.eval.coverage_samples = -1
    with pytest.raises(ValueError, match=r"eval.coverage_samples=-1 .* integer >= 0"):
        validate_config(config)
    config.eval.coverage_samples = 10
    config.eval.coverage_min_fraction = 1.5
    with pytest.raises(ValueError, match=r"eval.coverage_min_fraction=1.5 .* \(0, 1\]"):
        validate_config(config)


def test_report_coverage_columns_equal_the_summaries(tmp_path):
    """A hand-made finished workdir: the report's coverage cells are its summaries' values."""
    workdir = tmp_path / "wd"
    hists = {"imp/round_00": [0.1] * 10, "ticket": [0.5, 0.5] + [0.0] * 8}
    for i, (stage, hist) in enumerate(hists.items()):
        run = workdir / stage
        run.mkdir(parents=True)
        labels = np.repeat(np.arange(10), np.round(np.asarray(hist) * 100).astype(int))
        cov = coverage.coverage_from_probs(np.eye(10)[labels])
        summary = {"run": "seed0", "seed": 0, "swept": {}, "steps": 10, "stage": stage,
                   "g_density": 1.0, "d_density": 1.0, "final_fid": 100.0 + i,
                   "final_kid": 0.1, "final_kid_std": 0.01, "best_fid": 100.0 + i,
                   "best_step": 10, "wall_time_s": 1.0,
                   "fid_protocol": {"generated": 2, "reference": "fashion_mnist:test",
                                    "reference_images": 2, "resolution": 28, "channels": 1,
                                    "x_flips": False, "generator": "ema", "network": "n"},
                   **{f"final_{k}": v for k, v in cov.items()}}
        io_utils.write_json(str(run / "summary.json"), summary)
        io_utils.write_json(str(run / "eval.json"), {"history": [
            {"step": 10, "fid": 100.0 + i, "kid": 0.1, "kid_std": 0.01, **cov,
             "protocol": summary["fid_protocol"]}]})
    io_utils.write_json(str(workdir / "config.json"), {"seed": 0})
    out = str(tmp_path / "out")
    result = report.write_report([str(workdir)], out)
    md = open(os.path.join(out, "report.md")).read()
    by_stage = {g["stage"]: g for g in result["groups"]}
    assert by_stage["imp/round_00"]["coverage_classes_mean"] == 10
    assert by_stage["ticket"]["coverage_classes_mean"] == 2
    for stage, expect in (("imp/round_00", 10), ("ticket", 2)):
        s = json.load(open(workdir / stage / "summary.json"))
        run_row = [r for r in md.splitlines() if r.startswith(f"| wd | {stage} |")]
        assert len(run_row) == 1
        cells = [c.strip() for c in run_row[0].strip("|").split("|")]
        assert cells[11] == str(s["final_coverage_classes"]) == str(expect)
        assert cells[12] == f"{s['final_coverage_confidence']:.3f}"
        assert cells[13] == " ".join(f"{100 * h:.1f}" for h in s["final_coverage_hist"])
        group_row = [r for r in md.splitlines() if r.startswith(f"| wd/{stage} |")]
        gcells = [c.strip() for c in group_row[0].strip("|").split("|")]
        assert gcells[8] == f"{expect:.1f}"
