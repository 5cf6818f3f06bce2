"""Forward mode, second order and per-example gradients through torch: nothing derived by
hand.

    jvp                  torch.func.jvp of the network's output in the params
    hvp                  torch.autograd.functional.hvp of the loss (double backward)

Second derivatives of bce come from it written out in torch ops (``SECOND_ORDER_LOSSES``:
torch's own binary_cross_entropy double backward adds 1e-12 to a and 1 - a).
    gnvp                 torch.func.jvp of the loss's input, the loss's Hessian there
                         (torch.autograd.functional.hvp), then torch.func.vjp back
    r_trace              torch.autograd.functional.jvp of every quantity of the trace
                         (z, a and autograd's d_a, d_z, d_W, d_b against zero perturbations;
                         a Sequential's: of reference_torch.layers' trace)
    per_example_grads    torch.func.vmap(torch.func.grad(one sample's loss)), times the
                         reduction's share of that sample (1/batch under "mean")

jvp, hvp, gnvp and per_example_grads take a NetworkSpec with hidden blocks (norms in training
mode, dropout with its masks, one per hidden layer, residual skips: reference_torch.network's
forward), and a ``Sequential`` (its dropout's masks, one entry per node), which they hand to
reference_torch.layers: the same framework calls on the fold of its layers.
r_trace takes a plain NetworkSpec (per layer) and a ``Sequential`` (per node, with its
masks), not a NetworkSpec's hidden blocks, as handwritten's.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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


def _no_masks(masks: Masks | None, name: str) -> None:
    if masks is not None:
        raise ValueError(f"masks are a Sequential's: a NetworkSpec's {name} takes none")


def _blocks_only(spec: NetworkSpec, masks: Masks | None, name: str) -> None:
    """A NetworkSpec takes masks where it has hidden blocks (its dropout's, one per hidden
    layer, checked with the problem), as handwritten's does; a plain one takes none."""
    if not spec.has_blocks:
        _no_masks(masks, name)


def jvp(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, v: Params,
        masks: Masks | None = None) -> tuple[np.ndarray, np.ndarray]:
    """handwritten.derivatives.jvp's contract, by torch.func.jvp.  A ``Sequential`` (its
    dropout's ``masks``, one entry per node): reference_torch.layers.jvp."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.jvp(spec, params, x, v, masks)
    _blocks_only(spec, masks, "jvp")
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_params(spec, v, dtype, name="v")
    checks.check_masks(spec, masks, x.shape[0])
    tx = tensor(x)
    with _quiet_forward_ad():
        result = torch_jvp(lambda p: forward(spec, p, tx, masks=masks)[0],
                           (to_torch(params, requires_grad=False),),
                           (to_torch(v, requires_grad=False),))
    out, tangent = result[0], result[1]               # (primal output, tangent output)
    return out.detach().numpy(), tangent.detach().numpy()


def _checked(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray, v: Params,
             masks: Masks | None = None
             ) -> tuple[TorchParams, TorchParams, torch.Tensor, torch.Tensor]:
    checks.check_problem(spec, params, x, y, masks)
    checks.check_params(spec, v, params[0]["W"].dtype, name="v")
    return (to_torch(params, requires_grad=False), to_torch(v, requires_grad=False),
            tensor(x), tensor(y))


def _flat(tree: TorchParams) -> tuple[torch.Tensor, ...]:
    """W0, b0, W1, b1, ...: a plain spec's leaves (r_trace reads them so)."""
    return tuple(t for layer in tree for t in (layer["W"], layer["b"]))


def _tree(flat: tuple[torch.Tensor, ...]) -> TorchParams:
    return [{"W": flat[i], "b": flat[i + 1]} for i in range(0, len(flat), 2)]


def keys(tree: TorchParams) -> list[tuple[int, str]]:
    """(layer or node, param name) of every leaf, in params order: W, b, and a norm's gamma,
    beta; nothing for a node of a Sequential without params."""
    return [(i, k) for i, layer in enumerate(tree) for k in layer]


def leaves(tree: TorchParams) -> tuple[torch.Tensor, ...]:
    """Every leaf in ``keys`` order: what torch.autograd.functional takes."""
    return tuple(tree[i][k] for i, k in keys(tree))


def rebuild(names: list[tuple[int, str]], size: int, flat: Sequence[torch.Tensor]
            ) -> TorchParams:
    """The params-shaped list of ``size`` entries from leaves in ``names`` order."""
    tree: TorchParams = [{} for _ in range(size)]
    for (i, k), t in zip(names, flat):
        tree[i][k] = t
    return tree


def with_weight_decay(product: Params, v: Params, weight_decay: float,
                      decayed: Sequence[tuple[str, ...]]) -> Params:
    """J^T H_loss J v plus the penalty's exact lambda p_dot on every decayed param
    (``decayed``: the names per entry -- each node's DECAYED, or W on each of a
    NetworkSpec's layers)."""
    return [{k: g + weight_decay * t[k] if k in names else g for k, g in layer.items()}
            for layer, t, names in zip(product, v, decayed, strict=True)]


def hvp(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
        v: Params, masks: Masks | None = None) -> Params:
    """handwritten.derivatives.hvp's contract, by torch.autograd.functional.hvp.  A
    ``Sequential`` (its dropout's ``masks``, one entry per node): reference_torch.layers.hvp."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.hvp(spec, params, x, y, v, masks)
    _blocks_only(spec, masks, "hvp")
    tp, tv, tx, ty = _checked(spec, params, x, y, v, masks)
    names, size = keys(tp), len(tp)

    def loss(*flat: torch.Tensor) -> torch.Tensor:
        p = rebuild(names, size, flat)
        return loss_value(spec, p, forward(spec, p, tx, masks=masks)[1], ty,
                          SECOND_ORDER_LOSSES)

    _, product = torch.autograd.functional.hvp(loss, leaves(tp), leaves(tv))
    return from_torch(rebuild(names, size, product))


def gnvp(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
         v: Params, masks: Masks | None = None) -> Params:
    """handwritten.derivatives.gnvp's contract: J^T H_loss J v (J of the loss's input, z_out
    for a fused loss, else a_out) by torch.func.jvp, the loss's hvp and torch.func.vjp, plus
    lambda W_dot.  A ``Sequential`` (its dropout's ``masks``): reference_torch.layers.gnvp."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.gnvp(spec, params, x, y, v, masks)
    _blocks_only(spec, masks, "gnvp")
    tp, tv, tx, ty = _checked(spec, params, x, y, v, masks)

    def loss_input(p: TorchParams) -> torch.Tensor:
        out = forward(spec, p, tx, masks=masks)[1][-1]
        return out["z"] if spec.fused_output else out["a"]

    product = gauss_newton(loss_input, tp, tv, spec.loss, ty, spec.reduction)
    return with_weight_decay(from_torch(product), v, spec.weight_decay, [("W",)] * len(v))


def gauss_newton(loss_input: Any, tp: TorchParams, tv: TorchParams, name: str,
                 ty: torch.Tensor, reduction: str) -> Any:
    """J^T H_loss J v, J the Jacobian of ``loss_input`` (params -> the loss's input) in the
    params: torch.func.jvp forward, the loss's Hessian in its input by double backward,
    torch.func.vjp back.  Each loss reads only its own input (z fused, a otherwise)."""
    def loss_of(o: torch.Tensor) -> torch.Tensor:
        return loss_fn(name, SECOND_ORDER_LOSSES)(o, o, ty, reduction)

    with _quiet_forward_ad():
        pushed = torch_jvp(loss_input, (tp,), (tv,))
    o, j_v = pushed[0], pushed[1]                      # J v at the loss's input o
    # the loss's Hessian in its input by double backward (torch.func.jvp over grad of
    # mse_loss fails in torch 2.13: "ZeroTensors are immutable")
    _, h_j_v = torch.autograd.functional.hvp(loss_of, o.detach(), j_v.detach())
    (product,) = vjp(loss_input, tp)[1](h_j_v)
    return product


def r_trace(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
            v: Params, masks: Masks | None = None) -> list[dict[str, np.ndarray]]:
    """handwritten.derivatives.r_trace's contract: torch.autograd.functional.jvp (the double
    backward trick), along v, of a function returning every z, a and autograd's d_a, d_z,
    d_W, d_b (gradients against zero perturbations of every z and a, create_graph=True).
    torch.func.jvp over torch.func.grad would be the direct form, but fails on mse_loss in
    torch 2.13 ("ZeroTensors are immutable").  A ``Sequential`` (its dropout's ``masks``,
    one entry per node): reference_torch.layers.r_trace, of that module's trace."""
    if isinstance(spec, Sequential):
        # deferred: layers imports this module
        from reference_torch import layers
        return layers.r_trace(spec, params, x, y, v, masks)
    _no_masks(masks, "r_trace")
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
    found = []
    for l in range(n):
        layer = {"R{z}": z_dot[l], "R{a}": a_dot[l], "R{d_a}": d_a[l], "R{d_z}": d_z[l],
                 "R{d_W}": d_p[2 * l], "R{d_b}": d_p[2 * l + 1]}
        if spec.fused_output and l == n - 1:
            del layer["R{d_a}"]
        found.append(layer)
    return found


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
    _blocks_only(spec, masks, "per_example_grads")
    checks.check_problem(spec, params, x, y, masks)
    refuse_batch_norm(spec)
    data = dataclasses.replace(spec, weight_decay=0.0)
    rows = {l: torch.as_tensor(m) for l, m in enumerate(masks or []) if m is not None}

    def one(p: list[dict[str, torch.Tensor]], xi: torch.Tensor, yi: torch.Tensor,
            mi: dict[int, torch.Tensor]) -> torch.Tensor:
        sample_masks = [mi[l][None] if l in mi else None for l in range(spec.n_layers - 1)]
        _, cache = forward(data, p, xi[None], masks=sample_masks if mi else None)
        return loss_value(data, p, cache, yi[None])

    share = 1.0 / x.shape[0] if spec.reduction == "mean" else 1.0
    grads = vmap(grad(one), in_dims=(None, 0, 0, 0))(to_torch(params, requires_grad=False),
                                                     tensor(x), tensor(y), rows)
    return [{k: g * share for k, g in layer.items()} for layer in from_torch(grads)]


def refuse_batch_norm(spec: NetworkSpec) -> None:
    """NotImplementedError naming the first layer with batch norm: in training mode a
    sample's output depends on the whole batch (its mean and variance), so it has no
    gradient of its own."""
    for l in range(spec.n_layers - 1):
        if spec.norm(l) == "batch":
            raise NotImplementedError(
                f"layer {l}, batch norm (norms[{l}] = 'batch'), in training mode has no "
                "per-example gradient: a sample's output depends on the whole batch through "
                "its mean and variance")
