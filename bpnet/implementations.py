"""The three implementations of one interface, by name, loaded on demand.

Each module exposes ``loss_and_grads``, ``trace``, ``predict``, ``step`` and
``train`` with handwritten's signatures, NumPy in and out.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NAMES = ("handwritten", "reference_torch", "reference_jax")
"""The primary first, then the autograd references."""

EXTRAS = {"reference_torch": "torch", "reference_jax": "jax"}


class MissingFramework(ImportError):
    """A reference implementation whose framework is not installed."""


def load(name: str) -> ModuleType:
    """Import one implementation; a missing framework says which extra to install."""
    if name not in NAMES:
        raise ValueError(f"implementation is unknown: {name!r}; expected one of {NAMES}")
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise MissingFramework(str(error)) from error


def available() -> dict[str, ModuleType]:
    """Every implementation that can be imported here, by name."""
    found = {}
    for name in NAMES:
        try:
            found[name] = load(name)
        except MissingFramework:
            continue
    return found


XLA_FAST_MATH_OFF = "--xla_cpu_enable_fast_math=false"


def pin_xla_numerics() -> None:
    """Keep XLA's CPU fast math off (it may reassociate and flush what the checks compare).

    An application's choice, made before JAX starts (XLA reads XLA_FLAGS once): the
    command line, the test suite and the benchmark call this; importing reference_jax
    never changes the environment.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if XLA_FAST_MATH_OFF not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_FAST_MATH_OFF}".strip()
