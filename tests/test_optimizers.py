"""Each optimizer rule against its closed form, derived independently of the step code.

(One-step agreement with torch.optim and optax is the reference packages' suite.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from handwritten import (
    OPTIMIZER_DEFAULTS,
    OPTIMIZERS,
    OptimizerSpec,
    apply_updates,
    init_state,
    step,
    update,
)
from tests.helpers import assert_unchanged, snapshot


def _scalar_params(theta: float) -> list[dict[str, np.ndarray]]:
    return [{"W": np.array([[theta]]), "b": np.array([theta])}]


def _run(opt: OptimizerSpec, theta: float, grads: list[float]) -> float:
    """Apply constant-structure steps with the given scalar gradients; return final W."""
    params = _scalar_params(theta)
    state = init_state(opt, params)
    for g in grads:
        params, state = step(opt, params, _scalar_params(g), state)
    return float(params[0]["W"][0, 0])


finite = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)
nonzero = finite.filter(lambda g: abs(g) > 1e-3)
rates = st.floats(1e-4, 1.0)
moment = st.floats(0.0, 0.99)
momentum = st.floats(0.0, 0.99, exclude_min=True)       # momentum 0 is refused: use sgd


@given(theta=finite, g=finite, lr=rates)
def test_sgd(theta: float, g: float, lr: float) -> None:
    assert _run(OptimizerSpec("sgd", lr), theta, [g]) == theta - lr * g


@given(theta=finite, g=finite, lr=rates, mu=momentum, k=st.integers(1, 6))
def test_momentum_constant_gradient(theta: float, g: float, lr: float, mu: float, k: int) -> None:
    """With a constant g, b_t = g (1 + mu + ... + mu^(t-1)); theta_k = theta - lr sum_t b_t."""
    b = [g * sum(mu**i for i in range(t)) for t in range(1, k + 1)]
    expected = theta - lr * sum(b)
    got = _run(OptimizerSpec("momentum", lr, {"momentum": mu}), theta, [g] * k)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@given(theta=finite, g=finite, lr=rates, mu=momentum, k=st.integers(1, 6))
def test_nesterov_constant_gradient(theta: float, g: float, lr: float, mu: float, k: int) -> None:
    """Nesterov steps by g + mu b_t, with the same b_t as momentum."""
    b = [g * sum(mu**i for i in range(t)) for t in range(1, k + 1)]
    expected = theta - lr * sum(g + mu * bt for bt in b)
    got = _run(OptimizerSpec("nesterov", lr, {"momentum": mu}), theta, [g] * k)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", ["adam", "adamw"])
@given(theta=finite, g=nonzero, lr=rates, k=st.integers(1, 5))
def test_adam_constant_gradient_moves_lr_per_step(name: str, theta: float, g: float, lr: float,
                                                  k: int) -> None:
    """Bias correction makes m_hat = g and v_hat = g**2 exactly for a constant g, so each step
    is lr * g / (|g| + eps): ~lr in the direction -sign(g) (adamw first shrinks theta)."""
    eps, wd = 1e-8, 0.1
    opt = OptimizerSpec(name, lr, {"eps": eps} | ({"weight_decay": wd} if name == "adamw" else {}))
    expected = theta
    for _ in range(k):
        if name == "adamw":
            expected *= 1 - lr * wd
        expected -= lr * g / (abs(g) + eps)
    assert _run(opt, theta, [g] * k) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(theta=finite, g=nonzero, lr=rates, alpha=moment)
def test_rmsprop_first_step(theta: float, g: float, lr: float, alpha: float) -> None:
    """v_1 = (1 - alpha) g**2, so theta_1 = theta - lr g / (sqrt(1 - alpha) |g| + eps)."""
    expected = theta - lr * g / (np.sqrt(1 - alpha) * abs(g) + 1e-8)
    got = _run(OptimizerSpec("rmsprop", lr, {"alpha": alpha}), theta, [g])
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_adam_eps_is_outside_the_square_root() -> None:
    """With g tiny, eps after the sqrt dominates: a step of lr g / (|g| + eps),
    not lr g / sqrt(g**2 + eps)."""
    g, eps, lr = 1e-9, 1e-8, 1.0
    got = _run(OptimizerSpec("adam", lr, {"eps": eps}), 0.0, [g])
    assert got == pytest.approx(-lr * g / (g + eps), rel=1e-12)
    assert got != pytest.approx(-lr * g / np.sqrt(g * g + eps), rel=1e-3)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steps_are_pure_and_keep_dtype(name: str, dtype: type) -> None:
    rng = np.random.default_rng(0)
    params = [{"W": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype)}]
    grads = [{"W": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype)}]
    opt = OptimizerSpec(name, 0.1)
    state = init_state(opt, params)
    _, state = step(opt, params, grads, state)          # non-zero buffers
    before = snapshot(params, grads, state)
    new_params, new_state = step(opt, params, grads, state)
    assert_unchanged(before, params, grads, state)
    assert new_state["t"] == state["t"] + 1
    for p in new_params:
        assert all(v.dtype == dtype for v in p.values())
    for key, buffers in new_state.items():
        if key != "t":
            assert all(v.dtype == dtype for layer in buffers for v in layer.values())


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_defaults_are_torch_defaults(name: str) -> None:
    """torch.optim's defaults, except momentum: torch's SGD default 0 would be plain sgd."""
    torch_defaults = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                      "alpha": 0.99, "weight_decay": 1e-2}
    for key, value in OptimizerSpec(name, 0.1).hyperparams.items():
        assert value == torch_defaults[key]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_apply_updates_in_place_writes_the_same_numbers(name: str) -> None:
    """apply_updates(..., in_place=True) gives bit-for-bit step's params, in params' own arrays,
    and step is exactly update then apply_updates."""
    rng = np.random.default_rng(1)
    params = [{"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}]
    grads = [{"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}]
    opt = OptimizerSpec(name, 0.1)
    _, state = step(opt, params, grads, init_state(opt, params))
    pure, pure_state = step(opt, params, grads, state)
    updates, update_state = update(opt, grads, state, params)
    work = [{k: v.copy() for k, v in p.items()} for p in params]
    arrays = [work[0]["W"], work[0]["b"]]
    in_place = apply_updates(work, updates, in_place=True)
    assert in_place[0]["W"] is arrays[0] and in_place[0]["b"] is arrays[1]
    for k in ("W", "b"):
        np.testing.assert_array_equal(in_place[0][k], pure[0][k])
        np.testing.assert_array_equal(params[0][k] + updates[0][k], pure[0][k])
    assert update_state["t"] == pure_state["t"]


def test_every_optimizer_has_defaults_and_a_rule() -> None:
    """The spec's table of hyperparameters and the rules' registry name the same optimizers."""
    assert set(OPTIMIZER_DEFAULTS) == set(OPTIMIZERS)
