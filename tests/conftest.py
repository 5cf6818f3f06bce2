"""Hypothesis profiles and the suite's global numerics; nothing else global.

Profiles, chosen with the environment variable HYPOTHESIS_PROFILE:
- ``dev`` (default locally): few examples, drawn anew each run;
- ``quick`` (``make quick``): as few, derandomized: a fixed seed per property and no
  replay of earlier failures, so a harmless edit does not turn it red;
- ``ci`` (default under .ci/run): derandomized (a fixed seed per property: the same
  examples in every run, whatever the workers and the order, ``make determinism``), and no
  deadline (first calls compile);
- ``thorough``: many examples, for hunting the worst case.

JAX's compiled programs are kept in a persistent cache, the project's own
``.cache/jax`` (``BPNET_JAX_CACHE`` names another folder; ``off`` disables it):
the suite's pytest-xdist workers, the mutation runs and later runs reuse what one
compiled (bpnet.implementations.persistent_jax_cache).  That is configuration of the
suite's processes alone, as x64 is scoped to reference_jax's own calls: no user's JAX
state changes.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from threadpoolctl import threadpool_limits

from bpnet.implementations import (
    JAX_CACHE_VARIABLE,
    compile_quickly,
    persistent_jax_cache,
    pin_xla_numerics,
)
from tests.helpers import CI_EXAMPLES

# The suite pins what changes low bits.  XLA's CPU fast math off, before JAX starts
# (reference_jax itself changes no global state: it scopes float64 to its own calls).
# torch gets one intra-op thread, like BLAS below.  The suite compiles thousands of JAX
# programs that each run for microseconds: compiled without LLVM's optimizations
# (compile_quickly: rounding-level differences only, measured there).
pin_xla_numerics()
compile_quickly()
# torch's intra-op threads too (it reads this when it starts; the tests that need no
# framework never import it): one thread, as BLAS has below
os.environ.setdefault("OMP_NUM_THREADS", "1")

# No "explain" phase: it lists the lines only failing examples ran -- always the failure
# message's own formatting (CheckReport.message), a red herring; the message itself names
# the quantity, its function, the shape of the error and the command that replays the case.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
settings.register_profile("dev", max_examples=20, deadline=None, phases=PHASES)
settings.register_profile("ci", max_examples=CI_EXAMPLES, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow],
                          phases=PHASES)
settings.register_profile("quick", max_examples=10, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow],
                          phases=PHASES)
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow], phases=PHASES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

ROOT = Path(__file__).resolve().parent.parent
# The suite's JAX cache is the project's own (subprocesses -- the command line run by the
# tests, the mutation runs -- inherit the variable and share it).
os.environ.setdefault(JAX_CACHE_VARIABLE, str(ROOT / ".cache" / "jax"))
persistent_jax_cache(os.environ[JAX_CACHE_VARIABLE])

PROJECT_PACKAGES = ("handwritten", "bpnet", "reference_torch", "reference_jax")


def import_every_project_module() -> list[str]:
    """Import every module of the project's packages; their names.

    Hypothesis draws some integers and floats from the constants written in the project's own
    modules -- those in ``sys.modules`` at the time of the draw (its "local constants";
    test files excluded).  Which modules a pytest-xdist worker has imported depends on the
    tests it ran before, so a derandomized property's examples would depend on the worker
    and the order: measured, ``-n 1`` and ``-n 2`` drew differently.  Every module imported
    first, the pool is the same in every process (``make determinism`` shows it).  Costs
    about 3 s per process (torch and JAX), which nearly every run pays anyway."""
    names = []
    for package in PROJECT_PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            importlib.import_module(info.name)
            names.append(info.name)
    return names


PROJECT_MODULES = import_every_project_module()


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread() -> Iterator[None]:
    """One BLAS thread: a reduction's summation order (its low bits) stays fixed; torch, if
    a test module imported it, with one intra-op thread."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    with threadpool_limits(limits=1):
        yield


SLOW_FIRST = (
    "tests/test_bucketed.py::test_bucketed_equals_plain_reference_jax",
    "tests/test_second_order.py::test_r_trace_hvp_and_gnvp_match_torch_and_jax",
    "tests/test_check_all.py::test_check_all_passes_and_covers_every_registered_name",
    "tests/test_cross_framework.py::test_float64_trajectories_stay_within_a_growing_envelope",
    "tests/test_derivatives.py::test_per_example_grads_match_vmap_grad_and_sum_to_the_batch_gradient",
    "tests/test_second_order.py::test_hvp_builds_the_full_hessian_of_jax_hessian",
    "tests/test_blocks.py::test_float32_block_error_is_within_the_frameworks_own",
    "tests/test_second_order.py::test_float32_r_trace_error_is_within_the_frameworks_own",
    "tests/test_blocks.py::test_loss_and_grads_match_and_keep_the_params_structure",
    "tests/test_cross_framework.py::test_one_optimizer_step_matches_torch_optim_and_optax",
    "tests/test_blocks.py::test_every_block_quantity_matches_torch_and_jax",
    "tests/test_derivatives.py::test_jvp_matches_torch_func_and_jax",
)
"""The slowest tests under the ``ci`` profile (``make test`` prints the 15 slowest), longest
first.  Run first by the pytest-xdist workers, they spread over them instead of ending the
run on one: the order changes wall time, never what runs or what is drawn (derandomized
draws depend on the test alone)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):
        # not a pytest-xdist worker: one process runs everything in the order given (the
        # mutation runs give their file's fast tests first, and stop at the first failure)
        return
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("[")[0], len(SLOW_FIRST)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """`make mutations`' table: each mutation, the test that caught it (or MISSED), seconds
    (recorded by the mutation tests with record_property; pytest-xdist carries them over)."""
    rows = [value for key in ("passed", "failed")
            for report in terminalreporter.stats.get(key, [])
            for name, value in getattr(report, "user_properties", ()) if name == "mutation"]
    if not rows:
        return
    terminalreporter.section("mutations: caught by")
    for mutation, by, seconds in sorted(rows):
        terminalreporter.write_line(f"{mutation:44s} {by:88s} {seconds:6.1f} s")
    missed = sum(by == "MISSED" for _, by, _ in rows)
    terminalreporter.write_line(f"{len(rows) - missed} of {len(rows)} caught")
