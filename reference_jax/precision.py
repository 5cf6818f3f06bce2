"""float64 for reference_jax's own computations, and for nothing else.

JAX computes in float32 unless x64 is on, and switching it on in JAX's global
configuration would silently turn a user's own float32 JAX code into float64.
So every public function of reference_jax runs inside ``jax.enable_x64(True)``
(JAX >= 0.10), a context that ends with the call: float64 inputs stay float64,
float32 stays float32, and importing reference_jax changes no global state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax

F = TypeVar("F", bound=Callable[..., Any])


def float64(fn: F) -> F:
    """Run ``fn`` with JAX's float64 support switched on for the call only."""

    @functools.wraps(fn)
    def scoped(*args: Any, **kwargs: Any) -> Any:
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return scoped  # type: ignore[return-value]
