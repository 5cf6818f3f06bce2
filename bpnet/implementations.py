"""The three implementations of one interface, by name, loaded on demand.

Each module exposes ``loss_and_grads``, ``trace``, ``predict``, ``step`` and
``train`` with handwritten's signatures, NumPy in and out.
"""

from __future__ import annotations

import importlib
import os
import sys
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


XLA_QUICK_COMPILE = "--xla_backend_optimization_level=0"


def compile_quickly() -> None:
    """Compile JAX's programs without LLVM's optimizations (XLA's own passes still run).

    For runs that compile far more than they compute -- the test suite and ``bpnet
    check``, whose every case is a new shape: a program compiles in ~0.7 of the time and
    then runs for microseconds.  IEEE arithmetic either way (fast math stays off): the
    results differ from the optimized build's by rounding alone (measured over traces,
    R-traces and per-example gradients of 30 drawn networks and 5 block networks: at most
    11 eps float64, 9 eps float32, normwise), as two correct implementations' do.  Made
    before JAX starts, like ``pin_xla_numerics``; an optimization level already in
    XLA_FLAGS is left alone.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_QUICK_COMPILE}".strip()


JAX_CACHE_VARIABLE = "BPNET_JAX_CACHE"


def default_jax_cache() -> str:
    """$BPNET_JAX_CACHE, else the user's cache folder ($XDG_CACHE_HOME or ~/.cache)/bpnet/jax;
    "off" turns the cache off."""
    if JAX_CACHE_VARIABLE in os.environ:
        return os.environ[JAX_CACHE_VARIABLE]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bpnet", "jax")


def persistent_jax_cache(folder: str) -> None:
    """Keep every program JAX compiles in ``folder`` (not only those over JAX's default 1 s of
    compile time: ours take ~0.2 s each), to reuse in later runs and other processes.

    An application's choice, for its own process: bpnet's command line and test suite make
    it; importing reference_jax never does.  A cache another part of the process already
    chose is kept; "off" keeps none.  No size bound: JAX's eviction stats every entry at
    every write (minutes over a run of the suite).  Two processes may meet on one entry,
    one writing while the other reads: JAX then warns and compiles the program itself.
    """
    if folder == "off":
        return
    settings = {"jax_compilation_cache_dir": folder,
                "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    if "jax" not in sys.modules:
        # JAX reads its configuration's defaults from the environment when it is imported:
        # nothing to import now (a run that never needs JAX never pays for it), and the
        # process's subprocesses inherit the choice
        for name, value in settings.items():
            os.environ.setdefault(name.upper(), str(value))
        return
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None) is not None:
        return
    for name, value in settings.items():
        jax.config.update(name, value)  # type: ignore[no-untyped-call]
