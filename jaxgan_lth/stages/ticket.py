"""Stage ``ticket``: train one ticket from the rewound weights, in ``DIR/ticket``.

Chen et al., NeurIPS 2021 (``../shared/seeds/001_*.txt`` Sec. 3.2): the mask m_R of the last
IMP round (or the round nearest ``ticket.target_sparsity``, an explicit ``ticket.round``, another
workdir's masks, or a baseline mask: random, OMP, dense, network slimming, a parameter-matched
small dense G; :mod:`jaxgan_lth.stages.baselines`) trained from theta_0 for
``ticket.num_steps`` G steps with the ticket's own part sections (``ticket.diffaug``,
``ticket.advaug``, ...). A swept ticket trains K tickets, each under the mask of the IMP run
with its seed (:meth:`jaxgan_lth.stages.lottery.Lottery.run_ticket`).
"""

from __future__ import annotations

import copy
from typing import Sequence

import ml_collections

from jaxgan_lth import parts as parts_lib
from jaxgan_lth.stages import baselines, ticket_source
from jaxgan_lth.stages.base import Context, Stage, parse_stages, register
from jaxgan_lth.stages.lottery import lottery_of
from jaxgan_lth.stages.lottery_config import validate_imp_source, validate_ticket_section


@register
class TicketStage(Stage):
    """The ticket (see the module docstring)."""

    name = "ticket"

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """Checks ``ticket`` (lottery keys, a shared IMP in ``ticket.imp_workdir``, baselines).

        Raises:
          ValueError: as :func:`lottery_config.validate_ticket_section`,
            :func:`lottery_config.validate_imp_source` and :func:`baselines.validate_config`.
        """
        validate_ticket_section(config)
        validate_imp_source(config, parse_stages(config))
        baselines.validate_config(config)

    def config_for(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """``ticket.num_steps``, the ticket's part sections in place of the top-level ones.

        Every part section the ticket has (``ticket.diffaug``, ``ticket.advaug``, ...) replaces
        the top-level one, so augmentations can be switched on for the ticket only; with
        ``mask_type = "small_dense"`` G gets the parameter-matched width
        (:func:`baselines.small_dense_width`).
        """
        cfg = super().config_for(config)
        cfg.train.num_steps = cfg.ticket.num_steps
        for cls in parts_lib.REGISTRY.values():
            if cls.section in cfg and cls.section in cfg.ticket:
                cfg[cls.section] = copy.deepcopy(cfg.ticket[cls.section])
        if cfg.ticket.mask_type == "small_dense":  # the parameter-matched narrower G
            cfg.model.g_channels = baselines.small_dense_width(config)[0]
        return cfg

    def requires(self, config: ml_collections.ConfigDict) -> tuple[str, ...]:
        """``("slimming",)`` for network slimming's mask (its dense run), else none."""
        return ("slimming",) if config.ticket.mask_type == "slimming" else ()

    def check_workdir(self, config: ml_collections.ConfigDict, workdir: str,
                      stages: Sequence[str]) -> None:
        """Refuses a ticket without the IMP masks it needs (before anything is written).

        Raises:
          ValueError: as :func:`ticket_source.check_before_writing`.
        """
        ticket_source.check_before_writing(config, workdir, list(stages))

    def run(self, ctx: Context) -> dict:
        """Trains (or resumes) the ticket; returns its result row."""
        return lottery_of(ctx).run_ticket()
