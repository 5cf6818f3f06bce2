"""The derivation of docs/derivation.md, instantiated with one architecture's shapes, and
(``values``) with the numbers of one case."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from bpnet.check import cross_check
from bpnet.diagnose import implementing
from bpnet.equations import at_layer as at_layer
from bpnet.equations import block_equations as block_equations
from handwritten import LOSSES, NetworkSpec, Params, Sequential, Trace
from handwritten.activations import activation


def _row(text: str, shape: str, width: int = 52) -> str:
    return (text.ljust(width) if len(text) < width else text + "  ") + shape


def divisor(spec: NetworkSpec, batch: str) -> str:
    """The reduction's n, in words."""
    if spec.reduction == "sum":
        return "1"
    if LOSSES[spec.loss].per_row:
        return batch
    return f"{batch}*{spec.layer_sizes[-1]}"


def derivation(spec: NetworkSpec, batch: str = "N") -> list[str]:
    """Lines of the forward and backward equations with every array's shape."""
    sizes, last = spec.layer_sizes, spec.n_layers - 1
    blocks = (f"; hidden blocks: norms {spec.norms}, dropout {spec.dropout}, residual "
              f"{spec.residual}" if spec.has_blocks else "")
    lines = [f"network {sizes}, activations {', '.join(spec.activations)}, "
             f"loss {spec.loss} ({spec.reduction}), weight decay {spec.weight_decay}{blocks}",
             "", "forward                                      shape"]
    prev = "x"
    for l, name in enumerate(spec.activations):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        lines.append(f"  z{l} = {prev} @ W{l} + b{l}".ljust(45)
                     + f"({batch}, {fan_in}) @ ({fan_in}, {fan_out}) + ({fan_out},) "
                       f"-> ({batch}, {fan_out})")
        lines += _block_forward(spec, l, name, prev, batch)
        prev = f"a{l}"
    loss = LOSSES[spec.loss]
    n = divisor(spec, batch)
    decay = (f" + {spec.weight_decay}/2 * sum_l ||W_l||^2" if spec.weight_decay else "")
    lines += ["", f"loss   L = {loss.equation}{decay}",
              f"       with a = a{last}, z = z{last}, n = {n}", "",
              "backward (d_q means dL/dq)                   shape"]
    fused = spec.fused_output
    gradient = at_layer(loss.gradient, last) + ("   (fused)" if fused else "")
    lines.append("  " + gradient.ljust(43) + f"({batch}, {sizes[-1]})")
    for l in range(last, -1, -1):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        if not (fused and l == last) and _has_block(spec, l):
            lines += _block_backward(spec, l, batch)
        elif not (fused and l == last):
            rule = at_layer(activation(spec.activations[l]).derivative, l)
            lines.append(f"  d_z{l} = {rule}".ljust(45) + f"({batch}, {fan_out})")
        a_prev = "x" if l == 0 else f"a{l - 1}"
        wd = f" + {spec.weight_decay} W{l}" if spec.weight_decay else ""
        lines.append(f"  d_W{l} = {a_prev}.T @ d_z{l}{wd}".ljust(45)
                     + f"({fan_in}, {batch}) @ ({batch}, {fan_out}) -> ({fan_in}, {fan_out})")
        lines.append(f"  d_b{l} = d_z{l}.sum(axis=0)".ljust(45) + f"({fan_out},)")
        if spec.norm(l) is not None:
            lines.append(f"  d_gamma{l} = sum(d_n{l} * x_hat{l}, axis=0)".ljust(45)
                         + f"({fan_out},)")
            lines.append(f"  d_beta{l} = sum(d_n{l}, axis=0)".ljust(45) + f"({fan_out},)")
        if l > 0:
            skip = f" + d_a{l}" if l < len(spec.residual) and spec.residual[l] else ""
            lines.append(f"  d_a{l - 1} = d_z{l} @ W{l}.T{skip}".ljust(45)
                         + f"({batch}, {fan_out}) @ ({fan_out}, {fan_in}) -> ({batch}, {fan_in})")
    return lines


def _has_block(spec: NetworkSpec, l: int) -> bool:
    return l < len(spec.norms) and (spec.norms[l] is not None or bool(spec.dropout[l])
                                    or spec.residual[l])


def _block_forward(spec: NetworkSpec, l: int, name: str, prev: str, batch: str) -> list[str]:
    """a_l's lines: the norm, the activation, dropout and the skip where the block has them."""
    fan_out = spec.layer_sizes[l + 1]
    shape = f"({batch}, {fan_out})"
    if not _has_block(spec, l):
        return [_row(f"  a{l} = {name}(z{l})", shape, 45)]
    lines, act_in = [], f"z{l}"
    norm = spec.norms[l]
    if norm is not None:
        axis, stats = (0, f"({fan_out},)") if norm == "batch" else (1, f"({batch},)")
        lines += [_row(f"  mu{l}, var{l} = mean, biased var of z{l} (axis={axis})", stats, 45),
                  _row(f"  x_hat{l} = (z{l} - mu{l}) / sqrt(var{l} + 1e-05)", shape, 45),
                  _row(f"  n{l} = gamma{l} * x_hat{l} + beta{l}   ({norm} norm)", shape, 45)]
        act_in = f"n{l}"
    out = f"h{l}" if spec.dropout[l] or spec.residual[l] else f"a{l}"
    lines.append(_row(f"  {out} = {name}({act_in})", shape, 45))
    if out == f"h{l}":
        rhs = f"h{l} * m{l} / (1 - {spec.dropout[l]:g})" if spec.dropout[l] else f"h{l}"
        rhs += f" + {prev}" if spec.residual[l] else ""
        lines.append(_row(f"  a{l} = {rhs}", shape, 45))
    return lines


def _block_backward(spec: NetworkSpec, l: int, batch: str) -> list[str]:
    """d_z_l's lines from d_a_l: dropout, the activation, the norm's compact backward."""
    shape = f"({batch}, {spec.layer_sizes[l + 1]})"
    equations = block_equations(spec, l)
    lines = [_row(f"  {equations[q]}", shape, 45) for q in ("d_h", "d_n", "d_x_hat")
             if q in equations]
    d_z = f"  {equations['d_z']}"
    return [*lines, d_z if spec.norms[l] is not None else _row(d_z, shape, 45)]


def beyond_the_gradient(spec: NetworkSpec, batch: str = "N") -> list[str]:
    """Lines of handwritten/derivatives.py's equations with this architecture's shapes:
    forward mode (a dot is a tangent along v), the R-operator's backward (hvp; gnvp drops
    the terms marked *), and per-example gradients."""
    sizes, last = spec.layer_sizes, spec.n_layers - 1
    loss = LOSSES[spec.loss]
    lines = ["forward mode (derivatives.jvp; R{z} = z_dot, R{a} = a_dot)   shape"]
    prev, prev_dot = "x", None
    for l, name in enumerate(spec.activations):
        fan_out = sizes[l + 1]
        carried = f"{prev_dot} @ W{l} + " if prev_dot else ""
        lines.append(_row(f"  z{l}_dot = {carried}{prev} @ W{l}_dot + b{l}_dot",
                          f"({batch}, {fan_out})"))
        lines.append(_row(f"  a{l}_dot = {name}'(z{l}) * z{l}_dot", f"({batch}, {fan_out})"))
        prev, prev_dot = f"a{l}", f"a{l}_dot"
    lines += ["", "second order (derivatives.hvp, r_trace; gnvp leaves out the terms marked *)",
              _row("  " + at_layer(loss.hessian, last), f"({batch}, {sizes[-1]})")]
    for l in range(last, -1, -1):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        if not (spec.fused_output and l == last):
            second = activation(spec.activations[l]).second_derivative
            extra = "" if second == "0" else f" + *[{at_layer(second, l)}]"
            lines.append(_row(f"  R{{d_z{l}}} = {spec.activations[l]}'(z{l}) * R{{d_a{l}}}{extra}",
                              f"({batch}, {fan_out})"))
        a_prev = "x" if l == 0 else f"a{l - 1}"
        carried = f" + *[a{l - 1}_dot.T @ d_z{l}]" if l > 0 else ""
        wd = f" + {spec.weight_decay} W{l}_dot" if spec.weight_decay else ""
        lines.append(_row(f"  R{{d_W{l}}} = {a_prev}.T @ R{{d_z{l}}}{carried}{wd}",
                          f"({fan_in}, {fan_out})"))
        lines.append(_row(f"  R{{d_b{l}}} = R{{d_z{l}}}.sum(axis=0)", f"({fan_out},)"))
        if l > 0:
            lines.append(_row(f"  R{{d_a{l - 1}}} = R{{d_z{l}}} @ W{l}.T + *[d_z{l} @ W{l}_dot.T]",
                              f"({batch}, {fan_in})"))
    lines += ["", "per-example gradients (derivatives.per_example_grads, per_example_grad_norms)"]
    for l in range(spec.n_layers):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        a_prev = "x" if l == 0 else f"a{l - 1}"
        lines.append(_row(f"  d_W{l}[i] = outer({a_prev}[i], d_z{l}[i])",
                          f"({batch}, {fan_in}, {fan_out})"))
        lines.append(_row(f"  ||d_W{l}[i]||**2 = ||{a_prev}[i]||**2 ||d_z{l}[i]||**2",
                          f"({batch},)"))
    return lines


def _terms(pairs: list[tuple[float, float]], limit: int = 6) -> str:
    shown = " + ".join(f"({u:.6g})({v:.6g})" for u, v in pairs[:limit])
    return shown + (f" + ... ({len(pairs) - limit} more)" if len(pairs) > limit else "")


def by_hand(spec: NetworkSpec, params: Params, x: np.ndarray, trace: Trace) -> list[str]:
    """Two scalar entries worked out from the printed numbers: z0[0, 0] (forward) and
    d_W0[0, 0] (backward), each sum written term by term and evaluated, beside handwritten's."""
    W, b = params[0]["W"], params[0]["b"]
    z = float(np.sum(x[0, :] * W[:, 0]) + b[0])
    lines = ["z0[0, 0] = sum_k x[0, k] W0[k, 0] + b0[0]",
             f"         = {_terms(list(zip(x[0, :], W[:, 0])))} + ({b[0]:.6g})",
             f"         = {z:.17g}   (handwritten: {float(trace.layers[0]['z'][0, 0]):.17g})"]
    d_z = trace.layers[0]["d_z"]
    d_w = float(np.sum(x[:, 0] * d_z[:, 0])) + spec.weight_decay * float(W[0, 0])
    decay = f" + {spec.weight_decay} W0[0, 0]" if spec.weight_decay else ""
    decay_value = f" + {spec.weight_decay} ({W[0, 0]:.6g})" if spec.weight_decay else ""
    lines += ["", f"d_W0[0, 0] = sum_i x[i, 0] d_z0[i, 0]{decay}",
              f"           = {_terms(list(zip(x[:, 0], d_z[:, 0])))}{decay_value}",
              f"           = {d_w:.17g}   (handwritten: "
              f"{float(trace.layers[0]['d_W'][0, 0]):.17g})"]
    return lines


def values(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray,
           reference: tuple[str, ModuleType] | None) -> dict[str, Any]:
    """Every quantity of one case in derivation order, with its equation, the function
    that computes it, handwritten's values and (given a reference) autograd's values and
    the largest relative error; the inputs x, y, W, b; and two entries worked by hand."""
    import handwritten as hw

    trace = hw.trace(spec, params, x, y)
    inputs = {"x": x, "y": y, **{f"{k}{l}": p[k] for l, p in enumerate(params) for k in p}}
    report = cross_check(spec, params, x, y, {"handwritten": hw, reference[0]: reference[1]},
                         grads=False) if reference else None
    rows = report.rows if report else [
        *(f"layer {l} {q}" for l in range(spec.n_layers) for q in ("z", "a")), "loss",
        *(f"layer {l} {q}" for l in reversed(range(spec.n_layers))
          for q in ("d_a", "d_z", "d_W", "d_b") if q in trace.layers[l])]
    entries = []
    for row in rows:
        equation, function = implementing(spec, row) or ("", "")
        if row == "loss":
            mine: Any = trace.loss
        else:
            l, q = int(row.split()[1]), row.split()[2]
            mine = trace.layers[l][q]
        entry: dict[str, Any] = {"quantity": row, "equation": equation, "function": function,
                                 "handwritten": np.asarray(mine).tolist()}
        if report is not None and reference is not None:
            cell = report.cells[row, reference[0]]
            entry[reference[0]] = np.asarray(report.values[row, reference[0]][1]).tolist()
            entry["max_rel_error"] = cell.max_rel
        entries.append(entry)
    return {"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()},
            "values": entries, "autograd": reference[0] if reference else None,
            "by_hand": by_hand(spec, params, x, trace)}


# a Sequential: each layer's own equations, in pass order -------------------------------------


def _shape(batch: str, shape: tuple[int, ...]) -> str:
    return f"({', '.join([batch, *map(str, shape)])})"


def layers_derivation(seq: Sequential, batch: str = "N") -> list[str]:
    """Lines of every node's forward equations (input up) and backward equations (output
    down), each with the node's path, its layer and the shapes: the layers' own
    ``EQUATIONS`` and ``D_IN``, as ``handwritten.layers`` derives them."""
    loss = LOSSES[seq.loss]
    lines = [f"network {seq!r}", "", "forward".ljust(52) + "shape"]
    for (path, layer), shape in zip(seq.nodes, seq.in_shapes):
        out = layer.out_shape(shape) if not hasattr(layer, "body") else shape
        params = "".join(f", {k} {v}" for k, v in getattr(layer, "param_shapes", dict)().items())
        lines.append(f"  [{path}] {layer!r}")
        for q in layer.FORWARD:
            equation = f"a = {layer.name}(z)" if q == "a" and hasattr(layer, "name") else \
                layer.EQUATIONS[q]
            lines.append(_row(f"      {equation}", f"{_shape(batch, shape)} -> "
                                                   f"{_shape(batch, out)}{params}"
                              if q == layer.OUT else ""))
    n = divisor_of(seq, batch)
    names = sorted({key for _, layer in seq.nodes for key in layer.DECAYED})
    norms = " + ".join(f"||{key}||^2" for key in names)
    decay = (f" + {seq.weight_decay}/2 * sum " + (norms if len(names) == 1 else f"({norms})")
             if seq.weight_decay and names else "")
    lines += ["", f"loss   L = {loss.equation}{decay}",
              "       with (z, a) the last layer's input and output, n = " + n, "",
              "backward (d_q means dL/dq)".ljust(52) + "shape"]
    lines.append(_row(f"  {loss.gradient}" + ("   (fused)" if seq.fused_output else ""),
                      _shape(batch, (seq.n_out,))))
    skip = len(seq.nodes) - 1 if seq.fused_output else None
    for i in reversed(range(len(seq.nodes))):
        if i == skip:
            continue
        (path, layer), shape = seq.nodes[i], seq.in_shapes[i]
        lines.append(f"  [{path}] {layer!r}")
        for q in layer.BACKWARD:
            if q != f"d_{layer.OUT}":
                lines.append(f"      {layer.EQUATIONS[q]}".replace(
                    " (+ weight_decay * W)", f" + {seq.weight_decay} W" if seq.weight_decay
                    else ""))
        if i > 0:
            lines.append(_row(f"      {layer.D_IN}", _shape(batch, shape)))
    return lines


def divisor_of(seq: Sequential, batch: str) -> str:
    """The reduction's n, in words, for a Sequential."""
    if seq.reduction == "sum":
        return "1"
    return batch if LOSSES[seq.loss].per_row else f"{batch}*{seq.n_out}"
