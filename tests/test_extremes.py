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

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpnet.oracle import (
    FAMILIES,
    LOSS_ORACLE,
    ORACLE,
    WIDE_ENOUGH,
    L,
    LArray,
    activation_problems,
    judge,
    loss_problems,
    oracle_pair,
    softmax,
    softmax_backward,
    specials,
)
from bpnet.tolerances import EXTREME_STEP, extreme_allowed
from handwritten.activations import ACTIVATIONS, PARAMETERS, activation
from handwritten.losses import LOSSES

if not WIDE_ENOUGH:     # e.g. on aarch64 macOS
    pytest.skip("the oracle needs numpy.longdouble wider than float64", allow_module_level=True)

# the oracle: bpnet/oracle.py, every formula in longdouble, written for stability

PARAMETRISED = ("leaky_relu:0.2", "leaky_relu:7.5", "elu:0.5", "celu:2.5", "celu:0.3")
"""The parametrised activations away from their defaults, at the extremes too."""
ELEMENTWISE = [*sorted(n for n, a in ACTIVATIONS.items() if not a.output_only), *PARAMETRISED]


def assert_close_to_oracle(name: str, computed: np.ndarray, true: LArray, sens: LArray,
                           extra: Any = 0.0) -> None:
    """computed (float32/64) against the longdouble truth (bpnet.oracle.judge)."""
    problem = judge(computed, true, sens, extra)
    assert not problem, f"{name}: {problem}"


# inputs where bugs live ---------------------------------------------------------------

def elements(dtype: str) -> st.SearchStrategy[float]:
    """The special magnitudes, or any finite float of the dtype."""
    width = 32 if dtype == "float32" else 64
    return st.one_of(st.sampled_from(specials(dtype)),
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
    plain = {n for n, a in ACTIVATIONS.items() if not a.output_only}
    missing = sorted(plain - set(ORACLE) | set(PARAMETERS) - set(FAMILIES))
    assert not missing, f"bpnet/oracle.py has no longdouble oracle for {missing}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
@given(data=st.data())
def test_activation_value_and_derivative_at_the_extremes(name: str, dtype: str,
                                                         data: st.DataObject) -> None:
    z = data.draw(z_arrays(dtype), label="z")
    for quantity, problem in activation_problems(name, z).items():
        assert not problem, f"{name} {quantity}: {problem}"


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
    for quantity, problem in activation_problems("softmax", z, d_a).items():
        assert not problem, f"softmax {quantity}: {problem}"


# losses ---------------------------------------------------------------------------------

def test_every_loss_has_an_oracle() -> None:
    missing = sorted(set(LOSSES) - set(LOSS_ORACLE))
    assert not missing, f"bpnet/oracle.py has no longdouble oracle for {missing}"


@st.composite
def loss_inputs(draw: st.DrawFn, name: str, dtype: str) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray, bool]:
    """(z, a, y, labels) for one loss, at the extremes its targets allow."""
    info = np.finfo(dtype)
    probability = st.one_of(st.sampled_from([0.0, 1.0, 0.5, float(info.eps),
                                             1 - float(info.eps), float(info.smallest_normal),
                                             1e-30, float(info.smallest_subnormal),
                                             float(info.smallest_normal) / 16]),
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
    for quantity, problem in loss_problems(name, reduction, z, a, y, labels).items():
        assert not problem, f"{name} {reduction} {quantity}: {problem}"


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
        a = hit("a", l, softmax(z) if name == "softmax" else oracle_pair(name)[0](z))
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
            d_z = softmax_backward(a, d_a) if name == "softmax" else d_a * oracle_pair(name)[1](z)
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
        if activation(name).kinked:
            true_z = truth[l, "z"]
            near = np.abs(true_z) <= extreme_allowed(true_z, sens[l, "z"], np.dtype(dtype))
            assume(not np.any(near & (t.layers[l]["z"].astype(L) != true_z)))
    assert_close_to_oracle("loss", np.asarray(t.loss), truth[None, "loss"], sens[None, "loss"])
    for (layer, name), true in truth.items():
        if layer is not None:
            assert_close_to_oracle(f"layer {layer} {name}", t.layers[layer][name], true,
                                   sens[layer, name])


def test_half_mse_halves_each_term_before_the_sum() -> None:
    """Two squared errors of 1.21e308 each: their sum overflows float64, the sum of their
    halves (the loss, 1.21e308) does not.  (A speed-up that summed first and halved after
    returned inf here; bpnet check --all's extremes grid found it.)"""
    a, y = np.array([[0.55e154], [0.55e154]]), np.array([[-0.55e154], [-0.55e154]])
    value = LOSSES["half_mse"].value(a, a, y, "sum")
    assert value == pytest.approx((1.1e154) ** 2, rel=1e-15)     # 2 x (1.1e154)**2 / 2
    for name, problem in loss_problems("half_mse", "sum", a, a, y).items():
        assert not problem, f"half_mse {name}: {problem}"
