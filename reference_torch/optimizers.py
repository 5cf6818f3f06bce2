"""torch.optim, configured to handwritten's optimizer specs, and one step from a given state.

    sgd       torch.optim.SGD(lr, weight_decay, maximize)
    momentum  torch.optim.SGD(lr, momentum=mu, dampening, weight_decay, maximize)
    nesterov  torch.optim.SGD(lr, momentum=mu, nesterov=True, weight_decay, maximize)
    adam      torch.optim.Adam(lr, betas=(beta1, beta2), eps, weight_decay, amsgrad, maximize)
    adamw     torch.optim.AdamW(lr, betas, eps, weight_decay, amsgrad, maximize)
    rmsprop   torch.optim.RMSprop(lr, alpha, eps, weight_decay, momentum, centered, maximize)
    adagrad   torch.optim.Adagrad(lr, lr_decay, weight_decay, initial_accumulator_value, eps,
                                  maximize)

with the learning rate scheduled by ``reference_torch.schedules`` and the gradients
clipped by ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` before each step.

handwritten's state names map to torch's: momentum "b" -> "momentum_buffer",
adam "m"/"v"/"v_max" -> "exp_avg"/"exp_avg_sq"/"max_exp_avg_sq", rmsprop
"v"/"gbar"/"b" -> "square_avg"/"grad_avg"/"momentum_buffer", adagrad "s" -> "sum",
and "t" -> "step".  At t = 0 torch holds the state it makes itself: none for SGD
(its first momentum step sets b = g, as handwritten's), zeros elsewhere, and
adagrad's sum at initial_accumulator_value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from handwritten import checks
from handwritten.checks import counterpart
from handwritten.spec import OptimizerSpec, Params, State
from reference_torch import schedules
from reference_torch.network import from_torch, to_torch

TORCH_NAMES = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq",
               "gbar": "grad_avg", "b": "momentum_buffer", "s": "sum"}
"""handwritten buffer name -> torch state key (rmsprop's "v" is torch's "square_avg"), in
the order a state lists its buffers."""

HANDWRITTEN_NAMES = {"momentum_buffer": "b", "exp_avg": "m", "exp_avg_sq": "v",
                     "max_exp_avg_sq": "v_max", "square_avg": "v", "grad_avg": "gbar",
                     "sum": "s"}
"""torch state key -> handwritten buffer name."""


def _torch_keys(optimizer: OptimizerSpec, names: list[str]) -> dict[str, str]:
    """handwritten buffer name -> torch state key, for one optimizer's buffers."""
    rename = {"v": "square_avg"} if optimizer.name == "rmsprop" else {}
    return {b: rename.get(b, TORCH_NAMES[b]) for b in names}


def _kept(opt: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, str]:
    """handwritten buffer name -> torch state key, for the state torch keeps for ``param``
    (its "step" aside), in TORCH_NAMES' order."""
    kept = {HANDWRITTEN_NAMES[k]: k for k in opt.state[param] if k != "step"}
    return {b: kept[b] for b in TORCH_NAMES if b in kept}


def buffers(optimizer: OptimizerSpec) -> tuple[str, ...]:
    """The buffers torch.optim keeps for this optimizer and its options, by handwritten's
    names: what ``step`` expects a state to hold.  Read off torch itself (one step on a
    single number), not off handwritten's registry, which is code under test."""
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    param.grad = torch.ones(1, dtype=torch.float64)
    opt = make(optimizer, [{"p": param}])
    opt.step()
    return tuple(_kept(opt, param))


Maker = Callable[[list[torch.Tensor], float, dict[str, Any]], torch.optim.Optimizer]

MAKERS: dict[str, Maker] = {
    "sgd": lambda ps, lr, h: torch.optim.SGD(ps, lr=lr, weight_decay=h["weight_decay"],
                                             maximize=h["maximize"]),
    "momentum": lambda ps, lr, h: torch.optim.SGD(
        ps, lr=lr, momentum=h["momentum"], dampening=h["dampening"],
        weight_decay=h["weight_decay"], maximize=h["maximize"]),
    "nesterov": lambda ps, lr, h: torch.optim.SGD(
        ps, lr=lr, momentum=h["momentum"], nesterov=True, weight_decay=h["weight_decay"],
        maximize=h["maximize"]),
    "adam": lambda ps, lr, h: torch.optim.Adam(
        ps, lr=lr, betas=(h["beta1"], h["beta2"]), eps=h["eps"],
        weight_decay=h["weight_decay"], amsgrad=h["amsgrad"], maximize=h["maximize"]),
    "adamw": lambda ps, lr, h: torch.optim.AdamW(
        ps, lr=lr, betas=(h["beta1"], h["beta2"]), eps=h["eps"],
        weight_decay=h["weight_decay"], amsgrad=h["amsgrad"], maximize=h["maximize"]),
    "rmsprop": lambda ps, lr, h: torch.optim.RMSprop(
        ps, lr=lr, alpha=h["alpha"], eps=h["eps"], weight_decay=h["weight_decay"],
        momentum=h["momentum"], centered=h["centered"], maximize=h["maximize"]),
    "adagrad": lambda ps, lr, h: torch.optim.Adagrad(
        ps, lr=lr, lr_decay=h["lr_decay"], weight_decay=h["weight_decay"],
        initial_accumulator_value=h["initial_accumulator_value"], eps=h["eps"],
        maximize=h["maximize"]),
}
"""Every handwritten optimizer by name, as the torch.optim that implements it."""


def unsupported(optimizer: OptimizerSpec, steps: int) -> str | None:
    """None: torch.optim has every option handwritten has (handwritten follows torch's
    semantics); the interface of reference_jax's ``unsupported``."""
    return None


def flat(tparams: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """Leaves in a fixed order: W0, b0 (gamma0, beta0 on a layer with a norm), W1, b1, ...
    (a Sequential: node by node, nothing for a node without params)."""
    return [p[k] for p in tparams for k in p]


def make(optimizer: OptimizerSpec, tparams: list[dict[str, torch.Tensor]]) -> torch.optim.Optimizer:
    """The torch.optim optimizer for a handwritten OptimizerSpec (NotImplementedError for
    a name handwritten has and MAKERS has not)."""
    maker = counterpart(MAKERS, "optimizer", optimizer.name,
                        "reference_torch/optimizers.py (MAKERS)")
    return maker(flat(tparams), optimizer.lr, dict(optimizer.hyperparams))


def clip(optimizer: OptimizerSpec, tparams: list[dict[str, torch.Tensor]]) -> None:
    """Clip the gradients in place, as the spec says (before ``opt.step()``)."""
    if optimizer.clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(flat(tparams), optimizer.clip_norm)
    if optimizer.clip_value is not None:
        torch.nn.utils.clip_grad_value_(flat(tparams), optimizer.clip_value)


def load_state(opt: torch.optim.Optimizer, optimizer: OptimizerSpec, state: State,
               tparams: list[dict[str, torch.Tensor]]) -> None:
    """Put handwritten's state into a torch optimizer (nothing at t = 0: torch's own start)."""
    if state["t"] == 0:
        return
    names = _torch_keys(optimizer, [k for k in state if k != "t"])
    for l, p in enumerate(tparams):
        for k in p:
            entry: dict[str, Any] = {torch_key: torch.tensor(state[hw_key][l][k])
                                     for hw_key, torch_key in names.items()}
            if optimizer.name not in ("momentum", "nesterov", "sgd"):
                entry["step"] = torch.tensor(float(state["t"]))
            opt.state[p[k]] = entry


def read_state(opt: torch.optim.Optimizer, optimizer: OptimizerSpec, t: int,
               tparams: list[dict[str, torch.Tensor]]) -> State:
    """torch's state as handwritten's: {"t": t, buffer name: params-shaped arrays}, every
    buffer torch keeps."""
    state: State = {"t": t}
    first = next(iter(flat(tparams)))         # a Sequential's first node may have no params
    for hw_key, torch_key in _kept(opt, first).items():
        state[hw_key] = from_torch([{k: opt.state[p[k]][torch_key] for k in p}
                                    for p in tparams])
    return state


def step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State
         ) -> tuple[Params, State]:
    """One torch.optim step from exactly this state (its scheduler advanced to step
    state["t"], the gradients clipped first); the interface of handwritten's ``step``."""
    checks.check_optimizer(optimizer)
    checks.check_step(optimizer, params, grads, state, buffers(optimizer))
    checks.check_schedule_room(optimizer, state["t"], 1)
    tparams = to_torch(params)
    for p, g in zip(tparams, grads):
        for k in p:
            p[k].grad = torch.tensor(g[k])
    opt = make(optimizer, tparams)
    scheduler = schedules.make(optimizer.schedule, opt, optimizer.lr)
    for _ in range(state["t"]):
        schedules.step(scheduler)
    load_state(opt, optimizer, state, tparams)
    clip(optimizer, tparams)
    opt.step()
    return from_torch(tparams), read_state(opt, optimizer, state["t"] + 1, tparams)
