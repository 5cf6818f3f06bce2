"""Each loss's gradient against central finite differences, and the reductions' meaning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpnet.finite_diff import central_diff_leaf
from bpnet.tolerances import FD_ATOL_SCALE, FD_RTOL
from handwritten.activations import ACTIVATIONS
from handwritten.losses import LOSSES, REDUCTIONS
from tests.helpers import assert_leaf_close

NAMES = sorted(LOSSES)


def _case(name: str, rng: np.random.Generator, batch: int, n_out: int, labels: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and targets y valid for the loss."""
    z = rng.uniform(-3, 3, (batch, n_out))
    kind = LOSSES[name].targets
    if kind == "class":
        idx = rng.integers(0, n_out, batch)
        # labels, one-hot rows, or soft rows of class probabilities (each a valid target)
        y = (idx if labels else np.eye(n_out)[idx] if rng.random() < 0.5
             else rng.dirichlet(np.ones(n_out), batch))
    elif kind == "probability":
        y = rng.uniform(0, 1, (batch, n_out))
    else:
        y = rng.uniform(-1, 1, (batch, n_out))
    return z, y


def _activation(name: str) -> str:
    """An output activation the loss accepts; sigmoid for bce.

    bce's third derivative grows like 1/a**3, so central differences need a kept
    away from 0 and 1: sigmoid of z in [-3, 3] stays in [0.047, 0.953], where the
    truncation error h**2/6 * 2/a**3 is ~1e-7 absolute, far below FD_RTOL * |d_a|.
    """
    accepted = LOSSES[name].output_activations
    return sorted(accepted)[0] if accepted else "tanh"


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", NAMES)
@given(batch=st.integers(1, 6), n_out=st.integers(2, 5), labels=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_grad_matches_finite_differences(name: str, reduction: str, batch: int, n_out: int,
                                         labels: bool, seed: int) -> None:
    """The gradient is d_a of the loss (plain) or d_z (fused), multi-output included."""
    loss = LOSSES[name]
    act = ACTIVATIONS[_activation(name)]
    z, y = _case(name, np.random.default_rng(seed), batch, n_out, labels)
    a = act.forward(z)
    wrt = z if loss.fused_with else a

    def f() -> tuple[float, int]:
        # fused: a is recomputed from the perturbed z; plain: a itself is perturbed
        a_now = act.forward(z) if loss.fused_with else a
        return float(loss.value(z, a_now, y, reduction)), 0

    fd, _ = central_diff_leaf(f, wrt)
    grad = loss.grad(z, act.forward(z), y, reduction)
    assert_leaf_close(grad, fd, f"{name} ({reduction}) gradient", rtol=FD_RTOL,
                      atol=FD_ATOL_SCALE * max(1.0, abs(f()[0])))


@pytest.mark.parametrize("name", NAMES)
def test_mean_is_sum_over_the_right_count(name: str) -> None:
    """"mean" = "sum" / (batch * n_out) for elementwise losses, / batch for softmax CE."""
    batch, n_out = 4, 3
    z, y = _case(name, np.random.default_rng(1), batch, n_out, labels=False)
    a = ACTIVATIONS[_activation(name)].forward(z)
    loss = LOSSES[name]
    count = batch if name == "softmax_cross_entropy" else batch * n_out
    assert loss.value(z, a, y, "mean") == pytest.approx(loss.value(z, a, y, "sum") / count,
                                                        rel=1e-14)
    np.testing.assert_allclose(loss.grad(z, a, y, "mean") * count, loss.grad(z, a, y, "sum"),
                               rtol=1e-14)


def test_multi_output_gradient_is_gradient_of_reported_loss() -> None:
    """scikit-learn's MLP bug class: with n_out outputs and "mean", d_a carries 1/(batch n_out).

    Checked as a directional derivative of the reported loss, independent of the FD helper."""
    rng = np.random.default_rng(3)
    a, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    for name in ("half_mse", "mse"):
        loss = LOSSES[name]
        direction = rng.normal(size=a.shape)
        t = 1e-6
        slope = (loss.value(a, a + t * direction, y, "mean")
                 - loss.value(a, a - t * direction, y, "mean")) / (2 * t)
        assert np.sum(loss.grad(a, a, y, "mean") * direction) == pytest.approx(slope, rel=1e-7)


def test_softmax_ce_integer_labels_equal_one_hot() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6, 4))
    idx = rng.integers(0, 4, 6)
    a = ACTIVATIONS["softmax"].forward(z)
    loss = LOSSES["softmax_cross_entropy"]
    for reduction in REDUCTIONS:
        assert loss.value(z, a, idx, reduction) == loss.value(z, a, np.eye(4)[idx], reduction)
        np.testing.assert_array_equal(loss.grad(z, a, idx, reduction),
                                      loss.grad(z, a, np.eye(4)[idx], reduction))


def test_fused_losses_equal_their_unfused_forms_and_stay_finite() -> None:
    """bce_with_logits(z) = bce(sigmoid(z)), softmax CE = -sum y log softmax(z), where both
    are finite; at extreme logits the fused forms stay finite where the plain forms do not."""
    rng = np.random.default_rng(5)
    z, y = rng.uniform(-5, 5, (4, 3)), rng.uniform(0, 1, (4, 3))
    s = ACTIVATIONS["sigmoid"].forward(z)
    assert LOSSES["bce_with_logits"].value(z, s, y, "sum") == pytest.approx(
        LOSSES["bce"].value(z, s, y, "sum"), rel=1e-13)
    p = ACTIVATIONS["softmax"].forward(z)
    onehot = np.eye(3)[rng.integers(0, 3, 4)]
    assert LOSSES["softmax_cross_entropy"].value(z, p, onehot, "sum") == pytest.approx(
        -np.sum(onehot * np.log(p)), rel=1e-13)

    big = np.array([[800.0, -800.0]])
    target = np.array([[0.0, 1.0]])
    for name, act in (("bce_with_logits", "sigmoid"), ("softmax_cross_entropy", "softmax")):
        a = ACTIVATIONS[act].forward(big)
        value = LOSSES[name].value(big, a, target, "sum")
        # both: the wrong side by 800 in each of two logits (or classes) -> 1600
        assert np.isfinite(value) and value == pytest.approx(1600.0, rel=1e-12)
        assert np.isfinite(LOSSES[name].grad(big, a, target, "sum")).all()


@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out(name: str) -> None:
    z, y = _case(name, np.random.default_rng(6), 3, 3, labels=False)
    z, y = z.astype(np.float32), y.astype(np.float32)
    a = ACTIVATIONS[_activation(name)].forward(z)
    value = LOSSES[name].value(z, a, y, "mean")
    assert value.dtype == np.float32
    assert LOSSES[name].grad(z, a, y, "mean").dtype == np.float32


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_of_a_saturated_correct_prediction_is_zero_with_a_finite_gradient(dtype: str) -> None:
    """a = y = 1 and a = y = 0 cost 0 (0 log 0 = 0), with d_a = -1 and +1 (the limits of
    -y/a + (1-y)/(1-a)), in both dtypes, without a RuntimeWarning; torch gives loss 0 too.
    A sigmoid saturates to exactly 1.0 from z = 17 in float32, 37 in float64."""
    bce = LOSSES["bce"]
    a = np.array([[1.0, 0.0]], dtype=dtype)
    assert bce.value(None, a, a.copy(), "sum") == 0
    np.testing.assert_array_equal(bce.grad(None, a, a.copy(), "sum"), [[-1.0, 1.0]])
    z = np.array([[17.0 if dtype == "float32" else 37.0]], dtype=dtype)
    out = ACTIVATIONS["sigmoid"].forward(z)
    assert out[0, 0] == 1.0
    assert np.isfinite(bce.grad(z, out, np.ones_like(out), "mean")).all()


def test_bce_of_a_wrong_saturated_prediction_is_infinite() -> None:
    """a = 1 where y = 0 (or a = 0 where y = 1): the true loss is inf, and so is the gradient
    (torch clamps the log at -100 instead and reports 100); training then reports divergence."""
    bce = LOSSES["bce"]
    a, y = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert bce.value(None, a, y, "sum") == np.inf
    np.testing.assert_array_equal(bce.grad(None, a, y, "sum"), [[np.inf, -np.inf]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", [n for n in NAMES if LOSSES[n].value_and_grad is not None])
@given(batch=st.integers(1, 6), n_out=st.integers(1, 5),
       size=st.sampled_from(["unit", "tiny", "huge"]), seed=st.integers(0, 2**32 - 1))
def test_value_and_grad_are_value_and_grad_bit_for_bit(name: str, reduction: str, dtype: str,
                                                       batch: int, n_out: int, size: str,
                                                       seed: int) -> None:
    """A loss's fused ``value_and_grad`` (what ``train`` calls at every step) gives exactly
    what ``value`` and ``grad`` give (what loss_and_grads, trace and the references are
    held to), also where the squares underflow ("tiny": |a - y| ~ sqrt of the smallest
    normal) or overflow ("huge": ~ sqrt of the largest float), in either dtype."""
    loss = LOSSES[name]
    assert loss.value_and_grad is not None
    info = np.finfo(dtype)
    scale = {"unit": 1.0, "tiny": np.sqrt(info.tiny), "huge": np.sqrt(info.max)}[size]
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (batch, n_out)).astype(dtype) * dtype_scalar(dtype, scale)
    y = rng.uniform(-1, 1, (batch, n_out)).astype(dtype) * dtype_scalar(dtype, scale)
    with np.errstate(over="ignore"):             # an inf is a value both must agree on
        value, grad = loss.value_and_grad(a, a, y, reduction)
        expected = loss.value(a, a, y, reduction), loss.grad(a, a, y, reduction)
    assert value.dtype == expected[0].dtype and grad.dtype == expected[1].dtype
    np.testing.assert_array_equal(value, expected[0])
    np.testing.assert_array_equal(grad, expected[1])


def dtype_scalar(dtype: str, value: float) -> np.floating:
    return np.dtype(dtype).type(value)
