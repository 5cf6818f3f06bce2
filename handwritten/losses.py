"""Losses: each value and its gradient with respect to the network output, side by side.

Every loss is a pair of functions with one signature,

    L   = loss(z, a, y, reduction)         a scalar of the output dtype
    d_o = loss_grad(z, a, y, reduction)    (batch, n_out)

where ``z`` is the output layer's pre-activation, ``a`` its activation (the
prediction y_pred), and ``y`` the targets.  A plain loss is a function of ``a``
and its gradient is ``d_a``.  A *fused* loss (``fused_with`` in the registry) is
written as a function of the logits ``z`` and its gradient is ``d_z`` directly:
fusing the output activation into the loss is what makes it stable and gives the
famous short gradient (a - y).

A training step needs both at once: a loss may also give

    (L, d_o) = loss_value_and_grad(z, a, y, reduction)     the same numbers

from what the two share (the squared errors' residual a - y, formed once); ``train`` calls
it where the registry has it (``value_and_grad``), and ``value`` then ``grad`` elsewhere.

Second order (``handwritten.derivatives.hvp`` and ``gnvp``) needs the loss's Hessian
with respect to its input, applied to that input's tangent -- the R-operator of the
gradient, one more function per loss with one signature:

    R{d_o} = loss_second(z, a, y, reduction, z_dot, a_dot)    (batch, n_out)

R{d_a} for a plain loss (its Hessian in a, applied to a_dot), R{d_z} for a fused one
(its Hessian in z, applied to z_dot).  A fused gradient is (a - y) / n, so its R-op is
a_dot / n: the output activation's own Jacobian applied to z_dot, which the forward
tangent pass has already computed.

Reduction, stated once for all (and again in each docstring):

- elementwise losses (half_mse, mse, bce, bce_with_logits): ``"sum"`` adds the
  loss of every element; ``"mean"`` divides that sum by ``batch * n_out``, i.e.
  averages over the batch *and* the outputs, as torch's ``reduction="mean"``
  does.  The gradient carries the very same 1/(batch * n_out): a multi-output
  gradient is exactly the gradient of the loss that is reported (scikit-learn's
  MLP once returned n_out times it).
- softmax_cross_entropy: the loss of a row is a sum over its classes;
  ``"mean"`` averages the rows over the batch (divides by ``batch``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from handwritten.activations import sigmoid

Array = NDArray[np.floating[Any]]
Labels = NDArray[Any]
Scalar = np.floating[Any]

REDUCTIONS = ("mean", "sum")


def _count(elements: int, reduction: str) -> int:
    """The divisor of a reduction: the number of terms for "mean", 1 for "sum"."""
    return elements if reduction == "mean" else 1


def one_hot(labels: Labels, n_classes: int, dtype: np.dtype[Any]) -> Array:
    """Integer labels of shape (batch,) as one-hot rows of shape (batch, n_classes)."""
    return np.eye(n_classes, dtype=dtype)[labels]


# half_mse (the blog's loss) --------------------------------------------------


def half_mse(z: Array, a: Array, y: Array, reduction: str) -> Scalar:
    """Half squared error, L = reduce((a - y)**2 / 2).

    "mean" divides the sum by batch * n_out; "sum" does not divide.
    """
    r = a - y                                       # the residual, a fresh array: squared
    np.square(r, out=r)                             # and halved in place, halved before
    r *= 0.5                                        # the sum (no overflow; * 0.5 is / 2)
    return r.sum() / _count(a.size, reduction)


def half_mse_grad(z: Array, a: Array, y: Array, reduction: str) -> Array:
    """d_a = (a - y) / n, with n = batch * n_out for "mean" and n = 1 for "sum"."""
    d_a = a - y
    if reduction == "mean":                         # "sum": n = 1, nothing to divide
        d_a /= _count(a.size, reduction)
    return d_a


def half_mse_value_and_grad(z: Array, a: Array, y: Array, reduction: str
                            ) -> tuple[Scalar, Array]:
    """``half_mse`` and ``half_mse_grad`` from one residual r = a - y, the same numbers
    (a training step needs both):  L = reduce(r**2 / 2),  d_a = r / n."""
    r = a - y
    half_square = np.square(r)                      # halved before the sum, as half_mse
    half_square *= 0.5
    n = _count(a.size, reduction)
    return half_square.sum() / n, (r if reduction == "sum" else r / n)


def half_mse_second(z: Array, a: Array, y: Array, reduction: str, z_dot: Array, a_dot: Array
                    ) -> Array:
    """d_a = (a - y) / n is linear in a with slope 1 / n: R{d_a} = a_dot / n."""
    return a_dot / _count(a.size, reduction)


# mse -------------------------------------------------------------------------


def mse(z: Array, a: Array, y: Array, reduction: str) -> Scalar:
    """Squared error, L = reduce((a - y)**2) (torch's ``mse_loss``).

    "mean" divides the sum by batch * n_out; "sum" does not divide.
    """
    return np.square(a - y).sum() / _count(a.size, reduction)


def mse_grad(z: Array, a: Array, y: Array, reduction: str) -> Array:
    """d_a = 2 (a - y) / n, with n = batch * n_out for "mean" and n = 1 for "sum"."""
    return 2 * (a - y) / _count(a.size, reduction)


def mse_value_and_grad(z: Array, a: Array, y: Array, reduction: str) -> tuple[Scalar, Array]:
    """``mse`` and ``mse_grad`` from one residual r = a - y, the same numbers (a training
    step needs both):  L = reduce(r**2),  d_a = 2 r / n."""
    r = a - y
    n = _count(a.size, reduction)
    return np.square(r).sum() / n, 2 * r / n


def mse_second(z: Array, a: Array, y: Array, reduction: str, z_dot: Array, a_dot: Array
               ) -> Array:
    """d_a = 2 (a - y) / n: R{d_a} = 2 a_dot / n."""
    return 2 * a_dot / _count(a.size, reduction)


# bce: binary cross-entropy on probabilities ----------------------------------


def bce(z: Array, a: Array, y: Array, reduction: str) -> Scalar:
    """Binary cross-entropy of probabilities a in [0, 1] against targets y in [0, 1].

        L = reduce(-(y log a + (1 - y) log(1 - a)))

    with 0 log 0 = 0 (the limit, scipy's ``xlogy``): a prediction that is exactly
    right and saturated, a = y = 1 or a = y = 0, costs 0, not NaN.  "mean" divides
    the sum by batch * n_out; "sum" does not divide.  Unlike torch's
    ``binary_cross_entropy``, the logs are not clamped at -100: a = 0 where y > 0
    (or a = 1 where y < 1) gives the true loss, inf, which training reports as
    divergence, where torch reports 100 per such element.
    """
    with np.errstate(divide="ignore"):      # log(0) = -inf: the true value
        log_a = np.log(a, out=np.zeros_like(a), where=y > 0)
        log_1_minus_a = np.log1p(-a, out=np.zeros_like(a), where=y < 1)
    return -np.sum(y * log_a + (1 - y) * log_1_minus_a) / _count(a.size, reduction)


def bce_grad(z: Array, a: Array, y: Array, reduction: str) -> Array:
    """dL/da = -y/a + (1 - y)/(1 - a) = (a - y) / (a (1 - a)), then the reduction:

        d_a = (a - y) / (a * (1 - a)) / n,   n = batch * n_out ("mean") or 1 ("sum")

    Chained through a sigmoid output (d_z = d_a * a (1 - a)) this is (a - y) / n,
    the fused gradient below, computed the long way round.

    Where a is exactly 0 or 1 the quotient is 0/0; there the sum form with
    0 * (1/0) = 0 gives the limit: at a = 1, -y plus +inf unless y = 1 (so -1
    for a = y = 1); at a = 0, 1 - y plus -inf unless y = 0 (so 1 for a = y = 0).
    torch instead clamps a (1 - a) at 1e-12 and returns 0 at a = y = 1.
    """
    n = _count(a.size, reduction)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d_a = (a - y) / (a * (1 - a)) / n
        # for a tiny a the quotient can overflow before the division by n: there divide
        # by n first (an overflow that remains is right: the true value is beyond range)
        big = np.isinf(d_a) & (a > 0) & (a < 1)
        if big.any():
            d_a[big] = (a[big] - y[big]) / n / (a[big] * (1 - a[big]))
    # at a = 0 or 1 the quotient is 0/0: the limits
    ones, zeros = a == 1, a == 0
    if ones.any():
        d_a[ones] = np.where(y[ones] < 1, np.inf, -y[ones]) / n
    if zeros.any():
        d_a[zeros] = np.where(y[zeros] > 0, -np.inf, 1 - y[zeros]) / n
    return d_a


def bce_second(z: Array, a: Array, y: Array, reduction: str, z_dot: Array, a_dot: Array
               ) -> Array:
    """d/da of -y/a + (1 - y)/(1 - a), elementwise, then the reduction:

        R{d_a} = (y / a**2 + (1 - y) / (1 - a)**2) * a_dot / n

    A term whose target weight is 0 is 0 (y = 0 drops y / a**2 also at a = 0, y = 1 drops
    the other at a = 1: the 0 log 0 = 0 of the loss); where a term remains at a = 0 or 1
    the curvature is infinite, as the loss there.
    """
    with np.errstate(divide="ignore", over="ignore"):
        curvature = (np.divide(y, a * a, out=np.zeros_like(a), where=y > 0)
                     + np.divide(1 - y, np.square(1 - a), out=np.zeros_like(a), where=y < 1))
    # inf * 0 (infinite curvature, no movement) is undefined: nan, as autograd's
    with np.errstate(invalid="ignore", over="ignore"):
        return curvature * a_dot / _count(a.size, reduction)


# bce_with_logits: sigmoid output fused into the loss --------------------------


def bce_with_logits(z: Array, a: Array, y: Array, reduction: str) -> Scalar:
    """Binary cross-entropy of sigmoid(z), written in the logits z (stable).

    With log sigmoid(z) = -softplus(-z) and log(1 - sigmoid(z)) = -softplus(z):

        L = reduce(softplus(z) - y z) = reduce(max(z, 0) - y z + log1p(exp(-|z|)))

    "mean" divides the sum by batch * n_out; "sum" does not divide.
    """
    per_element = np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))
    return np.sum(per_element) / _count(z.size, reduction)


def bce_with_logits_grad(z: Array, a: Array, y: Array, reduction: str) -> Array:
    """Fused gradient, with respect to the logits: d/dz (softplus(z) - y z) = sigmoid(z) - y.

        d_z = (a - y) / n,   a = sigmoid(z),  n = batch * n_out ("mean") or 1 ("sum")

    Where y = 1, a - 1 cancels as a approaches 1 (from z = 37 on it is 0 in float64,
    while the gradient is -e^-z); there it is computed as -sigmoid(-z), the same
    number without the subtraction.
    """
    d_z = a - y
    ones = y == 1
    if ones.any():
        d_z[ones] = -sigmoid(-z[ones])
    return d_z / _count(z.size, reduction)


def fused_second(z: Array, a: Array, y: Array, reduction: str, z_dot: Array, a_dot: Array
                 ) -> Array:
    """A fused gradient d_z = (a - y) / n (bce_with_logits: n = batch * n_out; the caller's
    a_dot is sigmoid's J z_dot) moves only through a:

        R{d_z} = a_dot / n
    """
    return a_dot / _count(z.size, reduction)


# softmax_cross_entropy: softmax output fused into the loss --------------------


def _as_distribution(y: Array | Labels, a: Array) -> Array:
    """Targets as rows of probabilities: integer labels (batch,) become one-hot rows."""
    return one_hot(y, a.shape[1], a.dtype) if y.ndim == 1 else y


def softmax_cross_entropy(z: Array, a: Array, y: Array | Labels, reduction: str) -> Scalar:
    """Cross-entropy of softmax(z) against class labels, written in the logits z (stable).

    ``y`` is either integer labels of shape (batch,) or rows of class
    probabilities (one-hot or soft) of shape (batch, n_out), each summing to 1.
    With log softmax(z)_k = z_k - logsumexp(z):

        L_row = -sum_k y_k log softmax(z)_k = logsumexp(z) - sum_k y_k z_k

    computed as z_k - z_max - log1p(sum of exp(z_j - z_max) over j other than the max).

    "mean" averages L_row over the batch (divides by batch); "sum" adds them.
    """
    y_dist = _as_distribution(y, a)
    with np.errstate(over="ignore"):         # z - z_max below -1.8e308: -inf, exp(-inf) = 0
        shifted = z - z.max(axis=1, keepdims=True)
    # logsumexp(z) - z_max = log(1 + the sum of the other terms): log1p keeps the digits of
    # a tiny sum (a confident row), which log(1 + tiny) would round away
    e = np.exp(shifted)
    e[np.arange(len(e)), shifted.argmax(axis=1)] = 0           # the max's own term, e^0 = 1
    log_softmax = shifted - np.log1p(e.sum(axis=1, keepdims=True))
    # only the classes with y_k > 0 count (0 * log 0 = 0, also where log_softmax is -inf)
    terms = np.multiply(y_dist, log_softmax, out=np.zeros_like(log_softmax), where=y_dist > 0)
    return -np.sum(terms) / _count(z.shape[0], reduction)


def softmax_cross_entropy_grad(
    z: Array, a: Array, y: Array | Labels, reduction: str
) -> Array:
    """Fused gradient with respect to the logits, for rows of y that sum to 1:

        dL_row/dz_j = d/dz_j (logsumexp(z) - sum_k y_k z_k) = a_j - y_j

        d_z = (a - y) / n,   n = batch ("mean") or 1 ("sum")

    Where y_j = 1 (the true class of a one-hot row), a_j - 1 cancels as a_j
    approaches 1; there it is computed as -(the sum of the row's other a), the same
    number (the row of a sums to 1) without the subtraction.
    """
    y_dist = _as_distribution(y, a)
    d_z = a - y_dist
    hot = y_dist == 1
    if hot.any():
        others = np.where(hot, 0, a).sum(axis=1, keepdims=True)
        d_z[hot] = -np.broadcast_to(others, a.shape)[hot]
    return d_z / _count(z.shape[0], reduction)


def softmax_cross_entropy_second(z: Array, a: Array, y: Array | Labels, reduction: str,
                                 z_dot: Array, a_dot: Array) -> Array:
    """d_z = (a - y) / n per row (n = batch under "mean"): R{d_z} = a_dot / n, with a_dot =
    softmax's J z_dot = a * (z_dot - <z_dot, a>), the Hessian of logsumexp applied to z_dot
    (for rows of y that sum to 1, as the gradient)."""
    return a_dot / _count(z.shape[0], reduction)


# registry --------------------------------------------------------------------

LossFn = Callable[[Array, Array, Any, str], Scalar]
LossGrad = Callable[[Array, Array, Any, str], Array]
LossSecond = Callable[[Array, Array, Any, str, Array, Array], Array]
LossBoth = Callable[[Array, Array, Any, str], tuple[Scalar, Array]]


class Loss(NamedTuple):
    """One registry entry: a loss, its gradient, and what it demands of the output layer."""

    value: LossFn
    grad: LossGrad
    equation: str
    """The loss in z, a, y and the reduction's divisor n (what ``bpnet explain`` prints)."""
    gradient: str
    """The gradient's equation: d_a, or d_z for a fused loss, in terms of z, a, y and n."""
    fused_with: str | None = None
    """The output activation fused into the loss; its gradient is then d_z, not d_a."""
    output_activations: frozenset[str] | None = None
    """The output activations the loss accepts (None: any)."""
    targets: str = "real"
    """What y holds: "real", "probability" (in [0, 1]) or "class" (labels or rows summing to 1)."""
    per_row: bool = False
    """True when the loss has one term per row (the reduction "mean" divides by batch),
    False when it has one per element (it divides by batch * n_out)."""
    second: LossSecond | None = None
    """The R-operator of ``grad``: R{d_a} (R{d_z} when fused) from the input's tangent.
    None: no hand-derived second order, and ``derivatives.hvp`` refuses the loss by name."""
    hessian: str = ""
    """``second``'s equation (what ``bpnet explain`` prints)."""
    value_and_grad: LossBoth | None = None
    """``value`` and ``grad`` at once, the same numbers, from what they share (the residual
    a - y): a training step needs both.  None: the two are called in turn."""


LOSSES: dict[str, Loss] = {
    "half_mse": Loss(half_mse, half_mse_grad, "sum((a - y)**2 / 2) / n", "d_a = (a - y) / n",
                     second=half_mse_second, hessian="R{d_a} = a_dot / n",
                     value_and_grad=half_mse_value_and_grad),
    "mse": Loss(mse, mse_grad, "sum((a - y)**2) / n", "d_a = 2 (a - y) / n",
                second=mse_second, hessian="R{d_a} = 2 a_dot / n",
                value_and_grad=mse_value_and_grad),
    "bce": Loss(bce, bce_grad, "-sum(y log a + (1 - y) log(1 - a)) / n",
                "d_a = (a - y) / (a (1 - a)) / n",
                output_activations=frozenset({"sigmoid", "softmax"}), targets="probability",
                second=bce_second, hessian="R{d_a} = (y / a**2 + (1 - y) / (1 - a)**2) a_dot / n"),
    "bce_with_logits": Loss(bce_with_logits, bce_with_logits_grad, "sum(softplus(z) - y z) / n",
                            "d_z = (sigmoid(z) - y) / n", fused_with="sigmoid",
                            output_activations=frozenset({"sigmoid"}), targets="probability",
                            second=fused_second,
                            hessian="R{d_z} = a_dot / n,  a_dot = a (1 - a) z_dot"),
    "softmax_cross_entropy": Loss(softmax_cross_entropy, softmax_cross_entropy_grad,
                                  "sum(logsumexp(z) - sum_k y_k z_k) / n",
                                  "d_z = (softmax(z) - y) / n", fused_with="softmax",
                                  output_activations=frozenset({"softmax"}), targets="class",
                                  per_row=True, second=softmax_cross_entropy_second,
                                  hessian="R{d_z} = a_dot / n,  "
                                          "a_dot = a * (z_dot - <z_dot, a>)"),
}
"""Every loss by name."""
