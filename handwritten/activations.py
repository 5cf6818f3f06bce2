"""Activations: each value and its hand-derived derivative, side by side.

Every activation ``f`` comes as a pair of functions:

    a   = f(z)                       forward, elementwise unless stated
    d_z = f_backward(z, a, d_a)      backward: d_z = d_a * f'(z)

``d_<name>`` always means dL/d<name>.  The backward takes both the
pre-activation ``z`` and the output ``a`` so that a derivative can be written in
terms of the output whenever that is cheaper (sigmoid' = a(1 - a),
tanh' = 1 - a**2): the forward pass already paid for ``a``.

Second order (``handwritten.derivatives.hvp``, Pearlmutter's R-operator) needs one
more function per activation, the change of the backward when z moves along z_dot
with d_a held fixed -- the term of R{d_z} the first derivatives do not give:

    second(z, a, d_a, z_dot) = d_a * f''(z) * z_dot       (elementwise activations)

so that R{d_z} = f_backward(z, a, R{d_a}) + second(z, a, d_a, z_dot).  Each f'' is
written, like f', in the output wherever that is cheaper and stable.

All arrays have shape (batch, fan_out) and keep their dtype (float32 in,
float32 out).  The registry ``ACTIVATIONS`` at the bottom pairs every forward
with its backward, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating[Any]]

LEAKY_RELU_SLOPE = 0.01
"""Slope of leaky_relu for z <= 0 (torch.nn.LeakyReLU's default)."""

ELU_ALPHA = 1.0
"""alpha of elu: elu(z) = alpha * (exp(z) - 1) for z <= 0 (torch's default)."""

CELU_ALPHA = 1.0
"""alpha of celu: celu(z) = alpha * (exp(z / alpha) - 1) for z <= 0 (torch's default)."""

GELU_C = math.sqrt(2.0 / math.pi)
GELU_K = 0.044715

TAIL = 2.0
"""|z| beyond which a derivative written in the output (tanh's 1 - a**2, elu's
a + alpha) is computed from z instead; sigmoid's 1 - a from 2 * TAIL on, since
sigmoid(z) = (1 + tanh(z / 2)) / 2.  Inside it the subtraction from the rounded
output costs at most ~27 ulps of relative accuracy (tanh at 2: 2 sinh(2)**2 + 1;
sigmoid at 4: (1 + e^4) / 2), within the 16 (1 + condition number) ulps every
activation is held to (bpnet.tolerances); beyond it the loss grows like e^|z|
(and e^2|z|)."""


def flat_indices(mask: NDArray[np.bool_]) -> NDArray[np.intp]:
    """The flat indices where ``mask`` is True: ``np.flatnonzero`` through the array's
    own methods, half its cost on the small arrays of a training step."""
    return mask.ravel().nonzero()[0]


# sigmoid ---------------------------------------------------------------------


def sigmoid(z: Array) -> Array:
    """Logistic function, a = 1 / (1 + exp(-z)), without overflow warnings or NaN.

    For z < -709 (float64; -88 in float32) exp(-z) overflows to inf, and
    1 / (1 + inf) = 0 is then the right limit to within the smallest normal float
    (``sigmoid_down_to_subnormals`` keeps the subnormal e^z).  So that overflow is
    expected and silenced; everywhere else
    each step is exact to rounding (relative error of a few ulps for any z, the
    same numbers as the blog's 1 / (1 + np.exp(-x))).  Four passes, one array:

        e = -z;  e = exp(e);  e = e + 1;  a = 1 / e
    """
    e = np.negative(z)
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    e += 1
    return np.reciprocal(e, out=e)


def sigmoid_down_to_subnormals(z: Array) -> Array:
    """sigmoid(z), accurate also where it is subnormal.

    Below -log(max float) (-709.8 in float64, -88.7 in float32) exp(-z) overflows and
    1 / (1 + exp(-z)) is 0, while sigmoid(z) = e^z / (1 + e^z) = e^z is still
    representable down to -745 (-103).  On its own that difference is below the
    smallest normal number; multiplied by z (silu) it is not.
    """
    s = sigmoid(z)
    low = z < -np.log(np.finfo(z.dtype).max)
    if low.any():
        s[low] = np.exp(z[low])
    return s


def sigmoid_backward(z: Array, a: Array, d_a: Array) -> Array:
    """sigmoid'(z) = a (1 - a), reusing the output.

        d_z = d_a * a * (1 - a)

    Near a = 1 the subtraction 1 - a cancels: a carries a rounding error of about
    eps, so 1 - a keeps a relative accuracy of only about eps / (1 - a) -- eight
    digits at z = 20, none from z = 37 on, where a rounds to 1 and sigmoid' to 0
    although it is e^-z.  So where z > 2 * TAIL, 1 - a is computed as a * exp(-z),
    the same number without the cancellation:

        1 - a = e^-z / (1 + e^-z) = a e^-z
    """
    d_z = 1.0 - a
    tail = flat_indices(z > 2 * TAIL)           # the saturated tail: usually a few entries
    if tail.size:
        d_z.put(tail, a.take(tail) * np.exp(-z.take(tail)))
    d_z *= a
    d_z *= d_a
    return d_z


def sigmoid_second(z: Array, a: Array, d_a: Array, z_dot: Array) -> Array:
    """sigmoid''(z) = d/dz a (1 - a) = a (1 - a) (1 - 2a), with 1 - 2a = -tanh(z / 2)
    (the subtraction would cancel near z = 0, where a is 1/2):

        second = d_a * a (1 - a) * -tanh(z / 2) * z_dot

    a (1 - a) is the backward's own (tail-safe) sigmoid'.
    """
    r = sigmoid_backward(z, a, d_a)
    r *= np.tanh(z / 2)
    r *= z_dot
    return np.negative(r, out=r)


# tanh ------------------------------------------------------------------------


def tanh(z: Array) -> Array:
    """Hyperbolic tangent, a = tanh(z)."""
    return np.tanh(z)


def tanh_backward(z: Array, a: Array, d_a: Array) -> Array:
    """tanh'(z) = 1 - tanh(z)**2 = 1 - a**2, reusing the output.

        d_z = d_a * (1 - a * a)

    As a approaches +-1, 1 - a**2 cancels (none of its digits are left from |z| = 19
    on, where tanh' = sech**2 is still 4 e^(-2|z|)).  So where |z| > TAIL it is
    computed from z directly, with e = exp(-|z|):

        1 - a**2 = sech(z)**2 = 4 e**2 / (1 + e**2)**2
    """
    d_z = a * a
    np.subtract(1, d_z, out=d_z)
    tail = flat_indices(np.abs(z) > TAIL)       # the saturated tails: usually a few entries
    if tail.size:
        e2 = np.exp(-np.abs(z.take(tail))) ** 2
        d_z.put(tail, 4 * e2 / (1 + e2) ** 2)
    d_z *= d_a
    return d_z


def tanh_second(z: Array, a: Array, d_a: Array, z_dot: Array) -> Array:
    """tanh''(z) = d/dz (1 - a**2) = -2 a (1 - a**2), with 1 - a**2 the backward's own:

        second = d_a * -2 a (1 - a**2) * z_dot
    """
    r = tanh_backward(z, a, d_a)
    r *= -2 * a
    r *= z_dot
    return r


# relu ------------------------------------------------------------------------


def relu(z: Array) -> Array:
    """Rectified linear unit, a = max(z, 0)."""
    return np.maximum(z, 0)


def relu_backward(z: Array, a: Array, d_a: Array) -> Array:
    """relu'(z) = 1 if z > 0 else 0 (the value 0 at the kink, as torch).

        d_z = d_a * [z > 0]
    """
    return d_a * (z > 0)


def piecewise_linear_second(z: Array, a: Array, d_a: Array, z_dot: Array) -> Array:
    """f''(z) = 0 away from the kink (relu, leaky_relu, identity): second = 0.  At the
    kink f' jumps and has no derivative; 0 is autograd's value there too."""
    return np.zeros_like(z_dot)


# leaky_relu ------------------------------------------------------------------


def leaky_relu(z: Array, slope: float = LEAKY_RELU_SLOPE) -> Array:
    """a = z if z > 0 else slope * z (torch.nn.LeakyReLU's negative_slope, 0.01 by default).

    With a slope above 1, slope * z overflows for z near the float range's end: where
    that product is used its true value is beyond the range (-inf is its rounding), and
    elsewhere np.where discards it, so the overflow is silenced."""
    with np.errstate(over="ignore"):
        return np.where(z > 0, z, slope * z)


def leaky_relu_backward(z: Array, a: Array, d_a: Array, slope: float = LEAKY_RELU_SLOPE
                        ) -> Array:
    """leaky_relu'(z) = 1 if z > 0 else slope (the value slope at the kink, as torch).

        d_z = d_a * (1 if z > 0 else slope)

    (slope * d_a's overflow is silenced as in the forward.)
    """
    with np.errstate(over="ignore"):
        return np.where(z > 0, d_a, slope * d_a)


# elu, celu and selu: the exponential family ----------------------------------


def elu(z: Array, alpha: float = ELU_ALPHA) -> Array:
    """Exponential linear unit (alpha = 1 by default, as torch):

        a = z                        for z > 0
        a = alpha * (exp(z) - 1)     for z <= 0   (expm1: exact near 0)
    """
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))


def elu_backward(z: Array, a: Array, d_a: Array, alpha: float = ELU_ALPHA) -> Array:
    """elu'(z) = 1 for z > 0, else alpha * exp(z) = a + alpha (reusing the output).

        d_z = d_a * (1 if z > 0 else a + alpha)

    a + alpha cancels as a approaches -alpha (for z <= -37 it is exactly 0 in
    float64, while alpha e^z is not), so where z < -TAIL it is alpha * exp(z).
    """
    d_z = np.where(z > 0, 1, a + alpha)
    tail = flat_indices(z < -TAIL)
    if tail.size:
        d_z.put(tail, alpha * np.exp(z.take(tail)))
    d_z *= d_a
    return d_z


def elu_second(z: Array, a: Array, d_a: Array, z_dot: Array, alpha: float = ELU_ALPHA
               ) -> Array:
    """elu''(z) = 0 for z > 0, else alpha e^z -- elu' itself on that side:

        second = d_a * (0 if z > 0 else alpha e^z) * z_dot
    """
    r = elu_backward(z, a, d_a, alpha)
    r[z > 0] = 0
    r *= z_dot
    return r


def celu(z: Array, alpha: float = CELU_ALPHA) -> Array:
    """Continuously differentiable elu (torch.nn.CELU): elu of z / alpha, scaled by alpha,

        a = z                            for z > 0
        a = alpha * (exp(z / alpha) - 1) for z <= 0

    so its slope is 1 on both sides of 0 for every alpha > 0.  With alpha < 1, z / alpha
    overflows to -inf for z near the float range's end, where exp(z / alpha) = 0 is the
    right limit: that overflow is silenced."""
    with np.errstate(over="ignore"):
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0) / alpha))


def celu_backward(z: Array, a: Array, d_a: Array, alpha: float = CELU_ALPHA) -> Array:
    """celu'(z) = 1 for z > 0, else exp(z / alpha) = a / alpha + 1 (reusing the output).

        d_z = d_a * (1 if z > 0 else a / alpha + 1)

    As for elu, a / alpha + 1 cancels in the tail, so where z / alpha < -TAIL it is
    exp(z / alpha).
    """
    d_z = np.where(z > 0, 1, np.minimum(a, 0) / alpha + 1)     # a / alpha only where a <= 0
    tail = flat_indices(z < -TAIL * alpha)
    if tail.size:
        with np.errstate(over="ignore"):         # z / alpha = -inf: exp gives the limit 0
            d_z.put(tail, np.exp(z.take(tail) / alpha))
    d_z *= d_a
    return d_z


def celu_second(z: Array, a: Array, d_a: Array, z_dot: Array, alpha: float = CELU_ALPHA
                ) -> Array:
    """celu''(z) = 0 for z > 0, else e^(z / alpha) / alpha -- celu' over alpha there:

        second = d_a * (0 if z > 0 else e^(z / alpha) / alpha) * z_dot
    """
    r = celu_backward(z, a, d_a, alpha)
    r[z > 0] = 0
    r *= z_dot / alpha
    return r


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
"""selu's constants (Klambauer et al. 2017, torch.nn.SELU's): fixed, not parameters."""


def selu(z: Array) -> Array:
    """Scaled elu with fixed constants, a = scale * elu(z, alpha):

        a = scale * z                        for z > 0
        a = scale * alpha * (exp(z) - 1)     for z <= 0
    """
    # for z beyond max float / scale the true value is beyond the float range: inf is its
    # rounding, and that overflow is expected (silenced)
    with np.errstate(over="ignore"):
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))


def selu_backward(z: Array, a: Array, d_a: Array) -> Array:
    """selu'(z) = scale for z > 0, else scale * alpha * exp(z) = a + scale * alpha.

        d_z = d_a * (scale if z > 0 else a + scale * alpha)

    with alpha * scale * exp(z) itself where z < -TAIL (the tail, as elu)."""
    d_z = np.where(z > 0, SELU_SCALE, a + SELU_SCALE * SELU_ALPHA)
    tail = flat_indices(z < -TAIL)
    if tail.size:
        d_z.put(tail, SELU_SCALE * SELU_ALPHA * np.exp(z.take(tail)))
    d_z *= d_a
    return d_z


def selu_second(z: Array, a: Array, d_a: Array, z_dot: Array) -> Array:
    """selu''(z) = 0 for z > 0, else scale alpha e^z -- selu' itself on that side:

        second = d_a * (0 if z > 0 else scale alpha e^z) * z_dot
    """
    r = selu_backward(z, a, d_a)
    r[z > 0] = 0
    r *= z_dot
    return r


# softplus --------------------------------------------------------------------


def softplus(z: Array) -> Array:
    """a = log(1 + exp(z)), numerically stable for any z.

        a = max(z, 0) + log1p(exp(-|z|))

    (no threshold: for large z this returns z + exp(-z), not z rounded.)
    """
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def softplus_backward(z: Array, a: Array, d_a: Array) -> Array:
    """softplus'(z) = sigmoid(z) = 1 - exp(-a), reusing the output.

    Since exp(-a) = 1 / (1 + exp(z)), we have 1 - exp(-a) = sigmoid(z);
    ``-expm1(-a)`` evaluates it without cancellation even when a is tiny.

        d_z = d_a * (1 - exp(-a))
    """
    return d_a * -np.expm1(-a)


def softplus_second(z: Array, a: Array, d_a: Array, z_dot: Array) -> Array:
    """softplus''(z) = sigmoid'(z) = s (1 - s), with s = 1 - exp(-a) and 1 - s = exp(-a):

        second = d_a * -expm1(-a) * exp(-a) * z_dot
    """
    return d_a * -np.expm1(-a) * np.exp(-a) * z_dot


# gelu (tanh approximation) ---------------------------------------------------


def gelu(z: Array) -> Array:
    """GELU, tanh approximation (torch's ``gelu(z, approximate="tanh")``).

        u = c (z + k z**3),   c = sqrt(2 / pi),  k = 0.044715
        a = z / 2 * (1 + tanh(u)) = z * s,   s = sigmoid(2 u)

    (1 + tanh(u)) / 2 = sigmoid(2u) exactly; the sigmoid form keeps its digits for
    very negative z, where 1 + tanh(u) cancels.  For |z| beyond ~1e102 (float64)
    z**3 overflows to inf, and u = +-inf is the right limit: that overflow is silenced.
    """
    return z * sigmoid_down_to_subnormals(2 * _gelu_u(z))


def _gelu_u(z: Array) -> Array:
    with np.errstate(over="ignore"):
        return GELU_C * (z + GELU_K * z**3)


def gelu_backward(z: Array, a: Array, d_a: Array) -> Array:
    """Product rule on a = z s, s = sigmoid(2u), with ds/dz = 2 s (1 - s) du/dz:

        du/dz = c (1 + 3 k z**2)
        gelu'(z) = s + z * 2 s (1 - s) * du/dz,    1 - s = sigmoid(-2u)
        d_z = d_a * gelu'(z)

    s cannot be recovered from ``a`` stably near z = 0, so it is recomputed; 1 - s
    is sigmoid(-2u), not a subtraction.  Where s (1 - s) is exactly 0 (|2u| beyond
    ~745) the second term is 0 too, even where du/dz overflows to inf.
    """
    u = _gelu_u(z)
    s, one_minus_s = sigmoid_down_to_subnormals(2 * u), sigmoid_down_to_subnormals(-2 * u)
    ds = 2 * s * one_minus_s
    with np.errstate(over="ignore"):
        du_dz = GELU_C * (1 + 3 * GELU_K * z * z)
    second = np.multiply(z * ds, du_dz, out=np.zeros_like(z), where=ds > 0)
    return d_a * (s + second)


def gelu_second(z: Array, a: Array, d_a: Array, z_dot: Array) -> Array:
    """Differentiate gelu' = s + z ds/dz once more, with s = sigmoid(2u), q = s (1 - s):

        ds/dz   = 2 q u'                       u'  = c (1 + 3k z**2),  u'' = 6 c k z
        d2s/dz2 = 2 q (2 (1 - 2s) u'**2 + u''),  1 - 2s = -tanh(u)
        gelu''  = 2 ds/dz + z d2s/dz2 = 2 q (2 u' + z (u'' - 2 tanh(u) u'**2))
        second  = d_a * gelu'' * z_dot

    As in the backward, where q is exactly 0 the whole term is 0 (u'**2 may overflow there).
    """
    u = _gelu_u(z)
    q = sigmoid_down_to_subnormals(2 * u) * sigmoid_down_to_subnormals(-2 * u)
    with np.errstate(over="ignore", invalid="ignore"):
        du = GELU_C * (1 + 3 * GELU_K * z * z)
        inner = 2 * du + z * (6 * GELU_C * GELU_K * z - 2 * np.tanh(u) * du * du)
    f2 = np.multiply(2 * q, inner, out=np.zeros_like(z), where=q > 0)
    return d_a * f2 * z_dot


# silu / swish ----------------------------------------------------------------


def silu(z: Array) -> Array:
    """SiLU (swish with beta = 1), a = z * sigmoid(z)."""
    return z * sigmoid_down_to_subnormals(z)


def silu_backward(z: Array, a: Array, d_a: Array) -> Array:
    """Product rule, with s = sigmoid(z) and a = z s:

        silu'(z) = s + z s (1 - s) = s + a (1 - s)
        d_z = d_a * (s + a * (1 - s))

    s = a / z is unstable near z = 0, so s is recomputed; 1 - s is sigmoid(-z), not
    a subtraction (which would cost z * eps/2 as s approaches 1: 18 ulps at z = 37).
    """
    s, one_minus_s = sigmoid_down_to_subnormals(z), sigmoid_down_to_subnormals(-z)
    return d_a * (s + a * one_minus_s)


def silu_second(z: Array, a: Array, d_a: Array, z_dot: Array) -> Array:
    """silu' = s + z s (1 - s) differentiated again, with s' = s (1 - s) and 1 - 2s =
    -tanh(z / 2) (no cancellation near 0):

        silu''(z) = 2 s (1 - s) + z s (1 - s) (1 - 2s) = s (1 - s) (2 - z tanh(z / 2))
        second = d_a * silu''(z) * z_dot

    Where s (1 - s) is exactly 0 the term is 0 (z tanh(z / 2) is finite: no overflow).
    """
    q = sigmoid_down_to_subnormals(z) * sigmoid_down_to_subnormals(-z)
    return d_a * (q * (2 - z * np.tanh(z / 2))) * z_dot


# identity --------------------------------------------------------------------


def identity(z: Array) -> Array:
    """a = z (a linear layer).  Returns ``z`` itself; nothing mutates it."""
    return z


def identity_backward(z: Array, a: Array, d_a: Array) -> Array:
    """identity'(z) = 1, so d_z = d_a."""
    return d_a


# softmax (output layer only) -------------------------------------------------


def softmax(z: Array) -> Array:
    """Row-wise softmax, a_i = exp(z_i) / sum_j exp(z_j), over axis 1.

    Subtracting the row maximum first changes nothing mathematically and keeps
    exp from overflowing.
    """
    with np.errstate(over="ignore"):       # z - max below -1.8e308: -inf, exp(-inf) = 0
        e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(z: Array, a: Array, d_a: Array) -> Array:
    """Softmax is not elementwise: its Jacobian per row is da_i/dz_j = a_i (delta_ij - a_j).

    The backward is the Jacobian-vector product, never the full Jacobian:

        d_z_j = sum_i d_a_i * a_i * (delta_ij - a_j)
              = a_j * d_a_j - a_j * sum_i d_a_i a_i
              = a_j * (d_a_j - <d_a, a>)

        d_z = a * (d_a - sum(d_a * a, axis=1, keepdims=True))     (batch, n_out)
    """
    return a * (d_a - np.sum(d_a * a, axis=1, keepdims=True))


def softmax_second(z: Array, a: Array, d_a: Array, z_dot: Array) -> Array:
    """The R-operator of softmax's backward d_z = a * (d_a - <d_a, a>) with d_a held fixed,
    a moving by a_dot = J z_dot (softmax's own backward applied to z_dot):

        second = a_dot * (d_a - <d_a, a>) - a * <d_a, a_dot>        (batch, n_out)

    (product rule on the two places a appears; <.,.> per row, kept as a column).
    """
    a_dot = softmax_backward(z, a, z_dot)
    return (a_dot * (d_a - np.sum(d_a * a, axis=1, keepdims=True))
            - a * np.sum(d_a * a_dot, axis=1, keepdims=True))


# registry --------------------------------------------------------------------


class Activation(NamedTuple):
    """One registry entry: the forward and the backward of one activation."""

    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array, Array], Array]
    derivative: str
    """The backward's equation, d_z in terms of d_a, z and a (what ``bpnet explain`` prints)."""
    output_only: bool = False
    """True when the activation couples the units of a row (softmax)."""
    kinked: bool = False
    """True when a derivative jumps at z = 0 (relu and leaky_relu's first, elu's second).
    Central finite differences lose their accuracy near such a point, so a
    finite-difference check keeps z away from 0."""
    second: Callable[[Array, Array, Array, Array], Array] | None = None
    """second(z, a, d_a, z_dot): the term of R{d_z} that f'' gives, d_a * f''(z) * z_dot
    (softmax: the R-operator of its backward).  None: no hand-derived second order, and
    ``derivatives.hvp`` refuses the activation by name."""
    second_derivative: str = ""
    """``second``'s equation (what ``bpnet explain`` prints)."""


def _leaky_relu(slope: float) -> Activation:
    return Activation(partial(leaky_relu, slope=slope), partial(leaky_relu_backward, slope=slope),
                      f"d_a * (1 if z > 0 else {slope!r})", kinked=slope != 1,
                      second=piecewise_linear_second, second_derivative="0")


def _elu(alpha: float) -> Activation:
    return Activation(partial(elu, alpha=alpha), partial(elu_backward, alpha=alpha),
                      f"d_a * (1 if z > 0 else a + {alpha!r})", kinked=True,
                      second=partial(elu_second, alpha=alpha),
                      second_derivative=f"d_a * (0 if z > 0 else {alpha!r} e^z) * z_dot")


def _celu(alpha: float) -> Activation:
    return Activation(partial(celu, alpha=alpha), partial(celu_backward, alpha=alpha),
                      f"d_a * (1 if z > 0 else a / {alpha!r} + 1)", kinked=True,
                      second=partial(celu_second, alpha=alpha),
                      second_derivative=f"d_a * (0 if z > 0 else e^(z / {alpha!r}) / {alpha!r})"
                                        " * z_dot")


class Parameter(NamedTuple):
    """An activation's parameter: its name, default, valid values, and the registry entry
    for a value (``activation("leaky_relu:0.2")``)."""

    name: str
    default: float
    entry: Callable[[float], Activation]
    positive: bool = False
    """Only values > 0 (celu divides by alpha, and its tail is exp(z / alpha))."""


PARAMETERS: dict[str, Parameter] = {
    "leaky_relu": Parameter("slope", LEAKY_RELU_SLOPE, _leaky_relu),
    "elu": Parameter("alpha", ELU_ALPHA, _elu),
    "celu": Parameter("alpha", CELU_ALPHA, _celu, positive=True),
}
"""The activations that take a parameter: "name:value" sets it (torch's keyword)."""

ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, sigmoid_backward, "d_a * a * (1 - a)",
                          second=sigmoid_second,
                          second_derivative="d_a * a (1 - a) * -tanh(z / 2) * z_dot"),
    "tanh": Activation(tanh, tanh_backward, "d_a * (1 - a**2)", second=tanh_second,
                       second_derivative="d_a * -2 a (1 - a**2) * z_dot"),
    "relu": Activation(relu, relu_backward, "d_a * [z > 0]", kinked=True,
                       second=piecewise_linear_second, second_derivative="0"),
    "leaky_relu": _leaky_relu(LEAKY_RELU_SLOPE),
    "elu": _elu(ELU_ALPHA),
    "celu": _celu(CELU_ALPHA),
    "selu": Activation(selu, selu_backward,
                       "d_a * (scale if z > 0 else a + scale * alpha),  "
                       "scale = 1.0507, alpha = 1.6733", kinked=True, second=selu_second,
                       second_derivative="d_a * (0 if z > 0 else scale alpha e^z) * z_dot"),
    "softplus": Activation(softplus, softplus_backward, "d_a * (1 - exp(-a))",
                           second=softplus_second,
                           second_derivative="d_a * (1 - exp(-a)) exp(-a) * z_dot"),
    "gelu": Activation(gelu, gelu_backward,
                       "d_a * (s + z 2 s (1 - s) c (1 + 3k z**2)),  s = sigmoid(2 u(z))",
                       second=gelu_second,
                       second_derivative="d_a * 2 s (1 - s) (2 u' + z (u'' - 2 tanh(u) u'**2))"
                                         " * z_dot"),
    "silu": Activation(silu, silu_backward, "d_a * (s + a (1 - s)),  s = sigmoid(z)",
                       second=silu_second,
                       second_derivative="d_a * s (1 - s) (2 - z tanh(z / 2)) * z_dot"),
    "identity": Activation(identity, identity_backward, "d_a", second=piecewise_linear_second,
                           second_derivative="0"),
    "softmax": Activation(softmax, softmax_backward, "a * (d_a - sum(d_a * a, axis=1))",
                          output_only=True, second=softmax_second,
                          second_derivative="a_dot * (d_a - <d_a, a>) - a * <d_a, a_dot>,  "
                                            "a_dot = a * (z_dot - <z_dot, a>)"),
}
"""Every activation by name, each parametrised one at its default (``PARAMETERS``).
``swish`` is an alias of ``silu``."""

ACTIVATIONS["swish"] = ACTIVATIONS["silu"]


def split_name(name: str) -> tuple[str, float | None]:
    """"leaky_relu:0.2" -> ("leaky_relu", 0.2); "tanh" -> ("tanh", None).

    Raises ValueError for an unknown name, a parameter where the activation takes none,
    or a value that is not a finite number (celu: a positive one)."""
    base, sep, text = name.partition(":")
    if base not in ACTIVATIONS:
        raise ValueError(f"unknown activation {base!r}; expected one of {sorted(ACTIVATIONS)}")
    if not sep:
        return base, None
    if base not in PARAMETERS:
        raise ValueError(f"activation {base!r} takes no parameter, got {name!r} (those that "
                         f"do: {', '.join(f'{n}:{p.name}' for n, p in PARAMETERS.items())})")
    parameter = PARAMETERS[base]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (parameter.positive and value <= 0):
        raise ValueError(f"{base}'s {parameter.name} must be a "
                         f"{'positive ' if parameter.positive else ''}finite number, got "
                         f"{text!r} in {name!r}")
    return base, value


@lru_cache(maxsize=256)
def _bound(name: str) -> Activation:
    base, value = split_name(name)
    return ACTIVATIONS[base] if value is None else PARAMETERS[base].entry(value)


def activation(name: str) -> Activation:
    """The registry entry of an activation name, with its parameter set when the name
    carries one ("leaky_relu:0.2", "elu:0.5", "celu:2"); ValueError for a bad name."""
    entry = ACTIVATIONS.get(name)
    return entry if entry is not None else _bound(name)
