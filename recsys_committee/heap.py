"""How this process's C heap gives memory back: trimmed during streamed evaluation, held
during distillation steps.

Why: predicting a split streams thousands of batches whose tensors and Arrow buffers vary in
size; glibc keeps the freed blocks in fragmented arenas, and on a 10M-row prepared dataset the
resident set of a DMP-sharded student grew ~1 GiB per million rows predicted, i.e. with the
data. ``malloc_trim`` after each evaluation batch returns the free pages (the same evaluation
then grew ~60 MiB). Why not lower glibc's mmap threshold instead: every large training
activation would then be a fresh mmap with page faults (measured: the student trained ~40%
slower). A no-op where the C library is not glibc.

Distillation steps want the opposite (``hold_freed_heap``): a committee step allocates the
frozen teachers' activations (a DIN history attention is tens of MiB) next to the student's
saved tensors, frees them, and allocates them again next step. glibc's adaptive thresholds
return that memory to the system between steps (the heap top is trimmed, larger blocks are
unmapped) and every step pays the page faults again: measured on MovieLens-100K, the
teachers' forwards ran 20% slower inside the step than alone, and the gated step 15% slower
than with the freed memory held (benchmarks/perf.py). The student's own step is unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Any, Callable


# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HELD_MMAP_THRESHOLD = 32 * 2**20  # glibc's own ceiling for its adaptive threshold (64-bit)
HELD_TRIM_THRESHOLD = 2**31


@lru_cache(maxsize=1)
def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # glibc has both; another C library may have neither
        return libc
    except (OSError, AttributeError):
        return None


def _malloc_trim() -> Callable[[int], Any] | None:
    libc = _libc()
    return None if libc is None else libc.malloc_trim


def release_free_heap() -> bool:
    """Return free heap pages to the system (True if glibc did the trim)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def hold_freed_heap() -> bool:
    """Keep freed blocks up to 32 MiB in the heap and stop trimming its top, for the rest of the
    process (True if glibc took both settings). What ``MALLOC_MMAP_THRESHOLD_=33554432
    MALLOC_TRIM_THRESHOLD_=2147483648`` would set at start-up, for a process already running:
    the resident set stays at the step's peak instead of dropping between steps, and
    ``release_free_heap`` still trims on demand."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, HELD_MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, HELD_TRIM_THRESHOLD))
