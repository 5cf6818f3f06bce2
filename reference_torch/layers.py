"""A ``Sequential``'s layers through torch: each kind's forward in torch / torch.nn.functional,
every derivative from autograd.

The network is folded layer by layer, one node after the other in ``Sequential.paths``
order (a Residual before its body); each layer kind is one entry of ``LAYERS``, keyed by
handwritten's class name, so a kind without its counterpart here is refused by name:

    Dense        z   = h @ W + b
    Activation   a   = f(h)                       reference_torch.activations
    BatchNorm1d  x_hat, n by F.batch_norm         training: the batch's statistics;
                                                  evaluation: the running ones
    LayerNorm    x_hat, n by F.layer_norm         reference_torch.blocks.normalize
    Dropout      out = h * m / (1 - p)            the given keep-mask; evaluation: out = h
    Residual     out = body(h) + h
    Conv1d       z   = F.conv1d(h, W, b, ...)     padding as given ("same"/"valid" too)
    Conv2d       z   = F.conv2d(h, W, b, ...)     b None without bias
    MaxPool2d    out = F.max_pool2d(h, k, s, p)
    AvgPool2d    out = F.avg_pool2d(h, k, s, p, count_include_pad=...)
    AdaptiveAvgPool2d  out = F.adaptive_avg_pool2d(h, (1, 1))
    Flatten      out = torch.flatten(h, 1)
    BatchNorm2d  x_hat, n by F.batch_norm         on the (batch, C, H, W) input: each
                                                  channel over (batch, H, W)
    GroupNorm    x_hat by F.group_norm            each sample's groups; n = gamma x_hat + beta

Params, masks, running statistics and the trace have one entry per node.  The trace keeps
the gradient of every graph quantity (z, a, x_hat, n, out: ``retain_grad``), so after
``loss.backward()`` its .grad is autograd's d_<name>, and each param's .grad its d_W, d_b,
d_gamma, d_beta; mu and var are forward values (``reference_torch.blocks``).

Second order, as reference_torch.derivatives does it for a NetworkSpec:

    hvp      torch.autograd.functional.hvp of the loss (double backward)
    gnvp     torch.func.jvp of the loss's input, the loss's Hessian there
             (torch.autograd.functional.hvp), torch.func.vjp back, plus lambda W_dot
    r_trace  torch.autograd.functional.jvp of every quantity of the trace (autograd's
             gradients by torch.autograd.grad with create_graph=True; mu, var in the graph)

bce written out in torch ops (``SECOND_ORDER_LOSSES``) wherever a second derivative is taken.
Training (``reference_torch.training.train``) folds the same layers, each BatchNorm1d's
(BatchNorm2d's) running statistics the buffers of a torch.nn.BatchNorm1d (BatchNorm2d) that
F.batch_norm updates itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap
from torch.func import jvp as torch_jvp

from handwritten import checks
from handwritten.layers import Activation, BatchNorm1d, Sequential
from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS, Params, Trace
from reference_torch import blocks
from reference_torch.activations import activation
from reference_torch.derivatives import (
    _quiet_forward_ad,
    gauss_newton,
    keys,
    leaves,
    rebuild,
    with_weight_decay,
)
from reference_torch.losses import LOSSES, SECOND_ORDER_LOSSES, LossFn
from reference_torch.losses import loss as loss_fn
from reference_torch.network import (
    TorchParams,
    _grad,
    _scalar,
    from_torch,
    running_to_torch,
    tensor,
    to_torch,
)

Tensors = dict[str, torch.Tensor]


@dataclass
class Pass:
    """One pass through the layers: params, mode, masks and running statistics per node,
    and every node's forward quantities as the fold meets them."""

    params: TorchParams
    training: bool = True
    masks: Sequence[Any] | None = None
    running: Sequence[Tensors] | None = None
    retain: bool = False
    """The trace: every graph quantity keeps its .grad."""
    statistics_in_graph: bool = False
    """The R-trace: a norm's mu and var are computed in the graph (differentiable along a
    direction), not as forward values only."""
    nodes: list[Tensors] = field(default_factory=list)

    def fold(self, layers: Sequence[Any], h: torch.Tensor) -> torch.Tensor:
        """h through ``layers`` in order; each node's quantities in ``nodes``."""
        for layer in layers:
            kind = counterpart(layer)
            i = len(self.nodes)
            self.nodes.append({})                       # a Residual's body comes after it
            quantities = kind(layer, i, h, self)
            if self.retain:
                quantities = {k: _retained(t, h) if k in GRAPH else t
                              for k, t in quantities.items()}
            self.nodes[i] = quantities
            h = list(quantities.values())[-1]           # the output is the last quantity
        return h

    def mask(self, i: int) -> Any:
        return None if self.masks is None else self.masks[i]


def _retained(t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """A graph quantity that keeps its .grad, as a node of its own: a layer that hands its
    input on unchanged (identity, dropout without a mask) gets a copy, so that its .grad is
    its own output's gradient and not its input's (which, inside a Residual, also holds
    the skip's)."""
    if t is h:
        t = t.clone()
    t.retain_grad()
    return t


# the layer kinds: (layer, node, h, pass) -> the node's quantities, its output last --------


def dense(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    p = run.params[i]
    return {"z": h @ p["W"] + p["b"]}


def activation_layer(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    return {"a": activation(layer.name)(h)}


def batch_norm(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    """Training: F.batch_norm with the batch's statistics (and, given ``run.running`` -- a
    training run's buffers -- F.batch_norm updates them in place itself); evaluation: with
    the running ones (x_hat and n only)."""
    p = run.params[i]
    if run.training:
        return blocks.normalize("batch", h, p["gamma"], p["beta"],
                                None if run.running is None else run.running[i],
                                statistics_in_graph=run.statistics_in_graph)
    assert run.running is not None, "evaluation mode needs the running statistics"
    return blocks.normalize("batch", h, p["gamma"], p["beta"], run.running[i], training=False)


def layer_norm(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    p = run.params[i]
    return blocks.normalize("layer", h, p["gamma"], p["beta"],
                            statistics_in_graph=run.statistics_in_graph)


def dropout(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    mask = run.mask(i)
    if not run.training or mask is None:
        return {"out": h}
    return {"out": blocks.dropout(h, torch.as_tensor(mask, dtype=h.dtype), layer.p)}


def residual(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    return {"out": run.fold(layer.body, h) + h}


def conv(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    """Conv1d / Conv2d: torch's cross-correlation, the padding handed over as the layer
    has it (ints, or "same" / "valid", which F.conv1d / F.conv2d take themselves).  For
    "same" with an even dilated extent torch warns that it pads a copy of the input: a note
    on memory, not on the result, so it is silenced here."""
    p = run.params[i]
    op = F.conv1d if len(layer.kernel_size) == 1 else F.conv2d
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
        z = op(h, p["W"], p["b"] if layer.bias else None, stride=layer.stride,
               padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    return {"z": z}


def max_pool(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    return {"out": F.max_pool2d(h, layer.kernel_size, layer.stride, layer.padding)}


def avg_pool(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    return {"out": F.avg_pool2d(h, layer.kernel_size, layer.stride, layer.padding,
                                count_include_pad=layer.count_include_pad)}


def adaptive_avg_pool(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    return {"out": F.adaptive_avg_pool2d(h, layer.output_size)}


def flatten(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    """Each sample to one row (the batch axis kept: a per-example pass is a batch of one
    too)."""
    return {"out": torch.flatten(h, 1)}


def _statistics_input(h: torch.Tensor, run: Pass) -> torch.Tensor:
    """What a norm's reported mu and var are computed from: h detached (forward values),
    or h itself for the R-trace (``Pass.statistics_in_graph``)."""
    return h if run.statistics_in_graph else h.detach()


def batch_norm_2d(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    """Spatial batch norm, as blocks.normalize does BatchNorm1d: F.batch_norm of the
    (batch, C, H, W) input without its affine (each channel over batch, H, W; given
    ``run.running`` in training, it updates those buffers in place, with the unbiased
    variance over batch H W: torch's own rule), then n = x_hat * gamma + beta per channel.
    mu and var (biased) are forward values from torch.var_mean; evaluation mode normalizes
    with the running statistics (x_hat and n only)."""
    p = run.params[i]
    gamma, beta = p["gamma"][:, None, None], p["beta"][:, None, None]
    stats = None if run.running is None else run.running[i]
    mean, var_ = (None, None) if stats is None else (stats["mean"], stats["var"])
    if not run.training:
        assert stats is not None, "evaluation mode needs the running statistics"
        x_hat = F.batch_norm(h, mean, var_, training=False, eps=NORM_EPS)
        return {"x_hat": x_hat, "n": x_hat * gamma + beta}
    x_hat = F.batch_norm(h, mean, var_, training=True, momentum=BATCH_NORM_MOMENTUM,
                         eps=NORM_EPS)
    var, mu = torch.var_mean(_statistics_input(h, run), dim=(0, 2, 3), correction=0)
    return {"mu": mu, "var": var, "x_hat": x_hat, "n": x_hat * gamma + beta}


def group_norm(layer: Any, i: int, h: torch.Tensor, run: Pass) -> Tensors:
    """F.group_norm without its affine (each sample's groups over their channels and
    positions), then n = x_hat * gamma + beta per channel; mu and var (biased, (batch, G))
    are forward values from torch.var_mean."""
    p = run.params[i]
    shape = (-1, *(1,) * (h.dim() - 2))
    x_hat = F.group_norm(h, layer.num_groups, eps=NORM_EPS)
    var, mu = torch.var_mean(_statistics_input(h, run).reshape(h.shape[0], layer.num_groups,
                                                               -1), dim=2, correction=0)
    return {"mu": mu, "var": var, "x_hat": x_hat,
            "n": x_hat * p["gamma"].reshape(shape) + p["beta"].reshape(shape)}


LAYERS: dict[str, Callable[[Any, int, torch.Tensor, Pass], Tensors]] = {
    "Dense": dense,
    "Activation": activation_layer,
    "BatchNorm1d": batch_norm,
    "LayerNorm": layer_norm,
    "Dropout": dropout,
    "Residual": residual,
    "Conv1d": conv,
    "Conv2d": conv,
    "MaxPool2d": max_pool,
    "AvgPool2d": avg_pool,
    "AdaptiveAvgPool2d": adaptive_avg_pool,
    "Flatten": flatten,
    "BatchNorm2d": batch_norm_2d,
    "GroupNorm": group_norm,
}
"""Every layer kind by handwritten's class name, as its forward in torch."""

GRAPH = ("z", "a", "x_hat", "n", "out")
"""The quantities that are nodes of the graph: the trace reports autograd's d_<name> of
each (mu and var are forward values only)."""


def counterpart(layer: Any) -> Callable[[Any, int, Any, Pass], Any]:
    """The layer's kind in ``LAYERS``; NotImplementedError naming a kind handwritten has
    and this table has not."""
    return checks.counterpart(LAYERS, "layer", type(layer).__name__,
                              "reference_torch/layers.py (LAYERS)")


def check_kinds(seq: Sequential) -> None:
    """Every node's kind has its counterpart here (``counterpart``), checked before anything
    runs."""
    for _, layer in seq.nodes:
        counterpart(layer)


# the network ------------------------------------------------------------------------------


def forward(seq: Sequential, run: Pass, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss's (z, a): the last layer's input and output when it is an Activation, its
    output twice otherwise.  ``run.nodes`` holds every node's quantities afterwards."""
    h = run.fold(seq.layers[:-1], x)
    out = run.fold(seq.layers[-1:], h)
    assert len(run.nodes) == len(seq.nodes), "the fold met every node once"
    return (h, out) if isinstance(seq.layers[-1], Activation) else (out, out)


def loss_value(seq: Sequential, tparams: TorchParams, z: torch.Tensor, a: torch.Tensor,
               y: torch.Tensor, weight_decay: bool = True,
               losses: Mapping[str, LossFn] = LOSSES) -> torch.Tensor:
    """The loss (from the table ``losses``: LOSSES, or SECOND_ORDER_LOSSES where a second
    derivative is taken) plus weight_decay / 2 * sum ||p||^2 over every node's DECAYED params
    (``weight_decay`` False: the data term alone)."""
    loss = loss_fn(seq.loss, losses)(z, a, y, seq.reduction)
    if weight_decay and seq.weight_decay:       # every param a layer names in DECAYED
        loss = loss + seq.weight_decay / 2 * sum(p[k].pow(2).sum() for (_, layer), p
                                                 in zip(seq.nodes, tparams, strict=True)
                                                 for k in layer.DECAYED)
    return loss


def loss_and_grads(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                   masks: Sequence[Any] | None = None) -> tuple[Any, Params]:
    """The loss and autograd's gradient for every node's params ({} where it has none)."""
    checks.check_problem(seq, params, x, y, masks)
    check_kinds(seq)
    tparams = to_torch(params)
    z, a = forward(seq, Pass(tparams, masks=masks), tensor(x))
    loss = loss_value(seq, tparams, z, a, tensor(y))
    loss.backward()
    return _scalar(loss), [{k: _grad(v) for k, v in p.items()} for p in tparams]


def trace(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray,
          masks: Sequence[Any] | None = None) -> Trace:
    """Every node's forward quantities and, by retain_grad(), autograd's d_ of each graph
    quantity and of each param: one dict per node (the output Activation of a fused loss
    has no d_a: the loss reads its input)."""
    checks.check_problem(seq, params, x, y, masks)
    check_kinds(seq)
    tparams = to_torch(params)
    tx = tensor(x).requires_grad_(True)      # every node in the graph, the first one too
    run = Pass(tparams, masks=masks, retain=True)
    z, a = forward(seq, run, tx)
    loss = loss_value(seq, tparams, z, a, tensor(y))
    loss.backward()
    last = len(seq.nodes) - 1
    nodes = []
    for i, (quantities, p) in enumerate(zip(run.nodes, tparams)):
        node = {k: t.detach().numpy() for k, t in quantities.items()}
        node |= {f"d_{k}": _grad(t) for k, t in quantities.items()
                 if k in GRAPH and not (seq.fused_output and i == last)}
        node |= {f"d_{k}": _grad(t) for k, t in p.items()}
        nodes.append(node)
    return Trace.from_layers(_scalar(loss), nodes)


def predict(seq: Sequential, params: Params, x: np.ndarray,
            running: Sequence[dict[str, np.ndarray]] | None = None) -> np.ndarray:
    """The output in evaluation mode: no dropout, batch norm by F.batch_norm(training=False)
    with ``running`` (one dict per node: {"mean", "var"} on a BatchNorm1d or BatchNorm2d,
    {} elsewhere)."""
    dtype = checks.check_x(seq, x)
    checks.check_params(seq, params, dtype)
    checks.check_running(seq, running, dtype)
    check_kinds(seq)
    truns = None if running is None else running_to_torch(list(running))
    with torch.no_grad():
        _, out = forward(seq, Pass(to_torch(params, requires_grad=False), training=False,
                                   running=truns), tensor(x))
    return out.numpy()


def jvp(seq: Sequential, params: Params, x: np.ndarray, v: Params,
        masks: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The output (training mode, as loss_and_grads sees it) and its derivative along the
    params-shaped v, by torch.func.jvp."""
    dtype = checks.check_x(seq, x)
    checks.check_params(seq, params, dtype)
    checks.check_params(seq, v, dtype, name="v")
    checks.check_masks(seq, masks, x.shape[0])
    check_kinds(seq)
    tx = tensor(x)
    with _quiet_forward_ad():
        result = torch_jvp(lambda p: forward(seq, Pass(p, masks=masks), tx)[1],
                           (to_torch(params, requires_grad=False),),
                           (to_torch(v, requires_grad=False),))
    out, tangent = result[0], result[1]               # (primal output, tangent output)
    return out.detach().numpy(), tangent.detach().numpy()


def refuse_batch_norm(seq: Sequential) -> None:
    """NotImplementedError naming the first BatchNorm1d or BatchNorm2d: in training mode a
    sample's output depends on the whole batch (its mean and variance), so it has no
    gradient of its own."""
    for path, layer in seq.nodes:
        if isinstance(layer, BatchNorm1d):
            raise NotImplementedError(
                f"layer {path}, {layer!r}, in training mode has no per-example gradient: a "
                "sample's output depends on the whole batch through its mean and variance")


def per_example_grads(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                      masks: Sequence[Any] | None = None) -> Params:
    """Each sample's gradient of its own term of the loss (the data term: no weight decay),
    one dict per node with a leading batch axis: vmap over torch.func.grad of a batch of
    one (its row of every mask), times 1/batch under "mean"."""
    checks.check_problem(seq, params, x, y, masks)
    check_kinds(seq)
    refuse_batch_norm(seq)
    rows = {i: torch.as_tensor(m) for i, m in enumerate(masks or []) if m is not None}

    def one(p: TorchParams, xi: torch.Tensor, yi: torch.Tensor, mi: dict[int, torch.Tensor]
            ) -> torch.Tensor:
        sample_masks = [mi[i][None] if i in mi else None for i in range(len(seq.nodes))]
        z, a = forward(seq, Pass(p, masks=sample_masks), xi[None])
        return loss_value(seq, p, z, a, yi[None], weight_decay=False)

    share = 1.0 / x.shape[0] if seq.reduction == "mean" else 1.0
    grads = vmap(grad(one), in_dims=(None, 0, 0, 0))(to_torch(params, requires_grad=False),
                                                     tensor(x), tensor(y), rows)
    return [{k: g * share for k, g in node.items()} for node in from_torch(grads)]


# training: batch norm's buffers -----------------------------------------------------------


def init_running(seq: Sequential, dtype: np.dtype[Any]) -> list[Tensors]:
    """Batch norm's running statistics before the first step: on every BatchNorm1d
    (BatchNorm2d) node the buffers torch.nn.BatchNorm1d(num_features) (BatchNorm2d) starts
    with itself (running_mean 0, running_var 1, shape (num_features,)), which F.batch_norm
    then updates in training mode; {} on every other node."""
    kind = torch.from_numpy(np.empty(0, dtype)).dtype
    running: list[Tensors] = []
    for _, layer in seq.nodes:
        if isinstance(layer, BatchNorm1d):              # a BatchNorm2d is one too
            module = getattr(torch.nn, type(layer).__name__)
            norm = module(layer.num_features, eps=NORM_EPS, momentum=BATCH_NORM_MOMENTUM,
                          dtype=kind)
            assert norm.running_mean is not None and norm.running_var is not None
            running.append({"mean": norm.running_mean, "var": norm.running_var})
        else:
            running.append({})
    return running


# second order -----------------------------------------------------------------------------


def _second_order_inputs(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                         v: Params, masks: Sequence[Any] | None
                         ) -> tuple[TorchParams, TorchParams, torch.Tensor, torch.Tensor]:
    checks.check_problem(seq, params, x, y, masks)
    checks.check_params(seq, v, checks.check_x(seq, x), name="v")
    check_kinds(seq)
    return (to_torch(params, requires_grad=False), to_torch(v, requires_grad=False),
            tensor(x), tensor(y))


def hvp(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray, v: Params,
        masks: Sequence[Any] | None = None) -> Params:
    """The Hessian of the loss (weight decay included; training mode, the given masks) times
    the params-shaped v, by torch.autograd.functional.hvp (double backward)."""
    tp, tv, tx, ty = _second_order_inputs(seq, params, x, y, v, masks)
    names, size = keys(tp), len(tp)

    def loss(*flat: torch.Tensor) -> torch.Tensor:
        p = rebuild(names, size, flat)
        z, a = forward(seq, Pass(p, masks=masks), tx)
        return loss_value(seq, p, z, a, ty, losses=SECOND_ORDER_LOSSES)

    _, product = torch.autograd.functional.hvp(loss, leaves(tp), leaves(tv))
    return from_torch(rebuild(names, size, product))


def gnvp(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray, v: Params,
         masks: Sequence[Any] | None = None) -> Params:
    """The generalized Gauss-Newton product J^T H_loss J v + lambda W_dot, J the Jacobian of
    the loss's input (the last Activation's input for a fused loss, else the output) in the
    params: torch.func.jvp, the loss's Hessian by double backward, torch.func.vjp back."""
    tp, tv, tx, ty = _second_order_inputs(seq, params, x, y, v, masks)

    def loss_input(p: TorchParams) -> torch.Tensor:
        z, a = forward(seq, Pass(p, masks=masks), tx)
        return z if seq.fused_output else a

    product = gauss_newton(loss_input, tp, tv, seq.loss, ty, seq.reduction)
    return with_weight_decay(from_torch(product), v, seq.weight_decay,
                             [layer.DECAYED for _, layer in seq.nodes])


def r_trace(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray, v: Params,
            masks: Sequence[Any] | None = None) -> list[dict[str, np.ndarray]]:
    """Every R-quantity of the hvp, one dict per node with ``trace``'s names as R{name}:
    torch.autograd.functional.jvp (the double backward trick), along v, of a function
    returning every node's forward quantities (mu and var in the graph) and autograd's
    gradient of the loss at each graph quantity and each param (torch.autograd.grad,
    create_graph=True).  torch.func.jvp over torch.func.grad would be the direct form, but
    fails on mse_loss in torch 2.13 ("ZeroTensors are immutable")."""
    tp, tv, tx, ty = _second_order_inputs(seq, params, x, y, v, masks)
    tx.requires_grad_(True)                  # every node in the graph, the first one too
    names, size = keys(tp), len(tp)
    last = len(seq.nodes) - 1
    layout: list[tuple[int, str]] = []       # (node, name) of each returned tensor

    def quantities(*flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p = rebuild(names, size, flat)
        run = Pass(p, masks=masks, retain=True, statistics_in_graph=True)
        z, a = forward(seq, run, tx)
        loss = loss_value(seq, p, z, a, ty, losses=SECOND_ORDER_LOSSES)
        graph = [(i, k) for i, node in enumerate(run.nodes) for k in node
                 if k in GRAPH and not (seq.fused_output and i == last)]
        at = (*(run.nodes[i][k] for i, k in graph), *flat)
        grads = torch.autograd.grad(loss, at, create_graph=True, allow_unused=True)
        layout[:] = [(i, k) for i, node in enumerate(run.nodes) for k in node]
        layout.extend((i, f"d_{k}") for i, k in (*graph, *names))
        return (*(t for node in run.nodes for t in node.values()),
                *(torch.zeros_like(t) if g is None else g for g, t in zip(grads, at)))

    _, tangents = torch.autograd.functional.jvp(quantities, leaves(tp), leaves(tv))
    out: list[dict[str, np.ndarray]] = [{} for _ in seq.nodes]
    for (i, k), t in zip(layout, tangents):
        out[i][f"R{{{k}}}"] = t.detach().numpy()
    return out
