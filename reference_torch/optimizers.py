"""torch.optim, configured to handwritten's optimizer specs, and one step from a given state.

    sgd       torch.optim.SGD(lr)
    momentum  torch.optim.SGD(lr, momentum=mu)                  (dampening 0)
    nesterov  torch.optim.SGD(lr, momentum=mu, nesterov=True)
    adam      torch.optim.Adam(lr, betas=(beta1, beta2), eps=eps)
    adamw     torch.optim.AdamW(lr, betas, eps, weight_decay)
    rmsprop   torch.optim.RMSprop(lr, alpha=alpha, eps=eps)

handwritten's state names map to torch's: momentum "b" -> "momentum_buffer",
adam "m"/"v" -> "exp_avg"/"exp_avg_sq", rmsprop "v" -> "square_avg", and "t"
-> "step".  At t = 0 torch holds no state: its first momentum step sets
b = g, the same as handwritten's b = mu * 0 + g.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from handwritten.optimizers import check_step
from handwritten.spec import OptimizerSpec, Params, State
from reference_torch.network import from_torch, to_torch


def _buffers(name: str) -> dict[str, str]:
    """handwritten buffer name -> torch state key, for one optimizer."""
    if name == "rmsprop":
        return {"v": "square_avg"}
    if name in ("momentum", "nesterov"):
        return {"b": "momentum_buffer"}
    if name in ("adam", "adamw"):
        return {"m": "exp_avg", "v": "exp_avg_sq"}
    return {}


MAKERS: dict[str, Callable[[list[torch.Tensor], float, dict[str, float]], torch.optim.Optimizer]]
MAKERS = {
    "sgd": lambda ps, lr, h: torch.optim.SGD(ps, lr=lr),
    "momentum": lambda ps, lr, h: torch.optim.SGD(ps, lr=lr, momentum=h["momentum"]),
    "nesterov": lambda ps, lr, h: torch.optim.SGD(ps, lr=lr, momentum=h["momentum"],
                                                  nesterov=True),
    "adam": lambda ps, lr, h: torch.optim.Adam(ps, lr=lr, betas=(h["beta1"], h["beta2"]),
                                               eps=h["eps"]),
    "adamw": lambda ps, lr, h: torch.optim.AdamW(ps, lr=lr, betas=(h["beta1"], h["beta2"]),
                                                 eps=h["eps"], weight_decay=h["weight_decay"]),
    "rmsprop": lambda ps, lr, h: torch.optim.RMSprop(ps, lr=lr, alpha=h["alpha"], eps=h["eps"]),
}
"""Every handwritten optimizer by name, as the torch.optim that implements it."""


def flat(tparams: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """Leaves in a fixed order: W0, b0, W1, b1, ..."""
    return [p[k] for p in tparams for k in ("W", "b")]


def make(optimizer: OptimizerSpec, tparams: list[dict[str, torch.Tensor]]) -> torch.optim.Optimizer:
    """The torch.optim optimizer for a handwritten OptimizerSpec."""
    return MAKERS[optimizer.name](flat(tparams), optimizer.lr, dict(optimizer.hyperparams))


def load_state(opt: torch.optim.Optimizer, optimizer: OptimizerSpec, state: State,
               tparams: list[dict[str, torch.Tensor]]) -> None:
    """Put handwritten's state into a torch optimizer (nothing at t = 0, as torch starts)."""
    if state["t"] == 0:
        return
    names = _buffers(optimizer.name)
    for l, p in enumerate(tparams):
        for k in ("W", "b"):
            entry: dict[str, Any] = {torch_key: torch.tensor(state[hw_key][l][k])
                                     for hw_key, torch_key in names.items()}
            if optimizer.name not in ("momentum", "nesterov", "sgd"):
                entry["step"] = torch.tensor(float(state["t"]))
            opt.state[p[k]] = entry


def read_state(opt: torch.optim.Optimizer, optimizer: OptimizerSpec, t: int,
               tparams: list[dict[str, torch.Tensor]]) -> State:
    """torch's state as handwritten's: {"t": t, buffer name: params-shaped arrays}."""
    state: State = {"t": t}
    for hw_key, torch_key in _buffers(optimizer.name).items():
        state[hw_key] = from_torch([{k: opt.state[p[k]][torch_key] for k in ("W", "b")}
                                    for p in tparams])
    return state


def step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State
         ) -> tuple[Params, State]:
    """One torch.optim step from exactly this state; the interface of handwritten's ``step``."""
    check_step(optimizer, params, grads, state)
    tparams = to_torch(params)
    for p, g in zip(tparams, grads):
        for k in ("W", "b"):
            p[k].grad = torch.tensor(g[k])
    opt = make(optimizer, tparams)
    load_state(opt, optimizer, state, tparams)
    opt.step()
    return from_torch(tparams), read_state(opt, optimizer, state["t"] + 1, tparams)
