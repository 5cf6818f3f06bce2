"""The equations of the trace quantities: each as handwritten derives it, with the layer's
index on every name, and the function of handwritten that evaluates it.

One module for the equation helpers that ``bpnet.check`` (failure messages),
``bpnet.diagnose``, ``bpnet.explain`` and ``bpnet.check_all`` print, so that none of
them imports another for its equations (the import circle check -> diagnose ->
explain -> check is gone; tests/test_isolation.py keeps bpnet's imports acyclic).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from handwritten import LOSSES, NetworkSpec, blocks, network
from handwritten.activations import activation as registry_entry
from handwritten.layers import Activation, Residual, Sequential

_QUANTITY = re.compile(r"\b(d_a|d_z|z|a)(_dot)?\b")


BLOCK_EQUATIONS = {
    "mu": ("mu = mean(z) along the norm's axis", "handwritten.blocks.normalize"),
    "var": ("var = mean((z - mu)**2), biased", "handwritten.blocks.normalize"),
    "x_hat": ("x_hat = (z - mu) / sqrt(var + eps)", "handwritten.blocks.normalize"),
    "n": ("n = gamma * x_hat + beta", "handwritten.blocks.normalize"),
    "h": ("h = f(n)", "handwritten.network.hidden_block"),
    "d_h": ("d_h = d_a * m / (1 - p)", "handwritten.blocks.dropout_backward"),
    "d_n": ("d_n = f'(n) * d_h", "handwritten.network.hidden_block_backward"),
    "d_x_hat": ("d_x_hat = d_n * gamma", "handwritten.blocks.normalize_backward"),
    "d_gamma": ("d_gamma = sum(d_n * x_hat, axis=0)", "handwritten.blocks.normalize_backward"),
    "d_beta": ("d_beta = sum(d_n, axis=0)", "handwritten.blocks.normalize_backward"),
}
"""Each block quantity's function; its equation is written out for the layer (with its
mask, its p, its skip) by ``block_equations`` below where that has it."""


def at_layer(equation: str, layer: int) -> str:
    """A registry equation in z, a, d_a, d_z (and the tangents z_dot, a_dot) with the
    layer's index on every quantity."""
    return _QUANTITY.sub(lambda m: f"{m.group(1)}{layer}{m.group(2) or ''}", equation)


def block_equations(spec: NetworkSpec, l: int) -> dict[str, str]:
    """A hidden block's equations (layer l of a spec with blocks), by quantity: "a" (the
    activation, dropout with its mask, the skip), "d_h" (dropout's backward), the
    activation's backward ("d_z", or "d_n" before a norm) and a norm's "d_x_hat" and "d_z"
    (the compact backward); only the quantities the block has."""
    prev = "x" if l == 0 else f"a{l - 1}"
    act_in = f"n{l}" if spec.norms[l] is not None else f"z{l}"
    out: dict[str, str] = {}
    d_in = f"d_a{l}"
    if spec.dropout[l] or spec.residual[l]:
        rhs = f"h{l} * m{l} / (1 - {spec.dropout[l]:g})" if spec.dropout[l] else f"h{l}"
        out["a"] = f"a{l} = {rhs}" + (f" + {prev}" if spec.residual[l] else "")
        out["h"] = f"h{l} = {spec.activations[l]}({act_in})"
        rhs = f"d_a{l} * m{l} / (1 - {spec.dropout[l]:g})" if spec.dropout[l] else f"d_a{l}"
        out["d_h"] = f"d_h{l} = {rhs}"
        d_in = f"d_h{l}"
    else:
        out["a"] = f"a{l} = {spec.activations[l]}({act_in})"
    rule = at_layer(registry_entry(spec.activations[l]).derivative, l).replace(f"d_a{l}", d_in)
    if d_in != f"d_a{l}":                    # the activation's output is h, not a
        rule = re.sub(rf"\ba{l}\b", f"h{l}", rule)
    if spec.norms[l] is None:
        out["d_z"] = f"d_z{l} = {rule}"
        return out
    axis = 0 if spec.norms[l] == "batch" else 1
    out["d_n"] = f"d_n{l} = " + rule.replace(f"z{l}", f"n{l}")
    out["d_x_hat"] = f"d_x_hat{l} = d_n{l} * gamma{l}"
    out["d_z"] = (f"d_z{l} = s/N (N d_x_hat{l} - sum(d_x_hat{l}) - x_hat{l} sum(d_x_hat{l} "
                  f"x_hat{l}))   (sums over axis {axis}, s = 1/sqrt(var{l} + 1e-05))")
    return out


_LABEL = re.compile(r"^layer (\d+) (z|a|d_a|d_z|d_W|d_b)(?: \(loss_and_grads\))?$")


def qualname(fn: Callable[..., Any]) -> str:
    """handwritten.activations.tanh_backward, for a function."""
    fn = getattr(fn, "func", fn)          # a parametrised activation: functools.partial
    return f"{fn.__module__}.{fn.__qualname__}"


def implementing(spec: NetworkSpec | Sequential, label: str) -> tuple[str, str] | None:
    """(equation, function) of a trace quantity such as "layer 1 d_z" or "loss"; None for
    a label that is not a trace quantity.  A Sequential's labels name the node's path
    ("layer 4.1 d_x_hat": ``node_equation``)."""
    if isinstance(spec, Sequential):
        return node_equation(spec, label)
    loss = LOSSES[spec.loss]
    last = spec.n_layers - 1
    if label.startswith("loss"):
        return f"L = {loss.equation}", qualname(loss.value)
    match = _LABEL.match(label)
    if match is None:
        return None
    l, name = int(match.group(1)), match.group(2)
    activation = registry_entry(spec.activations[l])
    a_prev = "x" if l == 0 else f"a{l - 1}"
    decay = f" + {spec.weight_decay} W{l}" if spec.weight_decay else ""
    block = l < len(spec.norms) and (spec.norms[l] is not None or bool(spec.dropout[l])
                                     or spec.residual[l])
    if name == "z":
        return f"z{l} = {a_prev} @ W{l} + b{l}", qualname(network.forward)
    if name == "a" and block:                 # after h = f(n): dropout (if any), the skip
        function = blocks.dropout if spec.dropout[l] else network.hidden_block
        return block_equations(spec, l)["a"], qualname(function)
    if name == "a":
        return f"a{l} = {spec.activations[l]}(z{l})", qualname(activation.forward)
    if name == "d_a" and l == last:
        return at_layer(loss.gradient, l), qualname(loss.grad)
    if name == "d_a":
        skip = f" + d_a{l + 1}" if l + 1 < len(spec.residual) and spec.residual[l + 1] else ""
        return f"d_a{l} = d_z{l + 1} @ W{l + 1}.T{skip}", qualname(network.backward)
    if name == "d_z" and block and spec.norms[l] is not None:
        return block_equations(spec, l)["d_z"], qualname(blocks.normalize_backward)
    if name == "d_z" and block:
        return block_equations(spec, l)["d_z"], qualname(activation.backward)
    if name == "d_z" and l == last and spec.fused_output:
        return at_layer(loss.gradient, l) + " (fused)", qualname(loss.grad)
    if name == "d_z":
        return f"d_z{l} = {at_layer(activation.derivative, l)}", qualname(activation.backward)
    if name == "d_W":
        return f"d_W{l} = {a_prev}.T @ d_z{l}{decay}", qualname(network.backward)
    return f"d_b{l} = d_z{l}.sum(axis=0)", qualname(network.backward)


# a Sequential's quantities: each layer's own equation and method ---------------------------

_NODE_LABEL = re.compile(r"^layer ([\d.]+) (\S+)(?: \(loss_and_grads\))?$")
_R_LABEL = re.compile(r"^layer ([\d.]+) R\{(\S+)\}$")


def method(layer: Any, name: str) -> str:
    """handwritten.layers.dense.Dense.backward, for a layer and one of its methods."""
    cls = type(layer)
    return f"{cls.__module__}.{cls.__qualname__}.{name}"


def _above(seq: Sequential, i: int) -> int | None:
    """The node whose backward forms node i's d_<out>: the node after it at the same level
    (a Residual: its join_backward), or, for the last node of a body, whatever forms the
    Residual's; None where the loss's gradient forms it (at the top, or below a fused
    output's activation)."""
    path = seq.paths[i]
    parent, _, index = path.rpartition(".")
    siblings = [j for j, p in enumerate(seq.paths) if p.rpartition(".")[0] == parent]
    later = [j for j in siblings if int(seq.paths[j].rpartition(".")[2]) == int(index) + 1]
    if later:
        j = later[0]
        if not parent and j == siblings[-1] and seq.fused_output:
            return None
        return j
    if parent:
        return _above(seq, seq.paths.index(parent))
    return None


def _producer(seq: Sequential, i: int) -> str:
    """The function that forms node i's d_<out> (``_above``): the backward of the node
    above it, a Residual's join_backward, or the loss's gradient."""
    j = _above(seq, i)
    if j is None:
        return qualname(LOSSES[seq.loss].grad)
    layer = seq.nodes[j][1]
    return method(layer, "join_backward" if isinstance(layer, Residual) else "backward")


def node_equation(seq: Sequential, label: str) -> tuple[str, str] | None:
    """(equation, function) of a Sequential's trace quantity: the layer's own equation
    (``EQUATIONS``) and the method that forms it -- its forward, its backward, or for the
    gradient at its output (d_z of a Dense, d_a of an Activation, ...) the backward of the
    layer above it (``_producer``); an R-quantity of its R-trace ("layer 2 R{d_z}"):
    ``node_r_equation``."""
    if label.startswith("loss"):
        return f"L = {LOSSES[seq.loss].equation}", qualname(LOSSES[seq.loss].value)
    if _R_LABEL.match(label):
        return node_r_equation(seq, label)
    match = _NODE_LABEL.match(label)
    if match is None or match.group(1) not in seq.paths:
        return None
    i = seq.paths.index(match.group(1))
    layer, name = seq.nodes[i][1], match.group(2)
    equation = layer.EQUATIONS.get(name, name)
    if isinstance(layer, Activation) and name == "a":
        equation = f"a = {layer.name}(z)"
    if name == f"d_{layer.OUT}":
        return equation, _producer(seq, i)
    if name in layer.FORWARD:
        return equation, method(layer, "join" if isinstance(layer, Residual) else "forward")
    return equation, method(layer, "backward")


def node_r_equation(seq: Sequential, label: str) -> tuple[str, str] | None:
    """(equation, function) of a Sequential's R-quantity, a row of its R-trace
    (``handwritten.derivatives.r_trace``) such as "layer 2.2 R{d_x_hat}": the layer's own
    equation of the quantity (``EQUATIONS``) differentiated along the direction v, and the
    method that forms it --

    - a forward quantity's tangent: the layer's ``tangent`` (``tangents`` where it has inner
      forward quantities, a norm's; a Residual's ``join`` of the tangents);
    - R{d_<out>}: the R-operator of the layer above it (``_above``), its ``r_backward`` of
      its D_IN (an Activation's with the registry's second derivative written out, a
      Residual's ``join_backward``), or at the top the loss's Hessian (its ``second``);
    - an inner R{d_<name>} (a norm's R{d_x_hat}) and the params' R{d_<key>} (= H v): the
      layer's ``r_backward``.

    None for a label that is not one of the node's R-quantities."""
    match = _R_LABEL.match(label)
    if match is None or match.group(1) not in seq.paths:
        return None
    i = seq.paths.index(match.group(1))
    layer, name = seq.nodes[i][1], match.group(2)
    if name in layer.FORWARD:
        if isinstance(layer, Activation):
            return f"R{{a}} = {layer.name}'(z) * R{{z}}", method(layer, "tangent")
        function = ("join" if isinstance(layer, Residual) else
                    "tangents" if hasattr(layer, "tangents") else "tangent")
        return (f"R{{{name}}}: {layer.EQUATIONS.get(name, name)}, differentiated along v",
                method(layer, function))
    if name == f"d_{layer.OUT}":
        j = _above(seq, i)
        if j is None:
            loss = LOSSES[seq.loss]
            return f"{loss.hessian}  (the loss's Hessian)", qualname(loss.second or loss.grad)
        path, above = seq.nodes[j]
        if isinstance(above, Activation):
            second = registry_entry(above.name).second_derivative or "d_a * f''(z) * z_dot"
            return (f"R{{{name}}} = R{{d_z}} of [{path}] Activation {above.name}: "
                    f"f'(z) * R{{d_a}} + {second}", method(above, "r_backward"))
        whose = f"R{{{name}}} = R{{d_h}} of [{path}] {type(above).__name__}:"
        if isinstance(above, Residual):
            return f"{whose} R{{d_body_in}} + R{{d_out}}", method(above, "join_backward")
        return f"{whose} {above.D_IN}, differentiated along v", method(above, "r_backward")
    if name in layer.BACKWARD:
        return (f"R{{{name}}}: {layer.EQUATIONS.get(name, name)}, differentiated along v",
                method(layer, "r_backward"))
    return None
