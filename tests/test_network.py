"""The whole network: gradients against finite differences, the trace, one example by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given

from bpnet.finite_diff import network_grads
from bpnet.tolerances import FD_ATOL_SCALE, FD_RTOL
from handwritten import (
    INIT_SCHEMES,
    NetworkSpec,
    init_params,
    loss_and_grads,
    predict,
    trace,
)
from tests.helpers import assert_leaf_close, assert_unchanged, snapshot
from tests.strategies import Problem, problems, specs


@given(problems(max_depth=3, max_width=6, max_batch=8))
def test_grads_match_finite_differences(p: Problem) -> None:
    """Every dL/dW and dL/db of any drawn network equals its central difference (float64)."""
    if p.spec.loss == "bce":
        # bce's third derivative ~ 2/a**3: keep a where central differences are accurate
        a = predict(p.spec, p.params, p.x)
        assume(min(a.min(), (1 - a).min()) >= 0.05)
    loss, grads = loss_and_grads(p.spec, p.params, p.x, p.y)
    fd, masks = network_grads(p.spec, p.params, p.x, p.y)
    n_valid = sum(int(m.sum()) for layer in masks for m in layer.values())
    n_all = sum(m.size for layer in masks for m in layer.values())
    assume(n_valid >= n_all // 2)     # a coordinate crossing a relu kink is not comparable
    atol = FD_ATOL_SCALE * max(1.0, abs(float(loss)))
    for l, (g, f, m) in enumerate(zip(grads, fd, masks)):
        for key in ("W", "b"):
            assert_leaf_close(g[key], f[key], f"{p.spec} layer {l} d_{key}", rtol=FD_RTOL,
                              atol=atol, mask=m[key])


@given(problems(max_batch=8))
def test_trace_is_consistent_with_loss_and_grads(p: Problem) -> None:
    """trace's loss, d_W and d_b are loss_and_grads' exactly; z and a chain layer to layer."""
    loss, grads = loss_and_grads(p.spec, p.params, p.x, p.y)
    t = trace(p.spec, p.params, p.x, p.y)
    assert t.loss == loss
    a_prev = p.x
    for l, (layer, g, params) in enumerate(zip(t.layers, grads, p.params)):
        np.testing.assert_array_equal(layer["d_W"], g["W"])
        np.testing.assert_array_equal(layer["d_b"], g["b"])
        np.testing.assert_array_equal(layer["z"], a_prev @ params["W"] + params["b"])
        a_prev = layer["a"]
        fused_output = l == p.spec.n_layers - 1 and p.spec.loss in (
            "bce_with_logits", "softmax_cross_entropy")
        expected = {"z", "a", "d_z", "d_W", "d_b"} | (set() if fused_output else {"d_a"})
        assert set(layer) == expected
    np.testing.assert_array_equal(a_prev, predict(p.spec, p.params, p.x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(p=problems(max_batch=8))
def test_dtype_in_is_dtype_out_and_inputs_untouched(dtype: str, p: Problem) -> None:
    p = p.astype(dtype)
    params, x, y = p.params, p.x, p.y
    before = snapshot(params, x, y)
    t = trace(p.spec, params, x, y)
    assert t.loss.dtype == dtype
    for layer in t.layers:
        for name, value in layer.items():
            assert value.dtype == dtype, f"{name} is {value.dtype}"
    assert_unchanged(before, params, x, y)


def test_worked_by_hand() -> None:
    """A (1, 1, 1) relu/identity network, every quantity computed with pencil and paper.

        x = 1, W1 = 2, b1 = 0.5, W2 = 3, b2 = -1, y = 1, half_mse, sum
        z1 = 1*2 + 0.5 = 2.5          a1 = relu(2.5) = 2.5
        z2 = 2.5*3 - 1 = 6.5          a2 = 6.5
        L  = (6.5 - 1)**2 / 2 = 15.125
        d_a2 = a2 - y = 5.5           d_z2 = 5.5 (identity)
        d_W2 = a1 * d_z2 = 13.75      d_b2 = 5.5
        d_a1 = d_z2 * W2 = 16.5       d_z1 = 16.5 (z1 > 0)
        d_W1 = x * d_z1 = 16.5        d_b1 = 16.5
    """
    spec = NetworkSpec((1, 1, 1), ("relu", "identity"), "half_mse", "sum")
    params = [{"W": np.array([[2.0]]), "b": np.array([0.5])},
              {"W": np.array([[3.0]]), "b": np.array([-1.0])}]
    t = trace(spec, params, np.array([[1.0]]), np.array([[1.0]]))
    assert t.loss == 15.125
    expected = [
        {"z": 2.5, "a": 2.5, "d_a": 16.5, "d_z": 16.5, "d_W": 16.5, "d_b": 16.5},
        {"z": 6.5, "a": 6.5, "d_a": 5.5, "d_z": 5.5, "d_W": 13.75, "d_b": 5.5},
    ]
    for l, layer in enumerate(expected):
        for name, value in layer.items():
            assert t.layers[l][name].item() == value, f"layer {l} {name}"


def test_weight_decay_adds_half_lambda_w_squared_and_lambda_w() -> None:
    rng = np.random.default_rng(2)
    base = NetworkSpec((3, 4, 2), ("tanh", "identity"), "mse", "mean")
    decayed = NetworkSpec((3, 4, 2), ("tanh", "identity"), "mse", "mean", weight_decay=0.3)
    params = init_params(base, rng, "glorot_normal")
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    l0, g0 = loss_and_grads(base, params, x, y)
    l1, g1 = loss_and_grads(decayed, params, x, y)
    penalty = 0.3 / 2 * sum(np.sum(p["W"] ** 2) for p in params)
    assert l1 == pytest.approx(l0 + penalty, rel=1e-14)
    for a, b, p in zip(g0, g1, params):
        np.testing.assert_allclose(b["W"], a["W"] + 0.3 * p["W"], rtol=1e-14)
        np.testing.assert_array_equal(b["b"], a["b"])


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_init_schemes_have_the_documented_spread(scheme: str) -> None:
    """Sample std of W within sampling error of the scheme's std; biases zero; seeded."""
    spec = NetworkSpec((200, 300, 100), ("relu", "identity"))
    params = init_params(spec, np.random.default_rng(0), scheme)
    for fan_in, fan_out, p in zip((200, 300), (300, 100), params):
        expected = {"blog": 1.0,
                    "glorot_uniform": np.sqrt(6 / (fan_in + fan_out)) / np.sqrt(3),
                    "glorot_normal": np.sqrt(2 / (fan_in + fan_out)),
                    "he_normal": np.sqrt(2 / fan_in)}[scheme]
        # the std of n draws has relative standard error ~ 1/sqrt(2n) < 0.2%; 2% is 10 sigma
        assert p["W"].std() == pytest.approx(expected, rel=0.02)
        assert p["W"].shape == (fan_in, fan_out) and not p["b"].any()
    again = init_params(spec, np.random.default_rng(0), scheme)
    assert all(np.array_equal(a["W"], b["W"]) for a, b in zip(params, again))


def test_init_float32_is_float64_draw_rounded() -> None:
    spec = NetworkSpec((4, 3), ("identity",))
    p64 = init_params(spec, np.random.default_rng(9), "he_normal", np.float64)
    p32 = init_params(spec, np.random.default_rng(9), "he_normal", np.float32)
    assert p32[0]["W"].dtype == np.float32
    np.testing.assert_array_equal(p32[0]["W"], p64[0]["W"].astype(np.float32))


@given(specs(max_depth=4, max_width=16))
def test_params_and_grads_share_one_structure(spec: NetworkSpec) -> None:
    rng = np.random.default_rng(0)
    params = init_params(spec, rng, "glorot_uniform")
    x = rng.normal(size=(3, spec.layer_sizes[0]))
    from bpnet.problems import make_targets
    y = make_targets(spec, rng, 3, np.float64)
    _, grads = loss_and_grads(spec, params, x, y)
    assert len(grads) == len(params)
    for g, p in zip(grads, params):
        assert set(g) == {"W", "b"}
        assert all(g[k].shape == p[k].shape and g[k].dtype == p[k].dtype for k in p)
