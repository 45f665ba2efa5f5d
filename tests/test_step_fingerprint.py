"""The step's numbers, pinned: a SHA-256 of the states and metrics of a few iterations.

Three tiny configs reach every branch of :mod:`jaxgan_lth.training.step`: dcgan with DiffAugment,
AdvAug (PGD on D and G), lazy R1 as D's own step, LeCam, epoch sampling, sparse masks and the
EMA ramp-up; stylegan2 with lazy R1, lazy path length and the kimg EMA; dcgan with NICE, ADA,
the AdvAug noise baseline on G with an un-augmented adversarial branch, network slimming's BN
L1, straight-through masks and the sparse EMA (the DST stage's options).

The digests were recorded from the step before it became module-level functions (issue 30,
commit 3a2eeaf) and must not change through refactors. Bit-identity holds only for one XLA
build and device layout, so the pinned digests are checked on the JAX version and backend
they were recorded with (CPU, 4 host devices from conftest.py); elsewhere the test is skipped
with that reason (tests/test_train.py still checks the step against its D and G updates).
"""

import dataclasses
import functools
import hashlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan_lth import parts, pipeline
from jaxgan_lth.training import loop
from jaxgan_lth.training import step as step_lib
from tests.helpers import make_image_folder, tiny_config, tiny_stylegan2

RECORDED_WITH = ("0.10.2", "cpu", 4)  # jax version, backend, device count
PINNED = {
    "dcgan_diffaug_advaug_r1":
        "192726561d20108a539032a3f6f519f056b6d9feeb9de58445c3fa56a58d7bc2",
    "stylegan2_lazy_r1_pathlen":
        "5a8de23c2f5cde612d4071d89d3e046d24926353a700fda1f80aab058731abc4",
    "dcgan_nice_ada_dst":
        "bdc72c1205b860835b7e6b5b1ae9c0203b76243a95a65dd14f6e40bfb03356ca",
}
ITERATIONS = 3


def _dcgan_diffaug_advaug_r1(config):
    config.diffaug.policy = "color,translation,cutout"
    config.advaug.mode = "pgd"
    config.advaug.networks = "gd"
    config.r1 = parts.R1.default_config(1.0)
    config.r1.interval = 2
    config.lecam.weight = 0.3
    config.lecam.start = 0
    config.data.sampling = "epoch"
    config.train.ema_rampup = 0.05
    return config


def _stylegan2_lazy_r1_pathlen(config):
    tiny_stylegan2(config)
    config.r1.interval = 2
    return config


def _dcgan_nice_ada_dst(config):
    config.nice = parts.NICE.default_config(enabled=True)
    config.nice.beta_init = 0.05
    config.ada.pipeline = "bgc"
    config.ada.p_init = 0.3
    config.ada.interval = 1
    config.advaug.mode = "noise"
    config.advaug.networks = "g"
    config.advaug.augment_adv_branch = False
    config.train.g_bn_l1 = 1e-3
    config.train.mask_grads = False
    config.train.sema = True
    return config


CASES = {
    "dcgan_diffaug_advaug_r1": (_dcgan_diffaug_advaug_r1, 28, 1),
    "stylegan2_lazy_r1_pathlen": (_stylegan2_lazy_r1_pathlen, 32, 3),
    "dcgan_nice_ada_dst": (_dcgan_nice_ada_dst, 28, 1),
}


def _engine(name, tmp_path):
    build, res, ch = CASES[name]
    folder = make_image_folder(tmp_path / "imgs", n=8, size=res, channels=ch)
    config = build(tiny_config(folder, resolution=res, channels=ch))
    pipeline.validate_config(config)
    return loop.build_engine(config, str(tmp_path / "work"))


def _sparse_masks(state):
    """Masks dropping every third entry of each weight (a fixed, non-trivial pattern)."""
    def mask(p):
        return (jnp.arange(p.size).reshape(p.shape) % 3 != 0) if p.ndim > 1 else \
            jnp.ones(p.shape, bool)
    return {n: jax.tree.map(mask, state[n]["params"]) for n in ("g", "d")}


def _digest(trees) -> str:
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(trees)[0]:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arr = np.asarray(jax.device_get(leaf))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _run(engine):
    fns = engine.fns
    state = loop.initial_state(engine, 0)
    masks = _sparse_masks(state)
    it = jax.jit(fns.iteration)
    out = [state]
    for _ in range(ITERATIONS):
        state, metrics = it(state, masks, engine.data, fns.hparams)
        out.append((state, metrics))
    z = jax.random.normal(jax.random.key(1), (2, engine.generator.latent_dim))
    y = jnp.zeros((2,), jnp.int32) if engine.cond_classes else None
    images = jax.jit(fns.sample)(state["ema"], z, y, jax.random.key(2))
    out.append((images, jax.jit(fns.d_logits)(state["d"], images, y)))
    g_grads = jax.jit(fns.g_grads)(state, masks, engine.data, jax.random.key(4), fns.hparams)
    d_grads = jax.jit(lambda *a: (lambda g, aux: (g, aux[:4]))(*fns.d_grads(*a)))(
        state, masks, engine.data, jax.random.key(5), fns.hparams)  # without the DContext
    out.append((g_grads, d_grads))
    return out


def _fingerprint(name, tmp_path):
    return _digest(_run(_engine(name, tmp_path)))


@pytest.mark.slow  # about 4 minutes of CPU for the three configs (12-15 min wall, loaded 2 cores)
@pytest.mark.parametrize("name", sorted(CASES))
def test_step_results_match_the_pinned_digest(name, tmp_path):
    here = (jax.__version__, jax.default_backend(), jax.device_count())
    if here != RECORDED_WITH:
        pytest.skip(f"digests recorded with jax/backend/devices {RECORDED_WITH}; here {here}")
    assert _fingerprint(name, tmp_path) == PINNED[name]


@pytest.mark.slow
def test_jit_of_iteration_partial_traces_once_and_equals_the_bound_step(tmp_path):
    """``jax.jit(functools.partial(iteration, spec))``, the module-level step with the spec
    bound, compiles once across new masks and strengths and gives StepFns' numbers."""
    folder = make_image_folder(tmp_path / "imgs", n=8, size=28, channels=1)
    config = tiny_config(folder)
    config.diffaug.policy = "translation"
    engine = loop.build_engine(config, str(tmp_path / "work"))
    fns = engine.fns
    spec = fns.spec
    assert isinstance(spec, step_lib.StepSpec)
    assert {spec: 1}[spec] == 1 and dataclasses.replace(spec) != spec  # hashed by identity
    it = jax.jit(functools.partial(chex.assert_max_traces(step_lib.iteration, n=1), spec))
    state = loop.initial_state(engine, 0)
    masks = _sparse_masks(state)
    s1, m1 = it(state, masks, engine.data, fns.hparams)
    hp = dict(fns.hparams, ema_decay=jnp.float32(0.5))
    dense = loop.dense_masks(state)
    s2, m2 = it(s1, dense, engine.data, hp)  # new masks and strengths: no new trace
    want1, wm1 = jax.jit(fns.iteration)(state, masks, engine.data, fns.hparams)
    chex.assert_trees_all_equal((s1, m1), (want1, wm1))
    assert int(s2["step"]) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n_dis = 3
