"""The network through torch autograd: loss_and_grads, trace, predict.

Params cross the boundary through one conversion pair, ``to_torch`` /
``from_torch``, keeping W as (fan_in, fan_out): z = a @ W + b, as in handwritten.
Every intermediate of the trace is a tensor with ``retain_grad()``, so its .grad
after ``backward()`` is autograd's d_z or d_a.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from handwritten import checks
from handwritten.layers import Sequential
from handwritten.spec import Masks, NetworkSpec, Params, Running, Trace
from reference_torch import blocks
from reference_torch.activations import activation
from reference_torch.losses import LOSSES, LossFn
from reference_torch.losses import loss as loss_fn

TorchParams = list[dict[str, torch.Tensor]]

INITIALIZERS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "blog": lambda w, gen: torch.nn.init.normal_(w, 0.0, 1.0, generator=gen),
    "glorot_uniform": lambda w, gen: torch.nn.init.xavier_uniform_(w, generator=gen),
    "glorot_normal": lambda w, gen: torch.nn.init.xavier_normal_(w, generator=gen),
    "he_normal": lambda w, gen: torch.nn.init.kaiming_normal_(w, nonlinearity="relu",
                                                              generator=gen),
}
"""Every handwritten init scheme by name, as the torch.nn.init function that draws it in
place into a weight of torch's (fan_out, fan_in) layout."""


def init_weight(scheme: str, fan_in: int, fan_out: int, seed: int) -> np.ndarray:
    """A (fan_in, fan_out) float64 W drawn by torch.nn.init (into torch's (fan_out, fan_in)
    layout, then transposed), from torch.Generator().manual_seed(seed); NotImplementedError
    for a scheme handwritten has and INITIALIZERS has not."""
    init = checks.counterpart(INITIALIZERS, "init scheme", scheme,
                              "reference_torch/network.py (INITIALIZERS)")
    gen = torch.Generator().manual_seed(seed)
    w = torch.empty(fan_out, fan_in, dtype=torch.float64)
    return np.asarray(init(w, gen).numpy()).T


def to_torch(params: Params, requires_grad: bool = True) -> TorchParams:
    """NumPy params as fresh leaf tensors (copies: nothing shares the caller's memory)."""
    return [{k: torch.tensor(v, requires_grad=requires_grad) for k, v in p.items()}
            for p in params]


def from_torch(tensors: list[dict[str, torch.Tensor]]) -> Params:
    """Tensors (params or their .grad) back to NumPy arrays of the same dtype."""
    return [{k: v.detach().clone().numpy() for k, v in p.items()} for p in tensors]


def tensor(a: np.ndarray) -> torch.Tensor:
    """x or y as a tensor of the same dtype (integer labels as int64, as cross_entropy wants)."""
    t = torch.tensor(a)
    return t.long() if t.dtype not in (torch.float32, torch.float64) else t


def forward(spec: NetworkSpec, tparams: TorchParams, x: torch.Tensor,
            dz: list[torch.Tensor] | None = None, da: list[torch.Tensor] | None = None,
            masks: Masks | None = None, running: list[dict[str, torch.Tensor]] | None = None,
            training: bool = True) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """z = a_prev @ W + b (+ dz), then a hidden block's parts (norm, activation, dropout
    with the given mask, residual skip), a (+ da), layer by layer; returns the output and
    every z, a (and mu, var, x_hat, n, h where the block has them).  The optional zero
    perturbations dz, da make d_z and d_a gradients that torch.func can take
    (``reference_torch.derivatives.r_trace``).  ``running``: batch norm's running
    statistics as tensors, updated by F.batch_norm in training mode and normalized with
    when ``training`` is False (``reference_torch.blocks.normalize``)."""
    cache = []
    a = x
    for l, (p, name) in enumerate(zip(tparams, spec.activations)):
        z = a @ p["W"] + p["b"]
        if dz is not None:
            z = z + dz[l]
        layer = {"z": z}
        norm = spec.norm(l)
        if norm is not None:
            layer |= blocks.normalize(norm, z, p["gamma"], p["beta"],
                                      None if running is None else running[l], training)
        h = activation(name)(layer.get("n", z))
        out = h
        mask = masks[l] if masks is not None and l < len(masks) else None
        if mask is not None:
            out = blocks.dropout(h, torch.as_tensor(mask, dtype=h.dtype), spec.dropout[l])
        if l < len(spec.residual) and spec.residual[l]:
            out = out + a
        if out is not h:
            layer["h"] = h
        a = out if da is None else out + da[l]
        layer["a"] = a
        cache.append(layer)
    return a, cache


def loss_value(spec: NetworkSpec, tparams: TorchParams, cache: list[dict[str, torch.Tensor]],
               y: torch.Tensor, losses: Mapping[str, LossFn] = LOSSES) -> torch.Tensor:
    """The loss (from the table ``losses``) plus weight_decay / 2 * sum ||W||^2, as a torch
    scalar."""
    loss = loss_fn(spec.loss, losses)(cache[-1]["z"], cache[-1]["a"], y, spec.reduction)
    if spec.weight_decay:
        loss = loss + spec.weight_decay / 2 * sum(p["W"].pow(2).sum() for p in tparams)
    return loss


def _grad(t: torch.Tensor) -> np.ndarray:
    """autograd's gradient of a leaf or retained tensor, as NumPy."""
    assert t.grad is not None, "autograd left no gradient for this tensor"
    return t.grad.numpy()


def _scalar(t: torch.Tensor) -> Any:
    return t.detach().numpy()[()]


def running_to_torch(running: Running) -> list[dict[str, torch.Tensor]]:
    """Running statistics as fresh tensors (buffers: no gradient)."""
    return [{k: torch.tensor(v) for k, v in stats.items()} for stats in running]


def predict(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray,
            running: Running | None = None) -> np.ndarray:
    """The network's output for inputs x (batch, n_in), in evaluation mode: no dropout,
    batch norm by F.batch_norm(training=False) with ``running``.  A ``Sequential``:
    reference_torch.layers.predict."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.predict(spec, params, x, running)
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_running(spec, running, dtype)
    truns = None if running is None else running_to_torch(running)
    with torch.no_grad():
        out, _ = forward(spec, to_torch(params, requires_grad=False), tensor(x), running=truns,
                         training=truns is None)
    return out.numpy()


def loss_and_grads(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                   masks: Masks | None = None) -> tuple[Any, Params]:
    """The loss and autograd's gradient for every parameter.  A ``Sequential``:
    reference_torch.layers.loss_and_grads (one dict per node)."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.loss_and_grads(spec, params, x, y, masks)
    checks.check_problem(spec, params, x, y, masks)
    tparams = to_torch(params)
    _, cache = forward(spec, tparams, tensor(x), masks=masks)
    loss = loss_value(spec, tparams, cache, tensor(y))
    loss.backward()
    return _scalar(loss), [{k: _grad(v) for k, v in p.items()} for p in tparams]


GRAPH = ("z", "x_hat", "n", "h", "a")
"""The trace's quantities that are nodes of the graph (their .grad is autograd's d_q)."""


def trace(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
          masks: Masks | None = None) -> Trace:
    """Every z, a and, by retain_grad(), autograd's d_a, d_z, d_W, d_b of every layer (and
    a block's mu, var, x_hat, n, h with d_x_hat, d_n, d_h, d_gamma, d_beta).  A
    ``Sequential``: reference_torch.layers.trace (one dict per node)."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.trace(spec, params, x, y, masks)
    checks.check_problem(spec, params, x, y, masks)
    tparams = to_torch(params)
    _, cache = forward(spec, tparams, tensor(x), masks=masks)
    for c in cache:
        for key, t in c.items():
            if key in GRAPH:
                t.retain_grad()
    loss = loss_value(spec, tparams, cache, tensor(y))
    loss.backward()
    extra = [{**{k: t.detach().numpy() for k, t in c.items() if k not in ("z", "a")},
              **{f"d_{k}": _grad(t) for k, t in c.items() if k in ("x_hat", "n", "h")},
              **{f"d_{k}": _grad(t) for k, t in p.items() if k in ("gamma", "beta")}}
             for c, p in zip(cache, tparams)]
    return Trace.from_passes(spec, _scalar(loss),
                             z=[c["z"].detach().numpy() for c in cache],
                             a=[c["a"].detach().numpy() for c in cache],
                             d_a=[c["a"].grad for c in cache], d_z=[_grad(c["z"]) for c in cache],
                             d_W=[_grad(p["W"]) for p in tparams],
                             d_b=[_grad(p["b"]) for p in tparams],
                             blocks=extra if spec.has_blocks else None)
