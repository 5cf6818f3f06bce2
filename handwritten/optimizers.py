"""Optimizers: each rule states its update, (grads, state, params) -> (updates, state).

A rule computes the change of every parameter, Delta theta, exactly as its
docstring states it; one function, ``apply_updates``, adds the changes to the
params (theta <- theta + Delta theta), in fresh arrays or in place.  This is
optax's split of ``update`` and ``apply_updates``.

Every rule follows torch.optim's semantics exactly (dampening 0, no maximize, no
amsgrad, no centering), so it can be checked against torch.optim and optax.
For a parameter theta with gradient g at step t = 1, 2, ...:

    sgd        Delta theta = -lr * g
    momentum   b <- mu * b + g;                    Delta theta = -lr * b
    nesterov   b <- mu * b + g;                    Delta theta = -lr * (g + mu * b)
    adam       m <- beta1 * m + (1 - beta1) * g
               v <- beta2 * v + (1 - beta2) * g**2
               Delta theta = -lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    adamw      Delta theta = -lr * weight_decay * theta + (the adam Delta theta)
    rmsprop    v <- alpha * v + (1 - alpha) * g**2;  Delta theta = -lr * g / (sqrt(v) + eps)

Buffers start at zero, so momentum's first b is g, as torch's clone(g).  In
adam and rmsprop eps is added *after* the square root (torch; optax's rmsprop
needs ``eps_in_sqrt=False`` for this).  An L2 penalty that is part of the loss
belongs in ``NetworkSpec.weight_decay``; adamw's decay is decoupled from the
gradient and applies to every parameter, biases included, as in torch (torch
multiplies theta by 1 - lr * weight_decay before its adam step: the same
Delta theta, rounded differently).

State is a dict: ``"t"`` (steps taken) and one params-shaped list of buffers per
name (``"b"`` for momentum, ``"m"`` and ``"v"`` for adam, ``"v"`` for rmsprop).
Rules never modify their arguments.  The hyperparameters' defaults and ranges
are ``handwritten.spec.OPTIMIZER_DEFAULTS`` and ``HYPERPARAMETER_RANGES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from handwritten import checks
from handwritten.spec import OptimizerSpec, Params, State

Hyper = Mapping[str, float]


def _zeros_like(params: Params) -> Params:
    return [{k: np.zeros_like(v) for k, v in p.items()} for p in params]


# sgd -------------------------------------------------------------------------


def sgd_init(params: Params) -> State:
    """No buffers: only the step count."""
    return {"t": 0}


def sgd_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
               ) -> tuple[Params, State]:
    """Delta theta = -lr * g."""
    updates = [{k: -lr * g for k, g in layer.items()} for layer in grads]
    return updates, {"t": state["t"] + 1}


# momentum and nesterov (torch.optim.SGD, dampening 0) ------------------------


def momentum_init(params: Params) -> State:
    """Velocity buffer b = 0 for every parameter."""
    return {"t": 0, "b": _zeros_like(params)}


def momentum_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                    ) -> tuple[Params, State]:
    """b <- mu * b + g;  Delta theta = -lr * b    (mu = hyper["momentum"])."""
    mu = hyper["momentum"]
    b = [{k: mu * state["b"][l][k] + g for k, g in layer.items()} for l, layer in enumerate(grads)]
    updates = [{k: -lr * v for k, v in layer.items()} for layer in b]
    return updates, {"t": state["t"] + 1, "b": b}


def nesterov_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                    ) -> tuple[Params, State]:
    """b <- mu * b + g;  Delta theta = -lr * (g + mu * b)    (the look-ahead gradient)."""
    mu = hyper["momentum"]
    b = [{k: mu * state["b"][l][k] + g for k, g in layer.items()} for l, layer in enumerate(grads)]
    updates = [{k: -lr * (g + mu * b[l][k]) for k, g in layer.items()}
               for l, layer in enumerate(grads)]
    return updates, {"t": state["t"] + 1, "b": b}


# adam and adamw (torch.optim.Adam / AdamW) -----------------------------------


def adam_init(params: Params) -> State:
    """First and second moment buffers m = v = 0."""
    return {"t": 0, "m": _zeros_like(params), "v": _zeros_like(params)}


def adam_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                ) -> tuple[Params, State]:
    """Adam with bias correction, eps added after the square root (torch's form):

        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g**2
        Delta theta = -lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """
    beta1, beta2, eps = hyper["beta1"], hyper["beta2"], hyper["eps"]
    t = state["t"] + 1
    step_size = lr / (1 - beta1**t)
    bias_correction2_sqrt = (1 - beta2**t) ** 0.5
    m = [{k: beta1 * state["m"][l][k] + (1 - beta1) * g for k, g in layer.items()}
         for l, layer in enumerate(grads)]
    v = [{k: beta2 * state["v"][l][k] + (1 - beta2) * g * g for k, g in layer.items()}
         for l, layer in enumerate(grads)]
    updates = [{k: -step_size * m[l][k] / (np.sqrt(v[l][k]) / bias_correction2_sqrt + eps)
                for k in layer} for l, layer in enumerate(grads)]
    return updates, {"t": t, "m": m, "v": v}


def adamw_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                 ) -> tuple[Params, State]:
    """Decoupled weight decay on top of Adam:

        Delta theta = -lr * weight_decay * theta + (the adam Delta theta)
    """
    updates, new_state = adam_update(grads, state, params, lr, hyper)
    decay = lr * hyper["weight_decay"]
    for layer, p in zip(updates, params):
        for k, theta in p.items():
            layer[k] -= decay * theta           # layer[k] is adam's fresh array
    return updates, new_state


# rmsprop (torch.optim.RMSprop, not centered, no momentum) --------------------


def rmsprop_init(params: Params) -> State:
    """Running mean of squared gradients v = 0."""
    return {"t": 0, "v": _zeros_like(params)}


def rmsprop_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                   ) -> tuple[Params, State]:
    """v <- alpha v + (1 - alpha) g**2;  Delta theta = -lr * g / (sqrt(v) + eps)."""
    alpha, eps = hyper["alpha"], hyper["eps"]
    v = [{k: alpha * state["v"][l][k] + (1 - alpha) * g * g for k, g in layer.items()}
         for l, layer in enumerate(grads)]
    updates = [{k: -lr * g / (np.sqrt(v[l][k]) + eps) for k, g in layer.items()}
               for l, layer in enumerate(grads)]
    return updates, {"t": state["t"] + 1, "v": v}


# registry --------------------------------------------------------------------

Update = Callable[[Params, State, Params, float, Hyper], tuple[Params, State]]


class OptimizerRule(NamedTuple):
    """One registry entry: fresh state, the update rule, and the state's buffer names."""

    init: Callable[[Params], State]
    update: Update
    buffers: tuple[str, ...] = ()


OPTIMIZERS: dict[str, OptimizerRule] = {
    "sgd": OptimizerRule(sgd_init, sgd_update),
    "momentum": OptimizerRule(momentum_init, momentum_update, ("b",)),
    "nesterov": OptimizerRule(momentum_init, nesterov_update, ("b",)),
    "adam": OptimizerRule(adam_init, adam_update, ("m", "v")),
    "adamw": OptimizerRule(adam_init, adamw_update, ("m", "v")),
    "rmsprop": OptimizerRule(rmsprop_init, rmsprop_update, ("v",)),
}
"""Every optimizer by name (the names of ``handwritten.spec.OPTIMIZER_DEFAULTS``)."""


# the public interface --------------------------------------------------------


def init_state(optimizer: OptimizerSpec, params: Params) -> State:
    """Fresh optimizer state for ``params`` (zero buffers, t = 0)."""
    checks.check_optimizer(optimizer)
    checks.check_params_tree(params)
    return OPTIMIZERS[optimizer.name].init(params)


def check_step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State) -> None:
    """The checks of ``step`` and ``update`` (the references' ``step`` makes the same)."""
    checks.check_optimizer(optimizer)
    checks.check_step(optimizer, params, grads, state, OPTIMIZERS[optimizer.name].buffers)


def update(optimizer: OptimizerSpec, grads: Params, state: State, params: Params
           ) -> tuple[Params, State]:
    """The rule's Delta theta for every parameter, and the new state (arguments checked)."""
    check_step(optimizer, params, grads, state)
    rule = OPTIMIZERS[optimizer.name]
    return rule.update(grads, state, params, optimizer.lr, optimizer.hyperparams)


def apply_updates(params: Params, updates: Params, *, in_place: bool = False) -> Params:
    """theta + Delta theta for every parameter: fresh arrays, or written into ``params``
    itself with ``in_place=True`` (training does this on its private copy)."""
    if in_place:
        for p, u in zip(params, updates):
            for k, theta in p.items():
                theta += u[k]
        return params
    return [{k: theta + u[k] for k, theta in p.items()} for p, u in zip(params, updates)]


def step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State
         ) -> tuple[Params, State]:
    """One update of every parameter: new params (fresh arrays) and new state."""
    updates, new_state = update(optimizer, grads, state, params)
    return apply_updates(params, updates), new_state
