"""A float80 oracle: every activation and loss written in numpy.longdouble, for stability.

The extreme regime -- saturated units, exact kinks, huge logits, exact 0/1 probabilities
-- is where bugs live and where autograd references disagree by design (torch clamps
bce's a (1 - a) at 1e-12).  These formulas are written here independently of
handwritten, in longdouble (11 more bits than float64 on x86), and judge a computed
float32/float64 value by its own conditioning: ``judge`` allows EXTREME_ULPS ulps of
|true value| + sensitivity (bpnet.tolerances.extreme_allowed), the sensitivity measured
here by relative perturbations.  ``tests/test_extremes.py`` draws inputs with Hypothesis;
``bpnet check --all`` evaluates them on fixed grids of ``specials``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bpnet.tolerances import EXTREME_STEP, extreme_allowed
from handwritten.activations import (
    CELU_ALPHA,
    ELU_ALPHA,
    GELU_C,
    GELU_K,
    LEAKY_RELU_SLOPE,
    SELU_ALPHA,
    SELU_SCALE,
)

L = np.longdouble
LArray = Any   # a longdouble ndarray (NumPy types its operations as Any)

WIDE_ENOUGH = bool(np.finfo(np.longdouble).eps < np.finfo(np.float64).eps)
"""False where longdouble is float64 (e.g. aarch64 macOS): there is no oracle there."""


def _sig(z: LArray) -> LArray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _sech2(z: LArray) -> LArray:
    e = np.exp(-2 * np.abs(z))
    return 4 * e / (1 + e) ** 2


def _gelu_u(z: LArray) -> LArray:
    return L(GELU_C) * (z + L(GELU_K) * z**3)


Pair = tuple[Callable[[LArray], LArray], Callable[[LArray], LArray]]


def _leaky_relu(slope: float) -> Pair:
    return (lambda z: np.where(z > 0, z, L(slope) * z),
            lambda z: np.where(z > 0, L(1), L(slope)))


def _elu(alpha: float) -> Pair:
    return (lambda z: np.where(z > 0, z, L(alpha) * np.expm1(np.minimum(z, 0))),
            lambda z: np.where(z > 0, L(1), L(alpha) * np.exp(np.minimum(z, 0))))


def _celu(alpha: float) -> Pair:
    return (lambda z: np.where(z > 0, z, L(alpha) * np.expm1(np.minimum(z, 0) / L(alpha))),
            lambda z: np.where(z > 0, L(1), np.exp(np.minimum(z, 0) / L(alpha))))


FAMILIES: dict[str, Callable[[float], Pair]] = {"leaky_relu": _leaky_relu, "elu": _elu,
                                                "celu": _celu}
"""The oracle of a parametrised activation, for any value of its parameter."""

ORACLE: dict[str, Pair] = {
    # name: (f, f'), with f'(0) at a kink as the implementations define it (as torch)
    "sigmoid": (_sig, lambda z: _sig(z) * _sig(-z)),
    "tanh": (np.tanh, _sech2),
    "relu": (lambda z: np.maximum(z, 0), lambda z: np.where(z > 0, L(1), L(0))),
    "leaky_relu": _leaky_relu(LEAKY_RELU_SLOPE),
    "elu": _elu(ELU_ALPHA),
    "celu": _celu(CELU_ALPHA),
    "selu": (lambda z: L(SELU_SCALE) * _elu(SELU_ALPHA)[0](z),
             lambda z: L(SELU_SCALE) * _elu(SELU_ALPHA)[1](z)),
    "softplus": (lambda z: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))), _sig),
    "gelu": (lambda z: z * _sig(2 * _gelu_u(z)),
             lambda z: _sig(2 * _gelu_u(z)) + z * 2 * _sig(2 * _gelu_u(z))
             * _sig(-2 * _gelu_u(z)) * L(GELU_C) * (1 + 3 * L(GELU_K) * z * z)),
    "silu": (lambda z: z * _sig(z), lambda z: _sig(z) + z * _sig(z) * _sig(-z)),
    "identity": (lambda z: z, lambda z: np.ones_like(z)),
}
ORACLE["swish"] = ORACLE["silu"]


def oracle_pair(name: str) -> Pair:
    """(f, f') in longdouble for an activation name, its parameter set ("celu:2.5")."""
    from handwritten.activations import split_name

    base, value = split_name(name)
    return ORACLE[base] if value is None else FAMILIES[base](value)


def sensitivity(g: Callable[..., LArray], inputs: dict[str, LArray],
                exact: frozenset[str] | set[str] = frozenset(), rowwise: bool = False) -> LArray:
    """S = sum over inputs x of |x dg/dx|, by relative perturbations in longdouble.

    Elementwise functions: one perturbation per input array.  Row-wise ones (softmax,
    cross-entropy): one per column of each input.  Inputs named in ``exact`` (integer
    labels) carry no rounding and are not perturbed."""
    base = g(**inputs)
    total = np.zeros_like(base)
    for name, x in inputs.items():
        if name in exact:
            continue
        for column in (range(x.shape[1]) if rowwise and x.ndim == 2 else [None]):
            bumped = x.copy()
            if column is None:
                bumped *= 1 + L(EXTREME_STEP)
            else:
                bumped[:, column] *= 1 + L(EXTREME_STEP)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                delta = np.abs(g(**{**inputs, name: bumped}) - base)
            # infinities are compared exactly, not through S
            total += np.nan_to_num(delta, nan=0.0, posinf=0.0) / L(EXTREME_STEP)
    return total


def specials(dtype: str) -> list[float]:
    info = np.finfo(dtype)
    magnitudes = [0.0, float(info.smallest_subnormal), float(info.smallest_normal), 1e-30,
                  1e-8, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 17.0, 20.0, 36.7,
                  37.0, 40.0, 88.0, 89.0, 104.0, 700.0, 709.0, 710.0, 745.0, 746.0, 1e4, 1e10,
                  1e30, 1e102, 1e103, 1e154, 1e200, float(info.max)]
    values = [m for m in magnitudes if m <= float(info.max)]
    return sorted({*values, *(-v for v in values)})


def softmax(z: LArray) -> LArray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(a: LArray, d_a: LArray) -> LArray:
    """The backward as a function of its inputs (a, d_a): a is the forward's rounded output,
    which the backward receives; a's own accuracy is checked against z above."""
    return a * (d_a - np.sum(d_a * a, axis=1, keepdims=True))


def _xlogy(x: LArray, y: LArray) -> LArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, L(0), x * np.log(y))


def _bce_terms(a: LArray, y: LArray) -> LArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        log_1_minus_a = np.where(y == 1, L(0), (1 - y) * np.log1p(-a))
    return -(_xlogy(y, a) + log_1_minus_a)


def _bce_grad(a: LArray, y: LArray) -> LArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = (a - y) / (a * (1 - a))
        one = np.where(y < 1, L(np.inf), -y)
        zero = np.where(y > 0, L(-np.inf), 1 - y)
    return np.where(a == 1, one, np.where(a == 0, zero, inner))


def _logit_terms(z: LArray, y: LArray) -> LArray:
    return np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))


def _logit_grad(z: LArray, y: LArray) -> LArray:
    return np.where(y == 1, -_sig(-z), _sig(z) - y)


def _logsoftmax(z: LArray) -> LArray:
    """log softmax, the sum's 1 (the max's own term) kept out of log1p's argument."""
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    others = np.sum(np.where(np.arange(z.shape[1]) == shifted.argmax(axis=1)[:, None], 0, e),
                    axis=1, keepdims=True)
    return shifted - np.log1p(others)


def _ce_terms(z: LArray, y: LArray) -> LArray:
    return -np.sum(np.where(y > 0, y * _logsoftmax(z), 0), axis=1)


def _ce_grad(z: LArray, y: LArray) -> LArray:
    a = softmax(z)
    others = np.sum(np.where(y == 1, 0, a), axis=1, keepdims=True)
    return np.where(y == 1, -others, a - y)


# name: (per-item terms, gradient, the input the gradient is taken with respect to)
LOSS_ORACLE: dict[str, tuple[Callable[..., LArray], Callable[..., LArray], str]] = {
    "half_mse": (lambda a, y: (a - y) ** 2 / 2, lambda a, y: a - y, "a"),
    "mse": (lambda a, y: (a - y) ** 2, lambda a, y: 2 * (a - y), "a"),
    "bce": (_bce_terms, _bce_grad, "a"),
    "bce_with_logits": (_logit_terms, _logit_grad, "z"),
    "softmax_cross_entropy": (_ce_terms, _ce_grad, "z"),
}


def judge(computed: np.ndarray, true: LArray, sens: LArray, extra: Any = 0.0) -> str:
    """"" when computed (float32/64) matches the longdouble truth -- no NaN, inf only where
    the truth is beyond the range and then the same inf, the rest within extreme_allowed --
    else one line naming the worst entry."""
    dtype = computed.dtype
    computed_l = computed.astype(L)
    finite = np.isfinite(true) & (np.abs(true) <= np.finfo(dtype).max)
    if np.isnan(computed).any():
        return (f"NaN at {np.argwhere(np.isnan(computed)).tolist()} where the true value "
                f"is {true[np.isnan(computed)]}")
    if not np.all(np.isfinite(computed[finite])):
        return f"inf where the true value is finite: {true[finite & ~np.isfinite(computed)]}"
    infinite = ~np.isfinite(true)
    if not np.array_equal(computed_l[infinite], true[infinite]):
        return "infinities differ"
    with np.errstate(invalid="ignore"):         # inf - inf where both are inf: not judged
        error = np.abs(computed_l - true)
    allowed = extreme_allowed(true, sens, dtype, extra)
    bad = finite & ~(error <= allowed)
    if bad.any():
        i = tuple(int(k) for k in np.argwhere(bad)[np.argmax((error / allowed)[bad])])
        return (f"({dtype}) at {i} computed {float(computed[i])!r}, true {float(true[i])!r}: error "
                f"{float(error[i]):.3g} > allowed {float(allowed[i]):.3g} (sensitivity "
                f"{float(sens[i]):.3g})")
    return ""


# one activation or loss, judged on given inputs: the suite draws them, check --all fixes them

def activation_problems(name: str, z: np.ndarray, d_a: np.ndarray | None = None
                        ) -> dict[str, str]:
    """{"a": problem, "d_z": problem} of handwritten's activation at z ("" where it agrees):
    an elementwise one's f'(z) (d_a = 1), softmax's backward row-wise with the upstream
    gradient d_a (ones by default)."""
    from handwritten.activations import activation

    act = activation(name)
    d_a = np.ones_like(z) if d_a is None else d_a
    zl, dl = z.astype(L), d_a.astype(L)
    a = act.forward(z)
    d_z = act.backward(z, a, d_a)
    if name == "softmax":
        al = a.astype(L)
        return {"a": judge(a, softmax(zl), sensitivity(lambda z: softmax(z), {"z": zl},
                                                       rowwise=True)),
                "d_z": judge(d_z, softmax_backward(al, dl),
                             sensitivity(softmax_backward, {"a": al, "d_a": dl}, rowwise=True))}
    f, df = oracle_pair(name)            # elementwise: f'(z) itself, with d_a = 1
    d_z = act.backward(z, a, np.ones_like(z))
    return {"a": judge(a, f(zl), sensitivity(lambda z: f(z), {"z": zl})),
            "d_z": judge(d_z, df(zl), sensitivity(lambda z: df(z), {"z": zl}))}


def loss_problems(name: str, reduction: str, z: np.ndarray, a: np.ndarray, y: np.ndarray,
                  labels: bool = False) -> dict[str, str]:
    """{"value": problem, "gradient": problem} of handwritten's loss ("" where it agrees).
    Where the true sum of the terms is beyond the float range, the value's overflow is
    right (a mean divides that sum after it is formed) and it is not judged; the gradient
    is judged all the same."""
    from handwritten.losses import LOSSES

    loss = LOSSES[name]
    terms, grad, wrt = LOSS_ORACLE[name]
    zl, al = z.astype(L), a.astype(L)
    yl = np.eye(z.shape[1], dtype=L)[y] if labels else y.astype(L)
    x = {"a": al, "z": zl}[wrt]
    rowwise = name == "softmax_cross_entropy"
    n = L(1 if reduction == "sum" else (len(z) if loss.per_row else z.size))
    exact = {"y"} if labels else set()
    true_terms = terms(x, yl)
    # a sum of terms beyond the float range overflows (before a mean divides it): right
    beyond = not np.abs(np.sum(true_terms)) <= np.finfo(z.dtype).max
    term_sens = sensitivity(lambda x, y: terms(x, y), {"x": x, "y": yl}, exact, rowwise)
    with np.errstate(over="ignore" if beyond else "warn"):
        value = np.asarray(loss.value(z, a, y, reduction))
    g = loss.grad(z, a, y, reduction)
    if g.dtype != z.dtype:
        return {"value": "", "gradient": f"dtype {g.dtype}, expected {z.dtype}"}
    return {"value": "" if beyond else judge(
                value, np.asarray(np.sum(true_terms) / n), np.asarray(np.sum(term_sens) / n),
                extra=true_terms.size * np.sum(np.abs(true_terms)) / n),
            "gradient": judge(g, grad(x, yl) / n,
                              sensitivity(lambda x, y: grad(x, y), {"x": x, "y": yl}, exact,
                                          rowwise) / n)}
