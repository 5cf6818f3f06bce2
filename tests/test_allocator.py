"""bpnet.allocator: what a step frees stays in the process for the next step."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from bpnet import allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Six arrays of 8 MiB, written and freed together, six times: a training step's pattern
# (many large arrays alive at once, all freed at its end), each cycle's page faults printed.
CYCLES = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from bpnet.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        arrays = [np.ones(2**21, np.float32) for _ in range(6)]
        del arrays
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults_per_cycle(mode: str, **env: str) -> list[int]:
    done = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True,
                          text=True, check=True, env=os.environ | env)
    return [int(line) for line in done.stdout.split()]


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_freed_memory_is_reused_without_page_faults() -> None:
    """By default glibc trims the 48 MiB at every cycle's end, and each cycle faults it in
    again; kept (by the call, or by the environment the module docstring gives), only the
    first cycle faults.  A 48 MiB cycle touches 12,288 pages of
    4 KiB (fewer faults where the kernel maps 2 MiB pages): "again" is at least a tenth of
    the first cycle's count, "only the first" at most 1 % of it (the interpreter's own
    small allocations)."""
    default = faults_per_cycle("default")
    assert all(n >= default[0] / 10 for n in default[1:]), default
    for kept in (faults_per_cycle("keep"),
                 faults_per_cycle("default", MALLOC_TRIM_THRESHOLD_=str(allocator.TRIM_BYTES),
                                  MALLOC_MMAP_THRESHOLD_=str(allocator.MMAP_BYTES))):
        assert all(n <= kept[0] / 100 for n in kept[1:]), kept


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator.keep_freed_memory() is False

