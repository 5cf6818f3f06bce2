"""A ``Sequential``'s layers through JAX: each kind's forward in jax.numpy / jax.lax, every
derivative from JAX autograd.

The network is folded layer by layer, one node after the other in ``Sequential.paths``
order (a Residual before its body); each layer kind is one entry of ``LAYERS``, keyed by
handwritten's class name, so a kind without its counterpart here is refused by name:

    Dense        z   = h @ W + b
    Activation   a   = f(h)                       reference_jax.activations
    BatchNorm1d  mean and biased variance over the batch (training), the running
                 statistics (evaluation); x_hat, n = gamma * x_hat + beta
    LayerNorm    the same over each sample's features          reference_jax.blocks
    Dropout      out = h * m / (1 - p)            the given keep-mask; evaluation: out = h
    Residual     out = body(h) + h
    Conv1d       z   = lax.conv_general_dilated(h, W, ...) + b      ('NCH', 'OIH', 'NCH')
    Conv2d       the same in ('NCHW', 'OIHW', 'NCHW'); "same" / "valid" as JAX's 'SAME' /
                 'VALID' (the odd pad after, as torch), ints as (p, p) pairs
    MaxPool2d    out = lax.reduce_window(pad(h, -inf), max)
    AvgPool2d    out = lax.reduce_window(pad(h, 0), add) / count   count: kh kw, or the
                 window's elements inside the input (count_include_pad=False)
    AdaptiveAvgPool2d  out = mean of h over (H, W), kept as (C, 1, 1)
    Flatten      out = h.reshape(batch, -1)
    BatchNorm2d  BatchNorm1d's equations with each channel over (batch, H, W)
    GroupNorm    each sample's groups over their channels and positions, then the affine

Params, masks, running statistics and the trace have one entry per node.  The trace's
d_<name> of every graph quantity (z, a, x_hat, n, out) is autograd's too: the loss is
written as a function of a zero perturbation added to each of them, and its gradient with
respect to that perturbation is exactly dL/d<name> (as reference_jax.network's trace).
Each entry point is one jitted program per Sequential (a static argument) and shape.

Second order, as reference_jax.derivatives does it for a NetworkSpec:

    hvp      jax.jvp of jax.grad of the loss (forward over reverse)
    r_trace  jax.jvp, along v, of every quantity of the trace above
    gnvp     jax.jvp of the loss's input, the loss's Hessian there (jax.jvp of its
             jax.grad), jax.vjp back through the layers, plus lambda W_dot

Training (``reference_jax.training.train``) takes each step's loss and every BatchNorm1d's
(BatchNorm2d's) batch mean, variance and count from ``loss_and_statistics``, and moves the
running statistics by torch's rule written in jnp (``reference_jax.blocks.running_update``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from handwritten import checks
from handwritten.layers import Activation, BatchNorm1d, Sequential
from handwritten.spec import NORM_EPS, Params, Trace
from reference_jax import blocks
from reference_jax.activations import activation
from reference_jax.losses import gauss_newton
from reference_jax.losses import loss as loss_fn
from reference_jax.network import JaxParams, _masks, from_jax, to_jax
from reference_jax.precision import float64

Arrays = dict[str, jax.Array]
JaxMasks = list[jax.Array | None] | None


@dataclass
class Pass:
    """One pass through the layers: params, mode, masks and running statistics per node,
    the trace's zero perturbations per node (``dq``), and every node's forward quantities
    as the fold meets them."""

    params: JaxParams
    training: bool = True
    masks: Sequence[Any] | None = None
    running: Sequence[Arrays] | None = None
    dq: Sequence[Arrays] | None = None
    nodes: list[Arrays] = field(default_factory=list)

    def fold(self, layers: Sequence[Any], h: jax.Array) -> jax.Array:
        """h through ``layers`` in order; each node's quantities in ``nodes``."""
        for layer in layers:
            kind = counterpart(layer)
            i = len(self.nodes)
            self.nodes.append({})                       # a Residual's body comes after it
            self.nodes[i] = kind(layer, i, h, self)
            h = list(self.nodes[i].values())[-1]        # the output is the last quantity
        return h

    def zero(self, i: int, name: str) -> jax.Array | None:
        """Node i's zero perturbation of the graph quantity ``name`` (None: not a trace)."""
        return None if self.dq is None else self.dq[i][name]

    def node(self, i: int, name: str, value: jax.Array) -> jax.Array:
        """A graph quantity as the rest of the pass sees it: plus its zero perturbation."""
        e = self.zero(i, name)
        return value if e is None else value + e

    def mask(self, i: int) -> Any:
        return None if self.masks is None else self.masks[i]


# the layer kinds: (layer, node, h, pass) -> the node's quantities, its output last --------


def dense(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    p = run.params[i]
    return {"z": run.node(i, "z", h @ p["W"] + p["b"])}


def activation_layer(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    return {"a": run.node(i, "a", activation(layer.name)(h))}


def _norm(norm: str, i: int, h: jax.Array, run: Pass) -> Arrays:
    """x_hat perturbed before n is formed from it, then n."""
    p = run.params[i]
    q = blocks.normalize(norm, h, p["gamma"], p["beta"], run.zero(i, "x_hat"))
    return q | {"n": run.node(i, "n", q["n"])}


def batch_norm(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    """Training: the batch's statistics (none updated here); evaluation: the running ones
    (x_hat and n only)."""
    if run.training:
        return _norm("batch", i, h, run)
    assert run.running is not None, "evaluation mode needs the running statistics"
    p, stats = run.params[i], run.running[i]
    return blocks.normalize_running(h, stats["mean"], stats["var"], p["gamma"], p["beta"])


def layer_norm(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    return _norm("layer", i, h, run)


def dropout(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    mask = run.mask(i)
    out = h if not run.training or mask is None else \
        blocks.dropout(h, mask.astype(h.dtype), layer.p)
    return {"out": run.node(i, "out", out)}


def residual(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    return {"out": run.node(i, "out", run.fold(layer.body, h) + h)}


def conv(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    """Conv1d / Conv2d: lax.conv_general_dilated, a cross-correlation as torch's, in
    torch's layouts (channels first, W as (O, C / G, *kernel))."""
    p = run.params[i]
    axes = "HW"[:len(layer.kernel_size)]
    padding = (layer.padding.upper() if isinstance(layer.padding, str)
               else [(q, q) for q in layer.padding])
    z = lax.conv_general_dilated(h, p["W"], window_strides=layer.stride, padding=padding,
                                 rhs_dilation=layer.dilation,
                                 dimension_numbers=("NC" + axes, "OI" + axes, "NC" + axes),
                                 feature_group_count=layer.groups)
    if layer.bias:
        z = z + p["b"].reshape(-1, *(1,) * len(axes))
    return {"z": run.node(i, "z", z)}


def _pool(layer: Any, h: jax.Array, init: float, op: Callable[..., jax.Array]
          ) -> jax.Array:
    """lax.reduce_window of ``op`` over each (kh, kw) window of each channel, the padding
    filled with ``init`` (a Python number: the monoid's identity, which lets JAX take
    lax.max / lax.add for its differentiable reduce_window_max / _sum)."""
    return lax.reduce_window(h, init, op, (1, 1, *layer.kernel_size),
                             (1, 1, *layer.stride),
                             ((0, 0), (0, 0), *((q, q) for q in layer.padding)))


def max_pool(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    return {"out": run.node(i, "out", _pool(layer, h, -jnp.inf, lax.max))}


def avg_pool(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    """The window's sum over its count: kh kw, or (count_include_pad=False) the same
    window's sum over a field of ones the input's size (its elements inside the input)."""
    total = _pool(layer, h, 0.0, lax.add)
    if layer.count_include_pad:
        count: Any = layer.kernel_size[0] * layer.kernel_size[1]
    else:
        count = _pool(layer, jnp.ones((1, 1, *h.shape[2:]), h.dtype), 0.0, lax.add)
    return {"out": run.node(i, "out", total / count)}


def adaptive_avg_pool(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    return {"out": run.node(i, "out", jnp.mean(h, axis=(2, 3), keepdims=True))}


def flatten(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    """Each sample to one row, row-major (c, y, x) as torch.flatten(h, 1)."""
    return {"out": run.node(i, "out", h.reshape(h.shape[0], -1))}


def batch_norm_2d(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    """Spatial batch norm: BatchNorm1d's equations with each channel's statistics over
    (batch, H, W); mu and var (biased) are (C,), x_hat and n (batch, C, H, W).  Training:
    the batch's statistics (none updated here); evaluation: the running ones (x_hat and n
    only)."""
    p = run.params[i]
    gamma, beta = p["gamma"][:, None, None], p["beta"][:, None, None]
    if not run.training:
        assert run.running is not None, "evaluation mode needs the running statistics"
        stats = run.running[i]
        return blocks.normalize_running(h, stats["mean"][:, None, None],
                                        stats["var"][:, None, None], gamma, beta)
    mu = jnp.mean(h, axis=(0, 2, 3), keepdims=True)
    var = jnp.mean((h - mu) ** 2, axis=(0, 2, 3), keepdims=True)
    x_hat = run.node(i, "x_hat", (h - mu) / jnp.sqrt(var + NORM_EPS))
    return {"mu": mu.reshape(-1), "var": var.reshape(-1), "x_hat": x_hat,
            "n": run.node(i, "n", x_hat * gamma + beta)}


def group_norm(layer: Any, i: int, h: jax.Array, run: Pass) -> Arrays:
    """Each sample's channels in num_groups groups, each group normalized over its channels
    and positions (mu, var biased, (batch, G)), then n = x_hat * gamma + beta per channel."""
    p = run.params[i]
    g = h.reshape(h.shape[0], layer.num_groups, -1)
    mu = jnp.mean(g, axis=2, keepdims=True)
    var = jnp.mean((g - mu) ** 2, axis=2, keepdims=True)
    x_hat = run.node(i, "x_hat", ((g - mu) / jnp.sqrt(var + NORM_EPS)).reshape(h.shape))
    shape = (-1, *(1,) * (h.ndim - 2))
    return {"mu": mu[..., 0], "var": var[..., 0], "x_hat": x_hat,
            "n": run.node(i, "n", x_hat * p["gamma"].reshape(shape) + p["beta"].reshape(shape))}


LAYERS: dict[str, Callable[[Any, int, jax.Array, Pass], Arrays]] = {
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
"""Every layer kind by handwritten's class name, as its forward in JAX."""

GRAPH = ("z", "a", "x_hat", "n", "out")
"""The quantities that are nodes of the graph: the trace reports autograd's d_<name> of
each (mu and var are forward values only)."""


def counterpart(layer: Any) -> Callable[[Any, int, Any, Pass], Any]:
    """The layer's kind in ``LAYERS``; NotImplementedError naming a kind handwritten has
    and this table has not."""
    return checks.counterpart(LAYERS, "layer", type(layer).__name__,
                              "reference_jax/layers.py (LAYERS)")


def check_kinds(seq: Sequential) -> None:
    """Every node's kind has its counterpart here (``counterpart``), checked before anything
    runs -- a jitted program is traced once per Sequential, and not looked up again."""
    for _, layer in seq.nodes:
        counterpart(layer)


# the network ------------------------------------------------------------------------------


def forward(seq: Sequential, run: Pass, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The loss's (z, a): the last layer's input and output when it is an Activation, its
    output twice otherwise.  ``run.nodes`` holds every node's quantities afterwards."""
    h = run.fold(seq.layers[:-1], x)
    out = run.fold(seq.layers[-1:], h)
    assert len(run.nodes) == len(seq.nodes), "the fold met every node once"
    return (h, out) if isinstance(seq.layers[-1], Activation) else (out, out)


def loss_value(seq: Sequential, params: JaxParams, z: jax.Array, a: jax.Array, y: jax.Array,
               weight_decay: bool = True) -> jax.Array:
    """The loss plus weight_decay / 2 * sum ||p||^2 over every node's DECAYED params
    (``weight_decay`` False: the data term alone)."""
    loss = loss_fn(seq.loss)(z, a, y, seq.reduction)
    if weight_decay and seq.weight_decay:       # every param a layer names in DECAYED
        loss = loss + seq.weight_decay / 2 * sum(jnp.sum(p[k] ** 2) for (_, layer), p
                                                 in zip(seq.nodes, params, strict=True)
                                                 for k in layer.DECAYED)
    return loss


def _loss(params: JaxParams, x: jax.Array, y: jax.Array, masks: JaxMasks, seq: Sequential
          ) -> jax.Array:
    z, a = forward(seq, Pass(params, masks=masks), x)
    return loss_value(seq, params, z, a, y)


@partial(jax.jit, static_argnums=4)
def _loss_and_grads(params: JaxParams, x: jax.Array, y: jax.Array, masks: JaxMasks,
                    seq: Sequential) -> tuple[jax.Array, JaxParams]:
    return jax.value_and_grad(_loss)(params, x, y, masks, seq)


@float64
def loss_and_grads(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                   masks: Sequence[Any] | None = None) -> tuple[Any, Params]:
    """The loss and jax.value_and_grad's gradient for every node's params ({} where it has
    none)."""
    checks.check_problem(seq, params, x, y, masks)
    check_kinds(seq)
    loss, grads = _loss_and_grads(to_jax(params), jnp.asarray(x), jnp.asarray(y),
                                  _masks(masks), seq)
    return np.asarray(loss)[()], from_jax(grads)


def _perturbed_loss(params: JaxParams, dq: list[Arrays], x: jax.Array, y: jax.Array,
                    masks: JaxMasks, seq: Sequential) -> tuple[jax.Array, list[Arrays]]:
    run = Pass(params, masks=masks, dq=dq)
    z, a = forward(seq, run, x)
    return loss_value(seq, params, z, a, y), run.nodes


@partial(jax.jit, static_argnums=4)
def _trace(params: JaxParams, x: jax.Array, y: jax.Array, masks: JaxMasks, seq: Sequential
           ) -> tuple[jax.Array, list[Arrays], JaxParams, list[Arrays]]:
    shapes = Pass(params, masks=masks)
    forward(seq, shapes, x)                 # traced for the quantities' shapes only
    dq = [{k: jnp.zeros_like(v) for k, v in node.items() if k in GRAPH}
          for node in shapes.nodes]
    grad_fn = jax.value_and_grad(_perturbed_loss, argnums=(0, 1), has_aux=True)
    (loss, nodes), (d_params, d_q) = grad_fn(params, dq, x, y, masks, seq)
    return loss, nodes, d_params, d_q


@float64
def trace(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray,
          masks: Sequence[Any] | None = None) -> Trace:
    """Every node's forward quantities and autograd's d_ of each graph quantity (against
    its zero perturbation) and of each param: one dict per node (the output Activation of
    a fused loss has no d_a: the loss reads its input)."""
    checks.check_problem(seq, params, x, y, masks)
    check_kinds(seq)
    loss, nodes, d_params, d_q = _trace(to_jax(params), jnp.asarray(x), jnp.asarray(y),
                                        _masks(masks), seq)
    return Trace.from_layers(loss, _node_quantities(seq, nodes, d_q, d_params))


def _node_quantities(seq: Sequential, nodes: Any, d_q: Any, d_params: Any
                     ) -> list[dict[str, Any]]:
    """Each node's quantities under ``trace``'s names: its forward ones, autograd's d_ of
    each graph quantity (none at a fused output: the loss reads its input), d_ of each
    param."""
    last = len(seq.nodes) - 1
    out = []
    for i, (quantities, d_graph, d_p) in enumerate(zip(nodes, d_q, d_params)):
        node = dict(quantities)
        if not (seq.fused_output and i == last):
            node |= {f"d_{k}": g for k, g in d_graph.items()}
        node |= {f"d_{k}": g for k, g in d_p.items()}
        out.append(node)
    return out


@partial(jax.jit, static_argnums=5)
def _trace_tangents(params: JaxParams, v: JaxParams, x: jax.Array, y: jax.Array,
                    masks: JaxMasks, seq: Sequential) -> Any:
    _, tangents = jax.jvp(lambda p: _trace(p, x, y, masks, seq), (params,), (v,))
    return tangents


@float64
def r_trace(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray, v: Params,
            masks: Sequence[Any] | None = None) -> list[dict[str, np.ndarray]]:
    """Every R-quantity of the hvp: jax.jvp, along v, of ``trace``'s every quantity (the
    forward ones, autograd's d_ of each graph quantity and of each param), one dict per
    node with ``trace``'s names as R{name}."""
    checks.check_problem(seq, params, x, y, masks)
    checks.check_params(seq, v, checks.check_x(seq, x), name="v")
    check_kinds(seq)
    _, nodes, d_params, d_q = _trace_tangents(to_jax(params), to_jax(v), jnp.asarray(x),
                                              jnp.asarray(y), _masks(masks), seq)
    return [{f"R{{{k}}}": np.array(t) for k, t in node.items()}
            for node in _node_quantities(seq, nodes, d_q, d_params)]


@partial(jax.jit, static_argnums=3)
def _predict(params: JaxParams, x: jax.Array, running: list[Arrays] | None, seq: Sequential
             ) -> jax.Array:
    return forward(seq, Pass(params, training=False, running=running), x)[1]


@float64
def predict(seq: Sequential, params: Params, x: np.ndarray,
            running: Sequence[dict[str, np.ndarray]] | None = None) -> np.ndarray:
    """The output in evaluation mode: no dropout, batch norm normalized with ``running``
    (one dict per node: {"mean", "var"} on a BatchNorm1d or BatchNorm2d, {} elsewhere)."""
    dtype = checks.check_x(seq, x)
    checks.check_params(seq, params, dtype)
    checks.check_running(seq, running, dtype)
    check_kinds(seq)
    jrun = None if running is None else to_jax(list(running))
    return np.array(_predict(to_jax(params), jnp.asarray(x), jrun, seq))


@partial(jax.jit, static_argnums=4)
def _jvp(params: JaxParams, v: JaxParams, x: jax.Array, masks: JaxMasks, seq: Sequential
         ) -> tuple[jax.Array, jax.Array]:
    return jax.jvp(lambda p: forward(seq, Pass(p, masks=masks), x)[1], (params,), (v,))


@float64
def jvp(seq: Sequential, params: Params, x: np.ndarray, v: Params,
        masks: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The output (training mode, as loss_and_grads sees it) and its derivative along the
    params-shaped v, by jax.jvp."""
    dtype = checks.check_x(seq, x)
    checks.check_params(seq, params, dtype)
    checks.check_params(seq, v, dtype, name="v")
    checks.check_masks(seq, masks, x.shape[0])
    check_kinds(seq)
    out, tangent = _jvp(to_jax(params), to_jax(v), jnp.asarray(x), _masks(masks), seq)
    return np.array(out), np.array(tangent)


def refuse_batch_norm(seq: Sequential) -> None:
    """NotImplementedError naming the first BatchNorm1d or BatchNorm2d: in training mode a
    sample's output depends on the whole batch (its mean and variance), so it has no
    gradient of its own."""
    for path, layer in seq.nodes:
        if isinstance(layer, BatchNorm1d):
            raise NotImplementedError(
                f"layer {path}, {layer!r}, in training mode has no per-example gradient: a "
                "sample's output depends on the whole batch through its mean and variance")


@partial(jax.jit, static_argnums=4)
def _per_example(params: JaxParams, x: jax.Array, y: jax.Array, masks: JaxMasks,
                 seq: Sequential) -> JaxParams:
    def one(p: JaxParams, xi: jax.Array, yi: jax.Array, mi: JaxMasks) -> jax.Array:
        rows = None if mi is None else [None if m is None else m[None] for m in mi]
        z, a = forward(seq, Pass(p, masks=rows), xi[None])
        return loss_value(seq, p, z, a, yi[None], weight_decay=False)

    return jax.vmap(jax.grad(one), in_axes=(None, 0, 0, 0))(params, x, y, masks)


@float64
def per_example_grads(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                      masks: Sequence[Any] | None = None) -> Params:
    """Each sample's gradient of its own term of the loss (the data term: no weight decay),
    one dict per node with a leading batch axis: jax.vmap over jax.grad of a batch of one
    (its row of every mask), times 1/batch under "mean"."""
    checks.check_problem(seq, params, x, y, masks)
    check_kinds(seq)
    refuse_batch_norm(seq)
    share = 1.0 / x.shape[0] if seq.reduction == "mean" else 1.0
    grads = _per_example(to_jax(params), jnp.asarray(x), jnp.asarray(y), _masks(masks), seq)
    return [{k: g * share for k, g in node.items()} for node in from_jax(grads)]


# training: the loss and batch norm's batch statistics ---------------------------------------


def init_running(seq: Sequential, dtype: Any) -> list[Arrays]:
    """Batch norm's running statistics before the first step, as torch.nn.BatchNorm1d (and
    BatchNorm2d) start them: mean 0, variance 1, shape (num_features,), on every
    BatchNorm1d or BatchNorm2d node, {} on every other."""
    return [{"mean": jnp.zeros(layer.num_features, dtype),
             "var": jnp.ones(layer.num_features, dtype)}
            if isinstance(layer, BatchNorm1d) else {}       # a BatchNorm2d is one too
            for _, layer in seq.nodes]


def loss_and_statistics(params: JaxParams, x: jax.Array, y: jax.Array, seq: Sequential,
                        masks: JaxMasks = None) -> tuple[jax.Array, list[Any]]:
    """The loss (training mode, the given masks), and every batch-norm node's batch (mu,
    var, count) -- count the values each statistic is over (the batch; a BatchNorm2d's
    batch H W), which the unbiased running variance divides by count - 1 -- None on every
    other node: the aux output a training step updates the running statistics with."""
    run = Pass(params, masks=masks)
    z, a = forward(seq, run, x)
    stats = [(q["mu"], q["var"], q["x_hat"].size // q["mu"].size)
             if isinstance(layer, BatchNorm1d) else None      # a BatchNorm2d is one too
             for (_, layer), q in zip(seq.nodes, run.nodes)]
    return loss_value(seq, params, z, a, y), stats


# second order -----------------------------------------------------------------------------


def _second_order_inputs(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                         v: Params, masks: Sequence[Any] | None
                         ) -> tuple[JaxParams, JaxParams, jax.Array, jax.Array, JaxMasks]:
    checks.check_problem(seq, params, x, y, masks)
    checks.check_params(seq, v, checks.check_x(seq, x), name="v")
    check_kinds(seq)
    return to_jax(params), to_jax(v), jnp.asarray(x), jnp.asarray(y), _masks(masks)


@partial(jax.jit, static_argnums=5)
def _hvp(params: JaxParams, v: JaxParams, x: jax.Array, y: jax.Array, masks: JaxMasks,
         seq: Sequential) -> JaxParams:
    _, product = jax.jvp(jax.grad(lambda p: _loss(p, x, y, masks, seq)), (params,), (v,))
    return product


@float64
def hvp(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray, v: Params,
        masks: Sequence[Any] | None = None) -> Params:
    """The Hessian of the loss (weight decay included; training mode, the given masks) times
    the params-shaped v, by jax.jvp of jax.grad (forward over reverse)."""
    return from_jax(_hvp(*_second_order_inputs(seq, params, x, y, v, masks), seq))


@partial(jax.jit, static_argnums=5)
def _gnvp(params: JaxParams, v: JaxParams, x: jax.Array, y: jax.Array, masks: JaxMasks,
          seq: Sequential) -> JaxParams:
    """J^T H_loss J v, without the weight decay's lambda v."""
    def loss_input(p: JaxParams) -> jax.Array:
        z, a = forward(seq, Pass(p, masks=masks), x)
        return z if seq.fused_output else a

    return gauss_newton(loss_input, params, v, seq.loss, y, seq.reduction)


@float64
def gnvp(seq: Sequential, params: Params, x: np.ndarray, y: np.ndarray, v: Params,
         masks: Sequence[Any] | None = None) -> Params:
    """The generalized Gauss-Newton product J^T H_loss J v + lambda W_dot, J the Jacobian of
    the loss's input (the last Activation's input for a fused loss, else the output) in the
    params: jax.jvp, the loss's Hessian by jax.jvp of jax.grad, jax.vjp back."""
    product = from_jax(_gnvp(*_second_order_inputs(seq, params, x, y, v, masks), seq))
    return with_weight_decay(product, v, seq.weight_decay,
                             [layer.DECAYED for _, layer in seq.nodes])


def with_weight_decay(product: Params, v: Params, weight_decay: float,
                      decayed: Sequence[tuple[str, ...]]) -> Params:
    """J^T H_loss J v plus the penalty's exact lambda p_dot on every decayed param
    (``decayed``: the names per entry -- each node's DECAYED, or W on each of a
    NetworkSpec's layers)."""
    return [{k: g + weight_decay * t[k] if k in names else g for k, g in node.items()}
            for node, t, names in zip(product, v, decayed, strict=True)]
