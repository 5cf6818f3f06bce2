"""The C library's heap between training steps: keep what a step frees for the next one.

A training step allocates its activations, im2col columns and gradients afresh and frees
them when it ends -- the textbook's NumPy, with no buffers kept across steps. glibc's
malloc gives memory back to the system at two points: a block larger than
``M_MMAP_THRESHOLD`` is its own ``mmap``, unmapped on ``free``, and free memory at the top
of the heap beyond ``M_TRIM_THRESHOLD`` is trimmed. Both thresholds start low (128 KiB)
and grow only as far as the largest block freed so far (at most 32 MiB, with the trim
threshold twice that). A step whose arrays together exceed that is trimmed at its end,
and the next step faults the same memory back in, a page at a time, zeroed by the kernel.
On this project's virtual machines that was about 2,000 faults and 6 ms of a 18 ms
LeNet-5 step (``bench/bench.py`` prints the count per convolutional network, and
``docs/speed.md`` the measurements).

``keep_freed_memory()`` sets both thresholds (``mallopt``), so a step's memory stays in
the process and the next step reuses it. It changes the allocator of the whole process,
so no package of bpnet's calls it on import (importing a library must not change the
program that imports it): ``bench/bench.py``, which owns its process, does, so that every
row runs in the same allocator state whatever ran before it. A training script of your
own can call it too, or start Python with the same settings in the environment:
``MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_MMAP_THRESHOLD_=33554432``.
"""

from __future__ import annotations

import ctypes
import platform
import sys

M_TRIM_THRESHOLD = -1
"""mallopt's parameter numbers (glibc's malloc.h)."""
M_MMAP_THRESHOLD = -3

TRIM_BYTES = 256 * 2**20
"""Free memory glibc keeps at the top of its heap: more than any step here allocates."""
MMAP_BYTES = 32 * 2**20
"""Blocks up to this size come from the heap, so they are kept too: glibc's largest
accepted value on a 64-bit system (its own dynamic threshold stops there as well)."""


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds for this process (see the module docstring).

    Returns True when both were set; False, changing nothing, where the C library is not
    glibc (macOS, musl) and has no such thresholds to raise.  Calling it again is harmless.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt        # the process's own C library
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES)) and \
        bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES))
