"""The second-order group: the R-operator trace (hvp) and the Gauss-Newton product along a
drawn direction, against torch's double backward and JAX's forward over reverse."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport
from bpnet.check_all.report import BATCH, Case
from bpnet.compare import LeafReport
from bpnet.equations import qualname
from bpnet.problems import Problem, make_params
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten import seed
from handwritten.activations import activation
from handwritten.spec import NetworkSpec

SECOND_ORDER_CASES = (
    NetworkSpec((4, 8, 6, 3), ("gelu", "tanh", "identity"), "mse", "mean", weight_decay=0.1),
    NetworkSpec((5, 9, 4), ("elu:0.5", "softmax"), "softmax_cross_entropy", "mean"),
    NetworkSpec((3, 6, 5, 2), ("softplus", "silu", "sigmoid"), "bce", "sum"),
    NetworkSpec((3, 7, 3), ("celu:2", "softmax"), "half_mse", "mean"),
    NetworkSpec((4, 6, 2), ("selu", "sigmoid"), "bce_with_logits", "mean"),
    seed.BLOG_SPEC,
)
"""Every activation's and loss's second derivative at least once (relu and leaky_relu's
f'' = 0 is identity's)."""

R_EQUATIONS = {
    "R{z}": "R{z} = R{a_prev} @ W + a_prev @ W_dot + b_dot",
    "R{a}": "R{a} = f'(z) * R{z}",
    "R{d_a}": "R{d_a} = R{d_z_next} @ W_next.T + d_z_next @ W_dot_next.T  (output: H_loss R{a})",
    "R{d_z}": "R{d_z} = f'(z) * R{d_a} + second(z, a, d_a, R{z})  (fused output: H_loss R{z})",
    "R{d_W}": "R{d_W} = R{a_prev}.T @ d_z + a_prev.T @ R{d_z} + lambda W_dot",
    "R{d_b}": "R{d_b} = R{d_z}.sum(axis=0)",
}


def _r_where(spec: NetworkSpec, quantity: str, l: int) -> tuple[str, str]:
    """(equation, function) of one R-quantity: the registry's second derivative where it
    enters (R{d_z} of an activation, the output's R{d_a} or fused R{d_z} of the loss)."""
    from handwritten import derivatives

    out = l == spec.n_layers - 1
    loss = hw.LOSSES[spec.loss]
    if out and loss.second is not None and (
            (quantity == "R{d_z}" and spec.fused_output) or quantity == "R{d_a}"):
        return f"{loss.hessian}  (the loss's Hessian)", qualname(loss.second)
    entry = activation(spec.activations[l])
    if quantity == "R{d_z}" and entry.second is not None:
        return f"R{{d_z}} = f'(z) * R{{d_a}} + {entry.second_derivative}", qualname(entry.second)
    function = (derivatives.tangent_forward if quantity in ("R{z}", "R{a}")
                else derivatives.r_backward)
    return R_EQUATIONS[quantity], qualname(function)


def second_order_report(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType]
                        ) -> CheckReport:
    """handwritten.derivatives' R-operator trace (every R-quantity, in the order the passes
    form them), hvp and gnvp along a drawn direction, against torch's double backward and
    JAX's forward over reverse."""
    import importlib

    from bpnet.compare import compare_params, compare_r_trace
    from handwritten import derivatives

    primary, *references = impls
    spec, params, x, y = problem.spec, problem.params, problem.x, problem.y
    v = make_params(spec, np.random.default_rng(problem.seed + 1), np.float64)
    ours_trace = derivatives.r_trace(spec, params, x, y, v)
    ours_gn = derivatives.gnvp(spec, params, x, y, v)
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    rows: list[str] = []
    where: dict[str, tuple[str, str]] = {}
    for name in references:
        ref = importlib.import_module(f"{name}.derivatives")
        theirs_trace = ref.r_trace(spec, params, x, y, v)
        theirs_gn = ref.gnvp(spec, params, x, y, v)
        reports = [*compare_r_trace(ours_trace, theirs_trace, rtol=RTOL64,
                                    atol_scale=ATOL64_SCALE),
                   *(dataclasses.replace(r, quantity=f"gnvp {r.quantity}")
                     for r in compare_params(ours_gn, theirs_gn, rtol=RTOL64,
                                             atol_scale=ATOL64_SCALE))]
        for r in reports:
            row = f"layer {r.layer} {r.quantity}"
            if row not in where:
                rows.append(row)
                if r.quantity.startswith("gnvp"):
                    where[row] = ("J^T H_loss J v: R-backward without the loss-gradient terms",
                                  qualname(derivatives.gnvp))
                else:
                    where[row] = _r_where(spec, r.quantity, r.layer or 0)
            cells[row, name] = r
            key, l = r.quantity.removeprefix("gnvp "), r.layer or 0
            values[row, name] = ((ours_gn[l][key], theirs_gn[l][key])
                                 if r.quantity.startswith("gnvp")
                                 else (ours_trace[l][key], theirs_trace[l][key]))
    return CheckReport(spec, problem.batch, primary, tuple(references), tuple(rows), cells,
                       values, where, constants={"1/batch": 1 / problem.batch},
                       replay="bpnet check --all --only second")


def second_order_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """The R-operator trace and the Gauss-Newton product on hand-picked networks."""
    for spec in SECOND_ORDER_CASES:
        p = Problem(spec, BATCH, 9, labels=spec.loss == "softmax_cross_entropy")
        yield "second order", f"hvp, gnvp {spec.layer_sizes} {spec.loss}", repr(p), partial(
            second_order_report, p, impls)
