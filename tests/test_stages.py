"""The stages behind one interface: registry, configs, folders, plan, and no stage names in the
pipeline, the evaluation CLI and the report (jaxgan_lth/stages/)."""

import ast
import os

import helpers
import jax
import numpy as np
import pytest
from PIL import Image

from jaxgan_lth import evaluate, pipeline
from jaxgan_lth import stages as stages_lib
from jaxgan_lth.stages import lottery

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("train", "imp", "ticket", "dst", "slimming")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return helpers.make_image_folder(tmp_path_factory.mktemp("imgs"), n=8, size=20, channels=1)


def _config(folder):
    config = helpers.tiny_config(folder)
    config.train.num_steps, config.imp.num_steps = 3, 5
    config.ticket.num_steps, config.dst.num_steps = 7, 2
    config.ticket.slimming_l1 = 0.25
    return config


def test_registry_holds_every_stage_in_pipeline_order():
    assert tuple(stages_lib.REGISTRY) == NAMES
    for name, cls in stages_lib.REGISTRY.items():
        assert issubclass(cls, stages_lib.Stage) and cls.name == name
    with pytest.raises(ValueError, match=r"unknown stage 'prune'; accepted: \('train', 'imp'"):
        stages_lib.get("prune")


def test_a_second_class_under_a_taken_name_is_refused():
    class Other(stages_lib.Stage):
        name = "ticket"

        def run(self, ctx):
            return {}

    with pytest.raises(ValueError, match="'ticket' is registered twice"):
        stages_lib.register(Other)
    assert stages_lib.REGISTRY["ticket"].__name__ == "TicketStage"


def test_each_stage_config_takes_its_own_step_count_and_options(folder):
    config = _config(folder)
    steps = {n: int(stages_lib.stage_config(config, n).train.num_steps) for n in NAMES}
    assert steps == {"train": 3, "imp": 5, "ticket": 7, "dst": 2, "slimming": 5}
    slim = stages_lib.stage_config(config, "slimming")
    assert slim.train.g_bn_l1 == 0.25
    assert stages_lib.stage_config(config, "imp").train.g_bn_l1 == 0.0
    dst = stages_lib.stage_config(config, "dst")
    assert dst.train.mask_grads is False and dst.train.sema is True
    assert config.train.num_steps == 3 and "mask_grads" not in config.train  # not modified


def test_folders_and_run_folders(folder):
    config = _config(folder)
    config.imp.rounds = 3
    got = {n: (stages_lib.get(n).folder("/w"), stages_lib.get(n).run_folders(config))
           for n in NAMES}
    assert got == {"train": ("/w/train", ["train"]),
                   "imp": ("/w/imp", ["imp/round_00", "imp/round_01", "imp/round_02"]),
                   "ticket": ("/w/ticket", ["ticket"]), "dst": ("/w/dst", ["dst"]),
                   "slimming": ("/w/ticket_slimming", ["ticket_slimming"])}
    assert stages_lib.get("imp").owns("imp/round_11") and not stages_lib.get("imp").owns("imp")


def test_plan_runs_the_slimming_dense_run_before_a_slimming_ticket(folder):
    config = _config(folder)
    config.stages = "imp,ticket"
    assert stages_lib.plan(config) == ["imp", "ticket"]
    config.ticket.mask_type = "slimming"
    assert stages_lib.plan(config) == ["imp", "slimming", "ticket"]
    config.stages = "slimming,ticket"  # named explicitly: run once
    assert stages_lib.plan(config) == ["slimming", "ticket"]
    config.stages = "ticket"
    assert list(pipeline.validate_config(config)) == ["slimming", "ticket"]


def test_evaluate_resolves_stage_names_and_run_folders(folder):
    config = _config(folder)
    config.imp.rounds = 2
    cases = {"imp": "imp/round_01", "imp/round_07": "imp/round_07", "dst": "dst",
             "slimming": "ticket_slimming", "ticket_slimming": "ticket_slimming"}
    for arg, rel in cases.items():
        got, cfg = evaluate.resolve_stage(config, arg)
        assert got == rel
        assert cfg.train.num_steps == {"dst": 2}.get(arg, 5)
    with pytest.raises(ValueError, match=r"--stage='nope'; accepted: a stage \('train'"):
        evaluate.resolve_stage(config, "nope")


def _stage_name_comparisons(path):
    """``x == "ticket"`` / ``x in ("train", "dst")`` comparisons with a stage name in a file."""
    tree = ast.parse(open(path).read())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for c in [node.left, *node.comparators]:
                for k in ([c] if isinstance(c, ast.Constant) else getattr(c, "elts", [])):
                    if isinstance(k, ast.Constant) and k.value in NAMES:
                        out.append((node.lineno, k.value))
    return out


@pytest.mark.parametrize("module", ["pipeline.py", "evaluate.py", "report.py"])
def test_pipeline_evaluate_and_report_name_no_stage(module):
    assert _stage_name_comparisons(os.path.join(REPO, "jaxgan_lth", module)) == []


def test_the_name_check_finds_a_comparison(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('if stage == "dst" or s in ("imp", "x"):\n    pass\n')
    assert _stage_name_comparisons(str(path)) == [(1, "dst"), (1, "imp")]


def test_slimming_ticket_without_its_dense_run_is_refused(folder, tmp_path):
    config = _config(folder)
    config.stages = "ticket"
    config.ticket.mask_type = "slimming"
    lot = lottery.Lottery(config, str(tmp_path), pipeline.validate_config(config))
    like = jax.eval_shape(lot.engine("ticket").fns.init, jax.random.key(0))
    with pytest.raises(ValueError, match="needs the finished dense run of the slimming stage"):
        lot.ticket_masks(like)


@pytest.mark.slow
def test_evaluate_accepts_the_dst_stage(folder, tmp_path):
    config = _config(folder)
    config.stages = "dst"
    workdir = str(tmp_path / "run")
    summary = pipeline.train_and_evaluate(config, workdir)
    assert list(summary["stages"]) == ["dst"]
    out = str(tmp_path / "gen")
    result = evaluate.evaluate_run(workdir, num_samples=3, save_images=out, fid=False)
    # the dst stage's last checkpoint (dst.num_steps = 2), not train.num_steps = 3
    assert result == {"stage": "dst", "step": 2, "saved_images": 3}
    imgs = [np.asarray(Image.open(os.path.join(out, f))) for f in sorted(os.listdir(out))]
    assert len(imgs) == 3 and imgs[0].shape == (28, 28)
    assert evaluate.evaluate_run(workdir, stage="dst", fid=False) == {"stage": "dst", "step": 2}
