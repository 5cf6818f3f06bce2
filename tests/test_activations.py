"""Each activation's hand-derived backward against central finite differences, and its numerics."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpnet.finite_diff import central_diff_leaf
from bpnet.tolerances import FD_ATOL_SCALE, FD_RTOL
from handwritten.activations import (
    ACTIVATIONS,
    PARAMETERS,
    SELU_ALPHA,
    SELU_SCALE,
    activation,
    sigmoid,
)
from tests.helpers import assert_leaf_close

NAMES = sorted(ACTIVATIONS)


@pytest.mark.parametrize("name", NAMES)
@given(batch=st.integers(1, 4), width=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_backward_matches_finite_differences(name: str, batch: int, width: int, seed: int) -> None:
    """d_z from the backward equals d/dz of sum(d_a * f(z)), by central differences."""
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(seed)
    z = rng.uniform(-4, 4, (batch, width))
    if ACTIVATIONS[name].kinked:
        z = np.where(np.abs(z) < 1e-3, 1e-3, z)   # well clear of the kink (h ~ 6e-6)
    d_a = rng.uniform(-1, 1, (batch, width))

    def f() -> tuple[float, bytes]:
        return float(np.sum(d_a * act.forward(z))), (z > 0).tobytes()

    fd, valid = central_diff_leaf(f, z)
    d_z = act.backward(z, act.forward(z), d_a)
    assert valid.all()
    assert_leaf_close(d_z, fd, f"{name} d_z", rtol=FD_RTOL,
                      atol=FD_ATOL_SCALE * max(1.0, abs(f()[0])))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_shape_preserved(name: str, dtype: type) -> None:
    z = np.linspace(-3, 3, 12, dtype=dtype).reshape(3, 4)
    a = ACTIVATIONS[name].forward(z)
    d_z = ACTIVATIONS[name].backward(z, a, np.ones_like(z))
    assert a.dtype == dtype and d_z.dtype == dtype
    assert a.shape == z.shape and d_z.shape == z.shape


@pytest.mark.parametrize("name", NAMES)
def test_no_overflow_warning_or_nan_for_large_inputs(name: str) -> None:
    """Every activation stays finite and silent for |z| up to 1e4 (the issue's range).

    gelu's z**3 and identity are unbounded by definition but must still be finite.
    """
    z = np.array([[-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = ACTIVATIONS[name].forward(z)
        d_z = ACTIVATIONS[name].backward(z, a, np.ones_like(z))
    assert np.isfinite(a).all() and np.isfinite(d_z).all()


def test_sigmoid_limits_and_symmetry() -> None:
    """sigmoid(0) = 1/2, sigmoid(-z) = 1 - sigmoid(z), saturation at +-1e4 without NaN."""
    z = np.array([-1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4])
    s = sigmoid(z)
    assert s[3] == 0.5
    assert s[0] == 0.0 and s[-1] == 1.0
    # 1 - s is rounded to the spacing of numbers near 1 (eps), so that is the tolerance
    np.testing.assert_allclose(sigmoid(-z), 1 - s, rtol=0, atol=np.finfo(float).eps)


def test_sigmoid_is_the_blogs_formula_without_its_overflow_warning() -> None:
    """Bit for bit the blog's 1/(1+exp(-z)) wherever that does not overflow; 0 (its limit)
    where it does, silently; and a few ulps from the split formula exp(z)/(1+exp(z)) for z < 0
    (so the silenced overflow costs no accuracy)."""
    z = np.linspace(-700, 700, 14001)
    np.testing.assert_array_equal(sigmoid(z), 1 / (1 + np.exp(-z)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sigmoid(np.array([-1e4, -710.0]))[0] == 0.0
        assert sigmoid(np.array([-100.0], dtype=np.float32))[0] == 0.0
    negative = np.linspace(-700, -1e-3, 5000)
    split = np.exp(negative) / (1 + np.exp(negative))
    np.testing.assert_allclose(sigmoid(negative), split, rtol=4 * np.finfo(float).eps, atol=0)


def test_derivative_values_worked_by_hand() -> None:
    """Derivatives at points where they are known in closed form."""
    z = np.array([[0.0]])
    one = np.ones_like(z)

    def grad(name: str, at: np.ndarray = z) -> float:
        act = ACTIVATIONS[name]
        return float(act.backward(at, act.forward(at), one)[0, 0])

    assert grad("sigmoid") == 0.25            # s(1 - s) with s = 1/2
    assert grad("tanh") == 1.0                # 1 - tanh(0)**2
    assert grad("relu") == 0.0                # torch's convention at the kink
    assert grad("leaky_relu") == 0.01         # the slope, at and below the kink
    assert grad("softplus") == 0.5            # sigmoid(0)
    assert grad("gelu") == 0.5                # (1 + tanh 0)/2 + 0
    assert grad("silu") == 0.5                # s(0) + 0 * s(0)(1 - s(0))
    assert grad("identity") == 1.0
    assert grad("elu", np.array([[-1.0]])) == pytest.approx(np.exp(-1.0), rel=1e-15)


def test_softmax_rows_sum_to_one_and_backward_is_jvp() -> None:
    """softmax rows are distributions; its backward equals d_a @ J with the explicit Jacobian."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=(3, 5)) * 10
    act = ACTIVATIONS["softmax"]
    a = act.forward(z)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    d_a = rng.normal(size=z.shape)
    for row in range(z.shape[0]):
        jac = np.diag(a[row]) - np.outer(a[row], a[row])      # da_i/dz_j, symmetric
        np.testing.assert_allclose(act.backward(z, a, d_a)[row], d_a[row] @ jac,
                                   rtol=1e-12, atol=1e-15)


def test_softmax_is_stable_per_row() -> None:
    """Each row is shifted by its own maximum: rows of very different scales stay finite
    (a shift by the global maximum would underflow the second row to 0/0)."""
    z = np.array([[0.0, 1.0, 2.0], [-1000.0, -1001.0, -999.0]])
    a = ACTIVATIONS["softmax"].forward(z)
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a[1], ACTIVATIONS["softmax"].forward(z[1:] + 1000)[0],
                               rtol=1e-15)


def test_swish_is_silu() -> None:
    assert ACTIVATIONS["swish"] is ACTIVATIONS["silu"]


# parametrised activations: any slope or alpha, as numpy-ml draws them ----------------------


@pytest.mark.parametrize("base", sorted(PARAMETERS))
@given(value=st.floats(0.01, 10.0), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_parametrised_backward_matches_finite_differences(base: str, value: float, seed: int,
                                                          dtype: type) -> None:
    """leaky_relu's slope and elu's and celu's alpha drawn from U(0.01, 10) (numpy-ml's
    range): the backward still equals central differences (float64), and float32 stays
    float32."""
    act = activation(f"{base}:{value!r}")
    rng = np.random.default_rng(seed)
    z = rng.uniform(-4, 4, (3, 4))
    z = np.where(np.abs(z) < 1e-3, 1e-3, z)         # clear of the kink at 0
    d_a = rng.uniform(-1, 1, (3, 4))

    def f() -> tuple[float, bytes]:
        return float(np.sum(d_a * act.forward(z))), (z > 0).tobytes()

    fd, valid = central_diff_leaf(f, z)
    assert valid.all()
    assert_leaf_close(act.backward(z, act.forward(z), d_a), fd, f"{base}:{value} d_z",
                      rtol=FD_RTOL, atol=FD_ATOL_SCALE * max(1.0, abs(f()[0])))
    z32 = z.astype(dtype)
    assert act.backward(z32, act.forward(z32), d_a.astype(dtype)).dtype == dtype


@pytest.mark.parametrize("base", sorted(PARAMETERS))
def test_the_default_parameter_is_the_plain_name(base: str) -> None:
    z = np.linspace(-40, 5, 46).reshape(2, 23)
    plain, named = ACTIVATIONS[base], activation(f"{base}:{PARAMETERS[base].default}")
    np.testing.assert_array_equal(plain.forward(z), named.forward(z))
    np.testing.assert_array_equal(plain.backward(z, plain.forward(z), z),
                                  named.backward(z, named.forward(z), z))
    assert activation(base) is plain


def test_celu_is_elu_of_z_over_alpha_scaled_and_selu_is_scaled_elu() -> None:
    """The definitions, by way of elu: celu(z; alpha) = alpha elu(z / alpha; 1) and
    selu(z) = scale elu(z; alpha) with torch's constants; their derivatives likewise."""
    z = np.linspace(-30, 5, 71).reshape(1, 71)
    for alpha in (0.3, 1.0, 4.0):
        celu = activation(f"celu:{alpha}")
        elu = ACTIVATIONS["elu"]
        np.testing.assert_allclose(celu.forward(z), alpha * elu.forward(z / alpha), rtol=1e-15)
        np.testing.assert_allclose(celu.backward(z, celu.forward(z), np.ones_like(z)),
                                   elu.backward(z / alpha, elu.forward(z / alpha),
                                                np.ones_like(z)), rtol=1e-15)
    selu, elu_a = ACTIVATIONS["selu"], activation(f"elu:{SELU_ALPHA!r}")
    np.testing.assert_allclose(selu.forward(z), SELU_SCALE * elu_a.forward(z), rtol=1e-15)
    np.testing.assert_allclose(selu.backward(z, selu.forward(z), np.ones_like(z)),
                               SELU_SCALE * elu_a.backward(z, elu_a.forward(z), np.ones_like(z)),
                               rtol=1e-15)


@pytest.mark.parametrize(("name", "words"), [
    ("tanh:0.5", "activation 'tanh' takes no parameter"),
    ("celu:0", "celu's alpha must be a positive finite number"),
    ("leaky_relu:nan", "leaky_relu's slope must be a finite number"),
    ("elu:", "elu's alpha must be a finite number"),
    ("reluu", "unknown activation 'reluu'"),
])
def test_bad_parameters_are_refused_by_name(name: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        activation(name)
