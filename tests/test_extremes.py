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
                  1e-8, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 17.0, 20.0, 36.7,
                  37.0, 40.0, 88.0, 89.0, 104.0, 700.0, 709.0, 710.0, 745.0, 746.0, 1e4, 1e10,
                  1e30, 1e102, 1e103, 1e154, 1e200, float(info.max)]
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


# the whole network ----------------------------------------------------------------------

def oracle_trace(spec: Any, params: list[dict[str, LArray]], x: LArray, y: LArray,
                 bump: tuple[Any, ...] | None = None) -> dict[tuple[int | None, str], LArray]:
    """Every trace quantity in longdouble, from the oracle formulas above.  ``bump`` =
    (quantity, layer, flat index[, step]): that intermediate scalar is multiplied by 1 + h
    (or has ``step`` added) as soon as it is computed -- how sensitive the rest is to its
    rounding."""
    h = L(EXTREME_STEP)

    def hit(name: str, l: int, value: LArray) -> LArray:
        if bump is not None and bump[:2] == (name, l):
            value = value.copy()
            if len(bump) == 4:                          # an absolute step (below)
                value.flat[bump[2]] += bump[3]
            else:
                value.flat[bump[2]] *= 1 + h
        return value

    out: dict[tuple[int | None, str], LArray] = {}
    last = spec.n_layers - 1
    a = x
    for l, (p, name) in enumerate(zip(params, spec.activations)):
        z = hit("z", l, a @ p["W"] + p["b"])
        a = hit("a", l, _softmax(z) if name == "softmax" else ORACLE[name][0](z))
        out[l, "z"], out[l, "a"] = z, a
    loss = LOSSES[spec.loss]
    terms, grad, wrt = LOSS_ORACLE[spec.loss]
    n = L(1 if spec.reduction == "sum" else
          (x.shape[0] if loss.per_row else x.shape[0] * spec.layer_sizes[-1]))
    given = out[last, wrt]
    out[None, "loss"] = (np.sum(terms(given, y)) / n
                         + L(spec.weight_decay) / 2 * sum(np.sum(p["W"] ** 2) for p in params))
    for l in range(last, -1, -1):
        z, a = out[l, "z"], out[l, "a"]
        if l == last and spec.fused_output:
            d_z = grad(z, y) / n
        else:
            d_a = hit("d_a", l, grad(a, y) / n if l == last
                      else out[l + 1, "d_z"] @ params[l + 1]["W"].T)
            out[l, "d_a"] = d_a
            name = spec.activations[l]
            d_z = _softmax_backward(a, d_a) if name == "softmax" else d_a * ORACLE[name][1](z)
        out[l, "d_z"] = d_z = hit("d_z", l, d_z)
        a_prev = x if l == 0 else out[l - 1, "a"]
        out[l, "d_W"] = a_prev.T @ d_z + L(spec.weight_decay) * params[l]["W"]
        out[l, "d_b"] = d_z.sum(axis=0)
    return out


def network_sensitivity(spec: Any, params: list[dict[str, LArray]], x: LArray, y: LArray,
                        labels: bool, floor: float) -> dict[tuple[int | None, str], LArray]:
    """The error each trace quantity inherits, in units of eps: S, the sum of |v dq/dv| over
    every input scalar (params, x, float targets) and every intermediate one (z, a, d_a, d_z
    of every layer), one at a time; plus, for the intermediates, |dq/dv| times the dtype's
    smallest normal number / eps -- below it an intermediate has no relative accuracy
    (sigmoid(-100) in float32 is 0, not 3.7e-44), and a later huge weight can lift that
    absolute error back into the normal range."""
    h = L(EXTREME_STEP)
    base = oracle_trace(spec, params, x, y)
    total = {k: np.zeros_like(v) for k, v in base.items()}

    def add(bumped: dict[tuple[int | None, str], LArray], scale: LArray = 1 / h) -> None:
        for k, v in bumped.items():
            with np.errstate(invalid="ignore", over="ignore"):
                delta = np.abs(v - base[k]) * scale
            total[k] += np.nan_to_num(delta, nan=0.0, posinf=0.0)

    for l, p in enumerate(params):
        for key, leaf in p.items():
            for i in range(leaf.size):
                moved = [{k: v.copy() for k, v in q.items()} for q in params]
                moved[l][key].flat[i] *= 1 + h
                add(oracle_trace(spec, moved, x, y))
    for name, array in (("x", x), *(() if labels else (("y", y),))):
        for i in range(array.size):
            moved_array = array.copy()
            moved_array.flat[i] *= 1 + h
            add(oracle_trace(spec, params, moved_array if name == "x" else x,
                             moved_array if name == "y" else y))
    for (layer, name), value in base.items():
        if layer is not None and name in ("z", "a", "d_a", "d_z"):
            # d_z = d_a * f'(z): f'(z) may itself be subnormal (gelu'(-10.5) in float32), an
            # absolute error of floor in f' is one of |d_a| * floor in d_z
            d_a = base.get((layer, "d_a")) if name == "d_z" else None
            for i in range(value.size):
                add(oracle_trace(spec, params, x, y, bump=(name, layer, i)))
                # |dq/dv| * floor, in the units of S (eps): a step of floor * h, scaled back
                step = L(floor) * h * (1 + (abs(d_a.flat[i]) if d_a is not None else 0))
                add(oracle_trace(spec, params, x, y, bump=(name, layer, i, step)), 1 / h)
    return total


@st.composite
def extreme_networks(draw: st.DrawFn, dtype: str) -> Any:
    """A small network (depth 1-3, widths 1-3, batch 1-3) whose params and inputs mix the
    special magnitudes: saturated and dead units, exact kinks, huge logits, ties."""
    from bpnet.problems import draw_spec
    from tests.strategies import HypothesisChooser

    spec = draw_spec(HypothesisChooser(draw), max_depth=3, max_width=3)
    batch = draw(st.integers(1, 3))
    # huge enough to saturate anything, small enough that products of a few stay in range
    magnitude = st.sampled_from([0.0, 1.0, 10.0, 1e4] + ([1e30, 1e100] if dtype == "float64"
                                                         else [1e12]))
    value = st.builds(lambda s, m: s * m, st.sampled_from([-1.0, -0.5, 0.5, 1.0]), magnitude)
    params = []
    for fan_in, fan_out in zip(spec.layer_sizes[:-1], spec.layer_sizes[1:]):
        params.append({"W": draw(arrays_of(value, (fan_in, fan_out), dtype)),
                       "b": draw(arrays_of(value, (1, fan_out), dtype)).reshape(fan_out)})
    x = draw(arrays_of(value, (batch, spec.layer_sizes[0]), dtype))
    n_out = spec.layer_sizes[-1]
    kind = LOSSES[spec.loss].targets
    labels = kind == "class" and draw(st.booleans())
    if kind == "class":
        idx = np.array(draw(st.lists(st.integers(0, n_out - 1), min_size=batch, max_size=batch)))
        y = idx if labels else np.eye(n_out, dtype=dtype)[idx]
    elif kind == "probability":
        y = draw(arrays_of(st.sampled_from([0.0, 1.0, 0.25]), (batch, n_out), dtype))
    else:
        y = draw(arrays_of(value, (batch, n_out), dtype))
    return spec, params, x, y, labels


FIRST_ORDER = 1e-3
"""The largest error allowance of a pre-activation, relative to max(1, |z|), for which a
first-order (linear) error bound still describes what comes after it."""


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_whole_network_trace_at_the_extremes(dtype: str, data: st.DataObject) -> None:
    """Every quantity of handwritten.trace on a network driven into saturation, kinks and
    huge logits, within its conditioning (sensitivity to every input and every intermediate
    rounding) of the longdouble oracle network -- and no NaN, no RuntimeWarning."""
    from hypothesis import assume

    import handwritten as hw

    spec, params, x, y, labels = data.draw(extreme_networks(dtype), label="network")
    lparams = [{k: v.astype(L) for k, v in p.items()} for p in params]
    xl = x.astype(L)
    yl = np.eye(spec.layer_sizes[-1], dtype=L)[y] if labels else y.astype(L)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        truth = oracle_trace(spec, lparams, xl, yl)
    limit = np.finfo(dtype).max
    # beyond the float range the true values are not representable: such draws say nothing;
    # nor do those whose loss terms, squared before they are halved and summed before the
    # division by n (docs/derivation.md), leave the range on the way
    assume(all(np.all(np.abs(v) <= limit) for v in truth.values()))
    terms = LOSS_ORACLE[spec.loss][0](truth[spec.n_layers - 1,
                                            LOSS_ORACLE[spec.loss][2]], yl)
    assume(2 * np.sum(np.abs(terms)) <= limit)
    info = np.finfo(dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sens = network_sensitivity(spec, lparams, xl, yl, labels,
                                   float(info.smallest_normal) / float(info.eps))
    # The allowance is a first-order bound: it holds while rounding moves each pre-activation
    # by little on the scale where activations bend (~1).  A z that is a cancellation of huge
    # terms (x @ W = 5e33 - 5e33) may be off by 1e18 in any correct evaluation: what follows
    # is decided by rounding, and such draws say nothing.
    # (softmax depends on differences of z: there the scale is 1 whatever |z|.)  Likewise
    # bce on probabilities bends at a = 0 and 1: an output within rounding of them (a
    # float32 sigmoid is exactly 1 from z = 17 on) is the reason bce_with_logits exists.
    for l, name in enumerate(spec.activations):
        true_z = truth[l, "z"]
        room = extreme_allowed(true_z, sens[l, "z"], np.dtype(dtype))
        scale = 1 if name == "softmax" else np.maximum(1, np.abs(true_z))
        assume(np.all(room <= FIRST_ORDER * scale))
    if spec.loss == "bce":
        a = truth[spec.n_layers - 1, "a"]
        room = extreme_allowed(a, sens[spec.n_layers - 1, "a"], np.dtype(dtype))
        assume(np.all((room <= FIRST_ORDER * np.minimum(a, 1 - a)) | (a == yl)))
    t = hw.trace(spec, params, x, y)
    # Likewise where rounding may move a pre-activation across a kink (a true z within its
    # allowance of 0, computed differently): the branch is decided by rounding, as a finite
    # difference across a kink is meaningless (the kink itself is checked exactly above).
    for l, name in enumerate(spec.activations):
        if ACTIVATIONS[name].kinked:
            true_z = truth[l, "z"]
            near = np.abs(true_z) <= extreme_allowed(true_z, sens[l, "z"], np.dtype(dtype))
            assume(not np.any(near & (t.layers[l]["z"].astype(L) != true_z)))
    assert_close_to_oracle("loss", np.asarray(t.loss), truth[None, "loss"], sens[None, "loss"])
    for (layer, name), true in truth.items():
        if layer is not None:
            assert_close_to_oracle(f"layer {layer} {name}", t.layers[layer][name], true,
                                   sens[layer, name])
