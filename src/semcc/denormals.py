"""Flush-to-zero for subnormal floats on the CPU: the arithmetic every ``semcc`` command trains and predicts in.

Not a paper equation: a property of the machine under all of them. A float32 below ``2**-126`` (about 1.2e-38) is
*subnormal*; x86 CPUs compute with such numbers through a microcode path many times slower than the normal one.
Training tiny on the CPU makes them in the backward pass of phase ii (Sec. III-F), where the encoder is frozen
and the caption branch trains; with them flushed to zero that phase ran twice as fast and the fit trained the same
weights bit for bit (``benchmarks/README.md``, "Subnormal floats"). Flushing them (the CPU's FTZ and DAZ modes,
which ``torch.set_flush_denormal`` sets) changes only numbers far below any the model uses; in general it may
change the last bits of a result.

The mode belongs to each thread, and a thread created later inherits its creator's. torch's intra-op threads are
created at the first parallel operation, so :func:`flush_denormals` must run before any: the ``semcc`` console
script (:mod:`semcc.main`) calls it first thing. A program that imports semcc calls it itself, at its start
(``import semcc.denormals; semcc.denormals.flush_denormals()``). ``SEMCC_FLUSH_DENORMALS=0`` in the environment
keeps subnormals (the arithmetic of semcc 0.6 and earlier).
"""

from __future__ import annotations

import os
import warnings

__all__ = ["ENV", "flush_denormals"]

#: The environment variable that turns flushing off (``0``, ``false``, ``no`` or ``off``).
ENV = "SEMCC_FLUSH_DENORMALS"


def flush_denormals(enabled: bool | None = None) -> bool:
    """Flush subnormal floats to zero on this thread and on the torch threads created after it.

    ``enabled`` None reads :data:`ENV` (on unless it says ``0``/``false``/``no``/``off``). Returns whether every
    intra-op thread now flushes: it multiplies a tensor of subnormals large enough to be split over all of them
    and checks that nothing is left. False when ``enabled`` is off, when the CPU has no such mode, or when torch's
    threads were already running (a parallel operation ran before this call): those keep computing with
    subnormals, and a warning says so.
    """
    if enabled is None:
        enabled = os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    import torch

    if not torch.set_flush_denormal(enabled) or not enabled:
        return False
    # 4 Mi copies of the subnormal 2**-128, made from its bits (a float constant would be flushed on the way in),
    # multiplied on every intra-op thread (up to 128: torch's grain is 32 Ki), the products counted by their bits
    probe = torch.full((1 << 22,), 1 << 21, dtype=torch.int32).view(torch.float32)
    left = int(torch.count_nonzero((probe * 1.0).view(torch.int32)))
    if left:
        warnings.warn(
            f"flush_denormals: {left} of {probe.numel()} subnormal products were kept: torch's threads were started "
            "before the call and keep their own floating-point mode; call semcc.denormals.flush_denormals() before "
            "any torch operation",
            RuntimeWarning,
            stacklevel=2,
        )
    return left == 0
