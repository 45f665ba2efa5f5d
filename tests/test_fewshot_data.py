"""Few-shot data: batches without replacement within an epoch, and folder checks before training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan_lth import pipeline
from jaxgan_lth.data import sampling
from tests.helpers import full_and_resumed, make_image_folder, tiny_config


def test_epoch_batches_are_disjoint_and_follow_the_epoch_permutation():
    n, b = 10, 4
    data = {"images": jnp.arange(n, dtype=jnp.float32).reshape(n, 1, 1, 1),
            "labels": jnp.arange(n, dtype=jnp.int32)}
    base = jax.random.key(7)
    s = sampling.init_sampler(n)
    seen = []
    for i in range(5):
        _, y, s = sampling.sample_real_epoch(s, base, data, jax.random.key(i), b, False)
        seen.append(np.asarray(y))
    perm0 = np.asarray(jax.random.permutation(jax.random.fold_in(base, 0), n))
    perm1 = np.asarray(jax.random.permutation(jax.random.fold_in(base, 1), n))
    perm2 = np.asarray(jax.random.permutation(jax.random.fold_in(base, 2), n))
    # 2 full batches per epoch of 10 (the tail of 2 is dropped, as drop_last=True)
    np.testing.assert_array_equal(np.concatenate(seen[:2]), perm0[:8])
    np.testing.assert_array_equal(np.concatenate(seen[2:4]), perm1[:8])
    np.testing.assert_array_equal(seen[4], perm2[:4])
    assert len(set(np.concatenate(seen[:2]).tolist())) == 8
    assert int(s["epoch"]) == 2 and int(s["pos"]) == 4


@pytest.mark.slow
def test_epoch_sampling_trains_and_resumes_exactly(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "imgs", n=16, size=16, channels=1)
    config = tiny_config(folder, num_steps=6)
    config.data.sampling = "epoch"
    a, b = full_and_resumed(config, tmp_path, monkeypatch, 4, 6)
    # 6 G steps x n_dis 2 = 12 batches of 4 from 16 images: epochs 0, 1, 2 of 4 batches each
    assert int(a["sampler"]["epoch"]) == 2 and int(a["sampler"]["pos"]) == 16
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_folder_checks_before_training(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", n=16, size=16, channels=1)
    config = tiny_config(folder)
    config.data.subset_fraction = 0.5
    with pytest.raises(ValueError, match=r"data.subset_fraction=0.5 would keep 8 of the 16 "
                                         r"images of data.folder"):
        pipeline.train_and_evaluate(config, str(tmp_path / "w"))
    config.data.allow_folder_subset = True
    config.train.d_batch_size = 12
    with pytest.raises(ValueError, match=r"gives 8 training images, fewer than one D batch "
                                         r"\(train.d_batch_size=12\)"):
        pipeline.train_and_evaluate(config, str(tmp_path / "w"))
    config = tiny_config(folder)
    config.data.sampling = "shuffle"
    with pytest.raises(ValueError, match=r"data.sampling = 'shuffle'; accepted"):
        pipeline.train_and_evaluate(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()  # nothing written
