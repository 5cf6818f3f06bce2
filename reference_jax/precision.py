"""float64 for reference_jax's own computations, and for nothing else.

JAX computes in float32 unless x64 is on, and switching it on in JAX's global
configuration would silently turn a user's own float32 JAX code into float64.
So every public function of reference_jax runs inside ``jax.enable_x64(True)``
(JAX >= 0.10), a context that ends with the call: float64 inputs stay float64,
float32 stays float32, and importing reference_jax changes no global state.

Every call also passes ``release_programs_near_the_map_limit``: JAX keeps each program it
compiles (one per function and shape) for the life of the process, and on Linux each holds
~90 memory mappings (LLVM's code and data sections).  A process that draws thousands of
shapes -- the suite's ``thorough`` profile, a loop over ``bpnet check`` -- reaches the
kernel's limit on mappings (vm.max_map_count, 65,530 by default); the next compilation then
fails ("LLVM compilation error: Cannot allocate memory") and XLA crashes the process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jax

F = TypeVar("F", bound=Callable[..., Any])

MAPS_CHECKED_EVERY = 25
"""Calls between two counts of the process's mappings (a count reads /proc/self/maps: ~1 ms
at 10,000 mappings; 25 calls compile at most 25 programs, ~2,300 mappings)."""

_calls = 0


def _map_limit() -> int | None:
    """The kernel's limit on a process's memory mappings, None where there is no /proc."""
    try:
        return int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return None


def release_programs_near_the_map_limit() -> bool:
    """Every MAPS_CHECKED_EVERY calls: where the process holds more than half the kernel's
    limit on memory mappings, clear JAX's in-memory caches of compiled programs (all of
    them: JAX has no per-program release).  Nothing changes but time -- a program needed
    again is compiled again, or loaded from a persistent compilation cache.  True when it
    cleared."""
    global _calls
    _calls += 1
    if _calls % MAPS_CHECKED_EVERY:
        return False
    limit = _map_limit()
    if limit is None:
        return False
    with open("/proc/self/maps", "rb") as maps:
        held = sum(1 for _ in maps)
    if held <= limit // 2:
        return False
    jax.clear_caches()
    return True


def float64(fn: F) -> F:
    """Run ``fn`` with JAX's float64 support switched on for the call only."""

    @functools.wraps(fn)
    def scoped(*args: Any, **kwargs: Any) -> Any:
        release_programs_near_the_map_limit()
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return scoped  # type: ignore[return-value]
