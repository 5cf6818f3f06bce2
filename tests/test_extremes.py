"""The extreme regime: saturated units, exact kinks, huge logits, exact 0/1 probabilities.

Every registered activation and loss, in float32 and float64, is evaluated where bugs
live -- inputs up to the float limits, exactly 0, subnormal, exactly saturated -- and
compared with an oracle computed in float80 (numpy.longdouble, 11 more bits than
float64) from formulas written here, independently of handwritten.  The tolerance is
each quantity's own conditioning (bpnet.tolerances.extreme_allowed): EXTREME_ULPS ulps
of |true value| + sensitivity, the sensitivity measured in the oracle.  Also: no NumPy
RuntimeWarning (pytest turns them into errors), and never NaN or inf where the true
value is finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpnet.tolerances import EXTREME_STEP, extreme_allowed
from handwritten.activations import ACTIVATIONS, ELU_ALPHA, GELU_C, GELU_K, LEAKY_RELU_SLOPE
from handwritten.losses import LOSSES

if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:     # e.g. on aarch64 macOS
    pytest.skip("the oracle needs numpy.longdouble wider than float64", allow_module_level=True)

L = np.longdouble
LArray = np.ndarray


# the oracle: every formula in longdouble, written for stability ----------------------

def _sig(z: LArray) -> LArray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _sech2(z: LArray) -> LArray:
    e = np.exp(-2 * np.abs(z))
    return 4 * e / (1 + e) ** 2


def _gelu_u(z: LArray) -> LArray:
    return L(GELU_C) * (z + L(GELU_K) * z**3)


ORACLE: dict[str, tuple[Callable[[LArray], LArray], Callable[[LArray], LArray]]] = {
    # name: (f, f'), with f'(0) at a kink as the implementations define it (as torch)
    "sigmoid": (_sig, lambda z: _sig(z) * _sig(-z)),
    "tanh": (np.tanh, _sech2),
    "relu": (lambda z: np.maximum(z, 0), lambda z: np.where(z > 0, L(1), L(0))),
    "leaky_relu": (lambda z: np.where(z > 0, z, L(LEAKY_RELU_SLOPE) * z),
                   lambda z: np.where(z > 0, L(1), L(LEAKY_RELU_SLOPE))),
    "elu": (lambda z: np.where(z > 0, z, L(ELU_ALPHA) * np.expm1(np.minimum(z, 0))),
            lambda z: np.where(z > 0, L(1), L(ELU_ALPHA) * np.exp(np.minimum(z, 0)))),
    "softplus": (lambda z: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))), _sig),
    "gelu": (lambda z: z * _sig(2 * _gelu_u(z)),
             lambda z: _sig(2 * _gelu_u(z)) + z * 2 * _sig(2 * _gelu_u(z))
             * _sig(-2 * _gelu_u(z)) * L(GELU_C) * (1 + 3 * L(GELU_K) * z * z)),
    "silu": (lambda z: z * _sig(z), lambda z: _sig(z) + z * _sig(z) * _sig(-z)),
    "identity": (lambda z: z, lambda z: np.ones_like(z)),
}
ORACLE["swish"] = ORACLE["silu"]
ELEMENTWISE = sorted(n for n, a in ACTIVATIONS.items() if not a.output_only)


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


def assert_close_to_oracle(name: str, computed: np.ndarray, true: LArray, sens: LArray,
                           extra: Any = 0.0) -> None:
    """computed (float32/64) against the longdouble truth: infinities equal, the rest within
    extreme_allowed; the message names the worst entry."""
    dtype = computed.dtype
    computed_l = computed.astype(L)
    finite = np.isfinite(true) & (np.abs(true) <= np.finfo(dtype).max)
    assert np.array_equal(np.isnan(computed), np.zeros_like(computed, dtype=bool)), (
        f"{name}: NaN at {np.argwhere(np.isnan(computed)).tolist()} where the true value "
        f"is {true[np.isnan(computed)]}")
    assert np.all(np.isfinite(computed[finite])), (
        f"{name}: inf where the true value is finite: {true[finite & ~np.isfinite(computed)]}")
    infinite = ~np.isfinite(true)
    assert np.array_equal(computed_l[infinite], true[infinite]), f"{name}: infinities differ"
    error = np.abs(computed_l - true)
    allowed = extreme_allowed(true, sens, dtype, extra)
    bad = finite & ~(error <= allowed)
    if bad.any():
        i = tuple(np.argwhere(bad)[np.argmax((error / allowed)[bad])])
        raise AssertionError(f"{name} ({dtype}): at {i} computed {computed[i]!r}, true "
                             f"{float(true[i])!r}: error {float(error[i]):.3g} > allowed "
                             f"{float(allowed[i]):.3g} (sensitivity {float(sens[i]):.3g})")


# inputs where bugs live ---------------------------------------------------------------

def _specials(dtype: str) -> list[float]:
    info = np.finfo(dtype)
    magnitudes = [0.0, float(info.smallest_subnormal), float(info.smallest_normal), 1e-30,
                  1e-8, 0.5, 1.0, 2.0, 2.5, 10.0, 17.0, 20.0, 36.7, 37.0, 40.0, 88.0, 89.0,
                  104.0, 700.0, 709.0, 710.0, 745.0, 746.0, 1e4, 1e10, 1e30, 1e102, 1e103,
                  1e154, 1e200, float(info.max)]
    values = [m for m in magnitudes if m <= float(info.max)]
    return sorted({*values, *(-v for v in values)})


def elements(dtype: str) -> st.SearchStrategy[float]:
    """The special magnitudes, or any finite float of the dtype."""
    width = 32 if dtype == "float32" else 64
    return st.one_of(st.sampled_from(_specials(dtype)),
                     st.floats(allow_nan=False, allow_infinity=False, width=width))


def arrays_of(element: st.SearchStrategy[float], shape: tuple[int, int], dtype: str
              ) -> st.SearchStrategy[np.ndarray]:
    return st.lists(element, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]).map(
        lambda v: np.array(v, dtype=dtype).reshape(shape))


def z_arrays(dtype: str, max_rows: int = 4, max_cols: int = 6) -> st.SearchStrategy[np.ndarray]:
    """Small 2-D arrays of extreme and ordinary values: sizes first, then the values."""
    return st.tuples(st.integers(1, max_rows), st.integers(1, max_cols)).flatmap(
        lambda shape: arrays_of(elements(dtype), shape, dtype))


DTYPES = ["float32", "float64"]


# activations --------------------------------------------------------------------------

def test_every_activation_has_an_oracle() -> None:
    missing = sorted(set(ELEMENTWISE) - set(ORACLE))
    assert not missing, f"tests/test_extremes.py has no longdouble oracle for {missing}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
@given(data=st.data())
def test_activation_value_and_derivative_at_the_extremes(name: str, dtype: str,
                                                         data: st.DataObject) -> None:
    z = data.draw(z_arrays(dtype), label="z")
    act = ACTIVATIONS[name]
    f, df = ORACLE[name]
    zl = z.astype(L)
    a = act.forward(z)
    assert a.dtype == z.dtype
    assert_close_to_oracle(f"{name}(z)", a, f(zl), sensitivity(lambda z: f(z), {"z": zl}))
    d_z = act.backward(z, a, np.ones_like(z))
    assert_close_to_oracle(f"{name}'(z)", d_z, df(zl), sensitivity(lambda z: df(z), {"z": zl}))


def _softmax(z: LArray) -> LArray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax_backward(a: LArray, d_a: LArray) -> LArray:
    """The backward as a function of its inputs (a, d_a): a is the forward's rounded output,
    which the backward receives; a's own accuracy is checked against z above."""
    return a * (d_a - np.sum(d_a * a, axis=1, keepdims=True))


@st.composite
def logits(draw: st.DrawFn, dtype: str) -> np.ndarray:
    """Rows with ties, gaps of 1e4, and values up to the float limits."""
    z = draw(z_arrays(dtype, max_cols=5))
    if draw(st.booleans()):                                    # a tie with the row's max
        z[:, -1] = z.max(axis=1)
    return z


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_at_the_extremes(dtype: str, data: st.DataObject) -> None:
    z = data.draw(logits(dtype), label="z")
    d_a = data.draw(st.sampled_from([np.ones_like(z), np.arange(z.size, dtype=dtype).reshape(
        z.shape) % 3 - 1]), label="d_a")
    act = ACTIVATIONS["softmax"]
    zl, dl = z.astype(L), d_a.astype(L)
    a = act.forward(z)
    assert_close_to_oracle("softmax(z)", a, _softmax(zl),
                           sensitivity(lambda z: _softmax(z), {"z": zl}, rowwise=True))
    al = a.astype(L)
    assert_close_to_oracle("softmax backward", act.backward(z, a, d_a), _softmax_backward(al, dl),
                           sensitivity(_softmax_backward, {"a": al, "d_a": dl}, rowwise=True))


# losses ---------------------------------------------------------------------------------

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


def _log_softmax(z: LArray) -> LArray:
    """log softmax, the sum's 1 (the max's own term) kept out of log1p's argument."""
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    others = np.sum(np.where(np.arange(z.shape[1]) == shifted.argmax(axis=1)[:, None], 0, e),
                    axis=1, keepdims=True)
    return shifted - np.log1p(others)


def _ce_terms(z: LArray, y: LArray) -> LArray:
    return -np.sum(np.where(y > 0, y * _log_softmax(z), 0), axis=1)


def _ce_grad(z: LArray, y: LArray) -> LArray:
    a = _softmax(z)
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


def test_every_loss_has_an_oracle() -> None:
    missing = sorted(set(LOSSES) - set(LOSS_ORACLE))
    assert not missing, f"tests/test_extremes.py has no longdouble oracle for {missing}"


@st.composite
def loss_inputs(draw: st.DrawFn, name: str, dtype: str) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray, bool]:
    """(z, a, y, labels) for one loss, at the extremes its targets allow."""
    info = np.finfo(dtype)
    probability = st.one_of(st.sampled_from([0.0, 1.0, 0.5, float(info.eps),
                                             1 - float(info.eps), float(info.smallest_normal),
                                             1e-30]),
                            st.floats(0, 1, width=32 if dtype == "float32" else 64))
    if name == "softmax_cross_entropy":
        z = draw(logits(dtype))
        labels = draw(st.booleans())
        idx = np.array(draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=len(z),
                                     max_size=len(z))))
        y = idx if labels else np.eye(z.shape[1], dtype=dtype)[idx]
        return z, ACTIVATIONS["softmax"].forward(z), y, labels
    z = draw(z_arrays(dtype))
    if name in ("bce", "bce_with_logits"):
        y = draw(arrays_of(probability, z.shape, dtype))
        if name == "bce":
            return z, draw(arrays_of(probability, z.shape, dtype)), y, False
        return z, ACTIVATIONS["sigmoid"].forward(z), y, False
    # (a - y)**2 must stay representable: a true loss beyond the float range is inf, and
    # the square's overflow to inf is then the right answer (it warns, as it should)
    bound = float(np.sqrt(info.max)) / 4
    y = draw(arrays_of(elements(dtype), z.shape, dtype))
    return z, np.clip(z, -bound, bound), np.clip(y, -bound, bound), False


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", sorted(LOSSES))
@given(data=st.data())
def test_loss_value_and_gradient_at_the_extremes(name: str, reduction: str, dtype: str,
                                                 data: st.DataObject) -> None:
    z, a, y, labels = data.draw(loss_inputs(name, dtype), label="inputs")
    loss = LOSSES[name]
    terms, grad, wrt = LOSS_ORACLE[name]
    zl, al = z.astype(L), a.astype(L)
    yl = (np.eye(z.shape[1], dtype=L)[y] if labels else y.astype(L))
    x = {"a": al, "z": zl}[wrt]
    rowwise = name == "softmax_cross_entropy"
    n = L(1 if reduction == "sum" else (len(z) if loss.per_row else z.size))
    exact = {"y"} if labels else set()

    true_terms = terms(x, yl)
    if not np.abs(np.sum(true_terms)) <= np.finfo(dtype).max:
        return     # the true sum of the terms is beyond the float range: its overflow is right
    term_sens = sensitivity(lambda x, y: terms(x, y), {"x": x, "y": yl}, exact, rowwise)
    value = loss.value(z, a, y, reduction)
    true = np.sum(true_terms) / n
    assert_close_to_oracle(f"{name} {reduction}", np.asarray(value), np.asarray(true),
                           np.asarray(np.sum(term_sens) / n),
                           extra=true_terms.size * np.sum(np.abs(true_terms)) / n)
    g = loss.grad(z, a, y, reduction)
    assert g.dtype == z.dtype
    assert_close_to_oracle(f"{name} {reduction} gradient", g, grad(x, yl) / n,
                           sensitivity(lambda x, y: grad(x, y), {"x": x, "y": yl}, exact,
                                       rowwise) / n)
