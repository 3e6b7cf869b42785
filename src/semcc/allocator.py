"""The C allocator's thresholds on Linux: freed tensor memory kept for the next step instead of returned to the system.

Not a paper equation: a property of the machine under all of them, as :mod:`semcc.denormals` is. A CPU training step
allocates and frees the same large tensors (activations, attention maps and their gradients, a few MiB to tens of
MiB each) at every step. glibc's ``malloc`` serves a block above its *mmap threshold* with a fresh ``mmap`` and
unmaps it on ``free``; above its *trim threshold* it gives the top of its heap back to the system. The next step's
blocks are then new pages that the kernel zero-fills on first touch, page by page. glibc raises the mmap threshold
by itself as large blocks are freed, but only up to 32 MiB and only once it has seen them. :func:`tune_malloc` sets
both thresholds high (``mallopt(M_MMAP_THRESHOLD, 1 GiB)``, ``mallopt(M_TRIM_THRESHOLD, 2 GiB)``), the same as the
environment variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` would at a process's start, so that
freed blocks are reused from the heap. Tiny's fit on 2 CPU cores took about a tenth less time
(``benchmarks/README.md``, "The allocator's thresholds"), with the same weights: only where the memory comes from
changes, not what is computed. The cost: a process keeps the memory it has freed (its resident size stays at its
peak), which is what a training run reaches again at its next step anyway.

The ``semcc`` console script (:mod:`semcc.main`) calls it first thing, before any command; a program that imports
semcc may call it itself (``import semcc.allocator; semcc.allocator.tune_malloc()``). It does nothing, and returns
False, where ``SEMCC_MALLOC_TUNING=0`` is in the environment, off glibc (macOS, Windows, musl), when the
environment already sets one of glibc's ``MALLOC_*_`` thresholds (the user's choice wins), and when another
allocator is preloaded (``LD_PRELOAD`` naming jemalloc or tcmalloc, PyTorch's usual advice for CPU training).
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["ENV", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

#: The environment variable that turns the tuning off (``0``, ``false``, ``no`` or ``off``).
ENV = "SEMCC_MALLOC_TUNING"
#: Blocks below this many bytes come from the heap, not from a fresh ``mmap`` (glibc's default: 128 KiB, raised
#: dynamically up to 32 MiB).
MMAP_THRESHOLD = 1 << 30
#: The heap's free top is given back to the system only above this many bytes (glibc's default: 128 KiB, or twice
#: the dynamic mmap threshold). ``mallopt`` takes an ``int``: the largest one.
TRIM_THRESHOLD = (1 << 31) - 1

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def tune_malloc(enabled: bool | None = None) -> bool:
    """Set glibc's mmap and trim thresholds to :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` for this process.

    ``enabled`` None reads :data:`ENV` (on unless it says ``0``/``false``/``no``/``off``). Returns whether both were
    set: False when ``enabled`` is off, on a C library other than glibc, when the environment sets one of glibc's
    ``MALLOC_*_`` thresholds itself or ``LD_PRELOAD`` names another allocator (jemalloc, tcmalloc, mimalloc), and
    when ``mallopt`` refuses a value. Calling it again is harmless.
    """
    if enabled is None:
        enabled = os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    if not enabled or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    preload = os.environ.get("LD_PRELOAD", "").lower()
    if any(name in preload for name in _OTHER_ALLOCATORS):
        return False
    try:  # the running interpreter's own symbols, glibc's among them (find_library would run ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on a value it refuses
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
