"""The tolerance policy, in one place, each constant with the reason for its value.

The test suite and the command line import these; nobody keeps a copy.
Derived from the dtype and the computation (see DESIGN.md), never tuned until a
test passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


# Hidden blocks: the two references' own spread -------------------------------------------
# A norm's backward is a projection: d_z = s/N (N d_x_hat - sum(d_x_hat) - x_hat sum(d_x_hat
# x_hat)), the part of d_x_hat orthogonal to 1 and x_hat.  Where d_x_hat lies nearly in that
# span (a narrow layer after the norm, a small batch) the result is the residue of a
# cancellation, and every quantity below it inherits an absolute error on the scale of the
# cancelled terms, not of the result.  torch (its batch-norm kernel) and JAX (autograd
# through the mean and the variance) evaluate it in different orders; as for float32
# (F32_FACTOR), equally valid orders give errors of the same order, so a quantity may also
# differ from one reference by SPREAD_FACTOR times the two references' largest difference
# in it.  A wrong derivative is wrong on the scale of the terms, far beyond both.
SPREAD_FACTOR = 10.0

# Lanczos (scipy's eigsh, tol=0) against the exact spectrum of jax.hessian ---------------
# ARPACK with tol=0 iterates until its Ritz values are accurate to machine precision times
# the operator's norm; the hvp and jax.hessian differ by ~1e-14 of that norm (the R-trace
# agrees to that, see tests/test_second_order.py).  1e-8 of the largest |eigenvalue| leaves
# six orders of headroom for an ill-conditioned cluster, and a wrong hvp (an O(1) error)
# still fails it.
LANCZOS_RTOL = 1e-8


def fd_step(theta: float) -> float:
    """Central-difference step for a parameter of value theta."""
    return FD_STEP_SCALE * max(1.0, abs(theta))


# float32 -------------------------------------------------------------------------
# A float32 implementation is judged against the float64 result, never against a
# loosened float64 tolerance.  Its normwise error (max|err| / max|float64 value|, per
# quantity) must stay within a small factor of the float32 reference frameworks' own
# error: equally valid evaluation orders give errors of the same order, and 10 covers
# the spread between them.  A sum over the batch (d_b, d_beta, d_gamma) is measured on the
# scale of its terms (f32_scale): where it cancels, its error in any order is the terms'
# rounding, and one reference's lucky order would otherwise set the bar (found under the
# thorough profile: a layer 0 d_b whose terms cancel 140-fold, errors of 3.1e-5 |d_b| in
# handwritten, 2.5e-5 in JAX, 9.7e-7 in torch).  Below F32_FLOOR (~80 ulps of float32) any
# error passes: there a ratio of two tiny errors means nothing.
F32_FACTOR = 10.0
F32_FLOOR = 1e-5


# Every backward quantity is linear in the output layer's d_a (the forward held fixed), and
# every implementation computes that d_a alike from the same rounded output: bce divides by
# the rounded 1 - a, a relative error of eps a / (1 - a) near a = 1.  Whether the error
# cancels below depends on whether the next derivative reuses the same rounded a: torch's
# and JAX's sigmoid do (a (1 - a)); handwritten's computes it from z where |z| > 4
# (activations.TAIL, accurate on its own), so d_a's error stays.  So a backward quantity may
# carry the output d_a's normwise error (found by the ci profile: a sigmoid output at
# a = 0.998 under bce, d_a off by 1.6e-5 in all three, handwritten's d_z by 6.3e-6 and
# its d_W by 1.1e-5 where torch's and JAX's cancel to 4e-8).


def f32_allowed(reference_errors: list[float], inherited: float = 0.0) -> float:
    """The largest normwise float32 error allowed, given the references' float32 errors;
    for a backward quantity, ``inherited`` is the output layer's d_a normwise error (the
    references' largest), which it may carry."""
    return max(F32_FLOOR, F32_FACTOR * max(reference_errors, default=0.0),
               F32_FACTOR * inherited)


def batch_sum_terms(layer: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """|terms| of each trace quantity of ``layer`` that is a sum over the batch:

        d_b     = sum_i d_z_i                  terms |d_z|
        d_beta  = sum_i d_n_i                  terms |d_n|          (a normalized layer)
        d_gamma = sum_i d_n_i * x_hat_i        terms |d_n * x_hat|

    Such a sum may cancel -- to exactly 0 where a batch norm follows (its d_z sums to 0
    over the batch), to a residue of its terms in any small batch -- and then its error is
    on the scale of its terms, not of its own value, in every valid evaluation order.  So
    a batch sum is judged on the scale of its terms (``bpnet.compare``'s d_b rule, the
    float32 policy's scale): a wrong one is wrong on that scale too.

    An image's quantity (batch, C, *spatial) -- a convolution's d_z, BatchNorm2d's d_n --
    sums over the positions as well: its terms are returned as rows (batch * positions,
    C), so that a sum over axis 0 is each channel's."""
    terms = {}
    if "d_z" in layer:                 # a Sequential's norm node has d_n, not d_z
        terms["d_b"] = _as_rows(np.abs(np.asarray(layer["d_z"], dtype=np.float64)))
    if "d_n" in layer:
        d_n = np.asarray(layer["d_n"], dtype=np.float64)
        terms["d_beta"] = _as_rows(np.abs(d_n))
        terms["d_gamma"] = _as_rows(np.abs(d_n * np.asarray(layer["x_hat"],
                                                            dtype=np.float64)))
    return terms


def _as_rows(terms: np.ndarray) -> np.ndarray:
    """(batch, C, *spatial) -> (batch * positions, C): a channel's terms in one column."""
    if terms.ndim <= 2:
        return terms
    return np.moveaxis(terms, 1, -1).reshape(-1, terms.shape[1])


def f32_scale(layer: Mapping[str, Any], key: str) -> float:
    """What a float32 quantity's normwise error is relative to: its largest float64
    magnitude, or for a batch sum the largest sum of its terms' magnitudes
    (``batch_sum_terms``), whichever is larger."""
    value = np.abs(np.asarray(layer[key], dtype=np.float64))
    scale = float(value.max(initial=0.0))
    terms = batch_sum_terms(layer).get(key)
    if terms is not None and terms.size:
        scale = max(scale, float(terms.sum(axis=0).max()))
    return max(scale, float(np.finfo(np.float64).tiny))


# Training trajectories (float64) ----------------------------------------------------
# Implementations differ at each step by the rounding of their gradients; how those
# differences grow is a property of the optimizer and the dynamics, not of the
# implementations.  Plain gradient descent at a small learning rate barely amplifies
# them; rmsprop and adam turn a gradient difference dg into a step difference of up to
# lr * dg / eps (~1e5 dg for eps ~ 1e-6), and near convergence they behave like sign(g).
# So the growth is measured, not assumed: a twin run of handwritten whose every gradient
# leaf is perturbed by TWIN_GRADIENT_NOISE times the leaf's largest magnitude at the first
# step (near convergence a gradient is a cancellation whose rounding error stays at the
# scale of its terms), in a fixed sign pattern so the perturbations add up coherently (the
# worst case), drifts from the original by drift(k).  TWIN_GRADIENT_NOISE is 10 times the
# largest normwise gradient difference measured between handwritten and the references
# (1.1e-13 over 304 networks).  The twin follows one perturbation direction, the
# implementations' rounding differences follow others, and sensitivities along different
# directions differ by O(1) factors (seen: 1.35x with adam at beta1 = 0, eps = 1e-10):
# TWIN_FACTOR covers that.  So the implementations must stay within
# RTOL64 * (1 + k) + TWIN_FACTOR * drift(k)  of each other.  A wrong derivation or update
# still fails at once: its error at the first steps is O(lr), the drift there ~1e-11.
TWIN_GRADIENT_NOISE = 1e-12
TWIN_FACTOR = 10.0


def trajectory_rtol(step: int) -> float:
    """The rounding floor of the envelope after ``step`` steps (the twin drift comes on top)."""
    return RTOL64 * (1 + step)


# Extreme regimes (saturated units, kinks, huge logits), against a longdouble oracle ---------
# In the extremes no fixed relative tolerance is meaningful: a quantity's attainable accuracy
# is set by its conditioning.  A formula evaluated from exact inputs x with n elementary
# operations, each correctly rounded, returns g(x (1 + d)) (1 + d') with |d|, |d'| <= n eps
# (backward stability), so its error is at most
#     n eps (|g| + S),   S = sum over inputs of |x dg/dx|
# (S = condition number * |g|; written with S, a true value of 0 with non-zero sensitivity
# is handled too).  No formula in handwritten's activations and losses takes more than 16
# operations, so EXTREME_ULPS = 16.  S is measured in the oracle (float80 longdouble, eps
# 1.1e-19) by relative perturbations of every input; integer labels are exact and never
# perturbed.  Below the smallest normal number of the dtype, relative accuracy ends
# (gradual underflow): that is the absolute floor.
EXTREME_ULPS = 16.0
EXTREME_STEP = 2.0**-24   # the oracle's relative perturbation for S: its truncation error,
                          # ~h * S, is far below the EXTREME_ULPS * eps it scales


def extreme_allowed(true: np.ndarray, sensitivity: np.ndarray, dtype: np.dtype,
                    extra_terms: float | np.ndarray = 0.0) -> np.ndarray:
    """The largest error allowed for a quantity with true value ``true`` and sensitivity S
    (``extra_terms``: further rounding, e.g. a sum's N * sum|terms|), in ``dtype``."""
    info = np.finfo(dtype)
    allowed: np.ndarray = (EXTREME_ULPS * float(info.eps)
                           * (np.abs(true) + sensitivity + extra_terms)
                           + float(info.smallest_normal))
    return allowed
