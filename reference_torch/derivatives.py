"""Forward mode, second order and per-example gradients through torch: nothing derived by
hand.

    jvp                  torch.func.jvp of the network's output in the params
    hvp                  torch.autograd.functional.hvp of the loss (double backward)

Second derivatives of bce come from it written out in torch ops (``SECOND_ORDER_LOSSES``:
torch's own binary_cross_entropy double backward adds 1e-12 to a and 1 - a).
    gnvp                 torch.func.jvp of the loss's input, the loss's Hessian there
                         (torch.autograd.functional.hvp), then torch.func.vjp back
    r_trace              torch.autograd.functional.jvp of every quantity of the trace
                         (z, a and autograd's d_a, d_z, d_W, d_b against zero perturbations)
    per_example_grads    torch.func.vmap(torch.func.grad(one sample's loss)), times the
                         reduction's share of that sample (1/batch under "mean")
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.func import grad, vjp, vmap
from torch.func import jvp as torch_jvp

from handwritten import checks
from handwritten.layers import Sequential
from handwritten.spec import Masks, NetworkSpec, Params
from reference_torch.losses import SECOND_ORDER_LOSSES
from reference_torch.losses import loss as loss_fn
from reference_torch.network import TorchParams, forward, from_torch, loss_value, tensor, to_torch


@contextmanager
def _quiet_forward_ad() -> Iterator[None]:
    # torch 2.13's forward-mode AD scripts a helper on first use and warns that
    # torch.jit.script is deprecated: torch's own internals, not this call
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        yield


def jvp(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, v: Params,
        masks: Masks | None = None) -> tuple[np.ndarray, np.ndarray]:
    """handwritten.derivatives.jvp's contract, by torch.func.jvp.  A ``Sequential`` (its
    dropout's ``masks``, one entry per node): reference_torch.layers.jvp."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.jvp(spec, params, x, v, masks)
    if masks is not None:
        raise ValueError("masks are a Sequential's: a NetworkSpec's jvp takes none")
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_params(spec, v, dtype, name="v")
    tx = tensor(x)
    with _quiet_forward_ad():
        result = torch_jvp(lambda p: forward(spec, p, tx)[0],
                           (to_torch(params, requires_grad=False),),
                           (to_torch(v, requires_grad=False),))
    out, tangent = result[0], result[1]               # (primal output, tangent output)
    return out.detach().numpy(), tangent.detach().numpy()


def _checked(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray, v: Params
             ) -> tuple[TorchParams, TorchParams, torch.Tensor, torch.Tensor]:
    checks.check_problem(spec, params, x, y)
    checks.check_params(spec, v, params[0]["W"].dtype, name="v")
    return (to_torch(params, requires_grad=False), to_torch(v, requires_grad=False),
            tensor(x), tensor(y))


def _flat(tree: TorchParams) -> tuple[torch.Tensor, ...]:
    return tuple(t for layer in tree for t in (layer["W"], layer["b"]))


def _tree(flat: tuple[torch.Tensor, ...]) -> TorchParams:
    return [{"W": flat[i], "b": flat[i + 1]} for i in range(0, len(flat), 2)]


def hvp(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray, v: Params) -> Params:
    """handwritten.derivatives.hvp's contract, by torch.autograd.functional.hvp."""
    tp, tv, tx, ty = _checked(spec, params, x, y, v)

    def loss(*flat: torch.Tensor) -> torch.Tensor:
        p = _tree(flat)
        return loss_value(spec, p, forward(spec, p, tx)[1], ty, SECOND_ORDER_LOSSES)

    _, product = torch.autograd.functional.hvp(loss, _flat(tp), _flat(tv))
    return from_torch(_tree(product))


def gnvp(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray, v: Params) -> Params:
    """handwritten.derivatives.gnvp's contract: J^T H_loss J v (J of the loss's input, z_out
    for a fused loss, else a_out) by torch.func.jvp, the loss's hvp and torch.func.vjp, plus
    lambda W_dot."""
    tp, tv, tx, ty = _checked(spec, params, x, y, v)

    def loss_input(p: TorchParams) -> torch.Tensor:
        out = forward(spec, p, tx)[1][-1]
        return out["z"] if spec.fused_output else out["a"]

    def loss_of(o: torch.Tensor) -> torch.Tensor:       # each loss reads only its own input
        return loss_fn(spec.loss, SECOND_ORDER_LOSSES)(o, o, ty, spec.reduction)

    with _quiet_forward_ad():
        pushed = torch_jvp(loss_input, (tp,), (tv,))
    o, j_v = pushed[0], pushed[1]                      # J v at the loss's input o
    # the loss's Hessian in its input by double backward (torch.func.jvp over grad of
    # mse_loss fails in torch 2.13: "ZeroTensors are immutable")
    _, h_j_v = torch.autograd.functional.hvp(loss_of, o.detach(), j_v.detach())
    pullback = vjp(loss_input, tp)[1]
    (product,) = pullback(h_j_v)
    return [{"W": g["W"] + spec.weight_decay * t["W"], "b": g["b"]}
            for g, t in zip(from_torch(product), from_torch(tv))]


def r_trace(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray, v: Params
            ) -> list[dict[str, np.ndarray]]:
    """handwritten.derivatives.r_trace's contract: torch.autograd.functional.jvp (the double
    backward trick), along v, of a function returning every z, a and autograd's d_a, d_z,
    d_W, d_b (gradients against zero perturbations of every z and a, create_graph=True).
    torch.func.jvp over torch.func.grad would be the direct form, but fails on mse_loss in
    torch 2.13 ("ZeroTensors are immutable")."""
    tp, tv, tx, ty = _checked(spec, params, x, y, v)
    n = spec.n_layers

    def quantities(*flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p = _tree(flat)
        dz = [torch.zeros(x.shape[0], k, dtype=tx.dtype, requires_grad=True)
              for k in spec.layer_sizes[1:]]
        da = [torch.zeros_like(t, requires_grad=True) for t in dz]
        _, cache = forward(spec, p, tx, dz, da)
        loss = loss_value(spec, p, cache, ty, SECOND_ORDER_LOSSES)
        grads = torch.autograd.grad(loss, (*flat, *dz, *da), create_graph=True,
                                    allow_unused=True)
        grads = tuple(torch.zeros_like(t) if g is None else g     # the fused output's d_a
                      for g, t in zip(grads, (*flat, *dz, *da)))
        return (*(c["z"] for c in cache), *(c["a"] for c in cache), *grads)

    _, tangents = torch.autograd.functional.jvp(quantities, _flat(tp), _flat(tv))
    t = [g.detach().numpy() for g in tangents]
    z_dot, a_dot, d_p, d_z, d_a = t[:n], t[n:2 * n], t[2 * n:4 * n], t[4 * n:5 * n], t[5 * n:]
    layers = []
    for l in range(n):
        layer = {"R{z}": z_dot[l], "R{a}": a_dot[l], "R{d_a}": d_a[l], "R{d_z}": d_z[l],
                 "R{d_W}": d_p[2 * l], "R{d_b}": d_p[2 * l + 1]}
        if spec.fused_output and l == n - 1:
            del layer["R{d_a}"]
        layers.append(layer)
    return layers


def per_example_grads(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray,
                      y: np.ndarray, masks: Masks | None = None) -> Params:
    """handwritten.derivatives.per_example_grads' contract, by vmap over torch.func.grad of
    each sample's loss (a batch of one, the data term only), times 1/batch under "mean".
    A ``Sequential`` (its dropout's ``masks``, one entry per node):
    reference_torch.layers.per_example_grads."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.per_example_grads(spec, params, x, y, masks)
    if masks is not None:
        raise ValueError("masks are a Sequential's: a NetworkSpec's per_example_grads "
                         "takes none")
    checks.check_problem(spec, params, x, y)
    data = dataclasses.replace(spec, weight_decay=0.0)

    def one(p: list[dict[str, torch.Tensor]], xi: torch.Tensor, yi: torch.Tensor
            ) -> torch.Tensor:
        _, cache = forward(data, p, xi[None])
        return loss_value(data, p, cache, yi[None])

    share = 1.0 / x.shape[0] if spec.reduction == "mean" else 1.0
    grads = vmap(grad(one), in_dims=(None, 0, 0))(to_torch(params, requires_grad=False),
                                                  tensor(x), tensor(y))
    return [{k: g * share for k, g in layer.items()} for layer in from_torch(grads)]
