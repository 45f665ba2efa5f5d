"""Precision controls (issue 31, item 3): ``train.matmul_precision``, ``model.dtype``,
``eval.precision`` / ``eval.batch_size`` and the persistent compilation cache.

bfloat16 has 8 significant bits (7 stored): round-to-nearest leaves a relative error of at
most u = 2^-9 ~ 1.95e-3 per rounding (the spacing of neighbouring values is 2^-8 ~ 3.9e-3).
The tolerances below are derived from u where they are stated.
"""

import copy
import os
import re
import subprocess
import sys
import textwrap

import helpers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jaxgan_lth import config_lib, pipeline
from jaxgan_lth.models import get_model
from jaxgan_lth.training import loop, precision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- helpers -----------------------------------------------------------------------------------


def _eqns(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs nested in its equations' parameters."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(item, "jaxpr", item)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _precisions(hlo_text):
    """``(op, [(lhs, rhs) precision names])`` of every dot_general / convolution of a
    StableHLO text (an op without a precision attribute gives ``[]``)."""
    out = []
    for line in hlo_text.splitlines():
        if "stablehlo.dot_general" in line:
            out.append(("dot", re.findall(r"precision = \[(\w+), (\w+)\]", line)))
        elif "stablehlo.convolution" in line:
            out.append(("conv", [tuple(re.findall(r"#stablehlo<precision (\w+)>", line))]))
    return out


def _with(config, **changes):
    config = copy.deepcopy(config)
    for path, value in changes.items():
        section, key = path.split("__")
        config[section][key] = value
    return config


# ---- model.dtype --------------------------------------------------------------------------------

TINY = {
    "dcgan28_flatten": ("dcgan", dict(resolution=28, channels=1, latent_dim=8, g_channels=4,
                                      d_channels=4, d_pooling="flatten")),
    "dcgan32_conditional": ("dcgan", dict(resolution=32, channels=3, num_classes=3,
                                          conditional=True, latent_dim=8, g_channels=4,
                                          d_channels=4)),
    "sngan": ("sngan", dict(resolution=32, channels=3, latent_dim=8, g_channels=16,
                            d_channels=8)),
    "biggan": ("biggan", dict(resolution=32, channels=3, num_classes=3, conditional=True,
                              latent_dim=8, g_channels=8, d_channels=8, shared_dim=8)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_bfloat16_compute_with_float32_parameters_statistics_and_outputs(name):
    model, kwargs = TINY[name]
    g16, d16 = get_model(model, dtype="bfloat16", **kwargs)
    g32, d32 = get_model(model, **kwargs)
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((4, kwargs["latent_dim"])), jnp.float32)
    y = jnp.asarray([0, 1, 2, 0], jnp.int32) if kwargs.get("conditional") else None
    key = jax.random.key(0, impl="rbg")
    g_vars = g16.init({"params": key}, z, y, train=False)
    # the same variables as the float32 model: float32 parameters and statistics
    helpers.assert_trees_equal(g_vars, g32.init({"params": key}, z, y, train=False))
    assert {leaf.dtype for leaf in jax.tree.leaves(g_vars)} == {jnp.dtype(jnp.float32)}
    x16, g_upd = g16.apply(g_vars, z, y, train=True, mutable=["batch_stats"])
    x32, _ = g32.apply(g_vars, z, y, train=True, mutable=["batch_stats"])
    d_vars = d16.init({"params": key}, x32, y, train=False)
    assert {leaf.dtype for leaf in jax.tree.leaves(d_vars)} == {jnp.dtype(jnp.float32)}
    o16, d_upd = d16.apply(d_vars, x32, y, train=True, mutable=["batch_stats"])
    o32, _ = d32.apply(d_vars, x32, y, train=True, mutable=["batch_stats"])
    h16, _ = d16.apply(d_vars, x32, y, train=True, method="features", mutable=["batch_stats"])
    h32, _ = d32.apply(d_vars, x32, y, train=True, method="features", mutable=["batch_stats"])
    # images, features and logits leave the model as float32; BN running averages and the
    # spectral-norm u / sigma written by the training forward stay float32
    assert x16.dtype == o16.dtype == h16.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves((g_upd, d_upd))} == {jnp.dtype(jnp.float32)}
    # close to float32 on the same variables: a layer rounds its input and its weights to
    # bfloat16 (relative error <= u each); the deepest nets here (sngan / biggan G: 11 layers)
    # round ~22 times along a path, a first-order worst case of 22u ~ 0.043 relative. Bound
    # 0.05 on the rms relative error of the images and of D's pooled features (measured
    # <= 0.012; the logits are sums with cancellation, their relative error says less)
    for a, b in ((x16, x32), (h16, h32)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)) <= 0.05
    assert not np.array_equal(np.asarray(o16), np.asarray(o32))  # bf16 did compute something

    def loss(gp, dp):
        x, _ = g16.apply({**g_vars, "params": gp}, z, y, train=True, mutable=["batch_stats"])
        o, _ = d16.apply({**d_vars, "params": dp}, x, y, train=True, mutable=["batch_stats"])
        return jnp.mean(o)

    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(g_vars["params"], d_vars["params"])
    eqns = list(_eqns(jaxpr.jaxpr))
    convs = [e for e in eqns if e.primitive.name == "conv_general_dilated"]
    dots = [e for e in eqns if e.primitive.name == "dot_general"]
    # every convolution, forward and backward, reads bfloat16 activations and kernels
    assert convs and all(v.aval.dtype == jnp.bfloat16 for e in convs for v in e.invars)
    assert any(all(v.aval.dtype == jnp.bfloat16 for v in e.invars) for e in dots)
    # the only float32 matmuls: spectral norm's power iteration (u [1, n]) and D's head (F -> 1)
    for e in dots:
        if any(v.aval.dtype == jnp.float32 for v in e.invars):
            assert any(1 in v.aval.shape for v in (*e.invars, *e.outvars)), e
    grads = jax.grad(loss, argnums=(0, 1))(g_vars["params"], d_vars["params"])
    assert {leaf.dtype for leaf in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


def test_model_dtype_is_validated_with_its_name():
    config = default.get_config()
    config.model.dtype = "float16"
    with pytest.raises(ValueError, match=r"config.model.dtype = 'float16'.*bfloat16"):
        config_lib.validate(config)
    for model, kwargs in TINY.values():
        with pytest.raises(ValueError, match="dtype = 'float16' is not accepted"):
            get_model(model, dtype="float16", **kwargs)


# ---- the training iteration: matmul precision and a short bfloat16 run -----------------------


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    root = tmp_path_factory.mktemp("prec")
    folder = helpers.make_image_folder(root / "imgs", n=12, size=20, channels=1)
    config = helpers.tiny_config(folder)
    config.train.n_dis = 1
    return {dt: loop.build_engine(_with(config, model__dtype=dt), str(root / dt))
            for dt in ("float32", "bfloat16")}


@pytest.mark.slow
def test_matmul_precision_reaches_every_matmul_and_conv_of_iteration_and_sampling(engines):
    engine = engines["float32"]
    state = loop.initial_state(engine, 0)
    masks = loop.dense_masks(state)
    z = jnp.zeros((4, engine.config.model.latent_dim))

    def lowered(value):
        cfg = _with(engine.config, train__matmul_precision=value)
        with precision.matmul_precision(cfg):  # new jit objects: traced under the scope
            step = jax.jit(engine.fns.iteration).lower(state, masks, engine.data,
                                                       engine.fns.hparams).as_text()
            sample = jax.jit(engine.fns.sample).lower(state["ema"], z, None,
                                                      jax.random.key(0)).as_text()
        return _precisions(step), _precisions(sample)

    for value, expected in (("highest", "HIGHEST"), ("high", "HIGH"), ("default", "DEFAULT")):
        for ops in lowered(value):
            assert {"dot", "conv"} <= {op for op, _ in ops}
            assert all(found for _, found in ops)  # every op carries a precision
            names = {n for _, found in ops for pair in found for n in pair}
            assert names == {expected}, (value, names)
    assert jax.config.jax_default_matmul_precision is None  # the scope restored JAX's setting


def test_train_and_evaluate_runs_its_stages_under_the_matmul_precision(tmp_path, monkeypatch):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=8, size=20, channels=1)
    config = helpers.tiny_config(folder)
    config.train.matmul_precision = "highest"
    seen = []

    def run_train(self, ctx):
        seen.append(jax.config.jax_default_matmul_precision)
        return {}

    from jaxgan_lth.stages import train as train_stage

    monkeypatch.setattr(train_stage.TrainStage, "run", run_train)
    pipeline.train_and_evaluate(config, str(tmp_path / "run"))
    assert seen == ["highest"]
    assert jax.config.jax_default_matmul_precision is None


def test_matmul_precision_and_cache_dir_are_validated_with_their_names():
    config = default.get_config()
    config.train.matmul_precision = "fp8"
    with pytest.raises(ValueError, match=r"config.train.matmul_precision = 'fp8'.*'highest'"):
        config_lib.validate(config)
    config = default.get_config()
    del config.train["compilation_cache_dir"]  # the field is type-safe: a str
    config.train.compilation_cache_dir = 3
    with pytest.raises(ValueError, match=r"config.train.compilation_cache_dir = 3"):
        config_lib.validate(config)
    # a config written before the keys existed (evaluate reads old config.json files)
    config = default.get_config()
    for section, key in (("train", "matmul_precision"), ("train", "compilation_cache_dir"),
                         ("model", "dtype")):
        del config[section][key]
    config_lib.validate(config)
    with precision.matmul_precision(config):
        assert jax.config.jax_default_matmul_precision is None


def _train(engine, steps):
    state = loop.initial_state(engine, 0)
    masks = loop.dense_masks(state)
    step = jax.jit(engine.fns.iteration)
    metrics = []
    for _ in range(steps):
        state, m = step(state, masks, engine.data, engine.fns.hparams)
        metrics.append(jax.device_get(m))
    return jax.device_get(state), metrics


def test_short_bfloat16_training_stays_close_to_float32(engines):
    """4 G steps of the tiny dcgan in both dtypes from the same theta_0.

    Tolerances: the losses are means of hinge terms of D's logits; D and G have 3 layers each,
    so a first-order worst case of 2 roundings x 6 layers x u = 12u ~ 2.3e-2 relative error on
    logits of size ~1, and the losses (slope <= 1 in each logit) move by at most that: bound
    2.5e-2. Parameters and samples: Adam's update ``m / sqrt(v)`` does not depend on the
    gradient's scale, so bfloat16's relative gradient error moves each update by about that
    fraction; two runs that follow the same path end much closer to each other than to their
    start. Bound: the median distance between the runs is at most 1/4 of the median distance
    the float32 run moved (measured on this 2-core CPU: G 0.058, D 0.003, EMA samples 0.012;
    losses within 4e-4 of float32).
    """
    steps = 4
    s32, m32 = _train(engines["float32"], steps)
    s16, m16 = _train(engines["bfloat16"], steps)
    # parameters, Adam moments, EMA generator and statistics stay float32 in the bf16 run
    floats = {leaf.dtype for leaf in jax.tree.leaves(s16) if jnp.issubdtype(leaf.dtype,
                                                                           jnp.floating)}
    assert floats == {jnp.dtype(jnp.float32)}
    assert [jax.tree.structure(s) for s in (s16, s32)] == [jax.tree.structure(s32)] * 2
    for a, b in zip(m16, m32):
        for k in ("d_loss", "g_loss"):
            assert np.isfinite(float(a[k]))
            assert abs(float(a[k]) - float(b[k])) <= 2.5e-2 * max(1.0, abs(float(b[k]))), k
    init = jax.device_get(loop.initial_state(engines["float32"], 0))
    for net in ("g", "d"):
        moved = _median_abs_diff(s32[net]["params"], init[net]["params"])
        apart = _median_abs_diff(s16[net]["params"], s32[net]["params"])
        assert 0.0 < apart <= 0.25 * moved, (net, apart, moved)
    z = jax.random.normal(jax.random.key(3), (16, engines["float32"].config.model.latent_dim))

    def sample(engine, state):
        return np.asarray(jax.jit(engine.fns.sample)(state["ema"], z, None, jax.random.key(0)))

    x0 = sample(engines["float32"], init)
    x32, x16 = sample(engines["float32"], s32), sample(engines["bfloat16"], s16)
    assert x16.dtype == np.float32
    assert np.median(np.abs(x16 - x32)) <= 0.25 * np.median(np.abs(x32 - x0))


def _median_abs_diff(a, b):
    return float(np.median(np.concatenate([np.abs(np.asarray(x) - np.asarray(y)).ravel()
                                           for x, y in zip(jax.tree.leaves(a),
                                                           jax.tree.leaves(b))])))


# ---- persistent compilation cache ---------------------------------------------------------------


def test_compilation_cache_dir_resolves_off_workdir_and_paths(tmp_path):
    config = default.get_config()
    assert precision.compilation_cache_dir(config, str(tmp_path)) is None  # default: off
    config.train.compilation_cache_dir = "workdir"
    assert precision.compilation_cache_dir(config, str(tmp_path)) == str(tmp_path / "jax_cache")
    config.train.compilation_cache_dir = "~/cache_x"
    assert precision.compilation_cache_dir(config, "w") == os.path.expanduser("~/cache_x")
    config.train.compilation_cache_dir = "rel/cache"
    assert precision.compilation_cache_dir(config, "w") == os.path.abspath("rel/cache")
    # changing the folder does not invalidate a run's checkpoints
    assert "train.compilation_cache_dir" in config_lib.RESUMABLE_CHANGES


def test_set_compilation_cache_writes_entries_in_a_process_that_compiled_before(tmp_path):
    """This test process compiled into conftest's cache already: setting the folder resets
    JAX's cache, so the next compilation is written to the new folder."""
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {k: getattr(jax.config, k) for k in keys}
    config = default.get_config()
    config.train.compilation_cache_dir = str(tmp_path / "cache")
    try:
        jax.config.update(keys[1], 0)
        assert precision.set_compilation_cache(config, "unused") == str(tmp_path / "cache")
        jax.jit(lambda x: jnp.sin(x) * 1.2345)(jnp.arange(7.0)).block_until_ready()
        assert os.listdir(tmp_path / "cache")
    finally:
        jax.config.update(keys[0], old[keys[0]])
        jax.config.update(keys[1], old[keys[1]])
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()


def test_main_fills_the_workdir_compilation_cache(tmp_path):
    """``python -m jaxgan_lth.main`` with ``train.compilation_cache_dir=workdir``: the tiny run
    leaves compiled programs in DIR/jax_cache. JAX writes only programs that compiled for at
    least ``jax_persistent_cache_min_compile_time_secs`` (1 s by default); the environment
    sets 0 so that the test does not depend on this machine's speed."""
    folder = helpers.make_image_folder(tmp_path / "imgs", n=8, size=20, channels=1)
    cfg_file = tmp_path / "cfg.py"
    cfg_file.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
        import helpers

        def get_config():
            c = helpers.tiny_config({folder!r}, num_steps=2)
            c.train.n_dis = 1
            c.train.compilation_cache_dir = "workdir"
            return c
    """))
    workdir = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-m", "jaxgan_lth.main", f"--config={cfg_file}",
                          f"--workdir={workdir}"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    entries = os.listdir(workdir / "jax_cache")
    assert len(entries) >= 2, entries  # at least the initial state and the iteration
    assert os.path.exists(workdir / "train" / "checkpoints")


# ---- eval.precision and eval.batch_size (the FID Inception network) ----------------------------


@pytest.fixture(scope="module")
def inception_weights():
    from jaxgan_lth.evaluation import inception_weights as weights_lib

    return weights_lib.random_inception_weights(seed=0)


def test_eval_precision_reaches_every_convolution_of_the_inception_network(inception_weights):
    from jaxgan_lth.evaluation.features import FeatureExtractor

    images = np.zeros((2, 32, 32, 3), np.uint8)
    for name, expected, scope in (("highest", "HIGHEST", "bfloat16"),
                                  ("high", "HIGH", "float32"),
                                  ("default", "DEFAULT", "float32")):
        extractor = FeatureExtractor(weights=inception_weights, batch_size=2, precision=name)
        assert extractor.precision == name
        # given to each convolution explicitly: train.matmul_precision's scope cannot change it
        with jax.default_matmul_precision(scope):
            text = extractor._features_fn.lower(extractor.params, images).as_text()
        convs = [found for op, found in _precisions(text) if op == "conv"]
        assert len(convs) == 94  # the network's 94 conv layers
        assert {n for found in convs for pair in found for n in pair} == {expected}
    with pytest.raises(ValueError, match="precision must be 'highest', 'high' or 'default'"):
        FeatureExtractor(weights=inception_weights, precision="bfloat16")


def test_eval_batch_size_changes_inception_features_only_by_round_off(inception_weights):
    from jaxgan_lth.evaluation.features import FeatureExtractor

    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    extractor = FeatureExtractor(weights=inception_weights, batch_size=4)
    a = extractor.features(images)  # calls of 4: a full one and a padded tail
    b = extractor.features(images, batch_size=5)  # one call of 5
    assert a.shape == b.shape == (5, 2048) and np.std(a) > 0
    # every image is computed on its own (no op mixes images); another batch shape may only
    # change XLA's blocking of the float32 sums: round-off, 1e-5 of the features' scale
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())


def test_evaluator_passes_eval_precision_and_batch_size_and_records_the_precision(
        tmp_path, monkeypatch):
    from jaxgan_lth.evaluation import evaluator as evaluator_lib
    from jaxgan_lth.evaluation import features as features_lib

    made = []

    class Recorder(helpers.FakeExtractor):
        def __init__(self, weights_path=None, *, batch_size=50, precision="highest"):
            super().__init__()
            made.append((batch_size, precision))
            self.precision = precision

    monkeypatch.setattr(features_lib, "FeatureExtractor", Recorder)
    folder = helpers.make_image_folder(tmp_path / "imgs", n=6, size=8, channels=1)
    config = helpers.tiny_config(folder, resolution=8)
    config.eval.enabled = True
    config.eval.reference_split = "train"
    config.eval.batch_size = 7
    config.eval.precision = "high"
    config.eval.cache_dir = str(tmp_path / "stats")
    images = np.zeros((6, 8, 8, 1), np.float32)

    def evaluator(cfg):
        return evaluator_lib.Evaluator(cfg, str(tmp_path), latent_dim=8, num_classes=0,
                                       train_images=images, train_labels=np.zeros(6, int))

    protocol = evaluator(config).protocol()
    assert made == [(7, "high")]
    assert protocol["network"].endswith(" precision:high")
    from jaxgan_lth.evaluation import metrics

    (stats_file,) = os.listdir(tmp_path / "stats")
    stats = metrics.load_statistics(str(tmp_path / "stats" / stats_file))
    assert stats.metadata["precision"] == "high"
    # float32 ("highest", the default): the statistics of "high" are recomputed, and neither
    # they nor the protocol name a precision (as before the key existed)
    config.eval.precision = "highest"
    with pytest.warns(UserWarning, match="recomputing"):
        protocol = evaluator(config).protocol()
    assert made[-1] == (7, "highest") and "precision" not in protocol["network"]
    stats = metrics.load_statistics(str(tmp_path / "stats" / stats_file))
    assert "precision" not in stats.metadata
    config.eval.precision = "fp16"
    with pytest.raises(ValueError, match=r"eval.precision='fp16'.*'highest'"):
        evaluator_lib.validate_config(config)


def test_a_workdir_written_before_the_numerics_keys_resumes_at_their_defaults(tmp_path):
    folder = helpers.make_image_folder(tmp_path / "imgs", n=4, size=20, channels=1)
    config = helpers.tiny_config(folder)
    old = config_lib.to_dict(config)
    for key in config_lib.ADDED_KEYS:
        section, name = key.split(".")
        del old[section][name]
    from jaxgan_lth.io_utils import write_json

    write_json(str(tmp_path / "config.json"), old)
    config_lib.check_against_workdir(config, str(tmp_path))  # the defaults: no change
    config.model.dtype = "bfloat16"
    with pytest.raises(ValueError, match=r"model\.dtype: 'float32' -> 'bfloat16'"):
        config_lib.check_against_workdir(config, str(tmp_path))


def test_evaluate_cli_restores_and_samples_under_the_runs_matmul_precision(tmp_path,
                                                                           monkeypatch):
    from jaxgan_lth import evaluate

    config = default.get_config()
    config.train.matmul_precision = "high"
    from jaxgan_lth.io_utils import write_json

    write_json(str(tmp_path / "config.json"), config_lib.to_dict(config))
    seen = []
    monkeypatch.setattr(evaluate, "_evaluate_run", lambda config, *args: seen.append(
        (config.train.matmul_precision, jax.config.jax_default_matmul_precision)) or {})
    evaluate.evaluate_run(str(tmp_path))
    assert seen == [("high", "high")]
    assert jax.config.jax_default_matmul_precision is None
