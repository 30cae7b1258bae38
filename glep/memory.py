r"""Keep freed heap memory in the process (glibc ``mallopt``).

NumPy allocates every large temporary afresh.  With glibc's defaults an array
above the (dynamic, ≤ 32 MB) mmap threshold is mapped from the kernel on
allocation and unmapped on release, and the top of the heap is trimmed back
to the kernel, so each temporary is paid again in page faults on first touch.
On the 2-core VMs this library is benchmarked on, ``a + b`` with
``3·10⁶`` doubles takes about 60 ms instead of 6 ms (10× slower) for that
reason alone, which dominates a Newton iteration on a 10⁶-element time mesh.

:func:`retain_freed_memory` raises the mmap threshold to 1 GiB and disables
trimming, so released blocks are reused from the heap.  Peak resident memory
is unchanged; memory freed after a peak is kept by the process until it
exits.  :mod:`glep` calls it on import unless the environment variable
``GLEP_MALLOC_DEFAULTS=1`` is set.  It does nothing outside glibc (macOS,
musl), where :func:`retain_freed_memory` returns ``False``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

_applied = False


def retain_freed_memory(mmap_threshold: int = 1 << 30, top_pad: int = 64 << 20) -> bool:
    """Tune glibc malloc so that large NumPy temporaries reuse freed memory.

    Parameters
    ----------
    mmap_threshold:
        Allocations above this size (bytes) still go to ``mmap``.
    top_pad:
        Extra bytes obtained from the kernel with each heap extension.

    Returns
    -------
    bool
        ``True`` if every ``mallopt`` call succeeded (glibc on Linux).
    """
    global _applied
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = (mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
          and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
          and mallopt(M_TOP_PAD, int(top_pad)) == 1)
    _applied = _applied or ok
    return ok


def malloc_tuned() -> bool:
    """Whether :func:`retain_freed_memory` has been applied in this process."""
    return _applied


def apply_default() -> None:
    """Called by ``import glep``: tune malloc unless ``GLEP_MALLOC_DEFAULTS=1``."""
    if os.environ.get("GLEP_MALLOC_DEFAULTS", "") not in ("1", "true", "yes"):
        retain_freed_memory()


__all__ = ["retain_freed_memory", "malloc_tuned", "apply_default"]
