"""Hypothesis profiles and the suite's global numerics; nothing else global.

Profiles, chosen with the environment variable HYPOTHESIS_PROFILE:
- ``dev`` (default locally): few examples, for the edit loop;
- ``ci`` (default under .ci/run): derandomized, so every run checks the same
  examples, and no deadline (first calls compile);
- ``thorough``: many examples, for hunting the worst case.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from threadpoolctl import threadpool_limits

from bpnet.implementations import pin_xla_numerics

# The suite pins what changes low bits.  XLA's CPU fast math off, before JAX starts
# (reference_jax itself changes no global state: it scopes float64 to its own calls).
# torch gets one intra-op thread, like BLAS below.
pin_xla_numerics()
try:
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass

# No "explain" phase: it lists the lines only failing examples ran -- always the failure
# message's own formatting (CheckReport.message), a red herring; the message itself names
# the quantity, its function, the shape of the error and the command that replays the case.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
settings.register_profile("dev", max_examples=20, deadline=None, phases=PHASES)
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow],
                          phases=PHASES)
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow], phases=PHASES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread() -> Iterator[None]:
    """One BLAS thread: a reduction's summation order (its low bits) stays fixed."""
    with threadpool_limits(limits=1):
        yield
