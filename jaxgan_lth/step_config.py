"""Step-level config of :mod:`jaxgan_lth.step`: the keys no part owns, and the D-scan unroll.

Split from :mod:`jaxgan_lth.step` (re-exported there as ``step.validate_config`` and
``step.scan_unroll``) to keep that module under 500 lines.
"""

from __future__ import annotations

import jax
import ml_collections

from jaxgan_lth.data.sampling import SAMPLING
from jaxgan_lth.updates import EMA_BUFFERS


def scan_unroll(setting: int, n_dis: int) -> int | bool:
    """The ``unroll`` of the ``n_dis`` D-step scan for ``train.n_dis_unroll = setting``.

    ``setting > 0`` is used as given (1 = a rolled loop: one traced D step, the fastest
    compile; ``>= n_dis`` = fully unrolled, no while loop). ``0`` = automatic: fully unrolled
    on CPUs, where XLA:CPU ran the scanned iteration about 5x slower (default config, one
    process after the other under the same load on a 2-core EPYC: 5.1 s vs 0.94 s per
    iteration; a scan with ``unroll=n_dis`` kept the slow one-trip loop), rolled on GPUs/TPUs.
    """
    if setting <= 0:
        setting = n_dis if jax.default_backend() == "cpu" else 1
    # True: unrolled in Python, no while loop (a scan with unroll=n_dis keeps a 1-trip loop)
    return True if setting >= n_dis else int(setting)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks the step-level keys the parts do not own.

    ``train.ema_buffers``, ``n_dis_unroll``, ``ema_kimg``, ``ema_rampup``, ``g_bn_l1`` and
    ``data.sampling``.

    Raises:
      ValueError: naming the key and the accepted values.
    """
    eb = config.train.get("ema_buffers", "copy")
    if eb not in EMA_BUFFERS:
        raise ValueError(f"config.train.ema_buffers = {eb!r}; accepted: {EMA_BUFFERS}.")
    sm = config.data.get("sampling", "replacement")
    if sm not in SAMPLING:
        raise ValueError(f"config.data.sampling = {sm!r}; accepted: {SAMPLING}.")
    l1 = config.train.get("g_bn_l1", 0.0)
    if isinstance(l1, bool) or not isinstance(l1, (int, float)) or l1 < 0:
        raise ValueError(f"config.train.g_bn_l1 = {l1!r} must be a number >= 0 (0 = off).")
    un = config.train.get("n_dis_unroll", 0)
    if isinstance(un, bool) or not isinstance(un, int) or un < 0:
        raise ValueError(f"config.train.n_dis_unroll = {un!r} must be an integer >= 0 "
                         "(0 = automatic: unrolled on CPUs, rolled on accelerators).")
    for key in ("ema_kimg", "ema_rampup"):
        v = config.train.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"config.train.{key} = {v!r} must be a number >= 0 (0 = off).")
