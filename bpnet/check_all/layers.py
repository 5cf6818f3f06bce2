"""The layers group: Sequentials in orders the MLP spec cannot say, every quantity of every
node against torch and JAX, evaluation mode, batch norm's state, and second order step by
step (every node's R-quantity), forward mode, per-example gradients and the Gauss-Newton
product (``layer_cases``, which the conv group runs on its own cases)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport, cross_check
from bpnet.check_all.report import BATCH, Case, _predict_report
from bpnet.compare import LeafReport, compare_leaf
from bpnet.problems import Problem, make_params
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten.layers import (
    Activation,
    BatchNorm1d,
    Dense,
    Dropout,
    LayerNorm,
    Residual,
    Sequential,
)
from handwritten.spec import NetworkSpec

LAYER_CASES = (
    Sequential([LayerNorm(4), Dense(4, 5), Activation("tanh"), Activation("gelu"), Dropout(0.3),
                Dense(5, 3), Activation("softmax")], "softmax_cross_entropy"),
    Sequential([Dense(3, 4), BatchNorm1d(4), Residual([Dense(4, 4), Activation("relu"),
                                                       LayerNorm(4)]),
                Activation("sigmoid"), Dense(4, 2), Activation("sigmoid")], "bce_with_logits",
               weight_decay=0.1),
    Sequential([Dense(3, 4), Activation("elu"), Residual([Dropout(0.5), Dense(4, 4),
                                                          Activation("tanh")]),
                Dense(4, 2)], "mse", "sum"),
)
"""Networks in orders the MLP spec cannot say: a norm first, two activations in a row,
dropout inside a skip, a Residual around a Dense, an activation and a norm."""


def layers_report(problem: Problem[Sequential], impls: Mapping[str, ModuleType],
                  group: str = "layers") -> CheckReport:
    """Every quantity of every node of a Sequential against torch and JAX, named by the
    node's path, with the layer's equation and the method that forms it, and
    loss_and_grads' gradients beside the trace's (``bpnet.check.cross_check``); a failure
    replays with ``bpnet check --all --only <group>``."""
    report = cross_check(problem.spec, problem.params, problem.x, problem.y, impls,
                         masks=problem.masks)
    return replace(report, replay=f"bpnet check --all --only {group}")


def _drawn_running(seq: Sequential, rng: np.random.Generator) -> hw.Running:
    """Running statistics as training leaves them, one per feature (BatchNorm1d) or channel
    (BatchNorm2d): mean ~ N(0, 1), var ~ U(0.5, 2); {} on every other node."""
    return [{"mean": rng.normal(size=shape[:1]), "var": rng.uniform(0.5, 2.0, shape[:1])}
            if isinstance(layer, BatchNorm1d) else {}
            for (_, layer), shape in zip(seq.nodes, seq.in_shapes)]


def layers_evaluation_report(impls: Mapping[str, ModuleType],
                             cases: Sequence[Sequential] = LAYER_CASES, group: str = "layers"
                             ) -> CheckReport:
    """predict in evaluation mode on every one of ``cases`` (no dropout; batch norm
    normalized with drawn running statistics, ``_drawn_running``), against each
    reference's predict."""
    found: list[tuple[str, NetworkSpec | Sequential, hw.Running]] = [
        (f"predict, {group} case {i}", seq, _drawn_running(seq, np.random.default_rng(12 + i)))
        for i, seq in enumerate(cases)]
    return _predict_report(impls, found, (
        "evaluation mode: a batch norm's x_hat = (h - running_mean) / sqrt(running_var + eps); "
        "Dropout passes h", "handwritten.layers.norm.BatchNorm1d.forward"),
        f"bpnet check --all --only {group}")


def layers_derivatives_report(impls: Mapping[str, ModuleType],
                              cases: Sequence[Sequential] = LAYER_CASES, group: str = "layers"
                              ) -> CheckReport:
    """Second order step by step, forward mode and per-example gradients of every one of
    ``cases``, along a drawn params-shaped direction v, against torch.func and JAX, case by
    case in this order:

    - the R-trace (``handwritten.derivatives.r_trace``): every node's R{q} for every trace
      quantity q, R{z}, a norm's R{mu}, ..., R{n} from the input up, then R{d_<out>}, a
      norm's R{d_x_hat} and the params' R{d_W}, R{d_b}, ... (= H v) from the output down,
      named by the node's path with the layer's equation and the method that forms it
      (``bpnet.equations.node_r_equation``), so the first failing row is the first wrong
      step of a layer's tangent or R-operator.  Judged as the suite's R-trace property
      judges it (``compare_r_trace``): RTOL64, the absolute floor ATOL64_SCALE *
      max|reference|, and SPREAD_FACTOR times the two references' own difference (a norm's
      R-backward is a cancellation's residue, as its backward is) -- without the
      property's allowance of a batch sum on its terms' scale: on these cases each H v
      leaf's absolute allowance is then at most 1% of what the former H v rows gave it
      (RTOL64 of the product's largest entry), where the terms would have given a bias
      before a batch norm up to 1.7x that.
    - jvp's output tangent (``fold.jvp``, the public entry point of the tangents above);
    - (where no BatchNorm1d couples the batch) each node's per-example gradients;
    - the Gauss-Newton product G v (``fold.second_order`` without the loss-gradient terms:
      a path of every r_backward the R-trace does not take).

    H v itself is the R-trace's R{d_<key>}, array for array, judged there more tightly than
    as a product (whose every entry was allowed RTOL64 of its largest one)."""
    import importlib

    from bpnet.compare import compare_r_trace
    from bpnet.equations import node_r_equation
    from handwritten import derivatives

    primary, *references = impls
    modules = {name: importlib.import_module(f"{name}.derivatives") for name in references}
    rows: list[str] = []
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    where: dict[str, tuple[str, str]] = {}

    def put(report: LeafReport, name: str, pair: tuple[Any, Any] | None,
            found: tuple[str, str] | None) -> None:
        row = report.label
        if row not in rows:
            rows.append(row)
        cells[row, name] = report
        if pair is not None:
            values[row, name] = pair
        if found is not None:
            where[row] = found

    def add(row: str, ours: Any, theirs: Any, name: str, found: tuple[str, str],
            atol: float = 0.0) -> None:
        put(dataclasses.replace(compare_leaf(
            ours, theirs, row, None, rtol=RTOL64, atol_scale=ATOL64_SCALE, atol=atol),
            quantity=row), name, (ours, theirs), found)

    for i, seq in enumerate(cases):
        p = Problem(seq, BATCH, 13, labels=seq.loss == "softmax_cross_entropy")
        # a direction of its own: drawn from the problem's seed (13 + i, as this was), case
        # 0's v was its params, a degenerate direction (a norm after the first layer then
        # has R{x_hat} = x_hat eps / (var + eps), a rounding residue to compare)
        v = make_params(seq, np.random.default_rng(p.seed + 1 + i), np.float64)
        case = f", {group} case {i}"
        ours_r = derivatives.r_trace(seq, p.params, p.x, p.y, v, p.masks)
        theirs_r = {name: module.r_trace(seq, p.params, p.x, p.y, v, p.masks)
                    for name, module in modules.items()}
        for name in references:
            spread = next((t for other, t in theirs_r.items() if other != name), None)
            for r in compare_r_trace(ours_r, theirs_r[name], rtol=RTOL64,
                                     atol_scale=ATOL64_SCALE, spread=spread, paths=seq.paths):
                l, q = r.layer, r.quantity
                pair = None if r.problem or l is None else (ours_r[l][q], theirs_r[name][l][q])
                put(dataclasses.replace(r, quantity=q + case), name, pair,
                    node_r_equation(seq, r.label))
        _, ours_dot = derivatives.jvp(seq, p.params, p.x, v, p.masks)
        per = None if seq.has_batch_norm else derivatives.per_example_grads(
            seq, p.params, p.x, p.y, p.masks)
        ours_gn = derivatives.gnvp(seq, p.params, p.x, p.y, v, p.masks)
        for name, module in modules.items():
            _, their_dot = module.jvp(seq, p.params, p.x, v, p.masks)
            add(f"jvp output tangent{case}", ours_dot, their_dot, name,
                ("out_dot: each layer's tangent, folded from the input up",
                 "handwritten.layers.fold.jvp"))
            if per is not None:
                theirs = module.per_example_grads(seq, p.params, p.x, p.y, p.masks)
                for (path, layer), mine, other in zip(seq.nodes, per, theirs):
                    for key in mine:
                        add(f"per-example d_{key}{case}, layer {path}", mine[key],
                            other[key], name, (f"{type(layer).__name__}'s sample-i gradient",
                                               f"{type(layer).__module__}."
                                               f"{type(layer).__qualname__}.per_example"))
            theirs_gn = module.gnvp(seq, p.params, p.x, p.y, v, p.masks)
            # an entry of G v is a sum over the batch and the layers above; where it is
            # 0 in exact arithmetic (a bias before a batch norm) it is the rounding of
            # its terms, so each is allowed RTOL64 of the product's own largest entry
            scale = max(float(np.abs(w).max(initial=0.0)) for node in theirs_gn
                        for w in node.values())
            for path, mine, other in zip(seq.paths, ours_gn, theirs_gn):
                for key in mine:
                    add(f"gnvp (G v)_{key}{case}, layer {path}", mine[key], other[key], name,
                        ("R{d_" + key + "} without the loss-gradient terms: each layer's "
                         "r_backward, folded back", "handwritten.layers.fold.second_order"),
                        atol=RTOL64 * scale)
    return CheckReport(cases[0], BATCH, primary, tuple(references), tuple(rows), cells,
                       values, where, replay=f"bpnet check --all --only {group}")


def layers_state_report(impls: Mapping[str, ModuleType],
                        cases: Sequence[Sequential] = LAYER_CASES, group: str = "layers"
                        ) -> CheckReport:
    """Each batch norm node's state after three training-mode batches through the first of
    ``cases`` with one (``fold.update_state``: each layer's ``update_state``) against
    the running buffers torch's F.batch_norm updates from the same node inputs."""
    import torch
    import torch.nn.functional as F

    from handwritten.layers import fold
    from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS

    primary = next(iter(impls))
    seq = next(s for s in cases if s.has_batch_norm)
    state = hw.init_running(seq)
    buffers = {i: (torch.zeros(shape[0], dtype=torch.float64),   # per feature or channel
                   torch.ones(shape[0], dtype=torch.float64))
               for i, ((_, layer), shape) in enumerate(zip(seq.nodes, seq.in_shapes))
               if isinstance(layer, BatchNorm1d)}
    for k in range(3):
        p = Problem(seq, BATCH, 20 + k)
        _, caches = fold.forward(seq, p.params, p.x, fold.Pass(masks=p.masks))
        state = fold.update_state(seq, state, caches)
        h = [p.x] + [c[layer.OUT] for (_, layer), c in zip(seq.nodes, caches)]
        for i, (mean, var) in buffers.items():         # node i's input: node i - 1's output
            F.batch_norm(torch.from_numpy(h[i]), mean, var, training=True,
                         momentum=BATCH_NORM_MOMENTUM, eps=NORM_EPS)
    rows, cells, values, where = [], {}, {}, {}
    for i, (mean, var) in buffers.items():
        for key, theirs in (("mean", mean.numpy()), ("var", var.numpy())):
            row = f"running_{key}, layer {seq.paths[i]}"
            rows.append(row)
            cells[row, "reference_torch"] = compare_leaf(state[i][key], theirs, row, None,
                                                         rtol=RTOL64, atol_scale=ATOL64_SCALE)
            values[row, "reference_torch"] = (state[i][key], theirs)
            where[row] = ("running = (1 - 0.1) running + 0.1 (mu, var N / (N - 1))",
                          f"{type(seq.nodes[i][1]).__module__}."
                          f"{type(seq.nodes[i][1]).__qualname__}.update_state")
    return CheckReport(seq, BATCH, primary, ("reference_torch",), tuple(rows), cells, values,
                       where, replay=f"bpnet check --all --only {group}")


def layer_cases(impls: Mapping[str, ModuleType], cases: Sequence[Sequential] = LAYER_CASES,
                group: str = "layers") -> Iterator[Case]:
    """Sequentials in non-MLP orders (``group`` "conv": convolutional ones): every quantity
    of every layer against torch and JAX, evaluation mode, batch norm's state, and every
    R-quantity of every node (the R-trace: the first wrong step of a tangent or an
    R-operator), forward mode, per-example gradients and the Gauss-Newton product."""
    for seq in cases:
        p = Problem(seq, BATCH, 9, labels=seq.loss == "softmax_cross_entropy")
        kinds = ", ".join(dict.fromkeys(type(layer).__name__ for _, layer in seq.nodes))
        yield group, kinds, repr(p), partial(layers_report, p, impls, group)
    yield group, "evaluation mode (predict)", f"the {group} cases with running statistics " \
        "drawn", partial(layers_evaluation_report, impls, cases, group)
    if "reference_torch" in impls:
        yield group, "running statistics (state)", "three batches, F.batch_norm's buffers", \
            partial(layers_state_report, impls, cases, group)
    yield group, "R-trace (hvp), jvp, per-example, gnvp", f"the {group} cases, a drawn " \
        "direction", partial(layers_derivatives_report, impls, cases, group)
