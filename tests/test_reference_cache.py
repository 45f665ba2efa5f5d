"""The FID reference-statistics cache: one writer, atomic writes (issue 31, multi-process runs).

In a multi-process run every process computes the reference statistics, but only process 0
writes ``fid_stats_*.npz``; a write that fails half-way leaves neither a partial file nor a
temporary one, and an older file stays intact. What can be checked in one process is checked
here (``jax.process_index`` patched for the non-zero process).
"""

import os

import helpers
import jax
import numpy as np
import pytest

from jaxgan_lth.evaluation import evaluator as evaluator_lib
from jaxgan_lth.evaluation import features as features_lib
from jaxgan_lth.evaluation import metrics as metrics_lib
from jaxgan_lth.evaluation import reference as reference_lib


def _stats(value):
    return metrics_lib.FIDStatistics(mu=np.full(3, value), sigma=np.eye(3) * value,
                                     num_images=5, metadata={"v": str(value)})


def test_save_is_atomic_and_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "fid_stats_x.npz"
    metrics_lib.save_statistics(path, _stats(1.0))
    real_savez = np.savez

    def savez_then_fail(f, **arrays):
        real_savez(f, **arrays)  # the whole new content is in the temporary file ...
        f.flush()
        raise OSError("disk full")  # ... when the write fails

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        metrics_lib.save_statistics(path, _stats(2.0))
    assert os.listdir(path.parent) == [path.name]  # no temporary file left
    old = metrics_lib.load_statistics(path)  # the old file, whole
    np.testing.assert_array_equal(old.mu, np.full(3, 1.0))
    with pytest.raises(OSError):
        metrics_lib.save_statistics(tmp_path / "new" / "fid_stats_y.npz", _stats(3.0))
    assert os.listdir(tmp_path / "new") == []  # no partial file under the final name
    monkeypatch.setattr(np, "savez", real_savez)
    metrics_lib.save_statistics(path, _stats(4.0))
    np.testing.assert_array_equal(metrics_lib.load_statistics(path).sigma, np.eye(3) * 4.0)
    assert os.listdir(path.parent) == [path.name]


def _folder_config(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=6, size=8)
    config = helpers.tiny_config(folder, resolution=8, channels=3)
    config.eval.enabled = True
    config.eval.reference_split = "train"
    config.eval.cache_dir = str(tmp_path / "fid_stats")
    return config


def test_write_false_computes_without_writing(tmp_path):
    config = _folder_config(tmp_path)
    cache = config.eval.cache_dir
    extractor = helpers.FakeExtractor()
    read_only = reference_lib.reference_statistics(config.data, "train", cache, extractor,
                                                   write=False)
    assert not os.path.exists(cache) or os.listdir(cache) == []
    written = reference_lib.reference_statistics(config.data, "train", cache, extractor)
    path = reference_lib.reference_statistics_path(config.data, "train", cache)
    assert os.listdir(cache) == [os.path.basename(path)]
    np.testing.assert_array_equal(read_only.mu, written.mu)
    np.testing.assert_array_equal(metrics_lib.load_statistics(path).sigma, written.sigma)


@pytest.mark.parametrize("process, writes", [(0, True), (1, False)])
def test_only_process_zero_writes_the_cache(tmp_path, monkeypatch, process, writes):
    config = _folder_config(tmp_path)
    monkeypatch.setattr(features_lib, "FeatureExtractor", helpers.FakeExtractor)
    monkeypatch.setattr(jax, "process_index", lambda: process)
    images = np.zeros((6, 8, 8, 3), np.float32)
    ev = evaluator_lib.Evaluator(config, str(tmp_path / "wd"), latent_dim=8, num_classes=0,
                                 train_images=images, train_labels=np.zeros(6, np.int32))
    ref = ev.reference
    assert ref.num_images == 6
    path = reference_lib.reference_statistics_path(config.data, "train", config.eval.cache_dir)
    assert os.path.exists(path) == writes
    if not writes:  # process 0's file, once there, is what the others read
        reference_lib.reference_statistics(config.data, "train", config.eval.cache_dir,
                                           helpers.FakeExtractor())
        monkeypatch.setattr(reference_lib.metrics_lib, "compute_statistics", None)  # no recompute
        again = evaluator_lib.Evaluator(config, str(tmp_path / "wd"), latent_dim=8,
                                        num_classes=0, train_images=images,
                                        train_labels=np.zeros(6, np.int32)).reference
        np.testing.assert_array_equal(again.mu, ref.mu)
