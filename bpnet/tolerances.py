"""The tolerance policy, in one place, each constant with the reason for its value.

The test suite and the command line import these; nobody keeps a copy.
Derived from the dtype and the computation (see DESIGN.md), never tuned until a
test passes.
"""

from __future__ import annotations

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16
EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-07

# Hand-derived vs autograd, float64 -----------------------------------------------
# The same equations evaluated in a different order (BLAS blocking, fused kernels):
# each quantity differs by a few ulps times the depth of the chain that produced it,
# ~1e-15 relative.  1e-10 leaves five orders of magnitude of headroom for
# ill-conditioned sums, yet a wrong derivative (an O(1) relative error) fails it.
RTOL64 = 1e-10
# Entries that cancel to ~0 have no meaningful relative error; they are held to an
# absolute floor of ATOL64_SCALE * max|reference| over the same array (a few
# hundred ulps of the array's scale).
ATOL64_SCALE = 1e-12

# Finite differences (float64, the framework-free oracle) ---------------------------
# Central differences with step h = cbrt(eps) * max(1, |theta|) ~ 6.1e-6 balance
# truncation error (h**2 / 6 * |f'''| ~ 6e-12 |f'''|) against rounding error
# (eps * |L| / h ~ 3.7e-11 |L|).
FD_STEP_SCALE = float(np.cbrt(EPS64))
# So an FD derivative is good to ~1e-10 of the scale of L and f'''; 1e-7 relative
# leaves three orders of magnitude for larger third derivatives.
FD_RTOL = 1e-7
# Absolute floor for derivatives that are ~0: the rounding error above, eps|L|/h,
# with a x100 margin for the sum over the batch and the outputs.
FD_ATOL_SCALE = 100 * EPS64 / FD_STEP_SCALE   # ~3.6e-9, multiplied by max(1, |L|)

# The blog reproduction -------------------------------------------------------------
# seed.py evaluates the blog's own formulas in the blog's order (its sigmoid only
# silences an overflow whose result, 0, is already correct), so the weights agree bit
# for bit; 1e-9 is the bound the project promises, and leaves room for a future
# sigmoid that rounds differently (~1 ulp per step, ~1e-13 after 1000 steps).
BLOG_WEIGHTS_ATOL = 1e-9


def fd_step(theta: float) -> float:
    """Central-difference step for a parameter of value theta."""
    return FD_STEP_SCALE * max(1.0, abs(theta))


# float32 -------------------------------------------------------------------------
# A float32 implementation is judged against the float64 result, never against a
# loosened float64 tolerance.  Its normwise error (max|err| / max|float64 value|, per
# quantity) must stay within a small factor of the float32 reference frameworks' own
# error: equally valid evaluation orders give errors of the same order, and 10 covers
# the spread between them.  Below F32_FLOOR (~80 ulps of float32) any error passes:
# there a ratio of two tiny errors means nothing.
F32_FACTOR = 10.0
F32_FLOOR = 1e-5


def f32_allowed(reference_errors: list[float]) -> float:
    """The largest normwise float32 error allowed, given the references' float32 errors."""
    return max(F32_FLOOR, F32_FACTOR * max(reference_errors, default=0.0))


# Training trajectories (float64) ----------------------------------------------------
# Each step injects rounding differences between implementations of ~1e-16 relative,
# and the one-step checks hold each step to RTOL64.  How the differences then grow is
# a property of the training dynamics, not of the implementations: plain gradient
# descent at a small learning rate barely amplifies them, but adaptive optimizers near
# convergence (g / sqrt(v) with both tiny) behave like sign(g) and amplify them by
# orders of magnitude.  So the amplification is measured, not assumed: a twin run of
# handwritten from params perturbed by TWIN_PERTURBATION (a few ulps, relative) drifts
# from the original by drift(k); A(k) = drift(k) / TWIN_PERTURBATION is how much the
# dynamics amplify a rounding-sized difference by step k.  Differences injected at
# every one of k steps add up to at most k times the largest amplification, so the
# envelope is  RTOL64 * (1 + k) * max(1, A(k)),  ~1e5 times what rounding produces.
TWIN_PERTURBATION = 1e-15


def trajectory_rtol(step: int, amplification: float = 1.0) -> float:
    """Allowed normwise relative difference after ``step`` steps of float64 training,
    given the measured amplification A(step) of the dynamics."""
    return RTOL64 * (1 + step) * max(1.0, amplification)
