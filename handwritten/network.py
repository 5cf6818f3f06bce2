"""The network, any depth: spec, initialisation, forward, backward, loss and gradients.

Notation.  ``d_<name>`` always means dL/d<name>, the gradient of the (reduced)
loss with respect to that array; it has the array's own shape.  Layers are
numbered l = 0 .. L-1 in code (layer l maps a_{l-1} to a_l, with a_{-1} = x).
Weights keep the blog's orientation, x @ W + b: a row is one sample.

Forward, layer by layer (shapes for a batch of ``batch`` rows):

    z_l = a_{l-1} @ W_l + b_l               (batch, fan_out)
    a_l = f_l(z_l)                          (batch, fan_out)

Loss, with optional L2 weight decay lambda on the weights (not the biases):

    L = loss(z_{L-1}, a_{L-1}, y) + lambda/2 * sum_l ||W_l||^2

Backward, from the output down, one step per line:

    d_a = dL/da_{L-1}   from the loss            (batch, n_out)
    d_z = d_a * f'(z)   (activation backward)    (batch, fan_out)
    d_W = a_prev.T @ d_z + lambda * W            (fan_in, fan_out)
    d_b = d_z.sum(axis=0)                        (fan_out,)
    d_a_prev = d_z @ W.T                         (batch, fan_in)

A fused loss (sigmoid + bce_with_logits, softmax + softmax_cross_entropy) hands
back d_z of the output layer directly; that layer then has no d_a.

A hidden layer may be a block (``NetworkSpec.norms``, ``dropout``, ``residual``; each
part's forward and backward in ``handwritten.blocks``):

    z = a_prev @ W + b;  n = norm(z);  h = f(n);  a = h * m / (1 - p);  a = a + a_prev

and its backward runs the same steps down: d_h = d_a * m / (1 - p), d_n = f'(n) * d_h,
the norm's backward to d_z (and d_gamma, d_beta), then d_W, d_b as above, and
d_a_prev = d_z @ W.T + d_a (the skip path carries d_a straight down).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handwritten import checks
from handwritten.layers import (
    Activation,
    BatchNorm1d,
    Dropout,
    LayerNorm,
    Sequential,
    compile_network,
    fold,
    network_grads,
    network_masks,
    network_params,
    network_running,
)
from handwritten.layers.base import Cache
from handwritten.layers.dense import INIT_SCHEMES as INIT_SCHEMES
from handwritten.layers.dense import draw_weight
from handwritten.layers.sequential import Block, blocks_of, compile_block
from handwritten.spec import Array, Masks, NetworkSpec, Params, Running, Scalar, Trace

NORM_QUANTITIES = ("mu", "var", "x_hat", "n")
"""A norm's forward quantities (training mode; x_hat, n alone in evaluation mode)."""

# initialisation --------------------------------------------------------------


def init_params(spec: NetworkSpec | Sequential, rng: np.random.Generator, scheme: str = "blog",
                dtype: type[np.floating[Any]] | np.dtype[Any] = np.float64) -> Params:
    """Fresh parameters, every draw from ``rng``; biases start at zero.

    Schemes (fan_in, fan_out of each layer; ``handwritten.layers.dense.draw_weight``):

    - ``"blog"``: W ~ N(0, 1), the blog post's choice;
    - ``"glorot_uniform"``: W ~ U(-r, r), r = sqrt(6 / (fan_in + fan_out));
    - ``"glorot_normal"``: W ~ N(0, s^2), s = sqrt(2 / (fan_in + fan_out));
    - ``"he_normal"``: W ~ N(0, s^2), s = sqrt(2 / fan_in).

    Draws are made layer by layer in float64 and then cast to ``dtype``, so
    float32 and float64 params from the same seed agree to float32 rounding.  A
    ``Sequential`` gets one dict per node (``handwritten.layers.fold.init_params``): the
    same draws, in the same order, as the NetworkSpec it was compiled from.
    """
    checks.check_rng(rng)
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme is unknown: {scheme!r}; expected one of {INIT_SCHEMES}")
    dt = np.dtype(dtype)
    if dt not in checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    if isinstance(spec, Sequential):
        return fold.init_params(spec, rng, scheme, dt)
    params: Params = []
    for fan_in, fan_out in zip(spec.layer_sizes[:-1], spec.layer_sizes[1:]):
        w = draw_weight(scheme, fan_in, fan_out, rng)
        params.append({"W": w.astype(dt), "b": np.zeros(fan_out, dtype=dt)})
    for l, norm in enumerate(spec.norms):
        if norm is not None:               # a norm's affine part starts as the identity
            fan_out = spec.layer_sizes[l + 1]
            params[l] |= {"gamma": np.ones(fan_out, dtype=dt), "beta": np.zeros(fan_out, dtype=dt)}
    return params


def init_running(spec: NetworkSpec | Sequential,
                 dtype: type[np.floating[Any]] | np.dtype[Any] = np.float64) -> Running:
    """Batch norm's running statistics before the first step, as torch.nn.BatchNorm1d starts
    them: mean 0, variance 1 on every layer with batch norm ({} on every other layer; a
    Sequential: on every other node)."""
    if isinstance(spec, Sequential):
        return fold.init_state(spec, dtype)
    return [{"mean": np.zeros(n, dtype=dtype), "var": np.ones(n, dtype=dtype)}
            if spec.norm(l) == "batch" else {} for l, n in enumerate(spec.layer_sizes[1:])]


# forward and backward: the fold of the compiled network ---------------------------
#
# A NetworkSpec runs as the Sequential it compiles to (``compile_network``: Dense, [norm],
# Activation, [Dropout], inside a Residual where the layer has a skip), by the one fold
# that reads a network's structure (``handwritten.layers.fold``); each part does its own
# derivation in ``handwritten.layers``.  What this module adds is the NetworkSpec's view of
# the fold's per-node quantities: one dict per layer, named as the derivation above
# names them.  ``Block`` says which node holds each part of a layer:
#
#     z                     the Dense's z               d_z            the Dense's d_z
#     mu, var, x_hat, n     the norm's                  d_n, d_x_hat   the norm's
#     h (with dropout       the Activation's a          d_h            the Activation's d_a
#        or a skip)
#     a                     the block's output: the     d_a            the top node's d_<out>
#                           top node's (Block.top)


def _run(spec: NetworkSpec, masks: Masks | None = None, running: Running | None = None
         ) -> fold.Pass:
    """The fold's Pass for a NetworkSpec's masks and running statistics (given: batch norm
    in evaluation mode)."""
    return fold.Pass(training=running is None, masks=network_masks(spec, masks),
                     state=network_running(spec, running), weight_decay=spec.weight_decay)


def layer_cache(seq: Sequential, block: Block, caches: list[Cache]) -> dict[str, Array]:
    """One layer's cache (z, [mu, var, x_hat, n], [h], a) from its nodes' caches."""
    layer: dict[str, Array] = {"z": caches[block.dense]["z"]}
    if block.norm is not None:
        layer |= {k: v for k, v in caches[block.norm].items() if k in NORM_QUANTITIES}
    h = caches[block.activation]["a"]
    a = caches[block.top][seq.nodes[block.top][1].OUT]
    if a is not h:                               # dropout with its mask, or a skip
        layer["h"] = h
    layer["a"] = a
    return layer


def layer_deltas(seq: Sequential, block: Block, deltas: list[dict[str, Array]],
                 layer: dict[str, Array]) -> dict[str, Array]:
    """One layer's d_a, [d_h], [d_n, d_x_hat], d_z from its nodes' (the output layer of a
    fused loss has no d_a: the fold starts below its activation)."""
    out: dict[str, Array] = {}
    top = deltas[block.top].get(f"d_{seq.nodes[block.top][1].OUT}")
    if top is not None:
        out["d_a"] = top
    if "h" in layer:
        out["d_h"] = deltas[block.activation]["d_a"]
    if block.norm is not None:
        out |= {k: deltas[block.norm][k] for k in ("d_n", "d_x_hat")}
    out["d_z"] = deltas[block.dense]["d_z"]
    return out


def node_caches(spec: NetworkSpec, x: Array, cache: list[dict[str, Array]],
                masks: Masks | None = None) -> list[Cache]:
    """``layer_cache``'s inverse: the nodes' caches the fold's backward reads, from the
    layers' (each Dense's input is the layer below's a; a Dropout keeps its mask where the
    forward used one, the layer's h is then there)."""
    seq = compile_network(spec)
    caches: list[Cache] = [{} for _ in seq.nodes]
    h_in = x
    for l, (block, layer) in enumerate(zip(blocks_of(seq), cache)):
        caches[block.dense] = {"h": h_in, "z": layer["z"]}
        if block.norm is not None:
            caches[block.norm] = {k: v for k, v in layer.items() if k in NORM_QUANTITIES}
        caches[block.activation] = {"z": layer.get("n", layer["z"]),
                                    "a": layer.get("h", layer["a"])}
        if block.dropout is not None:
            mask = layer_mask(masks, l, layer["z"].dtype) if "h" in layer else None
            caches[block.dropout] = {"mask": mask}         # all its backward reads
        if block.residual is not None:
            caches[block.residual] = {"out": layer["a"]}
        h_in = layer["a"]
    return caches


def layer_mask(masks: Masks | None, l: int, dtype: np.dtype[Any]) -> Array | None:
    """Layer l's dropout keep-mask in the layer's dtype (None where there is none): a mask
    of bools, ints or float64 must not turn a float32 network's quantities into float64."""
    if masks is None or l >= len(masks) or masks[l] is None:
        return None
    return np.asarray(masks[l], dtype=dtype)


def forward(spec: NetworkSpec, params: Params, x: Array, masks: Masks | None = None,
            running: Running | None = None) -> tuple[Array, list[dict[str, Array]]]:
    """Forward pass: the output a_{L-1} and the cache of every z and a.

    A building block of the derivation: it checks nothing.  ``predict``,
    ``loss_and_grads``, ``trace`` and ``train`` check their inputs first.  ``masks``:
    dropout's keep-masks, one per hidden layer (None where p = 0); without them (None),
    no dropout.  ``running``: batch norm's running statistics; given, batch norm is in
    evaluation mode (it normalizes with them), else in training mode (the batch's own).

    Returns
    -------
    a : (batch, n_out)
    cache : list of {"z": (batch, fan_out), "a": (batch, fan_out)}, one per layer; a
        hidden block's layer also holds its parts' quantities (``hidden_block``)
    """
    seq = compile_network(spec)
    _, caches = fold.forward(seq, network_params(spec, params), x, _run(spec, masks, running))
    cache = [layer_cache(seq, block, caches) for block in blocks_of(seq)]
    return cache[-1]["a"], cache


def hidden_block(spec: NetworkSpec, l: int, p: dict[str, Array], a_prev: Array,
                 mask: Array | None, running: dict[str, Array] | None = None
                 ) -> dict[str, Array]:
    """One layer's forward with its block's parts, in order (module docstring):

        z = a_prev @ W + b                          (batch, fan_out)
        mu, var, x_hat, n = norm(z)                 with a norm (else n is z)
        h = f(n)                                    (batch, fan_out)
        a = h * m / (1 - p)                         with dropout and a mask
        a = a + a_prev                              with a residual skip

    Returns the layer's cache: z, a, and mu, var, x_hat, n (a norm) and h (dropout or a
    skip: the activation's output before them) where the block has them.  With this
    layer's ``running`` statistics, batch norm is in evaluation mode (x_hat, n only).
    The fold of the layer's own Sequential (``compile_block``).
    """
    seq = compile_block(spec, l)
    (block,) = blocks_of(seq)
    run = _block_run(seq, block, mask, running)
    _, caches = fold.forward(seq, _block_params(seq, p), a_prev, run)
    return layer_cache(seq, block, caches)


def _block_run(seq: Sequential, block: Block, mask: Array | None,
               running: dict[str, Array] | None) -> fold.Pass:
    masks: list[Any] = [None] * len(seq.nodes)
    state: list[Any] = [{}] * len(seq.nodes)
    if block.dropout is not None:
        masks[block.dropout] = mask
    if block.norm is not None and running:
        state[block.norm] = running
    return fold.Pass(training=not running, masks=masks, state=state)


def _block_params(seq: Sequential, p: dict[str, Array]) -> Params:
    """A layer's params on its own Sequential's nodes (W, b on the Dense, gamma, beta on
    the norm)."""
    return [{k: p[k] for k in layer.param_shapes()} if hasattr(layer, "param_shapes") else {}
            for _, layer in seq.nodes]


def loss_value(spec: NetworkSpec, params: Params, cache: list[dict[str, Array]],
               y: Array) -> Scalar:
    """L = loss(z_out, a_out, y) + weight_decay / 2 * sum_l ||W_l||^2
    (``handwritten.layers.fold.loss_from``)."""
    out = cache[-1]
    return fold.loss_from(compile_network(spec), network_params(spec, params), out["z"],
                          out["a"], y)


def hidden_block_backward(spec: NetworkSpec, l: int, p: dict[str, Array],
                          layer: dict[str, Array], d_a: Array, mask: Array | None
                          ) -> dict[str, Array]:
    """One block's backward from d_a to d_z, its parts in reverse order:

        d_h = d_a * m / (1 - p)                     with dropout (a skip passes d_a on)
        d_n = f'(n) * d_h                           the activation's backward
        d_gamma, d_beta, d_x_hat, d_z = norm'(...)  with a norm (else d_z is d_n)

    Returns {"d_z"} and, where the block has them, "d_h", "d_n", "d_x_hat", "d_gamma",
    "d_beta".  The skip's own d_a reaches the layer below in ``backward``.  The fold back
    of the layer's own Sequential (``compile_block``), from d_a.
    """
    seq = compile_block(spec, l, dense=False)
    at = {type(layer): i for i, (_, layer) in enumerate(seq.nodes)}   # norm, f, dropout
    norm = at.get(BatchNorm1d, at.get(LayerNorm))
    caches: list[Cache] = [{} for _ in seq.nodes]
    if norm is not None:
        caches[norm] = {k: v for k, v in layer.items() if k in NORM_QUANTITIES}
    caches[at[Activation]] = {"z": layer.get("n", layer["z"]), "a": layer.get("h", layer["a"])}
    if Dropout in at:
        caches[at[Dropout]] = {"mask": mask if "h" in layer else None}
    d_z, grads, deltas = fold.backward_from(seq, _block_params(seq, p), caches, d_a,
                                            need_d_in=True)
    out: dict[str, Array] = {}
    if "h" in layer:
        out["d_h"] = deltas[at[Activation]]["d_a"]
    if norm is not None:
        out |= {"d_n": deltas[norm]["d_n"], "d_gamma": grads[norm]["gamma"],
                "d_beta": grads[norm]["beta"], "d_x_hat": deltas[norm]["d_x_hat"]}
    out["d_z"] = d_z                                      # type: ignore[assignment]
    return out


def backward(spec: NetworkSpec, params: Params, x: Array, y: Array,
             cache: list[dict[str, Array]], keep_deltas: bool = True,
             masks: Masks | None = None) -> tuple[Params, list[dict[str, Array]]]:
    """Backward pass: the gradients, and every d_a and d_z on the way.

    A building block of the derivation: it checks nothing (see ``forward``).
    With ``keep_deltas=False`` (training) each layer's d_a and d_z are dropped
    as soon as the layer below has used them, and ``deltas`` comes back empty.

    Returns
    -------
    grads : list of {"W": d_W (fan_in, fan_out), "b": d_b (fan_out,)}
        Exactly the structure of ``params``.
    deltas : list of {"d_a": (batch, fan_out), "d_z": (batch, fan_out)}
        One per layer; the output layer of a fused loss has only "d_z".
    """
    seq = compile_network(spec)
    grads, deltas = fold.backward(seq, network_params(spec, params),
                                  node_caches(spec, x, cache, masks), y, _run(spec, masks),
                                  keep_deltas)
    if not keep_deltas:
        return network_grads(spec, grads), []
    return network_grads(spec, grads), [layer_deltas(seq, block, deltas, layer) for
                                        block, layer in zip(blocks_of(seq), cache)]


# checked entry points: the shared interface ----------------------------------


def predict(spec: NetworkSpec | Sequential, params: Params, x: Array,
            running: Running | None = None) -> Array:
    """The network's output a_{L-1} for inputs x of shape (batch, n_in), in evaluation mode:
    no dropout, and batch norm normalizes with ``running`` (required when the spec has
    batch norm: ``History.running`` of the run that trained ``params``), so each sample's
    output is its own, whatever else is in the batch."""
    if isinstance(spec, Sequential):
        return fold.predict(spec, params, x, running)
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_running(spec, running, dtype)
    return forward(spec, params, x, running=running if "batch" in spec.norms else None)[0]


def loss_and_grads(spec: NetworkSpec | Sequential, params: Params, x: Array, y: Array,
                   masks: Masks | None = None) -> tuple[Scalar, Params]:
    """The loss and its gradient with respect to every parameter.

    Parameters
    ----------
    spec : NetworkSpec
    params : list of {"W": (fan_in, fan_out), "b": (fan_out,)}, plus "gamma", "beta"
        (fan_out,) on a layer with a norm
    x : (batch, n_in)
    y : (batch, n_out), or integer labels (batch,) for softmax_cross_entropy
    masks : dropout's keep-masks, one (batch, fan_out) array of 0s and 1s per hidden layer
        (None where p = 0); required when the spec has dropout

    Returns
    -------
    loss : scalar of the params' dtype
    grads : dL/dparams, exactly the structure, shapes and dtype of ``params``

    A ``Sequential`` spec: params, masks and grads have one entry per node
    (``handwritten.layers.fold.loss_and_grads``).
    """
    if isinstance(spec, Sequential):
        return fold.loss_and_grads(spec, params, x, y, masks)
    checks.check_problem(spec, params, x, y, masks)
    seq, run = compile_network(spec), _run(spec, masks)
    nodes = network_params(spec, params)
    _, caches = fold.forward(seq, nodes, x, run)
    grads, _ = fold.backward(seq, nodes, caches, y, run, keep=False)
    return fold.loss_value(seq, nodes, caches, y), network_grads(spec, grads)


def trace(spec: NetworkSpec | Sequential, params: Params, x: Array, y: Array,
          masks: Masks | None = None) -> Trace:
    """Every quantity of one forward and backward pass: z, a, d_a, d_z, d_W, d_b per layer
    (and a hidden block's mu, var, x_hat, n, h, d_h, d_n, d_x_hat, d_gamma, d_beta).

    This is what lets a check name the *first* derivation step that is wrong.  A
    ``Sequential`` spec: one dict per node (``handwritten.layers.fold.trace``).
    """
    if isinstance(spec, Sequential):
        return fold.trace(spec, params, x, y, masks)
    checks.check_problem(spec, params, x, y, masks)
    seq, run = compile_network(spec), _run(spec, masks)
    nodes = network_params(spec, params)
    _, caches = fold.forward(seq, nodes, x, run)
    node_grads, node_deltas = fold.backward(seq, nodes, caches, y, run)
    cache = [layer_cache(seq, block, caches) for block in blocks_of(seq)]
    deltas = [layer_deltas(seq, block, node_deltas, layer)
              for block, layer in zip(blocks_of(seq), cache)]
    grads = network_grads(spec, node_grads)
    extra = [{**{k: v for k, v in c.items() if k not in ("z", "a")},
              **{k: v for k, v in d.items() if k not in ("d_a", "d_z")},
              **{f"d_{k}": v for k, v in g.items() if k in ("gamma", "beta")}}
             for c, d, g in zip(cache, deltas, grads)]
    return Trace.from_passes(spec, fold.loss_value(seq, nodes, caches, y),
                             z=[c["z"] for c in cache], a=[c["a"] for c in cache],
                             d_a=[d.get("d_a") for d in deltas], d_z=[d["d_z"] for d in deltas],
                             d_W=[g["W"] for g in grads], d_b=[g["b"] for g in grads],
                             blocks=extra if spec.has_blocks else None)
