"""The derivation of docs/derivation.md, instantiated with one architecture's shapes."""

from __future__ import annotations

import re

from handwritten import ACTIVATIONS, LOSSES, NetworkSpec

_QUANTITY = re.compile(r"\b(d_a|d_z|z|a)\b")


def at_layer(equation: str, layer: int) -> str:
    """A registry equation in z, a, d_a, d_z with the layer's index on every quantity."""
    return _QUANTITY.sub(lambda m: f"{m.group(1)}{layer}", equation)


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
    lines = [f"network {sizes}, activations {', '.join(spec.activations)}, "
             f"loss {spec.loss} ({spec.reduction}), weight decay {spec.weight_decay}",
             "", "forward                                      shape"]
    prev = "x"
    for l, name in enumerate(spec.activations):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        lines.append(f"  z{l} = {prev} @ W{l} + b{l}".ljust(45)
                     + f"({batch}, {fan_in}) @ ({fan_in}, {fan_out}) + ({fan_out},) "
                       f"-> ({batch}, {fan_out})")
        lines.append(f"  a{l} = {name}(z{l})".ljust(45) + f"({batch}, {fan_out})")
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
        if not (fused and l == last):
            rule = at_layer(ACTIVATIONS[spec.activations[l]].derivative, l)
            lines.append(f"  d_z{l} = {rule}".ljust(45) + f"({batch}, {fan_out})")
        a_prev = "x" if l == 0 else f"a{l - 1}"
        wd = f" + {spec.weight_decay} W{l}" if spec.weight_decay else ""
        lines.append(f"  d_W{l} = {a_prev}.T @ d_z{l}{wd}".ljust(45)
                     + f"({fan_in}, {batch}) @ ({batch}, {fan_out}) -> ({fan_in}, {fan_out})")
        lines.append(f"  d_b{l} = d_z{l}.sum(axis=0)".ljust(45) + f"({fan_out},)")
        if l > 0:
            lines.append(f"  d_a{l - 1} = d_z{l} @ W{l}.T".ljust(45)
                         + f"({batch}, {fan_out}) @ ({fan_out}, {fan_in}) -> ({batch}, {fan_in})")
    return lines
