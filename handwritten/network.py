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

from handwritten import blocks, checks
from handwritten.activations import activation
from handwritten.layers import Sequential, fold
from handwritten.layers.dense import INIT_SCHEMES as INIT_SCHEMES
from handwritten.layers.dense import draw_weight
from handwritten.losses import LOSSES
from handwritten.spec import Array, Masks, NetworkSpec, Params, Running, Scalar, Trace

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


# forward and backward: the derivation ----------------------------------------


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
    if spec.has_blocks:
        return _forward_blocks(spec, params, x, masks, running)
    cache = []
    a = x
    for p, name in zip(params, spec.activations):
        z = a @ p["W"]                              # (batch, fan_out)
        z += p["b"]                                 # in place: z is a fresh array
        a = activation(name).forward(z)             # (batch, fan_out)
        cache.append({"z": z, "a": a})
    return a, cache


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
    """
    z = a_prev @ p["W"]
    z += p["b"]
    layer: dict[str, Array] = {"z": z}
    norm = spec.norm(l)
    if norm == "batch" and running:
        layer |= blocks.normalize_running(z, running["mean"], running["var"], p["gamma"],
                                          p["beta"])
    elif norm is not None:
        layer |= blocks.normalize(norm, z, p["gamma"], p["beta"])
    h = activation(spec.activations[l]).forward(layer.get("n", z))
    a = h
    drop = spec.dropout[l] if l < len(spec.dropout) else 0.0
    if drop and mask is not None:
        a = blocks.dropout(h, mask, drop)
    if l < len(spec.residual) and spec.residual[l]:
        a = a + a_prev
    if a is not h:
        layer["h"] = h
    layer["a"] = a
    return layer


def layer_mask(masks: Masks | None, l: int, dtype: np.dtype[Any]) -> Array | None:
    """Layer l's dropout keep-mask in the layer's dtype (None where there is none): a mask
    of bools, ints or float64 must not turn a float32 network's quantities into float64."""
    if masks is None or l >= len(masks) or masks[l] is None:
        return None
    return np.asarray(masks[l], dtype=dtype)


def _forward_blocks(spec: NetworkSpec, params: Params, x: Array, masks: Masks | None,
                    running: Running | None) -> tuple[Array, list[dict[str, Array]]]:
    cache = []
    a = x
    for l, p in enumerate(params):
        mask = layer_mask(masks, l, p["W"].dtype)
        cache.append(hidden_block(spec, l, p, a, mask, None if running is None else running[l]))
        a = cache[-1]["a"]
    return a, cache


def loss_value(spec: NetworkSpec, params: Params, cache: list[dict[str, Array]],
               y: Array) -> Scalar:
    """L = loss(z_out, a_out, y) + weight_decay / 2 * sum_l ||W_l||^2."""
    out = cache[-1]
    loss = LOSSES[spec.loss].value(out["z"], out["a"], y, spec.reduction)
    if spec.weight_decay:
        loss = loss + spec.weight_decay / 2 * sum(np.sum(p["W"] * p["W"]) for p in params)
    return loss


def hidden_block_backward(spec: NetworkSpec, l: int, p: dict[str, Array],
                          layer: dict[str, Array], d_a: Array, mask: Array | None
                          ) -> dict[str, Array]:
    """One block's backward from d_a to d_z, its parts in reverse order:

        d_h = d_a * m / (1 - p)                     with dropout (a skip passes d_a on)
        d_n = f'(n) * d_h                           the activation's backward
        d_gamma, d_beta, d_x_hat, d_z = norm'(...)  with a norm (else d_z is d_n)

    Returns {"d_z"} and, where the block has them, "d_h", "d_n", "d_x_hat", "d_gamma",
    "d_beta".  The skip's own d_a reaches the layer below in ``backward``.
    """
    out: dict[str, Array] = {}
    d_h = d_a
    if "h" in layer:
        drop = spec.dropout[l]
        if drop and mask is not None:
            d_h = blocks.dropout_backward(d_a, mask, drop)
        out["d_h"] = d_h
    h = layer.get("h", layer["a"])
    norm = spec.norm(l)
    if norm is None:
        out["d_z"] = activation(spec.activations[l]).backward(layer["z"], h, d_h)
        return out
    d_n = activation(spec.activations[l]).backward(layer["n"], h, d_h)
    return out | {"d_n": d_n} | blocks.normalize_backward(norm, layer["x_hat"], layer["var"],
                                                          p["gamma"], d_n)


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
    loss = LOSSES[spec.loss]
    n_layers = len(params)
    grads: Params = [{} for _ in range(n_layers)]
    deltas: list[dict[str, Array]] = [{} for _ in range(n_layers)]

    out = cache[-1]
    if spec.fused_output:
        d_z = loss.grad(out["z"], out["a"], y, spec.reduction)     # dL/dz_out directly
    else:
        deltas[-1]["d_a"] = loss.grad(out["z"], out["a"], y, spec.reduction)

    for l in reversed(range(n_layers)):
        z, a = cache[l]["z"], cache[l]["a"]
        W = params[l]["W"]
        block: dict[str, Array] = {}
        if "d_a" in deltas[l] and spec.has_blocks:                   # a hidden block's parts
            mask = layer_mask(masks, l, W.dtype)
            block = hidden_block_backward(spec, l, params[l], cache[l], deltas[l]["d_a"], mask)
            d_z = block.pop("d_z")
            deltas[l] |= {k: v for k, v in block.items() if k not in ("d_gamma", "d_beta")}
        elif "d_a" in deltas[l]:
            d_z = activation(spec.activations[l]).backward(z, a, deltas[l]["d_a"])
        deltas[l]["d_z"] = d_z
        a_prev = x if l == 0 else cache[l - 1]["a"]
        d_W = a_prev.T @ d_z                                        # (fan_in, fan_out)
        if spec.weight_decay:
            d_W += spec.weight_decay * W                            # d_W is a fresh array
        grads[l] = {"W": d_W, "b": d_z.sum(axis=0)}                 # d_b: (fan_out,)
        if "d_gamma" in block:
            grads[l] |= {"gamma": block["d_gamma"], "beta": block["d_beta"]}
        if l > 0:
            deltas[l - 1]["d_a"] = d_z @ W.T                        # (batch, fan_in)
            if l < len(spec.residual) and spec.residual[l]:
                deltas[l - 1]["d_a"] += deltas[l]["d_a"]            # the skip path
        if not keep_deltas:
            deltas[l] = {}
    return grads, (deltas if keep_deltas else [])


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
    _, cache = forward(spec, params, x, masks)
    grads, _ = backward(spec, params, x, y, cache, masks=masks)
    return loss_value(spec, params, cache, y), grads


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
    _, cache = forward(spec, params, x, masks)
    grads, deltas = backward(spec, params, x, y, cache, masks=masks)
    extra = [{**{k: v for k, v in c.items() if k not in ("z", "a")},
              **{k: v for k, v in d.items() if k not in ("d_a", "d_z")},
              **{f"d_{k}": v for k, v in g.items() if k in ("gamma", "beta")}}
             for c, d, g in zip(cache, deltas, grads)]
    return Trace.from_passes(spec, loss_value(spec, params, cache, y),
                             z=[c["z"] for c in cache], a=[c["a"] for c in cache],
                             d_a=[d.get("d_a") for d in deltas], d_z=[d["d_z"] for d in deltas],
                             d_W=[g["W"] for g in grads], d_b=[g["b"] for g in grads],
                             blocks=extra if spec.has_blocks else None)
