"""Each optimizer rule against its closed form, derived independently of the step code.

(One-step agreement with torch.optim and optax is the reference packages' suite.)
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from handwritten import (
    OPTIMIZER_DEFAULTS,
    OPTIMIZERS,
    LRSchedule,
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


TORCH_CLASSES = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adam": "Adam",
                 "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_defaults_are_torch_defaults(name: str) -> None:
    """Every hyperparameter's default is the default of torch.optim's own signature, except
    momentum for "momentum" and "nesterov": torch's SGD default 0 would be plain sgd."""
    torch = pytest.importorskip("torch")
    signature = inspect.signature(getattr(torch.optim, TORCH_CLASSES[name]))
    torch_defaults = {k: p.default for k, p in signature.parameters.items()}
    if "betas" in torch_defaults:
        torch_defaults["beta1"], torch_defaults["beta2"] = torch_defaults["betas"]
    if name in ("momentum", "nesterov"):
        torch_defaults["momentum"] = 0.9
    for key, value in OptimizerSpec(name, 0.1).hyperparams.items():
        default = torch_defaults[key]
        assert value == default and isinstance(value, bool) == isinstance(default, bool), key


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


# the options: identities that hold exactly, and closed forms --------------------------------

RULES = sorted(OPTIMIZERS)


def _draw(seed: int) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [{"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}]
    grads = [{"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}]
    return params, grads


def _negated(grads: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return [{k: -g for k, g in layer.items()} for layer in grads]


@pytest.mark.parametrize("name", RULES)
@given(seed=st.integers(0, 2**16), decay=st.sampled_from([0.0, 0.3]), steps=st.integers(1, 4))
def test_maximize_is_descent_on_the_negated_gradient(name: str, seed: int, decay: float,
                                                     steps: int) -> None:
    """torch negates g before anything else (the weight decay is added after): maximize on g
    is the same rule on -g, to the last bit, at every step."""
    params, grads = _draw(seed)
    hyper = {"weight_decay": decay} if name != "adamw" else {}
    up = OptimizerSpec(name, 0.05, hyper | {"maximize": True})
    down = OptimizerSpec(name, 0.05, hyper)
    p_up, s_up, p_down, s_down = params, init_state(up, params), params, init_state(down, params)
    for _ in range(steps):
        p_up, s_up = step(up, p_up, grads, s_up)
        p_down, s_down = step(down, p_down, _negated(grads), s_down)
        for k in ("W", "b"):
            np.testing.assert_array_equal(p_up[0][k], p_down[0][k])


@pytest.mark.parametrize("name", sorted(set(RULES) - {"adamw"}))
@given(seed=st.integers(0, 2**16), decay=st.floats(0.01, 1.0))
def test_weight_decay_is_coupled_into_the_gradient(name: str, seed: int, decay: float) -> None:
    """All but adamw: weight_decay adds decay * theta to g, biases included (torch's L2)."""
    params, grads = _draw(seed)
    decayed = [{k: g + decay * params[0][k] for k, g in grads[0].items()}]
    with_decay = OptimizerSpec(name, 0.05, {"weight_decay": decay})
    plain = OptimizerSpec(name, 0.05)
    got, _ = step(with_decay, params, grads, init_state(with_decay, params))
    expected, _ = step(plain, params, decayed, init_state(plain, params))
    for k in ("W", "b"):
        np.testing.assert_array_equal(got[0][k], expected[0][k])


@given(theta=finite, g=finite, lr=rates, mu=momentum, d=st.floats(0.0, 1.0),
       k=st.integers(1, 6))
def test_dampening_damps_every_gradient_but_the_first(theta: float, g: float, lr: float,
                                                      mu: float, d: float, k: int) -> None:
    """torch's first buffer is clone(g), undamped; then b <- mu b + (1 - d) g."""
    b, expected = g, theta - lr * g
    for _ in range(k - 1):
        b = mu * b + (1 - d) * g
        expected -= lr * b
    got = _run(OptimizerSpec("momentum", lr, {"momentum": mu, "dampening": d}), theta, [g] * k)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_amsgrad_divides_by_the_largest_second_moment(name: str) -> None:
    """A large gradient, then a small one: v falls (4.5, then 2.255 with beta2 = 0.5), and
    amsgrad's second step divides by sqrt(4.5 / (1 - beta2**2)), adam's by sqrt(2.255 / ...)."""
    lr, beta1, beta2, eps = 0.1, 0.9, 0.5, 1e-8
    hyper = {"beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": 0.0}
    m1, v1 = (1 - beta1) * 3.0, (1 - beta2) * 9.0
    m2, v2 = beta1 * m1 + (1 - beta1) * 0.1, beta2 * v1 + (1 - beta2) * 0.01
    first = -lr / (1 - beta1) * m1 / (np.sqrt(v1) / np.sqrt(1 - beta2) + eps)
    for amsgrad, v in ((True, max(v1, v2)), (False, v2)):
        second = -lr / (1 - beta1**2) * m2 / (np.sqrt(v) / np.sqrt(1 - beta2**2) + eps)
        got = _run(OptimizerSpec(name, lr, hyper | {"amsgrad": amsgrad}), 0.0, [3.0, 0.1])
        assert got == pytest.approx(first + second, rel=1e-12)


@given(theta=finite, g=nonzero, lr=rates, alpha=st.floats(0.01, 0.99))
def test_centered_rmsprop_first_step(theta: float, g: float, lr: float, alpha: float) -> None:
    """v_1 = (1 - alpha) g**2, gbar_1 = (1 - alpha) g: v_1 - gbar_1**2 = alpha (1 - alpha) g**2."""
    expected = theta - lr * g / (np.sqrt(alpha * (1 - alpha)) * abs(g) + 1e-8)
    got = _run(OptimizerSpec("rmsprop", lr, {"alpha": alpha, "centered": True}), theta, [g])
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(theta=finite, g=nonzero, lr=rates, alpha=moment, mu=st.floats(0.01, 0.99))
def test_rmsprop_momentum_accumulates_the_scaled_gradient(theta: float, g: float, lr: float,
                                                          alpha: float, mu: float) -> None:
    """b_1 = g / d_1, b_2 = mu b_1 + g / d_2, with d_t = sqrt(1 - alpha**t) |g| + eps."""
    d1, d2 = (np.sqrt(1 - alpha**t) * abs(g) + 1e-8 for t in (1, 2))
    b1 = g / d1
    b2 = mu * b1 + g / d2
    got = _run(OptimizerSpec("rmsprop", lr, {"alpha": alpha, "momentum": mu}), theta, [g, g])
    assert got == pytest.approx(theta - lr * (b1 + b2), rel=1e-12, abs=1e-12)


@given(theta=finite, g=finite, lr=rates, decay=st.floats(0.0, 1.0), s0=st.floats(0.0, 2.0),
       k=st.integers(1, 6))
def test_adagrad_constant_gradient(theta: float, g: float, lr: float, decay: float, s0: float,
                                   k: int) -> None:
    """s_t = s0 + t g**2; step t moves by lr / (1 + (t - 1) lr_decay) g / (sqrt(s_t) + eps)."""
    eps = 1e-10
    expected = theta - sum(lr / (1 + (t - 1) * decay) * g / (np.sqrt(s0 + t * g * g) + eps)
                           for t in range(1, k + 1))
    opt = OptimizerSpec("adagrad", lr, {"lr_decay": decay, "initial_accumulator_value": s0})
    assert _run(opt, theta, [g] * k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@given(seed=st.integers(0, 2**16), limit=st.floats(0.05, 10.0))
def test_clip_norm_scales_every_gradient_by_one_factor(seed: int, limit: float) -> None:
    """torch's clip_grad_norm_: g * min(1, limit / (||g|| + 1e-6)), ||g|| over all leaves."""
    params, grads = _draw(seed)
    norm = np.sqrt(sum(np.sum(g**2) for g in grads[0].values()))
    factor = min(1.0, limit / (norm + 1e-6))
    got, _ = step(OptimizerSpec("sgd", 1.0, clip_norm=limit), params, grads, {"t": 0})
    for k in ("W", "b"):
        np.testing.assert_allclose(got[0][k], params[0][k] - factor * grads[0][k], rtol=1e-14,
                                   atol=1e-15)


@given(seed=st.integers(0, 2**16), limit=st.floats(0.05, 2.0))
def test_clip_value_clips_each_entry(seed: int, limit: float) -> None:
    params, grads = _draw(seed)
    got, _ = step(OptimizerSpec("sgd", 1.0, clip_value=limit), params, grads, {"t": 0})
    for k in ("W", "b"):
        np.testing.assert_array_equal(got[0][k],
                                      params[0][k] - np.clip(grads[0][k], -limit, limit))


def test_a_schedule_sets_each_steps_learning_rate() -> None:
    """sgd with g = 1 moves by exactly lr_(t-1) at step t: the schedule, one value per step."""
    schedule = LRSchedule("step", {"step_size": 2, "gamma": 0.5}, warmup=2, warmup_start=0.5)
    opt = OptimizerSpec("sgd", 0.8, schedule=schedule)
    params, state, moves = _scalar_params(0.0), {"t": 0}, []
    for _ in range(6):
        new, state = step(opt, params, _scalar_params(1.0), state)
        moves.append(float(params[0]["W"][0, 0] - new[0]["W"][0, 0]))
        params = new
    # warm-up 0.4, 0.6; then 0.8, 0.8, 0.4, 0.4
    assert moves == pytest.approx([0.4, 0.6, 0.8, 0.8, 0.4, 0.4], rel=1e-15)
