r"""Trains the class-coverage diagnostic's Fashion-MNIST classifier and writes its weights.

    python -m jaxgan_lth.evaluation.train_classifier            # rewrites the shipped .npz
    python -m jaxgan_lth.evaluation.train_classifier --out=/tmp/clf.npz --epochs=6

Recipe (ours, a standard small-CNN recipe): the 60,000 training images in [-1, 1], random
horizontal flips, Adam (lr 1e-3, decayed by cosine to 0), batch 128, ``--epochs`` epochs
(default 6), cross-entropy, seed 0. The 10,000 test images are only evaluated at the end; the
test accuracy is written into the ``.npz`` (``info/test_accuracy``) and checked by
``tests/test_coverage.py`` (>= 0.90). On the 2-core CPU this takes a few minutes.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging

from jaxgan_lth.evaluation import coverage

_OUT = flags.DEFINE_string("out", coverage.WEIGHTS_PATH, "Output .npz path.")
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Epochs over the 60,000 training images.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Training batch size.")
_LR = flags.DEFINE_float("lr", 1e-3, "Adam's peak learning rate (cosine decay to 0).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed (initialisation, shuffling, flips).")


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, 28, 28, 1] float32 in [-1, 1], labels [N] int32)`` of a Fashion-MNIST split.

    Reads the project's offline tfds copy (:func:`jaxgan_lth.data.load_split`).
    """
    from jaxgan_lth.data import load_split

    data = ml_collections.ConfigDict({"name": "fashion_mnist", "resolution": 28,
                                      "channels": 1, "tfds_data_dir": ""})
    images, labels, _ = load_split(data, split)
    return images.astype(np.float32), labels.astype(np.int32)


def accuracy(params: dict, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of the classifier on ``[N, 28, 28, 1]`` images."""
    probs = coverage.predict_proba(images, params)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def train(images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int, lr: float,
          seed: int) -> dict:
    """Trains :class:`~jaxgan_lth.evaluation.coverage.CoverageClassifier`; returns its params.

    Args:
      images: ``[N, 28, 28, 1]`` float32 in [-1, 1].
      labels: ``[N]`` int32 in [0, 10).
      epochs: passes over the images.
      batch_size: images per Adam step (the last partial batch of an epoch is dropped).
      lr: peak learning rate (cosine decay to 0 over all steps).
      seed: PRNG seed of the initialisation, the shuffling and the flips.

    Returns:
      The trained parameters (a nested dict of arrays on the host).
    """
    model = coverage.CoverageClassifier()
    key = jax.random.key(seed)
    params = model.init(key, jnp.zeros((1, *coverage.IMAGE_SHAPE)))["params"]
    steps_per_epoch = images.shape[0] // batch_size
    tx = optax.adam(optax.cosine_decay_schedule(lr, epochs * steps_per_epoch))
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y, flip_key):
        flip = jax.random.bernoulli(flip_key, 0.5, (x.shape[0], 1, 1, 1))
        x = jnp.where(flip, x[:, :, ::-1], x)

        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        t0 = time.time()
        order = rng.permutation(images.shape[0])
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            params, opt, loss = step(params, opt, images[idx], labels[idx],
                                     jax.random.fold_in(key, epoch * steps_per_epoch + i))
            losses.append(loss)
        logging.info("epoch %d: loss %.4f (%.0f s)", epoch + 1,
                     float(np.mean(jax.device_get(losses))), time.time() - t0)
    return jax.device_get(params)


def main(argv):
    """Trains on the training split, evaluates on the test split, writes ``--out``."""
    del argv
    x_train, y_train = fashion_mnist("train")
    x_test, y_test = fashion_mnist("test")
    params = train(x_train, y_train, epochs=_EPOCHS.value, batch_size=_BATCH.value,
                   lr=_LR.value, seed=_SEED.value)
    acc = accuracy(params, x_test, y_test)
    logging.info("test accuracy %.4f on %d images", acc, x_test.shape[0])
    arrays = coverage.params_to_arrays(params)
    info = {"info/test_accuracy": np.float64(acc), "info/epochs": np.int64(_EPOCHS.value),
            "info/seed": np.int64(_SEED.value)}
    np.savez_compressed(_OUT.value, **arrays, **info)
    print(f"test accuracy {acc:.4f}; weights written to {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
