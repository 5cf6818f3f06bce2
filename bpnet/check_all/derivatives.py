"""The derivatives group, beyond the gradient: forward mode (jvp) and per-example
gradients with their norms, against torch.func and JAX."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

from bpnet.check import CheckReport
from bpnet.check_all.report import BATCH, Case
from bpnet.compare import compare_leaf
from bpnet.equations import qualname
from bpnet.problems import Problem, make_params
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten import seed
from handwritten.spec import NetworkSpec

DERIVATIVE_CASES = (
    NetworkSpec((4, 8, 6, 3), ("silu", "tanh", "identity"), "mse", "mean", weight_decay=0.1),
    NetworkSpec((5, 9, 4), ("celu:0.7", "softmax"), "softmax_cross_entropy", "mean"),
    seed.BLOG_SPEC,
)


def derivatives_report(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType]
                       ) -> CheckReport:
    """handwritten.derivatives' jvp (along a drawn direction), per-example gradients and
    their norms against each reference's (torch.func, JAX)."""
    import importlib

    from handwritten import derivatives

    primary, *references = impls
    spec, params, x, y = problem.spec, problem.params, problem.x, problem.y
    v = make_params(spec, np.random.default_rng(problem.seed + 1), np.float64)
    ours: dict[str, Any] = dict(zip(("output", "output_dot"), derivatives.jvp(spec, params, x, v)))
    per = derivatives.per_example_grads(spec, params, x, y)
    ours |= {f"per-example layer {l} {k}": per[l][k] for l in range(spec.n_layers)
             for k in ("W", "b")}
    ours["per-example norms"] = derivatives.per_example_grad_norms(spec, params, x, y)
    where = {"output": ("z_dot = a_prev_dot @ W + a_prev @ W_dot + b_dot; a_dot = f'(z) z_dot",
                        qualname(derivatives.tangent_forward))}
    where["output_dot"] = where["output"]
    where |= {row: ("d_W[i] = outer(a_prev[i], d_z[i]), d_b[i] = d_z[i]",
                    qualname(derivatives.per_example_grads))
              for row in ours if row.startswith("per-example layer")}
    where["per-example norms"] = ("||d_W[i]||**2 = ||a_prev[i]||**2 ||d_z[i]||**2",
                                  qualname(derivatives.per_example_grad_norms))
    cells, values = {}, {}
    for name in references:
        ref = importlib.import_module(f"{name}.derivatives")
        theirs: dict[str, Any] = dict(zip(("output", "output_dot"), ref.jvp(spec, params, x, v)))
        their_per = ref.per_example_grads(spec, params, x, y)
        theirs |= {f"per-example layer {l} {k}": their_per[l][k] for l in range(spec.n_layers)
                   for k in ("W", "b")}
        theirs["per-example norms"] = np.sqrt(sum(
            (g.reshape(x.shape[0], -1) ** 2).sum(axis=1) for layer in their_per
            for g in layer.values()))
        for row, value in ours.items():
            cells[row, name] = compare_leaf(value, theirs[row], row, None, rtol=RTOL64,
                                            atol_scale=ATOL64_SCALE)
            values[row, name] = (value, theirs[row])
    return CheckReport(spec, problem.batch, primary, tuple(references), tuple(ours), cells,
                       values, where, constants={"1/batch": 1 / problem.batch},
                       replay="bpnet check --all --only derivatives")


def derivative_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """jvp and per-example gradients on hand-picked networks, against torch and JAX."""
    for spec in DERIVATIVE_CASES:
        p = Problem(spec, BATCH, 9, labels=spec.loss == "softmax_cross_entropy")
        yield "derivatives", f"jvp, per-example {spec.layer_sizes}", repr(p), partial(
            derivatives_report, p, impls)
