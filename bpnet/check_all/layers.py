"""The layers group: Sequentials in orders the MLP spec cannot say, every quantity of every
node against torch and JAX, evaluation mode, batch norm's state, forward mode, per-example
gradients and second order (``layer_cases``, which the conv group runs on its own cases)."""

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
    """Forward mode, per-example gradients and second order of every LAYER_CASES
    Sequential: jvp along a drawn params-shaped direction, (where no BatchNorm1d couples the
    batch) each node's per-example gradients, and hvp and gnvp along the same direction,
    against torch.func and JAX."""
    import importlib

    from handwritten import derivatives

    primary, *references = impls
    rows: list[str] = []
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    where: dict[str, tuple[str, str]] = {}

    def add(row: str, ours: Any, theirs: Any, name: str, found: tuple[str, str],
            atol: float = 0.0) -> None:
        if row not in rows:
            rows.append(row)
        cells[row, name] = dataclasses.replace(compare_leaf(
            ours, theirs, row, None, rtol=RTOL64, atol_scale=ATOL64_SCALE, atol=atol),
            quantity=row)
        values[row, name] = (ours, theirs)
        where[row] = found

    for i, seq in enumerate(cases):
        p = Problem(seq, BATCH, 13, labels=seq.loss == "softmax_cross_entropy")
        v = make_params(seq, np.random.default_rng(13 + i), np.float64)
        _, ours_dot = derivatives.jvp(seq, p.params, p.x, v, p.masks)
        per = None if seq.has_batch_norm else derivatives.per_example_grads(
            seq, p.params, p.x, p.y, p.masks)
        for name in references:
            module = importlib.import_module(f"{name}.derivatives")
            _, their_dot = module.jvp(seq, p.params, p.x, v, p.masks)
            add(f"jvp output tangent, {group} case {i}", ours_dot, their_dot, name,
                ("out_dot: each layer's tangent, folded from the input up",
                 "handwritten.layers.fold.jvp"))
            if per is not None:
                theirs = module.per_example_grads(seq, p.params, p.x, p.y, p.masks)
                for (path, layer), mine, other in zip(seq.nodes, per, theirs):
                    for key in mine:
                        add(f"per-example d_{key}, {group} case {i}, layer {path}", mine[key],
                            other[key], name, (f"{type(layer).__name__}'s sample-i gradient",
                                               f"{type(layer).__module__}."
                                               f"{type(layer).__qualname__}.per_example"))
            for product in ("hvp", "gnvp"):
                mine_all = getattr(derivatives, product)(seq, p.params, p.x, p.y, v, p.masks)
                theirs_all = getattr(module, product)(seq, p.params, p.x, p.y, v, p.masks)
                # an entry of H v is a sum over the batch and the layers above; where it is
                # 0 in exact arithmetic (a bias before a batch norm) it is the rounding of
                # its terms, so each is allowed RTOL64 of the product's own largest entry
                scale = max(float(np.abs(w).max(initial=0.0)) for node in theirs_all
                            for w in node.values())
                for path, mine, other in zip(seq.paths, mine_all, theirs_all):
                    for key in mine:
                        add(f"{product} ({'H' if product == 'hvp' else 'G'} v)_{key}, {group} "
                            f"case {i}, layer {path}", mine[key], other[key], name,
                            ("R{d_" + key + "}: each layer's r_backward, folded back beside "
                             "its backward", "handwritten.layers.fold.second_order"),
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
    of every layer against torch and JAX, evaluation mode, batch norm's state, forward mode,
    per-example gradients and second order."""
    for seq in cases:
        p = Problem(seq, BATCH, 9, labels=seq.loss == "softmax_cross_entropy")
        kinds = ", ".join(dict.fromkeys(type(layer).__name__ for _, layer in seq.nodes))
        yield group, kinds, repr(p), partial(layers_report, p, impls, group)
    yield group, "evaluation mode (predict)", f"the {group} cases with running statistics " \
        "drawn", partial(layers_evaluation_report, impls, cases, group)
    if "reference_torch" in impls:
        yield group, "running statistics (state)", "three batches, F.batch_norm's buffers", \
            partial(layers_state_report, impls, cases, group)
    yield group, "forward mode, per-example gradients, hvp, gnvp", f"the {group} cases, a " \
        "drawn direction", partial(layers_derivatives_report, impls, cases, group)
