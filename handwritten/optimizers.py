"""Optimizers: each rule states its update, (grads, state, params) -> (updates, state).

A rule computes the change of every parameter, Delta theta, exactly as its
docstring states it; one function, ``apply_updates``, adds the changes to the
params (theta <- theta + Delta theta), in fresh arrays or in place.  This is
optax's split of ``update`` and ``apply_updates``.

Every rule follows torch.optim's semantics exactly, every option included, so it
can be checked against torch.optim (and optax where optax has the same option).
For a parameter theta with gradient g at step t = 1, 2, ... and learning rate lr
(the schedule's lr_(t-1), ``handwritten.schedules``), every rule first forms

    g <- clip(g)                     optional, over all gradients together (below)
    g <- -g                          if maximize (ascend instead of descend)
    g <- g + weight_decay * theta    coupled L2 (all but adamw), biases included

and then:

    sgd        Delta theta = -lr * g
    momentum   b <- g at t = 1, else mu * b + (1 - dampening) * g;   Delta theta = -lr * b
    nesterov   b <- mu * b + g;                    Delta theta = -lr * (g + mu * b)
    adam       m <- beta1 * m + (1 - beta1) * g
               v <- beta2 * v + (1 - beta2) * g**2
               v_max <- max(v_max, v)              (amsgrad; v_max stands for v below)
               Delta theta = -lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    adamw      Delta theta = -lr * weight_decay * theta + (the adam Delta theta)
    rmsprop    v <- alpha * v + (1 - alpha) * g**2
               gbar <- alpha * gbar + (1 - alpha) * g,   d = sqrt(v - gbar**2) + eps  (centered)
                                                          d = sqrt(v) + eps            (else)
               b <- momentum * b + g / d;  Delta theta = -lr * b     (momentum > 0)
                                           Delta theta = -lr * g / d (else)
    adagrad    s <- s + g**2   (s starts at initial_accumulator_value)
               Delta theta = -lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)

Buffers start at zero, so momentum's first b would be g even without the t = 1
case, which is there for dampening: torch's first b is clone(g), undamped.  In
adam, rmsprop and adagrad eps is added *after* the square root (torch; optax's
rmsprop needs ``eps_in_sqrt=False`` for this, and its adagrad has eps inside).
An L2 penalty that is part of the loss belongs in ``NetworkSpec.weight_decay``;
the optimizers' weight_decay is torch's, applied to every parameter, biases
included.  adamw's is decoupled from the gradient (torch multiplies theta by
1 - lr * weight_decay before its adam step: the same Delta theta, rounded
differently).

Clipping, before any rule (``clip_gradients``), as torch.nn.utils:

    clip_norm    n = sqrt(sum of g**2 over every gradient entry)
                 g <- g * min(1, clip_norm / (n + 1e-6))       (clip_grad_norm_)
    clip_value   g <- min(max(g, -clip_value), clip_value)      (clip_grad_value_)

State is a dict: ``"t"`` (steps taken) and one params-shaped list of buffers per
name: ``"b"`` (momentum), ``"m"``, ``"v"`` and ``"v_max"`` (adam with amsgrad),
``"v"``, ``"gbar"`` (centered) and ``"b"`` (momentum > 0) for rmsprop, ``"s"`` for
adagrad: ``OptimizerRule.buffers(hyper)`` names them.  Rules never modify their
arguments.  Each line of a rule is one line of its equation, for every parameter at once:
``handwritten.tree.tree_map`` applies it leaf by leaf (as optax's rules use jax.tree.map).
The hyperparameters' defaults and ranges are ``handwritten.spec.OPTIMIZER_DEFAULTS`` and
``HYPERPARAMETER_RANGES``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from handwritten import checks
from handwritten.spec import OptimizerSpec, Params, State
from handwritten.tree import tree_leaves, tree_map

Hyper = Mapping[str, float]

CLIP_NORM_EPS = 1e-6
"""torch.nn.utils.clip_grad_norm_ divides clip_norm by the norm plus this (optax does not)."""


def _zeros_like(params: Params, value: float = 0.0) -> Params:
    return tree_map(lambda theta: np.full_like(theta, value), params)


def _fresh(params: Params, buffers: tuple[str, ...]) -> State:
    return {"t": 0, **{name: _zeros_like(params) for name in buffers}}


def gradient(grads: Params, params: Params, hyper: Hyper, *, coupled: bool = True) -> Params:
    """The gradient every rule starts from: negated if maximize, then plus the coupled
    weight decay (``coupled=False`` for adamw, whose decay is decoupled):

        g <- -g;   g <- g + weight_decay * theta
    """
    sign = -1.0 if hyper.get("maximize") else 1.0
    decay = hyper.get("weight_decay", 0.0) if coupled else 0.0
    if sign == 1.0 and decay == 0.0:
        return grads
    if decay:
        return tree_map(lambda g, theta: sign * g + decay * theta, grads, params)
    return tree_map(lambda g: sign * g, grads)


def clip_gradients(grads: Params, clip_norm: float | None, clip_value: float | None
                   ) -> Params:
    """Clip before the rule: by global norm (every gradient scaled by one factor) or by
    value (each entry), as torch.nn.utils.clip_grad_norm_ / clip_grad_value_:

        n = sqrt(sum_l sum_k ||g_lk||**2);   g <- g * min(1, clip_norm / (n + 1e-6))
        g <- min(max(g, -clip_value), clip_value)
    """
    if clip_value is not None:
        return tree_map(lambda g: np.clip(g, -clip_value, clip_value), grads)
    if clip_norm is None:
        return grads
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in tree_leaves(grads)))
    factor = min(1.0, clip_norm / (norm + CLIP_NORM_EPS))
    return tree_map(lambda g: g * g.dtype.type(factor), grads)


# sgd -------------------------------------------------------------------------


def sgd_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
               ) -> tuple[Params, State]:
    """Delta theta = -lr * g."""
    g = gradient(grads, params, hyper)
    return tree_map(lambda g: -lr * g, g), {"t": state["t"] + 1}


# momentum and nesterov (torch.optim.SGD with momentum) -----------------------


def _velocity(g: Params, state: State, mu: float, dampening: float) -> Params:
    """b <- g at the first step (torch's clone, undamped), else mu * b + (1 - dampening) * g."""
    if state["t"] == 0:
        return tree_map(lambda g: g.copy(), g)
    return tree_map(lambda g, b: mu * b + (1 - dampening) * g, g, state["b"])


def momentum_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                    ) -> tuple[Params, State]:
    """b <- mu * b + (1 - dampening) * g  (b = g at t = 1);  Delta theta = -lr * b."""
    g = gradient(grads, params, hyper)
    b = _velocity(g, state, hyper["momentum"], hyper["dampening"])
    updates = tree_map(lambda b: -lr * b, b)
    return updates, {"t": state["t"] + 1, "b": b}


def nesterov_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                    ) -> tuple[Params, State]:
    """b <- mu * b + g;  Delta theta = -lr * (g + mu * b)    (the look-ahead gradient)."""
    mu = hyper["momentum"]
    g = gradient(grads, params, hyper)
    b = _velocity(g, state, mu, 0.0)
    updates = tree_map(lambda g, b: -lr * (g + mu * b), g, b)
    return updates, {"t": state["t"] + 1, "b": b}


# adam and adamw (torch.optim.Adam / AdamW) -----------------------------------


def adam_buffers(hyper: Hyper) -> tuple[str, ...]:
    """m and v; with amsgrad also v_max, the largest v so far."""
    return ("m", "v", "v_max") if hyper["amsgrad"] else ("m", "v")


def _adam(g: Params, state: State, lr: float, hyper: Hyper) -> tuple[Params, State]:
    """Adam's moments and step for a gradient g already prepared (maximize, decay)."""
    beta1, beta2, eps = hyper["beta1"], hyper["beta2"], hyper["eps"]
    t = state["t"] + 1
    step_size = lr / (1 - beta1**t)
    bias_correction2_sqrt = (1 - beta2**t) ** 0.5
    m = tree_map(lambda g, m: beta1 * m + (1 - beta1) * g, g, state["m"])
    v = tree_map(lambda g, v: beta2 * v + (1 - beta2) * g * g, g, state["v"])
    new_state = {"t": t, "m": m, "v": v}
    if hyper["amsgrad"]:
        v = tree_map(lambda v, v_max: np.maximum(v_max, v), v, state["v_max"])
        new_state["v_max"] = v
    updates = tree_map(lambda m, v: -step_size * m / (np.sqrt(v) / bias_correction2_sqrt + eps),
                       m, v)
    return updates, new_state


def adam_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                ) -> tuple[Params, State]:
    """Adam with bias correction, eps added after the square root (torch's form):

        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g**2
        v_max <- max(v_max, v), used for v below     (amsgrad)
        Delta theta = -lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """
    return _adam(gradient(grads, params, hyper), state, lr, hyper)


def adamw_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                 ) -> tuple[Params, State]:
    """Decoupled weight decay on top of Adam (on a gradient not decayed):

        Delta theta = -lr * weight_decay * theta + (the adam Delta theta)
    """
    updates, new_state = _adam(gradient(grads, params, hyper, coupled=False), state, lr, hyper)
    decay = lr * hyper["weight_decay"]
    for layer, p in zip(updates, params):
        for k, theta in p.items():
            layer[k] -= decay * theta           # layer[k] is adam's fresh array
    return updates, new_state


# rmsprop (torch.optim.RMSprop) -----------------------------------------------


def rmsprop_buffers(hyper: Hyper) -> tuple[str, ...]:
    """v; gbar, the running mean of g, when centered; b when momentum > 0."""
    return ("v",) + (("gbar",) if hyper["centered"] else ()) + (
        ("b",) if hyper["momentum"] > 0 else ())


def rmsprop_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                   ) -> tuple[Params, State]:
    """v <- alpha v + (1 - alpha) g**2;  d = sqrt(v) + eps, or when centered

        gbar <- alpha gbar + (1 - alpha) g;  d = sqrt(v - gbar**2) + eps

    then Delta theta = -lr * g / d, or with momentum mu > 0

        b <- mu b + g / d;  Delta theta = -lr * b
    """
    alpha, eps, mu = hyper["alpha"], hyper["eps"], hyper["momentum"]
    g = gradient(grads, params, hyper)
    v = tree_map(lambda g, v: alpha * v + (1 - alpha) * g * g, g, state["v"])
    new_state: State = {"t": state["t"] + 1, "v": v}
    if hyper["centered"]:
        gbar = tree_map(lambda g, gbar: alpha * gbar + (1 - alpha) * g, g, state["gbar"])
        new_state["gbar"] = gbar
        d = tree_map(lambda v, gbar: np.sqrt(v - gbar ** 2) + eps, v, gbar)
    else:
        d = tree_map(lambda v: np.sqrt(v) + eps, v)
    step = tree_map(lambda g, d: g / d, g, d)
    if mu > 0:
        step = tree_map(lambda s, b: mu * b + s, step, state["b"])
        new_state["b"] = step
    updates = tree_map(lambda s: -lr * s, step)
    return updates, new_state


# adagrad (torch.optim.Adagrad) -----------------------------------------------


def adagrad_init(params: Params, hyper: Hyper) -> State:
    """The sum of squared gradients s starts at initial_accumulator_value."""
    return {"t": 0, "s": _zeros_like(params, hyper["initial_accumulator_value"])}


def adagrad_update(grads: Params, state: State, params: Params, lr: float, hyper: Hyper
                   ) -> tuple[Params, State]:
    """s <- s + g**2;  Delta theta = -lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)."""
    t = state["t"] + 1
    step_size = lr / (1 + (t - 1) * hyper["lr_decay"])
    g = gradient(grads, params, hyper)
    s = tree_map(lambda g, s: s + g * g, g, state["s"])
    updates = tree_map(lambda g, s: -step_size * g / (np.sqrt(s) + hyper["eps"]), g, s)
    return updates, {"t": t, "s": s}


# registry --------------------------------------------------------------------

Update = Callable[[Params, State, Params, float, Hyper], tuple[Params, State]]


def _named(*names: str) -> Callable[[Hyper], tuple[str, ...]]:
    return lambda hyper: names


class OptimizerRule(NamedTuple):
    """One registry entry: the update rule, the state's buffer names for given
    hyperparameters, and the fresh state (zero buffers unless ``init`` says otherwise)."""

    update: Update
    buffers: Callable[[Hyper], tuple[str, ...]] = _named()
    init: Callable[[Params, Hyper], State] | None = None

    def fresh(self, params: Params, hyper: Hyper) -> State:
        """The state before the first step: t = 0 and the rule's buffers."""
        if self.init is not None:
            return self.init(params, hyper)
        return _fresh(params, self.buffers(hyper))


OPTIMIZERS: dict[str, OptimizerRule] = {
    "sgd": OptimizerRule(sgd_update),
    "momentum": OptimizerRule(momentum_update, _named("b")),
    "nesterov": OptimizerRule(nesterov_update, _named("b")),
    "adam": OptimizerRule(adam_update, adam_buffers),
    "adamw": OptimizerRule(adamw_update, adam_buffers),
    "rmsprop": OptimizerRule(rmsprop_update, rmsprop_buffers),
    "adagrad": OptimizerRule(adagrad_update, _named("s"), adagrad_init),
}
"""Every optimizer by name (the names of ``handwritten.spec.OPTIMIZER_DEFAULTS``)."""


# the public interface --------------------------------------------------------


def init_state(optimizer: OptimizerSpec, params: Params) -> State:
    """Fresh optimizer state for ``params`` (t = 0, buffers at their start)."""
    checks.check_optimizer(optimizer)
    checks.check_params_tree(params)
    return OPTIMIZERS[optimizer.name].fresh(params, optimizer.hyperparams)


def check_step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State) -> None:
    """The checks of ``step`` and ``update`` (the references' ``step`` makes the same)."""
    checks.check_optimizer(optimizer)
    buffers = OPTIMIZERS[optimizer.name].buffers(optimizer.hyperparams)
    checks.check_step(optimizer, params, grads, state, buffers)
    checks.check_schedule_room(optimizer, state["t"], 1)


def rule_update(optimizer: OptimizerSpec, grads: Params, state: State, params: Params
                ) -> tuple[Params, State]:
    """One step of the whole recipe, unchecked: clip the gradients, take the schedule's
    learning rate for step t = state["t"] + 1, apply the rule (``train`` calls this)."""
    # without a clip clip_gradients hands the gradients back as they are: not calling it
    # then saves a fraction of a small network's step
    if optimizer.clip_norm is not None or optimizer.clip_value is not None:
        grads = clip_gradients(grads, optimizer.clip_norm, optimizer.clip_value)
    lr = optimizer.learning_rate(state["t"])
    return OPTIMIZERS[optimizer.name].update(grads, state, params, lr, optimizer.hyperparams)


def update(optimizer: OptimizerSpec, grads: Params, state: State, params: Params
           ) -> tuple[Params, State]:
    """The rule's Delta theta for every parameter, and the new state (arguments checked)."""
    check_step(optimizer, params, grads, state)
    return rule_update(optimizer, grads, state, params)


def apply_updates(params: Params, updates: Params, *, in_place: bool = False) -> Params:
    """theta + Delta theta for every parameter: fresh arrays, or written into ``params``
    itself with ``in_place=True`` (training does this on its private copy)."""
    if in_place:
        for p, u in zip(params, updates):
            for k, theta in p.items():
                theta += u[k]
        return params
    return tree_map(lambda theta, u: theta + u, params, updates)


def step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State
         ) -> tuple[Params, State]:
    """One update of every parameter: new params (fresh arrays) and new state."""
    updates, new_state = update(optimizer, grads, state, params)
    return apply_updates(params, updates), new_state
