"""Evaluate a run's checkpoint: ``python -m jaxgan_lth.evaluate --workdir=DIR``.

Reads ``DIR/config.json``, restores a checkpoint of one stage (default: the last stage the
config runs; any registered stage, :data:`jaxgan_lth.stages.REGISTRY`, or one of its run
folders, ``--stage=imp/round_01`` etc. for an IMP round), prints FID/KID of its EMA generator
against the configured reference statistics and, with ``--save_images=FOLDER``, writes
``--num_samples`` generated images there as PNG (``000000.png`` ...), e.g. for
``python -m jaxgan_lth.fid FOLDER OTHER``.

Flags:
  --workdir        the run's folder (required)
  --stage          a stage (train, imp, ticket, dst, slimming) or a run folder of one
                   (imp/round_XX, ticket_slimming); default: last stage of config.stages
  --checkpoint     latest | best | a step number (default latest)
  --num_samples    generated images (default: config.eval.num_samples)
  --save_images    folder for PNGs (must be empty or absent: nothing is overwritten)
  --grid           also write the first 16 generated images as one grid PNG (a new file)
  --noise_mode     StyleGAN2 only: G's noise inputs for the images and FID, ``random``,
                   ``const`` (the fixed maps of the training grids) or ``none`` (the reference
                   ``generate.py --noise-mode``); default: random, as the reference metrics
  --no_fid         only save images
  --cache_dir      folder of the reference statistics (FID/KID of the real split); default:
                   the run's ``eval.cache_dir`` (``DIR/fid_stats``) when it holds them or is
                   writable, else ``$XDG_CACHE_HOME/jaxgan_lth/fid_stats`` (``~/.cache/...``),
                   so a read-only workdir can be evaluated

Every output location (the statistics cache when they must be computed, ``--save_images``,
``--grid``) is checked for write access before any work.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run folder holding config.json and checkpoints.")
flags.DEFINE_string("stage", "", "A stage (train, imp, ticket, dst, slimming) or a run "
                    "folder of one (imp/round_XX); default: the last stage.")
flags.DEFINE_string("checkpoint", "latest", "latest | best | a step number.")
flags.DEFINE_string("run", "0", "Run of a swept stage: index or name (seed1_adv_step_size0.01).")
flags.DEFINE_integer("num_samples", 0, "Generated images (0 = config.eval.num_samples).")
flags.DEFINE_string("save_images", "", "Write the generated images as PNG into this folder.")
flags.DEFINE_string("grid", "", "Write the first 16 generated images as a grid PNG here.")
flags.DEFINE_string("noise_mode", "", "StyleGAN2's noise inputs: random (default), const, none.")
flags.DEFINE_bool("no_fid", False, "Skip FID/KID (only save images).")
flags.DEFINE_string("cache_dir", "", "Reference statistics folder (default: the run's "
                    "eval.cache_dir, else $XDG_CACHE_HOME/jaxgan_lth/fid_stats).")
flags.mark_flag_as_required("workdir")


def load_run_config(workdir: str):
    """``DIR/config.json`` as a ConfigDict.

    Raises:
      FileNotFoundError: the workdir has no config.json (not a jaxgan_lth run).
    """
    import ml_collections

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: --workdir must be a jaxgan_lth run folder.")
    with open(path) as f:
        raw = json.load(f)
    for k in ("g_betas", "d_betas"):
        raw["train"][k] = tuple(raw["train"][k])
    raw["sparsity"]["prunable"] = tuple(raw["sparsity"]["prunable"])
    return ml_collections.ConfigDict(raw)


def _writable(path: str) -> bool:
    """Whether ``path`` (or, when absent, its nearest existing parent) can be written."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.access(path, os.W_OK)


def choose_cache_dir(config, workdir: str, cache_dir: str = "") -> str:
    """The folder of the reference statistics that ``evaluate`` reads or writes.

    ``cache_dir`` when given; else the run's (``eval.cache_dir`` or ``DIR/fid_stats``) when it
    holds the statistics file or can be written; else ``$XDG_CACHE_HOME/jaxgan_lth/fid_stats``
    (``~/.cache/jaxgan_lth/fid_stats`` without ``XDG_CACHE_HOME``, the XDG base directory
    convention).

    Raises:
      PermissionError: the chosen folder lacks the statistics and cannot be written (named).
    """
    from jaxgan_lth.evaluation.reference import reference_statistics_path

    def has_stats(d):
        return os.path.exists(reference_statistics_path(config.data,
                                                        config.eval.reference_split, d))

    if not cache_dir:
        cache_dir = config.eval.cache_dir or os.path.join(workdir, "fid_stats")
        if not has_stats(cache_dir) and not _writable(cache_dir):
            xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                   ".cache")
            cache_dir = os.path.join(xdg, "jaxgan_lth", "fid_stats")
    if not has_stats(cache_dir) and not _writable(cache_dir):
        raise PermissionError(
            f"the reference statistics must be computed but their folder {cache_dir} is not "
            "writable; give a writable --cache_dir (or set $XDG_CACHE_HOME).")
    return cache_dir


def resolve_stage(config, stage: str):
    """``(run folder relative to the workdir, its stage's config)`` of ``--stage``.

    A stage's name (:data:`jaxgan_lth.stages.REGISTRY`) means its last run folder (``imp``: the
    last IMP round, ``imp/round_{R-1}``); a run folder means itself.

    Raises:
      ValueError: neither a registered stage nor one of their run folders (accepted listed).
    """
    from jaxgan_lth import stages as stages_lib

    for name in stages_lib.REGISTRY:
        st = stages_lib.get(name)
        if stage == name:
            folders = st.run_folders(config) or [st.folder_name or st.name]
            return folders[-1], st.config_for(config)
        if st.owns(stage):
            return stage, st.config_for(config)
    raise ValueError(f"--stage={stage!r}; accepted: a stage {tuple(stages_lib.REGISTRY)} or a "
                     "run folder of one (imp/round_XX, ticket_slimming).")


def evaluate_run(workdir: str, stage: str = "", checkpoint: str = "latest",
                 num_samples: int = 0, save_images: str = "", fid: bool = True,
                 run: int | str = 0, grid: str = "", noise_mode: str = "",
                 cache_dir: str = "") -> dict:
    """Restores one stage's checkpoint and evaluates it (see the module docstring).

    Args:
      workdir: the run's folder.
      stage: a registered stage or one of its run folders (``imp/round_XX``); "" = the
        config's last stage (a stage's name means its last run folder).
      checkpoint: latest | best | a step number.
      num_samples: generated images (0 = ``config.eval.num_samples``).
      save_images: folder for the generated images as PNG ("" = none).
      fid: compute FID/KID.
      run: run of a swept stage (index or name).
      grid: path of a PNG grid of the first 16 generated images ("" = none).
      noise_mode: StyleGAN2's noise inputs (``random``, ``const``, ``none``; "" = random, the
        reference metrics' choice); the result records it.
      cache_dir: folder of the reference statistics ("" = :func:`choose_cache_dir`'s choice).

    Raises:
      FileNotFoundError: missing config.json or stage folder.
      ValueError: an unknown stage, checkpoint or noise mode, a noise mode for a model other
        than stylegan2, a non-empty ``save_images`` folder or an existing ``grid`` file.
      PermissionError: an output location (``save_images``, ``grid``, the statistics cache
        when they must be computed) is not writable; checked before any work.
      checkpointing.CorruptCheckpointError: the step fails its SHA-256 check (step named).
    """
    from jaxgan_lth.training import precision

    config = load_run_config(workdir)
    with precision.matmul_precision(config):  # the run's train.matmul_precision
        return _evaluate_run(config, workdir, stage, checkpoint, num_samples, save_images, fid,
                             run, grid, noise_mode, cache_dir)


def _evaluate_run(config, workdir: str, stage: str, checkpoint: str, num_samples: int,
                  save_images: str, fid: bool, run: int | str, grid: str, noise_mode: str,
                  cache_dir: str) -> dict:
    """:func:`evaluate_run` on the run's loaded ``config`` (same arguments and errors)."""
    import jax

    from jaxgan_lth import stages as stages_lib
    from jaxgan_lth.training import loop

    stages = stages_lib.parse_stages(config)
    stage, cfg = resolve_stage(config, stage or stages[-1])
    stage_dir = os.path.join(workdir, stage)
    if not os.path.isdir(stage_dir):
        raise FileNotFoundError(f"{stage_dir} does not exist; stages run: {stages}.")
    if save_images and os.path.isdir(save_images) and os.listdir(save_images):
        raise ValueError(f"--save_images={save_images!r} is not empty; give a new folder.")
    if grid and os.path.exists(grid):
        raise ValueError(f"--grid={grid!r} exists; give a new file name.")
    for flag, path in (("--save_images", save_images), ("--grid", grid)):
        if path and not _writable(path if flag == "--save_images" else os.path.dirname(
                os.path.abspath(path))):
            raise PermissionError(f"{flag}={path!r} is not writable; give a writable path.")
    if fid:
        cfg.unlock()
        cfg.eval.cache_dir = choose_cache_dir(cfg, workdir, cache_dir)
    from jaxgan_lth.models.stylegan2 import NOISE_MODES

    if noise_mode and noise_mode not in NOISE_MODES:
        raise ValueError(f"--noise_mode={noise_mode!r}; accepted: {', '.join(NOISE_MODES)}.")
    if noise_mode and config.model.name != "stylegan2":
        raise ValueError(f"--noise_mode={noise_mode!r} is for model.name='stylegan2'; this run's "
                         f"model is {config.model.name!r} (no noise inputs).")
    if checkpoint not in ("latest", "best") and not checkpoint.isdigit():
        raise ValueError(f"--checkpoint={checkpoint!r}; accepted: latest, best, a step number.")
    engine = loop.build_engine(cfg, workdir)
    run_arg = int(run) if str(run).isdigit() else run
    try:
        state, step = loop.load_run_state(engine, stage_dir, checkpoint, run_arg)
    except ValueError as e:
        raise FileNotFoundError(str(e)) from e
    cfg.unlock()
    cfg.eval.enabled = True
    ev = loop.make_evaluator(cfg, workdir, engine)
    sample = jax.jit(engine.fns.sample)
    if noise_mode:
        from jaxgan_lth.models import G_NOISE

        G = engine.generator

        @jax.jit
        def sample(variables, z, y=None, key=None):
            return G.apply(variables, z, y, method="generate", noise_mode=noise_mode,
                           rngs={G_NOISE: key} if noise_mode == "random" else None)

    def sample_fn(z, y, key, variables=state["ema"]):
        return sample(variables, z, y, key)

    n = num_samples or cfg.eval.num_samples
    result = {"stage": stage, "step": int(step)}
    if noise_mode:
        result["noise_mode"] = noise_mode
    if save_images or grid:
        from jaxgan_lth import io_utils
        from jaxgan_lth.evaluation.features import to_uint8

        images = to_uint8(ev.generate(sample_fn, n if save_images else min(n, 16)))
        if save_images:
            os.makedirs(save_images, exist_ok=True)
            for i, img in enumerate(images):
                io_utils.save_png(img, os.path.join(save_images, f"{i:06d}.png"))
            result["saved_images"] = int(len(images))
        if grid:
            io_utils.save_png(io_utils.image_grid(images[:16].astype("float32") / 127.5 - 1.0),
                              grid)
            result["grid"] = grid
    if fid:
        cfg.unlock()
        cfg.eval.num_samples = n
        result.update(ev.evaluate(sample_fn, lambda z, y, key: sample(state["g"], z, y, key)))
    return result


def main(argv):
    """Evaluates the run named by the flags and prints the result as JSON."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        result = evaluate_run(FLAGS.workdir, FLAGS.stage, FLAGS.checkpoint, FLAGS.num_samples,
                              FLAGS.save_images, not FLAGS.no_fid, FLAGS.run, FLAGS.grid,
                              FLAGS.noise_mode, FLAGS.cache_dir)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001  (reported, then exit 1)
        from jaxgan_lth import checkpointing, io_utils

        checkpointing.close_all()
        io_utils.exit_with_error(e)  # the error is the last line (e.g. a corrupt step named)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
