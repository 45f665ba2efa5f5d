"""Stage ``slimming``: network slimming's dense run, in ``DIR/ticket_slimming``.

Liu et al., ICCV 2017 (Sec. 3-4), as the lottery paper's baseline (Chen et al., NeurIPS 2021,
Fig. 7 / Table 6): G and D train densely from theta_0 (the IMP's rewound weights, one run per
IMP run) for ``imp.num_steps`` G steps with the L1 penalty ``ticket.slimming_l1 * sum |gamma|``
on G's batch-norm scales (``train.g_bn_l1``). The ticket stage with
``ticket.mask_type = "slimming"`` requires this stage (the pipeline runs it first) and reads
its final state to choose G's channels (:func:`jaxgan_lth.stages.baselines.slimming_masks`).
"""

from __future__ import annotations

import jax
import ml_collections

from jaxgan_lth.stages import baselines
from jaxgan_lth.stages.base import (
    Context,
    Stage,
    parse_stages,
    plan,
    register,
    stage_config,
    strategy,
)
from jaxgan_lth.stages.lottery import lottery_of
from jaxgan_lth.stages.lottery_config import imp_runs
from jaxgan_lth.training import loop
from jaxgan_lth.training import sweep as sweep_lib


@register
class SlimmingStage(Stage):
    """The dense L1 run of network slimming (see the module docstring)."""

    name = "slimming"
    folder_name = "ticket_slimming"

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """Checks slimming's keys when it runs (:func:`baselines.validate_slimming`)."""
        if self.name in parse_stages(config):
            baselines.validate_slimming(config)

    def config_for(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """The ``imp`` stage's config (round 0 is dense) with ``g_bn_l1 = slimming_l1``.

        ``train.g_bn_l1 = ticket.slimming_l1``: the L1 weight on G's batch-norm scales.
        """
        cfg = stage_config(config, "imp")
        cfg.train.g_bn_l1 = float(config.ticket.slimming_l1)
        return cfg

    def runs(self, config, stage_cfg) -> list[sweep_lib.RunSpec]:
        """The IMP's runs (one mask each; :func:`lottery_config.imp_runs`)."""
        del stage_cfg
        return imp_runs(config, plan(config))

    def run(self, ctx: Context) -> dict:
        """Trains (or resumes) the dense run from the rewound theta_0; returns its summary."""
        lot = lottery_of(ctx)
        engine = lot.engine(self.name)
        like = jax.eval_shape(engine.fns.init, jax.random.key(0))
        runs = lot.imp_runs
        _, summary = loop.train_runs(
            engine, self.folder(ctx.workdir), runs=runs, init_states=lot.rewind_states,
            masks=[loop.dense_masks(like)] * len(runs),
            num_steps=int(engine.config.train.num_steps), strategy=strategy(ctx.config),
            meta={"stage": "ticket_slimming"}, log_prefix="ticket_slimming/")
        return summary
