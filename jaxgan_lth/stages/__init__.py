"""The stages of the pipeline behind one interface, and their registry.

=================  =====================================================================
``base``           :class:`Stage` (the interface), :class:`Context`, :data:`REGISTRY`,
                   :func:`register`, :func:`get`, :func:`plan`, :func:`stage_config`
``train``          ``train``: dense GAN training
``imp``            ``imp``: iterative magnitude pruning with rewinding (the masks m_r)
``ticket``         ``ticket``: a ticket trained from the rewound weights
``dst``            ``dst``: sparse-to-sparse training from scratch (STU-GAN) or static ERK
``slimming``       ``slimming``: network slimming's dense L1 run (the ticket baseline's input)
``lottery``        :class:`~jaxgan_lth.stages.lottery.Lottery`: IMP rounds, rewinding, ticket
                   masks (shared by ``imp``, ``ticket`` and ``slimming``)
``lottery_config`` validation of the ``sparsity``, ``imp`` and ``ticket`` sections
``baselines``      the ticket's baselines: network slimming's channel masks, small dense G
``ticket_source``  which IMP round a ticket trains; its masks checked before writing
=================  =====================================================================

Importing this package registers every stage, in the order of the pipeline (``train``, ``imp``,
``ticket``, ``dst``, ``slimming``): the order the stages are validated and listed in.
"""

# the import order is the registration order
# isort: off
from jaxgan_lth.stages import train  # noqa: F401
from jaxgan_lth.stages import imp  # noqa: F401
from jaxgan_lth.stages import ticket  # noqa: F401
from jaxgan_lth.stages import dst  # noqa: F401
from jaxgan_lth.stages import slimming  # noqa: F401
# isort: on
from jaxgan_lth.stages.base import (
    REGISTRY,
    Context,
    Stage,
    get,
    parse_stages,
    plan,
    register,
    runs_of,
    stage_config,
)

__all__ = ["REGISTRY", "Context", "Stage", "get", "parse_stages", "plan", "register", "runs_of",
           "stage_config"]
