"""The network as one fold over its layers: forward, backward and tangent, each one loop.

This is the only code that reads a network's structure.  Each layer does its own
derivation (``handwritten.layers``); the fold hands it its params, its input and its
``Context``, keeps its cache, and passes the output up (forward, tangent) or the gradient
down (backward):

    h_0 = x;      h_{i+1}, cache_i = layer_i.forward(p_i, h_i)
    d_out = dL/d(output) from the loss
    for i from the top down:  d_out, grads_i, quantities_i = layer_i.backward(p_i, cache_i, d_out)

A ``Residual`` is folded the same way inside, then joined with its input (out = body(h) +
h; its backward adds the skip's d_out to its body's d_in).  A fused loss hands back the
gradient at the last Activation's input, so the fold's backward starts below it.

Every list here (params, grads, masks, state, caches, the trace) has one entry per node in
``Sequential.paths`` order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from handwritten import checks
from handwritten.layers.activation import Activation
from handwritten.layers.base import Array, Cache, Context
from handwritten.layers.sequential import Sequential
from handwritten.losses import LOSSES
from handwritten.spec import Params, Scalar, Trace


@dataclass(frozen=True)
class Pass:
    """What one pass hands the layers: mode, masks and state per node, weight decay."""

    training: bool = True
    masks: Sequence[Any] | None = None
    state: Sequence[Any] | None = None
    weight_decay: float = 0.0
    _made: dict[int, tuple[Context, ...]] = field(default_factory=dict, compare=False,
                                                  repr=False)

    def contexts(self, n: int) -> tuple[Context, ...]:
        """The Context of each of n nodes, made once per Pass (a training run without
        dropout has one Pass, and every step reuses them)."""
        made = self._made.get(n)
        if made is None:
            made = self._made[n] = tuple(self.at(i) for i in range(n))
        return made

    def at(self, i: int) -> Context:
        """Node i's Context (one for every node when there are no masks and no state)."""
        if self.masks is None and self.state is None:
            return self._shared
        return Context(self.training, None if self.masks is None else self.masks[i],
                       None if self.state is None else self.state[i], self.weight_decay)

    @cached_property
    def _shared(self) -> Context:
        return Context(self.training, None, None, self.weight_decay)


# forward ---------------------------------------------------------------------


def forward(seq: Sequential, params: Params, x: Array, run: Pass = Pass()
            ) -> tuple[Array, list[Cache]]:
    """The output and every node's cache (each holds its output under ``layer.OUT``).
    A building block: it checks nothing (the entry points below check first)."""
    caches: list[Cache] = [{} for _ in seq.nodes]
    out = _forward(seq, seq.layers, params, x, run, caches, 0)
    return out, caches


def _forward(seq: Sequential, layers: Sequence[Any], params: Params, h: Array, run: Pass,
             caches: list[Cache], start: int) -> Array:
    ctxs = run.contexts(len(caches))
    for layer, i in zip(layers, seq.level(start)):
        if hasattr(layer, "body"):                       # a container: its body, then join
            out = layer.join(_forward(seq, layer.body, params, h, run, caches, i + 1), h)
            caches[i] = {layer.OUT: out}
        else:
            out, cache = layer.forward(params[i], h, ctxs[i])
            cache[layer.OUT] = out                       # the layer's own fresh dict
            caches[i] = cache
        h = out
    return h


def loss_inputs(seq: Sequential, caches: list[Cache]) -> tuple[Array, Array]:
    """The loss's (z, a): the last Activation's input and output, or the output twice."""
    last = seq.layers[-1]
    i = seq.level(0)[-1]
    if isinstance(last, Activation):
        return caches[i]["z"], caches[i]["a"]
    return caches[i][last.OUT], caches[i][last.OUT]


def loss_value(seq: Sequential, params: Params, caches: list[Cache], y: Array) -> Scalar:
    """L = loss(z, a, y) + weight_decay / 2 * sum ||p||^2 over every param p a layer names
    in its ``DECAYED`` (every W of a Dense or a convolution)."""
    return loss_from(seq, params, *loss_inputs(seq, caches), y)


def loss_from(seq: Sequential, params: Params, z: Array, a: Array, y: Array) -> Scalar:
    """The loss at the output's (z, a), plus the penalty on every node's ``DECAYED``
    params (``params``: one dict per node)."""
    return _penalised(seq, params, LOSSES[seq.loss].value(z, a, y, seq.reduction))


def _penalised(seq: Sequential, params: Params, loss: Scalar) -> Scalar:
    """loss + weight_decay / 2 * sum ||p||^2 over the ``decayed`` params."""
    if seq.weight_decay:
        loss = loss + seq.weight_decay / 2 * sum(np.sum(p * p) for p in decayed(seq, params))
    return loss


def decayed(seq: Sequential, params: Params) -> Iterator[Array]:
    """Every param the weight decay covers, node by node: those each layer names in its
    ``DECAYED`` (``params``: one dict per node)."""
    for (_, layer), p in zip(seq.nodes, params, strict=True):
        for key in layer.DECAYED:
            yield p[key]


def loss_and_d_start(seq: Sequential, params: Params, caches: list[Cache], y: Array
                     ) -> tuple[Scalar, Array]:
    """The loss (``loss_value``) and the gradient the backward starts from (``backward``'s:
    d_a, or d_z for a fused loss), the same numbers, from one reading of the output -- the
    loss's ``value_and_grad`` where it has one: what a training step needs first."""
    z, a = loss_inputs(seq, caches)
    loss = LOSSES[seq.loss]
    if loss.value_and_grad is not None:
        value, d_start = loss.value_and_grad(z, a, y, seq.reduction)
    else:
        value, d_start = loss.value(z, a, y, seq.reduction), loss.grad(z, a, y, seq.reduction)
    return _penalised(seq, params, value), d_start


# backward --------------------------------------------------------------------


def backward(seq: Sequential, params: Params, caches: list[Cache], y: Array,
             run: Pass = Pass(), keep: bool = True
             ) -> tuple[Params, list[dict[str, Array]]]:
    """Every node's gradients, and (``keep``) the d_<out> and inner d_ quantities on the
    way down.  A building block: it checks nothing."""
    z, a = loss_inputs(seq, caches)
    d_start = LOSSES[seq.loss].grad(z, a, y, seq.reduction)
    return backward_from_loss(seq, params, caches, d_start, run, keep)


def backward_from_loss(seq: Sequential, params: Params, caches: list[Cache], d_start: Array,
                       run: Pass = Pass(), keep: bool = True
                       ) -> tuple[Params, list[dict[str, Array]]]:
    """``backward`` from the loss's gradient ``d_start``, already formed
    (``loss_and_d_start``)."""
    layers = seq.layers[:-1] if seq.fused_output else seq.layers   # fused: d_z directly
    _, grads, deltas = backward_from(seq, params, caches, d_start, run, keep, layers)
    return grads, deltas


def backward_from(seq: Sequential, params: Params, caches: list[Cache], d_out: Array,
                  run: Pass = Pass(), keep: bool = True, layers: Sequence[Any] | None = None,
                  need_d_in: bool = False
                  ) -> tuple[Array | None, Params, list[dict[str, Array]]]:
    """The fold back from a given d_out, the gradient at the output of ``layers`` (the top
    level's first layers; all of them by default), with no loss: (d_in, grads, deltas) as
    a layer's backward, d_in the gradient at the input (``need_d_in``, else None)."""
    grads: Params = [{} for _ in seq.nodes]
    deltas: list[dict[str, Array]] | None = [{} for _ in seq.nodes] if keep else None
    d_in = _backward(seq, seq.layers if layers is None else layers, params, caches, d_out,
                     run, 0, need_d_in, grads, deltas)
    return d_in, grads, (deltas if deltas is not None else [])


def _backward(seq: Sequential, layers: Sequence[Any], params: Params, caches: list[Cache],
              d_out: Array, run: Pass, start: int, need_d_in: bool, grads: Params,
              deltas: list[dict[str, Array]] | None) -> Array | None:
    starts, ctxs = seq.level(start), run.contexts(len(caches))
    for k in reversed(range(len(layers))):
        layer, i = layers[k], starts[k]
        need = need_d_in or k > 0                        # the first layer's d_x: unused
        if deltas is not None:
            deltas[i][f"d_{layer.OUT}"] = d_out
        if hasattr(layer, "body"):
            d_body_in = _backward(seq, layer.body, params, caches, d_out, run, i + 1, need,
                                  grads, deltas)
            d_in = layer.join_backward(d_out, d_body_in) if need else None
        else:
            d_in, grads[i], inner = layer.backward(params[i], caches[i], d_out, ctxs[i], need)
            if deltas is not None:
                deltas[i] |= inner
        d_out = d_in                                     # type: ignore[assignment]
    return d_out


# the trace -------------------------------------------------------------------


def node_trace(seq: Sequential, caches: list[Cache], deltas: list[dict[str, Array]],
               grads: Params) -> list[dict[str, Array]]:
    """Each node's quantities in pass order: its FORWARD names from the cache, then its
    d_ quantities and its params' gradients as d_<key>."""
    out = []
    for (_, layer), cache, delta, grad in zip(seq.nodes, caches, deltas, grads):
        node = {q: cache[q] for q in layer.FORWARD if q in cache}
        found = delta | {f"d_{k}": g for k, g in grad.items()}
        node |= {q: found[q] for q in layer.BACKWARD if q in found}
        out.append(node)
    return out


# checked entry points --------------------------------------------------------


def loss_and_grads(seq: Sequential, params: Params, x: Array, y: Array,
                   masks: Sequence[Any] | None = None) -> tuple[Scalar, Params]:
    """The loss and its gradient with respect to every node's params (one dict per node,
    {} where a node has none)."""
    checks.check_problem(seq, params, x, y, masks)
    run = Pass(masks=masks, weight_decay=seq.weight_decay)
    _, caches = forward(seq, params, x, run)
    grads, _ = backward(seq, params, caches, y, run, keep=False)
    return loss_value(seq, params, caches, y), grads


def trace(seq: Sequential, params: Params, x: Array, y: Array,
          masks: Sequence[Any] | None = None) -> Trace:
    """Every quantity of one forward and backward pass, one dict per node (``seq.paths``):
    a Dense's z, d_z, d_W, d_b; an Activation's a, d_a; a norm's mu, var, x_hat, n, d_n,
    d_x_hat, d_gamma, d_beta; a Dropout's or a Residual's out, d_out."""
    checks.check_problem(seq, params, x, y, masks)
    run = Pass(masks=masks, weight_decay=seq.weight_decay)
    _, caches = forward(seq, params, x, run)
    grads, deltas = backward(seq, params, caches, y, run)
    return Trace.from_layers(loss_value(seq, params, caches, y),
                             node_trace(seq, caches, deltas, grads))


def predict(seq: Sequential, params: Params, x: Array, running: Sequence[Any] | None = None
            ) -> Array:
    """The output in evaluation mode: no dropout, batch norm with ``running`` (one dict per
    node: {"mean", "var"} on a BatchNorm1d, {} elsewhere)."""
    dtype = checks.check_x(seq, x)
    checks.check_params(seq, params, dtype)
    checks.check_running(seq, running, dtype)
    return forward(seq, params, x, Pass(training=False, state=running))[0]


def jvp(seq: Sequential, params: Params, x: Array, v: Params,
        masks: Sequence[Any] | None = None) -> tuple[Array, Array]:
    """The output (training mode, as ``loss_and_grads`` sees it) and its derivative along
    the params-shaped direction v: one fold of every layer's ``tangent``."""
    dtype = checks.check_x(seq, x)
    checks.check_params(seq, params, dtype)
    checks.check_params(seq, v, dtype, name="v")
    assert isinstance(x, np.ndarray)
    checks.check_masks(seq, masks, x.shape[0])
    out, out_dot, _, _ = tangent(seq, params, x, v, Pass(masks=masks))
    return out, out_dot


def tangent(seq: Sequential, params: Params, x: Array, v: Params, run: Pass = Pass(),
            dots: list[dict[str, Array]] | None = None
            ) -> tuple[Array, Array, list[Cache], list[Array | None]]:
    """The forward fold with every layer's tangent beside it: the output, its tangent
    along v, every node's cache, and every node's input tangent (None where there is none:
    x is data); ``dots`` (one dict per node), when given, gets the tangent of each of
    every node's forward quantities (``r_trace``).  A building block: it checks nothing."""
    caches: list[Cache] = [{} for _ in seq.nodes]
    h_dots: list[Array | None] = [None for _ in seq.nodes]
    out, out_dot = _tangent(seq, seq.layers, params, v, x, None, run, caches, 0, h_dots, dots)
    return out, (np.zeros_like(out) if out_dot is None else out_dot), caches, h_dots


def _tangent(seq: Sequential, layers: Sequence[Any], params: Params, v: Params, h: Array,
             h_dot: Array | None, run: Pass, caches: list[Cache], start: int,
             h_dots: list[Array | None] | None = None,
             dots: list[dict[str, Array]] | None = None) -> tuple[Array, Array | None]:
    """The forward fold with every layer's tangent beside it (``h_dots``: each node's input
    tangent is kept there, for the R-operator's backward; ``dots``: the tangent of each of
    its forward quantities, for ``r_trace`` -- a layer's ``tangents`` where it has inner
    ones, 0 where nothing below it moves)."""
    ctxs = run.contexts(len(caches))
    for layer, i in zip(layers, seq.level(start)):
        if h_dots is not None:
            h_dots[i] = h_dot
        found: dict[str, Array] = {}
        if hasattr(layer, "body"):
            body, body_dot = _tangent(seq, layer.body, params, v, h, h_dot, run, caches, i + 1,
                                      h_dots, dots)
            out = layer.join(body, h)
            caches[i] = {layer.OUT: out}
            out_dot = body_dot if h_dot is None else (
                h_dot if body_dot is None else layer.join(body_dot, h_dot))
        else:
            out, caches[i] = layer.forward(params[i], h, ctxs[i])
            caches[i][layer.OUT] = out
            if h_dot is None and not params[i]:          # x is data: no tangent
                out_dot = None
            elif dots is not None and hasattr(layer, "tangents"):
                found = layer.tangents(params[i], caches[i], h_dot, v[i], ctxs[i])
                out_dot = found[layer.OUT]
            else:
                out_dot = layer.tangent(params[i], caches[i], h_dot, v[i], ctxs[i])
        if dots is not None:
            dots[i] = (found or {layer.OUT: out_dot}) if out_dot is not None else {
                q: np.zeros_like(caches[i][q]) for q in layer.FORWARD if q in caches[i]}
        h, h_dot = out, out_dot
    return h, h_dot


# second order: the R-operator, one fold back ------------------------------------------------


def second_order(seq: Sequential, params: Params, x: Array, y: Array, v: Params,
                 masks: Sequence[Any] | None = None, gauss_newton: bool = False) -> Params:
    """H v (or, ``gauss_newton``, the Gauss-Newton G v = J^T H_loss J v + lambda W_dot) by
    Pearlmutter's R-operator: the tangent fold forward, then one fold back of every layer's
    ``r_backward`` beside its ``backward`` (the first-order d_out each R-term needs; none
    for Gauss-Newton, which drops every term carrying the loss's gradient)."""
    run = _second_order_pass(seq, params, x, y, v, masks)
    _, out_dot, caches, h_dots = tangent(seq, params, x, v, run)
    return r_backward(seq, params, v, caches, h_dots, out_dot, y, run, gauss_newton)[0]


def _second_order_pass(seq: Sequential, params: Params, x: Array, y: Array, v: Params,
                       masks: Sequence[Any] | None) -> Pass:
    """The inputs of hvp, gnvp and r_trace checked (the loss needs a ``second``), and
    their Pass."""
    checks.check_problem(seq, params, x, y, masks)
    assert isinstance(x, np.ndarray)
    checks.check_params(seq, v, checks.check_x(seq, x), name="v")
    if LOSSES[seq.loss].second is None:
        raise ValueError(f"loss {seq.loss!r} has no hand-derived second derivative: hvp and "
                         "gnvp cannot take it")
    return Pass(masks=masks, weight_decay=seq.weight_decay)


def r_backward(seq: Sequential, params: Params, v: Params, caches: list[Cache],
               h_dots: list[Array | None], out_dot: Array, y: Array, run: Pass = Pass(),
               gauss_newton: bool = False, keep: bool = False
               ) -> tuple[Params, list[dict[str, Array]]]:
    """The R-operator's fold back from the tangent fold's caches and input tangents
    (``tangent``): every node's R{d_<param>}, and (``keep``) each node's R-deltas on the
    way down -- R{d_<out>} handed to it, and its inner ones (a norm's R{d_x_hat}) -- keyed
    by the first-order names, d_<out> and d_<name>, as ``backward`` keys its deltas.  A
    building block: it checks nothing."""
    loss = LOSSES[seq.loss]
    assert loss.second is not None, "second_order checks the loss first"
    last = seq.level(0)[-1]
    z, a = loss_inputs(seq, caches)
    z_dot = h_dots[last] if isinstance(seq.layers[-1], Activation) else out_dot
    z_dot = np.zeros_like(z) if z_dot is None else z_dot
    r_d = loss.second(z, a, y, seq.reduction, z_dot, out_dot)
    d = None if gauss_newton else loss.grad(z, a, y, seq.reduction)
    layers = seq.layers[:-1] if seq.fused_output else seq.layers      # fused: R{d_z} directly
    r_grads: Params = [{} for _ in seq.nodes]
    r_deltas: list[dict[str, Array]] = [{} for _ in seq.nodes]
    _r_backward(seq, layers, params, v, caches, h_dots, d, r_d, run, 0, False, r_grads,
                r_deltas if keep else None)
    return r_grads, (r_deltas if keep else [])


def _r_backward(seq: Sequential, layers: Sequence[Any], params: Params, v: Params,
                caches: list[Cache], h_dots: list[Array | None], d_out: Array | None,
                r_d_out: Array, run: Pass, start: int, need_d_in: bool, r_grads: Params,
                r_deltas: list[dict[str, Array]] | None = None
                ) -> tuple[Array | None, Array | None]:
    starts, ctxs = seq.level(start), run.contexts(len(caches))
    for k in reversed(range(len(layers))):
        layer, i = layers[k], starts[k]
        need = need_d_in or k > 0
        if r_deltas is not None:
            r_deltas[i][f"d_{layer.OUT}"] = r_d_out
        if hasattr(layer, "body"):
            d_body, r_body = _r_backward(seq, layer.body, params, v, caches, h_dots, d_out,
                                         r_d_out, run, i + 1, need, r_grads, r_deltas)
            d_in = None if d_out is None or not need else layer.join_backward(d_out, d_body)
            r_in = layer.join_backward(r_d_out, r_body) if need else None
        else:
            r_in, r_grads[i], inner = layer.r_backward(params[i], caches[i], h_dots[i], v[i],
                                                       d_out, r_d_out, ctxs[i], need)
            if r_deltas is not None:
                r_deltas[i] |= inner
            d_in = None if d_out is None else layer.backward(params[i], caches[i], d_out,
                                                             ctxs[i], need)[0]
        d_out, r_d_out = d_in, r_in                      # type: ignore[assignment]
    return d_out, r_d_out


def r_trace(seq: Sequential, params: Params, x: Array, y: Array, v: Params,
            masks: Sequence[Any] | None = None) -> list[dict[str, Array]]:
    """Every R-quantity of ``hvp``, one dict per node (``seq.paths``), named as ``trace``
    names the node's quantities: R{q} = dq/dh along v for each of them, in pass order --
    the tangents of its forward quantities (R{z}; a norm's R{mu}, R{var}, R{x_hat}, R{n};
    R{out}, ...), then its R{d_<out>}, inner R{d_<name>} (a norm's R{d_x_hat}) and its
    params' R{d_<key>} (= H v).  So a check names the first wrong step of the R-operator,
    and the layer whose ``tangent`` or ``r_backward`` forms it."""
    run = _second_order_pass(seq, params, x, y, v, masks)
    dots: list[dict[str, Array]] = [{} for _ in seq.nodes]
    _, out_dot, caches, h_dots = tangent(seq, params, x, v, run, dots)
    grads, r_deltas = r_backward(seq, params, v, caches, h_dots, out_dot, y, run, keep=True)
    return [{f"R{{{k}}}": q for k, q in node.items()}
            for node in node_trace(seq, dots, r_deltas, grads)]


def hvp(seq: Sequential, params: Params, x: Array, y: Array, v: Params,
        masks: Sequence[Any] | None = None) -> Params:
    """The Hessian of the loss (weight decay included) times the params-shaped v."""
    return second_order(seq, params, x, y, v, masks)


def gnvp(seq: Sequential, params: Params, x: Array, y: Array, v: Params,
         masks: Sequence[Any] | None = None) -> Params:
    """The generalized Gauss-Newton matrix times v."""
    return second_order(seq, params, x, y, v, masks, gauss_newton=True)


def per_example_grads(seq: Sequential, params: Params, x: Array, y: Array,
                      masks: Sequence[Any] | None = None) -> Params:
    """Each sample's gradient of its own term of the loss (weight decay left out), one
    dict per node with a leading batch axis; their sum over the batch is the data term's
    gradient.  NotImplementedError names a layer without one (batch norm in training)."""
    checks.check_problem(seq, params, x, y, masks)
    run = Pass(masks=masks)
    _, caches = forward(seq, params, x, run)
    _, deltas = backward(seq, params, caches, y, run)
    return [layer.per_example(p, c, d[f"d_{layer.OUT}"], run.at(i))
            if p else {}
            for i, ((_, layer), p, c, d) in enumerate(zip(seq.nodes, params, caches, deltas))]


def init_params(seq: Sequential, rng: np.random.Generator, scheme: str = "blog",
                dtype: type[np.floating[Any]] | np.dtype[Any] = np.float64) -> Params:
    """Every node's params, drawn node by node from ``rng`` (``NetworkSpec``'s draws for
    its compiled Sequential, in the same order).  A building block: ``handwritten.
    init_params`` checks rng, scheme and dtype first."""
    return [layer.init(shape, rng, scheme, np.dtype(dtype)) for (_, layer), shape in
            zip(seq.nodes, seq.in_shapes)]


def init_state(seq: Sequential, dtype: type[np.floating[Any]] | np.dtype[Any] = np.float64
               ) -> list[dict[str, Array]]:
    """Every node's state before the first step (batch norm's running statistics)."""
    return [layer.init_state(shape, np.dtype(dtype)) for (_, layer), shape in
            zip(seq.nodes, seq.in_shapes)]


def update_state(seq: Sequential, state: Sequence[Any], caches: list[Cache]
                 ) -> list[dict[str, Array]]:
    """The state after one training-mode forward (each layer's ``update_state``)."""
    return [layer.update_state(s, c) for (_, layer), s, c in zip(seq.nodes, state, caches)]
