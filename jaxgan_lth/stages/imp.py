"""Stage ``imp``: iterative magnitude pruning with rewinding, in ``DIR/imp/round_XX``.

Chen et al., NeurIPS 2021 (``../shared/seeds/001_*.txt`` Sec. 3.2): ``imp.rounds`` rounds, each
training G and D for ``imp.num_steps`` G steps from theta_0 under the round's mask, then pruning
by magnitude (:meth:`jaxgan_lth.stages.lottery.Lottery.run_imp`; the masks m_r in ``DIR/masks``).
A swept IMP runs one IMP per seed.
"""

from __future__ import annotations

import re

import ml_collections

from jaxgan_lth.stages.base import Context, Stage, register
from jaxgan_lth.stages.lottery import lottery_of
from jaxgan_lth.stages.lottery_config import validate_imp_sections
from jaxgan_lth.training import sweep as sweep_lib


@register
class ImpStage(Stage):
    """IMP: its config takes ``imp.num_steps``; its runs live in ``DIR/imp/round_XX``."""

    name = "imp"

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """Checks ``sparsity`` and ``imp`` (:func:`lottery_config.validate_imp_sections`)."""
        validate_imp_sections(config)

    def config_for(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """The top-level config with ``train.num_steps = imp.num_steps``."""
        cfg = super().config_for(config)
        cfg.train.num_steps = cfg.imp.num_steps
        return cfg

    def run_folders(self, config: ml_collections.ConfigDict) -> list[str]:
        """``imp/round_00`` .. ``imp/round_{R-1}`` (R = ``imp.rounds``)."""
        return [f"imp/round_{r:02d}" for r in range(int(config.imp.rounds))]

    def owns(self, rel: str) -> bool:
        """``imp/round_XX`` for any round number."""
        return re.fullmatch(r"imp/round_\d+", rel) is not None

    def runs(self, config, stage_cfg) -> list[sweep_lib.RunSpec]:
        """One run, or one per seed when swept (strengths are swept by the ticket)."""
        if self.name not in sweep_lib.stages_of(config):
            return sweep_lib.single_run(config)
        return sweep_lib.seed_runs(config)

    def run(self, ctx: Context) -> dict:
        """Runs (or resumes) the rounds; returns ``{"rounds": one row per round}``."""
        return {"rounds": lottery_of(ctx).run_imp()}
