"""The loop as a driver of periodic actions (jaxgan_lth/training/periodic.py,
jaxgan_lth/training/loop.py):
when actions fire, and that metrics and states stay on the device at the other iterations."""

import json

import helpers
import jax
import numpy as np
import pytest

from jaxgan_lth.training import loop, periodic, run_axis, sweep


class _Recorder(periodic.PeriodicAction):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.applied = []

    def apply(self, step, runs):
        self.applied.append((step, runs))


@pytest.mark.parametrize("every, on, want", [
    (3, (), [3, 6, 9]),
    (3, (10,), [3, 6, 9, 10]),
    (4, (8, 10), [4, 8, 10]),   # a step that is both a multiple and listed fires once
    (0, (10,), [10]),           # every_steps = 0: only the listed steps
    (None, (), []),
])
def test_an_action_fires_at_multiples_of_every_and_at_its_listed_steps(every, on, want):
    action = _Recorder(every_steps=every, on_steps=on)
    marker = object()
    fired = [s for s in range(1, 11) if action(s, marker)]
    assert fired == want
    assert action.applied == [(s, marker) for s in want]


class _Watched:
    """A metric of iteration ``it``: records every read of its value (``__array__``,
    ``__float__``; ``jax.device_get`` of a non-jax leaf calls ``__array__``)."""

    def __init__(self, value, it, reads):
        self.value, self.it, self.reads = value, it, reads

    def __array__(self, dtype=None, copy=None):
        self.reads.append(self.it)
        return np.asarray(self.value, dtype)

    def __float__(self):
        self.reads.append(self.it)
        return float(self.value)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_no_transfer_to_the_host_at_iterations_where_no_action_fires(strategy, tmp_path,
                                                                      monkeypatch):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=8, size=20, channels=1)
    config = helpers.tiny_config(folder, num_steps=9)
    config.train.n_dis = 1
    config.log_every = 4         # log: 4, 8 and the last step 9
    config.sample_every = 8      # grids and checkpoints: 8 and 9
    config.checkpoint_every = 8
    config.sweep.stages = "train"
    config.sweep.seeds = "0,1"
    engine = loop.build_engine(config, str(tmp_path / "w"))
    runs = sweep.parse_runs(config)
    like = jax.eval_shape(engine.fns.init, jax.random.key(0))

    it = [0]        # the iteration the loop is in (0: before the first)
    reads = []      # iterations whose metrics were read
    gets = []       # iterations during which jax.device_get was called
    real_init, real_call, real_get = run_axis.RunAxis.__init__, run_axis.RunAxis.__call__, \
        jax.device_get

    def init(self, *args):
        real_init(self, *args)
        compiled = self._step

        def watched(*a):  # every compiled iteration's metrics, watched
            states, metrics = compiled(*a)
            return states, jax.tree.map(lambda v: _Watched(v, it[0], reads), metrics)

        self._step = watched

    def call(self, *args):
        it[0] += 1
        return real_call(self, *args)

    def device_get(x):
        gets.append(it[0])
        return real_get(x)

    monkeypatch.setattr(run_axis.RunAxis, "__init__", init)
    monkeypatch.setattr(run_axis.RunAxis, "__call__", call)
    monkeypatch.setattr(jax, "device_get", device_get)
    final, summary = loop.train_runs(
        engine, str(tmp_path / "stage"), runs=runs,
        init_states=lambda: [loop.initial_state(engine, r.seed) for r in runs],
        masks=[loop.dense_masks(like)] * len(runs), num_steps=9, strategy=strategy)
    assert it[0] == 9 and summary["strategy"] == strategy
    # Metrics came to the host at the log steps only, and once at each: one read per metric
    # of the [K] vmapped outputs, one per metric and run of the K separate ones.
    names = sorted(summary["runs"][runs[0].name]["last_metrics"])
    per_step = len(names) * (1 if strategy == "vmap" else len(runs))
    assert sorted(set(reads)) == [4, 8, 9]
    assert [reads.count(s) for s in (4, 8, 9)] == [per_step] * 3
    # No device_get at the iterations where no action fired (1-3, 5-7); the grids of 8 and 9
    # fetch their samples with it (the count sees the loop's transfers).
    assert set(gets) - {0} <= {4, 8, 9} and {8, 9} <= set(gets)
    assert [int(s["step"]) for s in final] == [9, 9]
    for r in runs:
        with open(tmp_path / "stage" / "runs" / r.name / "metrics.jsonl") as f:
            lines = [json.loads(line) for line in f]
        assert [line["step"] for line in lines] == [4, 8, 9]
        assert sorted(lines[-1]) == sorted(["step", *names])
