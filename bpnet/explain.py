"""The derivation of docs/derivation.md, instantiated with one architecture's shapes."""

from __future__ import annotations

from handwritten import LOSSES, NetworkSpec

# d_z in terms of d_a, z and a: the line each activation's backward implements.
ACTIVATION_GRADS = {
    "sigmoid": "d_a{l} * a{l} * (1 - a{l})",
    "tanh": "d_a{l} * (1 - a{l}**2)",
    "relu": "d_a{l} * [z{l} > 0]",
    "leaky_relu": "d_a{l} * (1 if z{l} > 0 else 0.01)",
    "elu": "d_a{l} * (1 if z{l} > 0 else a{l} + 1)",
    "softplus": "d_a{l} * (1 - exp(-a{l}))",
    "gelu": "d_a{l} * ((1 + t)/2 + z{l}/2 (1 - t**2) c (1 + 3k z{l}**2)),  t = tanh(u(z{l}))",
    "silu": "d_a{l} * (s + a{l} (1 - s)),  s = sigmoid(z{l})",
    "swish": "d_a{l} * (s + a{l} (1 - s)),  s = sigmoid(z{l})",
    "identity": "d_a{l}",
    "softmax": "a{l} * (d_a{l} - sum(d_a{l} * a{l}, axis=1))",
}

# The loss and its gradient, with n the reduction's divisor.
LOSS_GRADS = {
    "half_mse": ("sum((a - y)**2 / 2) / n", "d_a{L} = (a{L} - y) / n"),
    "mse": ("sum((a - y)**2) / n", "d_a{L} = 2 (a{L} - y) / n"),
    "bce": ("-sum(y log a + (1 - y) log(1 - a)) / n",
            "d_a{L} = (a{L} - y) / (a{L} (1 - a{L})) / n"),
    "bce_with_logits": ("sum(softplus(z) - y z) / n", "d_z{L} = (sigmoid(z{L}) - y) / n   (fused)"),
    "softmax_cross_entropy": ("sum(logsumexp(z) - sum_k y_k z_k) / n",
                              "d_z{L} = (softmax(z{L}) - y) / n   (fused)"),
}


def divisor(spec: NetworkSpec, batch: str) -> str:
    """The reduction's n, in words."""
    if spec.reduction == "sum":
        return "1"
    if spec.loss == "softmax_cross_entropy":
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
    value, grad = LOSS_GRADS[spec.loss]
    n = divisor(spec, batch)
    decay = (f" + {spec.weight_decay}/2 * sum_l ||W_l||^2" if spec.weight_decay else "")
    lines += ["", f"loss   L = {value}{decay}",
              f"       with a = a{last}, z = z{last}, n = {n}", "",
              "backward (d_q means dL/dq)                   shape"]
    fused = LOSSES[spec.loss].fused_with is not None
    lines.append("  " + grad.format(L=last).ljust(43) + f"({batch}, {sizes[-1]})")
    for l in range(last, -1, -1):
        fan_in, fan_out = sizes[l], sizes[l + 1]
        if not (fused and l == last):
            rule = ACTIVATION_GRADS[spec.activations[l]].format(l=l)
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
