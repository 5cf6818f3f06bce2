"""Beyond the gradient: forward mode, second order and per-example gradients, by hand.

``d_<name>`` is dL/d<name> as in ``network``; a dot is a tangent: for a direction
v = (W_dot, b_dot) in parameter space (params-shaped), <name>_dot is the derivative of
<name> along v.  Shapes as in ``network``: z, a (batch, fan_out); W (fan_in, fan_out).

Forward mode (``jvp``) pushes a tangent up the network beside the forward pass, layer
by layer (the input x is data: its tangent is 0):

    z_dot = a_prev_dot @ W + a_prev @ W_dot + b_dot     (batch, fan_out)   product rule
    a_dot = f'(z) * z_dot                                (batch, fan_out)

An activation's Jacobian is symmetric -- diagonal for the elementwise ones, and
softmax's, diag(a) - a a^T, per row -- so the product J z_dot is the activation's own
backward applied to z_dot: ``activation(name).backward(z, a, z_dot)``.  No new
derivative is needed, and softmax's row coupling comes along.

Per-example gradients (``per_example_grads``) split the batch's gradient into its
samples.  The loss is a sum over samples of each sample's term (times 1/batch or
1/(batch n_out) under "mean"), so row i of every d_z is sample i's own: with a_prev[i]
the layer's input for sample i,

    d_W[i] = outer(a_prev[i], d_z[i])     (batch, fan_in, fan_out)
    d_b[i] = d_z[i]                       (batch, fan_out)

and summing over i gives the batch's d_W = a_prev.T @ d_z and d_b.  The L2 penalty
belongs to no sample and is left out.  Their norms need no (batch, fan_in, fan_out)
array: the Frobenius norm of an outer product is the product of the two norms,

    ||d_W[i]||**2 = ||a_prev[i]||**2 * ||d_z[i]||**2

Second order (``hvp``) by Pearlmutter's R-operator.  R{q} is the derivative of any
quantity q of the forward and backward passes along v: R{q} = d/dh q(params + h v) at
h = 0.  So R{W} = W_dot, R{b} = b_dot, R{x} = 0, R{y} = 0, and R of the gradient
d_W is the Hessian-vector product itself: H v = (R{d_W}, R{d_b}).  Apply R to every line
of the two passes, by the product rule (a forward pass of tangents, the ``jvp`` above,
then a backward pass of R-quantities, all shapes as their plain counterparts):

    R{z}       = R{a_prev} @ W + a_prev @ W_dot + b_dot                  (forward, = z_dot)
    R{a}       = f'(z) * R{z}                                            (= a_dot)
    R{d_a_out} = H_loss R{a_out}             the loss's ``second``; fused: R{d_z_out}
    R{d_z}     = f'(z) * R{d_a} + d_a * f''(z) * R{z}    the activation's backward and
                                                         ``second`` (softmax: its R-op)
    R{d_W}     = R{a_prev}.T @ d_z + a_prev.T @ R{d_z} + lambda W_dot
    R{d_b}     = R{d_z}.sum(axis=0)
    R{d_a_prev} = R{d_z} @ W.T + d_z @ W_dot.T

The plain backward's d_a and d_z ride along (the R-terms need them); d_W itself is
never formed.  About 8 matrix products against the gradient's 3: ~3x its cost.

The generalized Gauss-Newton product (``gnvp``) is J^T H_loss J v, J the Jacobian of the
loss's input (a_out; z_out for a fused loss) in the params: push J v up (the tangent
pass), apply the loss's Hessian, pull back with J^T (the plain backward's equations).
It is the R-backward above without every term that carries the loss's gradient
(d_a * f'', R{a_prev}.T @ d_z, d_z @ W_dot.T) -- the terms that vanish where the fit is
exact -- plus the penalty's exact lambda W_dot.  With a loss convex in its input it is
positive semi-definite, the curvature K-FAC and natural gradient approximate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from handwritten import checks
from handwritten.activations import activation
from handwritten.layers import (
    Sequential,
    compile_network,
    fold,
    network_grads,
    network_masks,
    network_params,
)
from handwritten.layers.base import Cache
from handwritten.layers.sequential import Block, network_blocks
from handwritten.losses import LOSSES, LossSecond
from handwritten.spec import Masks, NetworkSpec, Params

Array = NDArray[np.floating[Any]]
ActivationSecond = Callable[[Array, Array, Array, Array], Array]


def tangent_forward(spec: NetworkSpec, params: Params, x: Array, v: Params
                    ) -> list[dict[str, Array]]:
    """The forward pass and its tangent along v: every z, a, z_dot, a_dot, per layer, of a
    spec without hidden blocks.

    A building block (it checks nothing; ``jvp``, ``hvp`` and ``gnvp`` check first).
    The input x is data: its tangent is 0, so layer 0 has no a_prev_dot term.  The
    tangent fold of the compiled network (``handwritten.layers.fold.tangent``: each
    Dense's and Activation's ``tangent``), read per layer.
    """
    seq = compile_network(spec)
    _, out_dot, caches, h_dots = fold.tangent(seq, network_params(spec, params), x,
                                              network_params(spec, v))
    return _tangent_layers(spec, caches, h_dots, out_dot)


def _tangent_layers(spec: NetworkSpec, caches: list[Cache], h_dots: list[Array | None],
                    out_dot: Array) -> list[dict[str, Array]]:
    """Per layer, z and a from the fold's caches, z_dot (the Activation's input tangent)
    and a_dot (the next layer's input tangent; the output's for the last)."""
    blocks = network_blocks(spec)
    a_dots = [h_dots[b.dense] for b in blocks[1:]] + [out_dot]
    return [{"z": caches[b.dense]["z"], "a": caches[b.activation]["a"],
             "z_dot": h_dots[b.activation], "a_dot": a_dot}              # type: ignore[dict-item]
            for b, a_dot in zip(blocks, a_dots)]


def jvp(spec: NetworkSpec | Sequential, params: Params, x: Array, v: Params,
        masks: Masks | None = None) -> tuple[Array, Array]:
    """The network's output and its derivative along the params-shaped direction v.

    The fold of every layer's tangent (``handwritten.layers.fold.jvp``; a NetworkSpec's
    compiled network, a Sequential with its dropout's ``masks``, one entry per node).

    Returns
    -------
    a_out, a_out_dot : (batch, n_out)
        The output (as ``predict``) and d(output)/d(params) applied to v.
    """
    if isinstance(spec, Sequential):
        return fold.jvp(spec, params, x, v, masks)
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_params(spec, v, dtype, name="v")
    if spec.has_blocks:
        assert isinstance(x, np.ndarray)
        checks.check_masks(spec, masks, x.shape[0])
    else:
        _no_masks(masks, "jvp")
    return fold.jvp(compile_network(spec), network_params(spec, params), x,
                    network_params(spec, v), network_masks(spec, masks))


# second order -----------------------------------------------------------------------------

R_QUANTITIES = ("R{z}", "R{a}", "R{d_a}", "R{d_z}", "R{d_W}", "R{d_b}")
"""The R-quantities of one layer, in the order the passes form them (``r_trace``)."""


def activation_second(spec: NetworkSpec, l: int) -> ActivationSecond:
    """Layer l's activation's ``second``; ValueError naming it when it has none."""
    second = activation(spec.activations[l]).second
    if second is None:
        raise ValueError(f"spec.activations[{l}] = {spec.activations[l]!r} has no hand-derived "
                         "second derivative: hvp, gnvp and r_trace cannot take it")
    return second


def loss_second(spec: NetworkSpec) -> LossSecond:
    """The spec's loss's ``second``; ValueError naming it when it has none."""
    second = LOSSES[spec.loss].second
    if second is None:
        raise ValueError(f"spec.loss = {spec.loss!r} has no hand-derived second derivative: "
                         "hvp, gnvp and r_trace cannot take it")
    return second


def check_plain(spec: NetworkSpec) -> None:
    """r_trace and the per-example gradient norms name the quantities of dense layers; a
    hidden block's norm, dropout or skip is refused by name there (jvp, hvp, gnvp and the
    per-example gradients take blocks, through the layers of ``handwritten.layers``; a
    Sequential's r_trace names every node's quantities)."""
    for l in range(spec.n_layers - 1):
        for name, value, off in (("norms", spec.norms[l], None), ("dropout", spec.dropout[l], 0.0),
                                 ("residual", spec.residual[l], False)):
            if value != off:
                raise ValueError(f"spec.{name}[{l}] = {value!r}: r_trace and the per-example "
                                 "gradient norms name dense layers' quantities only; hvp, "
                                 "gnvp, jvp and per_example_grads take hidden blocks (and "
                                 "r_trace the compiled Sequential, compile_network(spec))")


def check_second_order(spec: NetworkSpec) -> None:
    """ValueError naming the first activation or loss of the spec without a hand-derived
    second order (its registry entry has no ``second``), or a hidden block's part."""
    check_plain(spec)
    for l in range(spec.n_layers):
        activation_second(spec, l)
    loss_second(spec)


def r_backward(spec: NetworkSpec, params: Params, x: Array, y: Array, v: Params,
               cache: list[dict[str, Array]], gauss_newton: bool = False
               ) -> list[dict[str, Array]]:
    """The backward pass of R-quantities (module docstring), from the tangent cache.

    A building block: it checks no input (``hvp`` does), only that every activation and the
    loss have a ``second`` (a ValueError names the one that has not).  Returns one dict per
    layer with R{d_a}, R{d_z},
    R{d_W}, R{d_b} (the output layer of a fused loss has no R{d_a}).  ``gauss_newton``
    drops every term that carries the loss's gradient: J^T H_loss J v.  The R-operator's
    fold back over the compiled network (``handwritten.layers.fold.r_backward``: each
    Dense's and Activation's ``r_backward``), from the tangent cache put back on its nodes.
    """
    loss_second(spec)
    fused = spec.n_layers - 1 if spec.fused_output else None
    for l in reversed(range(spec.n_layers)):
        if not gauss_newton and l != fused:     # the layers whose f'' the R-terms take
            activation_second(spec, l)
    seq = compile_network(spec)
    caches: list[Cache] = [{} for _ in seq.nodes]
    h_dots: list[Array | None] = [None for _ in seq.nodes]
    a_prev, a_prev_dot = x, None
    for b, layer in zip(network_blocks(spec), cache):
        caches[b.dense] = {"h": a_prev, "z": layer["z"]}
        caches[b.activation] = {"z": layer["z"], "a": layer["a"]}
        h_dots[b.dense], h_dots[b.activation] = a_prev_dot, layer["z_dot"]
        a_prev, a_prev_dot = layer["a"], layer["a_dot"]
    r_grads, r_deltas = fold.r_backward(
        seq, network_params(spec, params), network_params(spec, v), caches, h_dots,
        cache[-1]["a_dot"], y, fold.Pass(weight_decay=spec.weight_decay), gauss_newton,
        keep=True)
    return [_r_layer(b, r_grads, r_deltas) for b in network_blocks(spec)]


def _r_layer(b: Block, r_grads: Params, r_deltas: list[dict[str, Array]]
             ) -> dict[str, Array]:
    """One layer's R{d_a} (its Activation's R{d_out}; none at a fused output), R{d_z}
    (its Dense's), R{d_W}, R{d_b}."""
    return ({"R{d_a}": r_deltas[b.activation]["d_a"]} if r_deltas[b.activation] else {}) | {
        "R{d_z}": r_deltas[b.dense]["d_z"], "R{d_W}": r_grads[b.dense]["W"],
        "R{d_b}": r_grads[b.dense]["b"]}


def _through_layers(product: Callable[..., Params], spec: NetworkSpec, params: Params, x: Array,
                    y: Array, v: Params, masks: Masks | None) -> Params:
    """hvp or gnvp of a spec with hidden blocks: its compiled Sequential's (each layer's
    r_backward, ``handwritten.layers``), params and result in the spec's own layout."""
    checks.check_problem(spec, params, x, y, masks)
    checks.check_params(spec, v, params[0]["W"].dtype, name="v")
    return network_grads(spec, product(compile_network(spec), network_params(spec, params), x,
                                       y, network_params(spec, v), network_masks(spec, masks)))


def _no_masks(masks: Masks | None, name: str) -> None:
    if masks is not None:
        raise ValueError(f"masks are a Sequential's: a NetworkSpec's {name} takes none")


def _second_order(spec: NetworkSpec, params: Params, x: Array, y: Array, v: Params,
                  gauss_newton: bool) -> tuple[list[dict[str, Array]], list[dict[str, Array]]]:
    checks.check_x(spec, x)
    check_second_order(spec)
    checks.check_problem(spec, params, x, y)
    checks.check_params(spec, v, params[0]["W"].dtype, name="v")
    seq, run = compile_network(spec), fold.Pass(weight_decay=spec.weight_decay)
    nodes, v_nodes = network_params(spec, params), network_params(spec, v)
    _, out_dot, caches, h_dots = fold.tangent(seq, nodes, x, v_nodes, run)
    r_grads, r_deltas = fold.r_backward(seq, nodes, v_nodes, caches, h_dots, out_dot, y, run,
                                        gauss_newton, keep=True)
    return (_tangent_layers(spec, caches, h_dots, out_dot),
            [_r_layer(b, r_grads, r_deltas) for b in network_blocks(spec)])


def hvp(spec: NetworkSpec | Sequential, params: Params, x: Array, y: Array, v: Params,
        masks: Masks | None = None) -> Params:
    """The Hessian of the loss (weight decay included) times the params-shaped v, by the
    R-operator: exactly the structure, shapes and dtype of ``params``.  A ``Sequential``
    (with its dropout's ``masks``): each layer's ``r_backward``, folded back
    (``handwritten.layers.fold.hvp``)."""
    if isinstance(spec, Sequential):
        return fold.hvp(spec, params, x, y, v, masks)
    if spec.has_blocks:
        return _through_layers(fold.hvp, spec, params, x, y, v, masks)
    _no_masks(masks, "hvp")
    _, layers = _second_order(spec, params, x, y, v, gauss_newton=False)
    return [{"W": r["R{d_W}"], "b": r["R{d_b}"]} for r in layers]


def gnvp(spec: NetworkSpec | Sequential, params: Params, x: Array, y: Array, v: Params,
         masks: Masks | None = None) -> Params:
    """The generalized Gauss-Newton matrix times v: J^T H_loss J v + lambda W_dot, J the
    Jacobian of the loss's input (z_out for a fused loss, else a_out) in the params.  A
    ``Sequential``: ``handwritten.layers.fold.gnvp``."""
    if isinstance(spec, Sequential):
        return fold.gnvp(spec, params, x, y, v, masks)
    if spec.has_blocks:
        return _through_layers(fold.gnvp, spec, params, x, y, v, masks)
    _no_masks(masks, "gnvp")
    _, layers = _second_order(spec, params, x, y, v, gauss_newton=True)
    return [{"W": r["R{d_W}"], "b": r["R{d_b}"]} for r in layers]


def r_trace(spec: NetworkSpec | Sequential, params: Params, x: Array, y: Array, v: Params,
            masks: Masks | None = None) -> list[dict[str, Array]]:
    """Every R-quantity of ``hvp``, per layer: R{z}, R{a}, R{d_a}, R{d_z}, R{d_W}, R{d_b}
    (no R{d_a} at a fused output), so a check names the first wrong step.

    A ``Sequential`` (with its dropout's ``masks``): one dict per node, R{q} for every
    quantity q its ``trace`` names (``handwritten.layers.fold.r_trace``: each layer's
    ``tangent`` / ``tangents`` and ``r_backward``)."""
    if isinstance(spec, Sequential):
        return fold.r_trace(spec, params, x, y, v, masks)
    _no_masks(masks, "r_trace")
    cache, layers = _second_order(spec, params, x, y, v, gauss_newton=False)
    return [{"R{z}": c["z_dot"], "R{a}": c["a_dot"], **r} for c, r in zip(cache, layers)]


# per-example gradients --------------------------------------------------------------------


def _layer_inputs_and_deltas(spec: NetworkSpec, params: Params, x: Array, y: Array
                             ) -> list[tuple[Array, Array]]:
    """(a_prev, d_z) of every layer, for the data term of the loss (no L2 penalty)."""
    checks.check_x(spec, x)
    check_plain(spec)
    checks.check_problem(spec, params, x, y)
    seq = compile_network(spec)
    nodes = network_params(spec, params)
    _, caches = fold.forward(seq, nodes, x)
    _, deltas = fold.backward(seq, nodes, caches, y)
    return [(caches[b.dense]["h"], deltas[b.dense]["d_z"]) for b in network_blocks(spec)]


def per_example_grads(spec: NetworkSpec | Sequential, params: Params, x: Array, y: Array,
                      masks: Masks | None = None) -> Params:
    """Each sample's gradient of its own term of the loss, under the spec's reduction.

    A ``Sequential`` (with its dropout's ``masks``): each layer's ``per_example``
    (``handwritten.layers.fold.per_example_grads``; NotImplementedError names a layer
    without one, as batch norm in training mode).

    Returns params-shaped arrays with a leading batch axis, W (batch, fan_in, fan_out)
    and b (batch, fan_out); their sum over the batch is the gradient of the data term
    (``loss_and_grads`` without the weight decay's lambda W).
    """
    if isinstance(spec, Sequential):
        return fold.per_example_grads(spec, params, x, y, masks)
    if spec.has_blocks:                 # each layer's per_example (batch norm refuses)
        checks.check_problem(spec, params, x, y, masks)
    else:
        _no_masks(masks, "per_example_grads")
        checks.check_x(spec, x)
        checks.check_problem(spec, params, x, y)
    return network_grads(spec, fold.per_example_grads(
        compile_network(spec), network_params(spec, params), x, y, network_masks(spec, masks)))


def per_example_grad_norms(spec: NetworkSpec, params: Params, x: Array, y: Array) -> Array:
    """||per-example gradient|| of every sample, over all params, shape (batch,), without
    forming the (batch, fan_in, fan_out) arrays: ||outer(u, w)|| = ||u|| ||w||.

    Only scaled rows are squared: with s = max|v| of a row, ||v|| = s ||v / s|| and
    1 <= ||v / s||**2 <= width, so no square overflows where the gradients are finite
    (||a_prev||**2 alone would for inputs beyond about 1e154).  Each part of a sample's
    gradient (layer l's W, then its b) is then a norm s_k r_k, s_k its largest entry, and

        ||g|| = S sqrt(sum_k (s_k / S)**2 r_k**2),        S = max_k s_k
    """
    largest, scaled2 = [], []           # per part: s_k and r_k**2, each of shape (batch,)
    for a_prev, d_z in _layer_inputs_and_deltas(spec, params, x, y):
        s_a, a2 = _row_scales_and_squares(a_prev)
        s_d, dz2 = _row_scales_and_squares(d_z)
        largest += [s_a * s_d, s_d]                 # W = outer(a_prev, d_z), then b = d_z
        scaled2 += [a2 * dz2, dz2]
    top = np.max(largest, axis=0)
    top = np.where(top > 0, top, 1)                 # an all-zero gradient has norm 0
    total = sum((s / top) ** 2 * r2 for s, r2 in zip(largest, scaled2))
    return top * np.sqrt(total)


def _row_scales_and_squares(v: Array) -> tuple[Array, Array]:
    """Per row of v: s = max|v| and ||v / s||**2 (0 for a row of zeros)."""
    s = np.abs(v).max(axis=1)
    unit = v / np.where(s > 0, s, 1)[:, None]
    return s, np.einsum("ij,ij->i", unit, unit)
