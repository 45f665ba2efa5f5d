"""Stage ``train``: dense GAN training (one run or a sweep) in ``DIR/train``.

G and D train densely from their initial weights for ``train.num_steps`` G steps through the one
loop (:func:`jaxgan_lth.training.loop.train_runs`) with the top-level part sections (``diffaug``,
``advaug``, ``lecam``, ...); ``config.sweep.stages = "train"`` runs the swept grid.
"""

from __future__ import annotations

import jax

from jaxgan_lth.stages.base import Context, Stage, density_summary, pruned_nets, register, strategy
from jaxgan_lth.training import loop


@register
class TrainStage(Stage):
    """The dense stage: its config is the top-level config, its folder ``DIR/train``."""

    name = "train"

    def run(self, ctx: Context) -> dict:
        """Trains (or resumes) the dense runs; returns the loop's summary."""
        config, stage_cfg = ctx.config, ctx.stage_config(self.name)
        engine = loop.build_engine(stage_cfg, ctx.workdir)
        runs = self.runs(config, stage_cfg)
        like = jax.eval_shape(engine.fns.init, jax.random.key(0))
        masks = [loop.dense_masks(like) for _ in runs]
        info = {"stage": self.name, **density_summary(
            masks[0], tuple(config.sparsity.prunable), pruned_nets(config))}
        _, summary = loop.train_runs(
            engine, self.folder(ctx.workdir), runs=runs,
            init_states=lambda: [loop.initial_state(engine, r.seed) for r in runs],
            masks=masks, num_steps=int(stage_cfg.train.num_steps), strategy=strategy(config),
            evaluator=loop.make_evaluator(stage_cfg, ctx.workdir, engine),
            run_info=[info] * len(runs))
        return summary
