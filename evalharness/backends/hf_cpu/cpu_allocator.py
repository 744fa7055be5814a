"""Keep freed memory in the process (glibc malloc) instead of handing it back to the kernel after every tensor.

PyTorch has no caching allocator on the CPU: each activation is a fresh malloc. glibc serves blocks of a few
MB and up by mmap, or trims them off the heap top when freed, so the next forward's tensors of the same size
come back as new pages that the kernel faults in and zeroes one 4 KiB page at a time. A log-likelihood loop
allocates and frees the same few sizes thousands of times: on this project's 2-core machines that measured
~460,000 minor page faults for 50 LAMBADA items (1.8 GB zeroed), ~38,000 with the settings below
(benchmarks/cpu_allocator.py prints the figures). This is what jemalloc/tcmalloc preloads do for PyTorch CPU
inference, done in-process with `mallopt`.

Process-wide and Linux/glibc only; `EVALHARNESS_KEEP_FREED_MEMORY=0` turns it off. Cost: up to
`TRIM_THRESHOLD` of freed heap stays mapped, and large blocks come from the heap rather than their own
mappings (the process's peak memory is the same; it just does not shrink between batches).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
TRIM_THRESHOLD = 1 << 30  # freed memory at the heap top kept, up to 1 GiB
TOP_PAD = 256 << 20  # each heap growth asks for 256 MiB more than needed
ENV = "EVALHARNESS_KEEP_FREED_MEMORY"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the malloc settings once per process; True if they are in force (glibc, and not turned off)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; no mmap'ed blocks (M_MMAP_MAX 0) so that large tensors are reused too
    _applied = all(mallopt(param, value) == 1 for param, value in (
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD), (_M_MMAP_MAX, 0)))
    return _applied
