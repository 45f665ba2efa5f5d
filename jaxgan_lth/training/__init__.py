"""Training: the step, the loop and what they share.

The step is plain functions of a frozen :class:`~jaxgan_lth.training.step_config.StepSpec`
(``step_config``, ``step_losses``, ``step``, ``updates``, ``lazy_reg``, ``losses``); the loop
(``loop``, ``periodic``, ``summaries``) drives K runs of a stage (``run_axis``; the swept runs of
``sweep``) with periodic actions; ``schedules`` and ``precision`` hold the learning-rate
schedules and the run-wide numerics. The stages (:mod:`jaxgan_lth.stages`) run on top of it.
"""
