"""Optimizers: each rule a pure step, (params, grads, state) -> (params, state).

Every rule follows torch.optim's semantics exactly (dampening 0, no maximize, no
amsgrad, no centering), so it can be checked against torch.optim and optax.
For a parameter theta with gradient g at step t = 1, 2, ...:

    sgd        theta <- theta - lr * g
    momentum   b <- mu * b + g;                    theta <- theta - lr * b
    nesterov   b <- mu * b + g;                    theta <- theta - lr * (g + mu * b)
    adam       m <- beta1 * m + (1 - beta1) * g
               v <- beta2 * v + (1 - beta2) * g**2
               theta <- theta - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    adamw      theta <- theta * (1 - lr * weight_decay), then the adam step
    rmsprop    v <- alpha * v + (1 - alpha) * g**2;  theta <- theta - lr * g / (sqrt(v) + eps)

Buffers start at zero, so momentum's first b is g, as torch's clone(g).  In
adam and rmsprop eps is added *after* the square root (torch; optax's rmsprop
needs ``eps_in_sqrt=False`` for this).  An L2 penalty that is part of the loss
belongs in ``NetworkSpec.weight_decay``; adamw's decay is decoupled from the
gradient and applies to every parameter, biases included, as in torch.

State is a dict: ``"t"`` (steps taken) and one params-shaped list of buffers per
name (``"b"`` for momentum, ``"m"`` and ``"v"`` for adam, ``"v"`` for rmsprop).
Steps never modify their arguments, except ``out``: given params-shaped arrays
(``out=params`` included), the new params are written into them instead of into
fresh arrays -- training does this on its private copy to save a set of params
per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from handwritten import _checks
from handwritten.network import Params

State = dict[str, Any]
Hyper = Mapping[str, float]


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer: its name, learning rate and hyperparameters, validated.

    Missing hyperparameters take torch.optim's defaults (see ``OPTIMIZERS``);
    unknown names and out-of-range values are a ``ValueError``.

    Examples
    --------
    >>> OptimizerSpec("adam", lr=1e-3, hyperparams={"beta2": 0.99}).hyperparams["beta1"]
    0.9
    """

    name: str
    lr: float
    hyperparams: Hyper = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer name is unknown: {self.name!r}; "
                             f"expected one of {sorted(OPTIMIZERS)}")
        lr = _checks.check_real("lr", self.lr, low=0.0, low_open=True)
        rule = OPTIMIZERS[self.name]
        if not isinstance(self.hyperparams, Mapping):
            raise TypeError(f"hyperparams must be a mapping, got {type(self.hyperparams).__name__}")
        unknown = set(self.hyperparams) - set(rule.defaults)
        if unknown:
            raise ValueError(f"hyperparams {sorted(unknown)} are unknown for {self.name!r}; "
                             f"it takes {sorted(rule.defaults) or 'none'}")
        hyper = {**rule.defaults, **self.hyperparams}
        for key, value in hyper.items():
            low, high, low_open = _RANGES[key]
            hyper[key] = _checks.check_real(key, value, low=low, high=high, low_open=low_open)
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "hyperparams", hyper)


# (low, high, low_open); high is always open
_RANGES: dict[str, tuple[float, float, bool]] = {
    "momentum": (0.0, 1.0, True),      # 0 would be plain sgd (and torch refuses nesterov at 0)
    "beta1": (0.0, 1.0, False),
    "beta2": (0.0, 1.0, False),
    "alpha": (0.0, 1.0, False),
    "eps": (0.0, np.inf, True),
    "weight_decay": (0.0, np.inf, False),
}


def _zeros_like(params: Params) -> Params:
    return [{k: np.zeros_like(v) for k, v in p.items()} for p in params]


def _leaves(*trees: Params) -> Any:
    """Walk params-shaped lists together, yielding (layer, key, leaf, leaf, ...)."""
    for layer, first in enumerate(trees[0]):
        for key in first:
            yield (layer, key, *(tree[layer][key] for tree in trees))


def _empty_like(params: Params) -> Params:
    return [{} for _ in params]


def _into(out: Params | None, l: int, k: str, fresh: Any) -> Any:
    """Where the new value of params[l][k] goes: out's array, else a fresh temporary."""
    return fresh if out is None else out[l][k]


# sgd -------------------------------------------------------------------------


def sgd_init(params: Params) -> State:
    """No buffers: only the step count."""
    return {"t": 0}


def sgd_step(params: Params, grads: Params, state: State, lr: float, hyper: Hyper,
             out: Params | None = None) -> tuple[Params, State]:
    """theta <- theta - lr * g."""
    new = _empty_like(params)
    for l, k, theta, g in _leaves(params, grads):
        update = lr * g                                     # a fresh array, reused below
        new[l][k] = np.subtract(theta, update, out=_into(out, l, k, update))
    return new, {"t": state["t"] + 1}


# momentum and nesterov (torch.optim.SGD, dampening 0) ------------------------


def momentum_init(params: Params) -> State:
    """Velocity buffer b = 0 for every parameter."""
    return {"t": 0, "b": _zeros_like(params)}


def momentum_step(params: Params, grads: Params, state: State, lr: float, hyper: Hyper,
                  out: Params | None = None) -> tuple[Params, State]:
    """b <- mu * b + g;  theta <- theta - lr * b    (mu = hyper["momentum"])."""
    mu = hyper["momentum"]
    new, new_b = _empty_like(params), _empty_like(params)
    for l, k, theta, g, b in _leaves(params, grads, state["b"]):
        new_b[l][k] = mu * b + g
        new[l][k] = np.subtract(theta, lr * new_b[l][k], out=_into(out, l, k, None))
    return new, {"t": state["t"] + 1, "b": new_b}


def nesterov_step(params: Params, grads: Params, state: State, lr: float, hyper: Hyper,
                  out: Params | None = None) -> tuple[Params, State]:
    """b <- mu * b + g;  theta <- theta - lr * (g + mu * b)    (look-ahead gradient)."""
    mu = hyper["momentum"]
    new, new_b = _empty_like(params), _empty_like(params)
    for l, k, theta, g, b in _leaves(params, grads, state["b"]):
        new_b[l][k] = mu * b + g
        new[l][k] = np.subtract(theta, lr * (g + mu * new_b[l][k]), out=_into(out, l, k, None))
    return new, {"t": state["t"] + 1, "b": new_b}


# adam and adamw (torch.optim.Adam / AdamW) -----------------------------------


def adam_init(params: Params) -> State:
    """First and second moment buffers m = v = 0."""
    return {"t": 0, "m": _zeros_like(params), "v": _zeros_like(params)}


def adam_step(params: Params, grads: Params, state: State, lr: float, hyper: Hyper,
              out: Params | None = None) -> tuple[Params, State]:
    """Adam with bias correction, eps added after the square root (torch's form):

        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g**2
        theta <- theta - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """
    beta1, beta2, eps = hyper["beta1"], hyper["beta2"], hyper["eps"]
    t = state["t"] + 1
    step_size = lr / (1 - beta1**t)
    bias_correction2_sqrt = (1 - beta2**t) ** 0.5
    new, new_m, new_v = _empty_like(params), _empty_like(params), _empty_like(params)
    for l, k, theta, g, m, v in _leaves(params, grads, state["m"], state["v"]):
        new_m[l][k] = beta1 * m + (1 - beta1) * g
        new_v[l][k] = beta2 * v + (1 - beta2) * g * g
        denom = np.sqrt(new_v[l][k]) / bias_correction2_sqrt + eps
        new[l][k] = np.subtract(theta, step_size * new_m[l][k] / denom,
                                out=_into(out, l, k, None))
    return new, {"t": t, "m": new_m, "v": new_v}


def adamw_step(params: Params, grads: Params, state: State, lr: float, hyper: Hyper,
               out: Params | None = None) -> tuple[Params, State]:
    """Decoupled weight decay, then Adam: theta <- theta * (1 - lr * weight_decay)."""
    decayed = [{k: v * (1 - lr * hyper["weight_decay"]) for k, v in p.items()} for p in params]
    return adam_step(decayed, grads, state, lr, hyper, out)


# rmsprop (torch.optim.RMSprop, not centered, no momentum) --------------------


def rmsprop_init(params: Params) -> State:
    """Running mean of squared gradients v = 0."""
    return {"t": 0, "v": _zeros_like(params)}


def rmsprop_step(params: Params, grads: Params, state: State, lr: float, hyper: Hyper,
                 out: Params | None = None) -> tuple[Params, State]:
    """v <- alpha v + (1 - alpha) g**2;  theta <- theta - lr * g / (sqrt(v) + eps)."""
    alpha, eps = hyper["alpha"], hyper["eps"]
    new, new_v = _empty_like(params), _empty_like(params)
    for l, k, theta, g, v in _leaves(params, grads, state["v"]):
        new_v[l][k] = alpha * v + (1 - alpha) * g * g
        new[l][k] = np.subtract(theta, lr * g / (np.sqrt(new_v[l][k]) + eps),
                                out=_into(out, l, k, None))
    return new, {"t": state["t"] + 1, "v": new_v}


# registry --------------------------------------------------------------------

Step = Callable[[Params, Params, State, float, Hyper, Params | None], tuple[Params, State]]


class OptimizerRule(NamedTuple):
    """One registry entry: fresh state, the step, and torch.optim's defaults."""

    init: Callable[[Params], State]
    step: Step
    defaults: Mapping[str, float]


OPTIMIZERS: dict[str, OptimizerRule] = {
    "sgd": OptimizerRule(sgd_init, sgd_step, {}),
    "momentum": OptimizerRule(momentum_init, momentum_step, {"momentum": 0.9}),
    "nesterov": OptimizerRule(momentum_init, nesterov_step, {"momentum": 0.9}),
    "adam": OptimizerRule(adam_init, adam_step, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
    "adamw": OptimizerRule(adam_init, adamw_step,
                           {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2}),
    "rmsprop": OptimizerRule(rmsprop_init, rmsprop_step, {"alpha": 0.99, "eps": 1e-8}),
}
"""Every optimizer by name."""


def init_state(optimizer: OptimizerSpec, params: Params) -> State:
    """Fresh optimizer state for ``params`` (zero buffers, t = 0)."""
    return OPTIMIZERS[optimizer.name].init(params)


def step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State,
         out: Params | None = None) -> tuple[Params, State]:
    """One update of every parameter; returns new params (written into ``out`` if given,
    which may be ``params`` itself) and new state."""
    rule = OPTIMIZERS[optimizer.name]
    return rule.step(params, grads, state, optimizer.lr, optimizer.hyperparams, out)
