"""Shared test helpers: tiny configs and image folders, a simulated kill, a trace-count guard
and a fake FID feature extractor (no network, a few seconds)."""

import itertools
import os
import textwrap

import chex
import jax
import numpy as np
from PIL import Image

from configs import default
from jaxgan_lth.training import loop, run_axis

_WRAPS = itertools.count()


def max_traces(fn, n=1):
    """``fn`` under ``chex.assert_max_traces(n=n)`` with a counter of its own.

    The wrapped function raises ``AssertionError`` ("traced > n times") when ``jax.jit`` (or
    any transform around it) traces it the ``n + 1``-th time, i.e. when a recompile happens.
    chex keys its counter on the call stack, source and name at wrap time, so two wraps in one
    test (or one parametrized test run twice) would share it; each call here gets a fresh
    name, hence a fresh counter. ``fn`` may itself be jitted (it is traced inline). chex
    counts only calls whose arguments hold a tracer: a function whose every argument is
    static (or closed over) is not counted, so pass the traced data as arguments.
    ``wrapped.used`` turns True at the first call (to check that a patched-in wrapper ran).

    Use: ``step = jax.jit(helpers.max_traces(engine.fns.iteration))``, or pass the wrapped
    function where the package jits it.
    """
    def traced(*args, **kwargs):
        wrapped.used = True
        return fn(*args, **kwargs)

    traced.__name__ = f"{getattr(fn, '__name__', 'fn')}_{next(_WRAPS)}"
    wrapped = chex.assert_max_traces(traced, n=n)
    wrapped.used = False
    return wrapped


def make_image_folder(path, n=16, size=16, channels=3, seed=0):
    """Writes ``n`` random PNGs of ``size`` x ``size`` into ``path`` and returns the path."""
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = (size, size, 3) if channels == 3 else (size, size)
        arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(path, f"{i:03d}.png"))
    return str(path)


def tiny_config(folder, *, num_steps=4, resolution=28, channels=1):
    """The default config shrunk to a few-second CPU run on an image folder."""
    config = default.get_config()
    config.stages = "train"
    config.imp.num_steps = num_steps
    config.ticket.num_steps = num_steps
    config.eval.enabled = False  # Inception runs at ~5 images/s here; one test turns it on
    config.data.name = "folder"
    config.data.folder = str(folder)
    config.data.resolution = resolution
    config.data.channels = channels
    config.data.subset_fraction = 0.0
    config.data.subset_count = 0
    config.model.latent_dim = 8
    config.model.g_channels = 8
    config.model.d_channels = 8
    config.train.num_steps = num_steps
    config.train.n_dis = 2
    config.train.g_batch_size = 8
    config.train.d_batch_size = 4
    config.train.ema_decay = 0.9
    config.log_every = 1
    config.sample_every = 2
    config.checkpoint_every = 2
    config.keep_checkpoints = 1
    config.num_samples = 4
    return config


def tiny_lottery_config(folder, stages="imp,ticket", swept="imp,ticket"):
    """:func:`tiny_config` running ``stages`` with 2 IMP rounds, ``swept`` over seeds 0 and 1."""
    config = tiny_config(folder)
    config.stages = stages
    config.imp.rounds = 2
    config.sweep.stages = swept
    config.sweep.seeds = "0,1"
    return config


def kill_at(monkeypatch, step=None, *, call=None):
    """Makes the loop raise KeyboardInterrupt: a simulated kill.

    With ``step``: when an iteration would start from ``step`` (after the checkpoint at
    ``step``, before the next one). With ``call``: at the ``call``-th iteration (1-based,
    counted over every run of the command, e.g. across IMP rounds, whose steps restart at 0).
    Exactly one of the two must be given. The patch lives as long as ``monkeypatch`` (use
    ``monkeypatch.context()`` to rerun the command unkilled in the same test).

    Raises:
        ValueError: if neither or both of ``step`` and ``call`` are given.
    """
    if (step is None) == (call is None):
        raise ValueError(f"kill_at: give exactly one of step={step!r} and call={call!r}")
    real_call = run_axis.RunAxis.__call__
    calls = [0]

    def killing_call(self, states, *args):
        calls[0] += 1
        if calls[0] == call or (
                step is not None and step in [int(s["step"]) for s in self.split(states)]):
            raise KeyboardInterrupt("simulated kill")
        return real_call(self, states, *args)

    monkeypatch.setattr(run_axis.RunAxis, "__call__", killing_call)


def full_and_resumed(config, tmp_path, monkeypatch, kill_step, final_step):
    """Runs ``config`` uninterrupted (``tmp_path/full``) and killed at ``kill_step`` then resumed
    (``tmp_path/killed``); returns both host states at checkpoint ``final_step``."""
    import pytest

    from jaxgan_lth import pipeline

    full_dir, killed_dir = str(tmp_path / "full"), str(tmp_path / "killed")
    pipeline.train_and_evaluate(config, full_dir)
    with monkeypatch.context() as m:
        kill_at(m, kill_step)
        with pytest.raises(KeyboardInterrupt):
            pipeline.train_and_evaluate(config, killed_dir)
    pipeline.train_and_evaluate(config, killed_dir)
    return final_state(config, full_dir, final_step), final_state(config, killed_dir, final_step)


def final_state(config, workdir, step):
    """The host copy of ``workdir/train``'s state at checkpoint ``step``."""
    engine = loop.build_engine(config, workdir)
    state, got = loop.load_run_state(engine, os.path.join(workdir, "train"), str(step))
    assert got == step
    return jax.device_get(state)


def use_model(config, name):
    """Switches ``config.model.name`` to ``name``, dropping the default's dcgan-only keys
    (``model.d_pooling``), which the other builders refuse."""
    if name != "dcgan" and "d_pooling" in config.model:
        del config.model["d_pooling"]
    config.model.name = name
    return config


def tiny_stylegan2(config):
    """The tiny StyleGAN2 of the step tests: channel base 128, one mapping layer, the
    non-saturating loss, n_dis 1, G batch 4, EMA over 0.01 kimg (10 images), R1 gamma 1 (every
    step), path length weight 2 every 2nd G step, DiffAugment ``translation``."""
    from jaxgan_lth import parts

    use_model(config, "stylegan2")
    config.model.channel_base = 128
    config.model.mapping_layers = 1
    config.train.loss = "nonsaturating"
    config.train.n_dis = 1
    config.train.g_batch_size = 4
    config.train.ema_kimg = 0.01
    config.r1 = parts.R1.default_config(1.0)
    config.pathlen = parts.PathLength.default_config(2.0)
    config.pathlen.interval = 2
    config.diffaug.policy = "translation"
    return config


def assert_trees_equal(a, b):
    """Asserts two pytrees have equal leaves, bit for bit (the failing leaf's path named)."""
    la, lb = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)
    assert len(la) == len(lb)
    for (path, x), y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                      err_msg=jax.tree_util.keystr(path))


def import_blocker_source(blocked):
    """Source of a ``sitecustomize.py`` whose meta-path finder blocks the packages ``blocked``.

    Any ``import`` of a blocked top-level package (or a submodule) then raises
    ``ModuleNotFoundError`` whose message contains "blocked", as on a bare accelerator host
    that lacks them; a presence probe (``find_spec(...).origin``) sees no file.
    """
    return textwrap.dedent(f"""
        import importlib.abc
        import importlib.machinery
        import sys

        class _Absent(importlib.abc.Loader):
            def create_module(self, spec):
                raise ModuleNotFoundError(f"No module named {{spec.name!r}} (blocked: bare "
                                          "accelerator host)", name=spec.name)

            def exec_module(self, module):
                pass

        class _Blocker:
            # A spec without origin: `import` fails, and a presence probe such as
            # torch._dynamo's find_spec(...).origin sees no file (as for a missing package).
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {tuple(blocked)!r}:
                    return importlib.machinery.ModuleSpec(name, _Absent(), origin=None)
                return None

        sys.meta_path.insert(0, _Blocker())
    """)


class FakeExtractor:
    """Stands in for the FID Inception network: per-image mean, spread, min and max.

    Loading the real weights takes longer than a whole tiny training run; tests that need an
    FID value, not Inception's, use an instance (``evaluator._extractor``, a
    ``reference_statistics`` argument) or put the class in
    ``jaxgan_lth.evaluation.features.FeatureExtractor`` (it takes and ignores the real one's
    arguments). ``features(images) -> float32 [N, 4]`` for ``images`` an array
    ``[N, H, W, C]`` (any range) or an iterable of images of any sizes (as the FID command
    passes a folder's uint8 ``[H, W, 3]`` files). ``calls`` counts ``features`` calls.
    """

    weights_sha1 = "fake-extractor"

    def __init__(self, *args, **kwargs):
        self.calls = 0

    def features(self, images, batch_size=50):
        """Four statistics of each image, ``float32 [N, 4]``.

        Raises:
            ValueError: if ``images`` holds no image.
        """
        self.calls += 1
        if hasattr(images, "shape"):  # one host copy, not a device slice per image
            images = np.asarray(images, np.float64)
        out = [[x.mean(), x.std(), x.min(), x.max()]
               for x in (np.asarray(image, np.float64) for image in images)]
        if not out:
            raise ValueError("FakeExtractor.features: no images")
        return np.asarray(out, np.float32)
