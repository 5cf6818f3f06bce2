"""The blocks group, hidden blocks of the MLP spec (batch norm, layer norm, dropout,
residual): every trace quantity, batch norm's running statistics, evaluation mode, and a
training run (``training_cases``: last of all)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport, cross_check
from bpnet.check_all.report import BATCH, Case, RaisedInCase, _predict_report
from bpnet.compare import LeafReport, compare_leaf
from bpnet.equations import BLOCK_EQUATIONS, block_equations, qualname
from bpnet.problems import Problem
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten.spec import NetworkSpec

BLOCK_CASES = (
    NetworkSpec((4, 6, 6, 3), ("tanh", "silu", "identity"), "mse", "mean",
                norms=("batch", "layer"), dropout=(0.0, 0.3), residual=(False, True)),
    NetworkSpec((5, 8, 8, 8, 3), ("gelu", "relu", "elu", "softmax"), "softmax_cross_entropy",
                "mean", weight_decay=0.1, norms=("layer", "batch", None),
                dropout=(0.2, 0.0, 0.5), residual=(False, True, True)),
    NetworkSpec((3, 6, 6, 2), ("sigmoid", "softplus", "sigmoid"), "bce", "sum",
                norms=("batch", "batch"), dropout=(0.0, 0.0), residual=(False, True)),
)
"""Every block part (both norms, dropout, skips) with smooth and kinked activations."""

def blocks_report(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType],
                  replay: str = "bpnet check --all --only blocks") -> CheckReport:
    """Every trace quantity of a spec with hidden blocks against torch and JAX
    (``bpnet.check.cross_check``: each also within SPREAD_FACTOR of the two references' own
    difference).  ``replay``: the command a failure prints ("": ``bpnet check --replay`` of
    the case).  When the primary's trace raises, its forward alone is compared, so that a
    forward quantity that is wrong is named before the backward that stumbles on it."""
    try:
        report = cross_check(problem.spec, problem.params, problem.x, problem.y, impls,
                             masks=problem.masks, grads=False)
    except Exception as error:
        raise RaisedInCase(_forward_report(problem, impls), error) from error
    return dataclasses.replace(report, replay=replay)


def _forward_report(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType]
                    ) -> CheckReport | None:
    """The forward quantities of a block case (handwritten.network.forward) against the
    references' traces; None when the forward, or a reference, raises too."""
    from bpnet.compare import compare_layers
    from handwritten import network
    from handwritten.spec import FORWARD_QUANTITIES

    primary, *references = impls
    spec = problem.spec
    try:
        theirs = {name: impls[name].trace(spec, problem.params, problem.x, problem.y,
                                          problem.masks) for name in references}
        _, cache = network.forward(spec, problem.params, problem.x, problem.masks)
    except Exception:
        return None
    rows: list[str] = []
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    where: dict[str, tuple[str, str]] = {}
    for name in references:
        for r in compare_layers(cache, theirs[name].layers, FORWARD_QUANTITIES, rtol=RTOL64,
                                atol_scale=ATOL64_SCALE):
            if r.label not in rows:
                rows.append(r.label)
            cells[r.label, name] = r
            if r.layer is not None and not r.problem:
                values[r.label, name] = (cache[r.layer][r.quantity],
                                         theirs[name].layers[r.layer][r.quantity])
            if r.quantity in BLOCK_EQUATIONS and r.layer is not None:
                equation, function = BLOCK_EQUATIONS[r.quantity]
                where[r.label] = (block_equations(spec, r.layer).get(r.quantity, equation),
                                  function)
    return CheckReport(spec, problem.batch, primary, tuple(references), tuple(rows), cells,
                       values, where, constants={"1/batch": 1 / problem.batch},
                       replay="bpnet check --all --only blocks")


def running_statistics_report(impls: Mapping[str, ModuleType]) -> CheckReport:
    """handwritten.blocks.running_update against the update torch's F.batch_norm makes of
    its running_mean and running_var in training mode (momentum 0.1, unbiased variance),
    over three batches in a row (torch alone: JAX has no batch-norm primitive)."""
    import torch
    import torch.nn.functional as F

    from handwritten import blocks
    from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS

    primary = next(iter(impls))
    rng = np.random.default_rng(5)
    mean: Any = np.zeros(6)
    var: Any = np.ones(6)
    t_mean, t_var = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    for _ in range(3):
        z = rng.normal(size=(BATCH, 6)) * 2 + 1
        stats = blocks.normalize("batch", z, np.ones(6), np.zeros(6))
        mean, var = blocks.running_update(mean, var, stats["mu"], stats["var"], BATCH)
        F.batch_norm(torch.from_numpy(z), t_mean, t_var, training=True,
                     momentum=BATCH_NORM_MOMENTUM, eps=NORM_EPS)
    rows = ("running_mean", "running_var")
    ours, theirs = dict(zip(rows, (mean, var))), dict(zip(rows, (t_mean.numpy(), t_var.numpy())))
    cells = {(row, "reference_torch"): compare_leaf(ours[row], theirs[row], row, None,
                                                    rtol=RTOL64, atol_scale=ATOL64_SCALE)
             for row in rows}
    values = {(row, "reference_torch"): (ours[row], theirs[row]) for row in rows}
    where = {row: ("running = (1 - 0.1) running + 0.1 (mu, var N / (N - 1))",
                   qualname(blocks.running_update)) for row in rows}
    spec = NetworkSpec((6, 6, 1), ("tanh", "identity"), norms=("batch",))
    return CheckReport(spec, BATCH, primary, ("reference_torch",), rows, cells, values, where,
                       replay="bpnet check --all --only blocks")


BLOCK_TRAINING_EPOCHS = 4
BLOCK_TRAINING_BATCH = 6


def evaluation_report(impls: Mapping[str, ModuleType]) -> CheckReport:
    """predict in evaluation mode (no dropout, batch norm normalized with given running
    statistics: mean ~ N(0, 1), var ~ U(0.5, 2)) on every BLOCK_CASES spec with batch norm,
    against each reference's predict."""
    cases = []
    for i, spec in enumerate(s for s in BLOCK_CASES if "batch" in s.norms):
        rng = np.random.default_rng(12 + i)
        running: hw.Running = [{"mean": rng.normal(size=n), "var": rng.uniform(0.5, 2.0, n)}
                               if spec.norm(l) == "batch" else {}
                               for l, n in enumerate(spec.layer_sizes[1:])]
        cases.append((f"predict {spec.layer_sizes}", spec, running))
    return _predict_report(impls, cases, (
        "batch norm in evaluation mode: x_hat = (z - running_mean) / sqrt(running_var + eps); "
        "no dropout", "handwritten.layers.norm.BatchNorm1d.forward -> "
        "handwritten.blocks.normalize_running"),
        "bpnet check --all --only blocks")


def block_training_report(impls: Mapping[str, ModuleType]) -> CheckReport:
    """BLOCK_CASES[0] (batch norm, layer norm, dropout, a skip) trained with momentum in
    mini-batches by every implementation, the dropout masks from Generators seeded alike:
    the final params, batch norm's running statistics (History.running) and predict's
    evaluation-mode output.  Tolerance: a trajectory's rounding floor trajectory_rtol(k)
    after k steps, relative to the largest param (normwise: a batch-norm layer's b is 0 up
    to rounding noise, held on the scale of the params, as bpnet compare holds it)."""
    from bpnet.tolerances import trajectory_rtol

    primary, *references = impls
    spec = BLOCK_CASES[0]
    p = Problem(spec, 4 * BLOCK_TRAINING_BATCH, 11)
    opt = hw.OptimizerSpec("momentum", 0.05, {"momentum": 0.9})
    kwargs = {"epochs": BLOCK_TRAINING_EPOCHS, "batch_size": BLOCK_TRAINING_BATCH,
              "batch_order": hw.Shuffle(3)}
    runs = {name: impl.train(spec, p.params, p.x, p.y, opt, rng=np.random.default_rng(4),
                             **kwargs) for name, impl in impls.items()}
    steps = len(runs[primary].losses)
    rtol = trajectory_rtol(steps)

    def quantities(impl: ModuleType, h: hw.History) -> dict[str, Any]:
        out = {f"layer {l} {k} after {steps} steps": v for l, layer in enumerate(h.final_params)
               for k, v in layer.items()}
        out |= {f"layer {l} running {k}": v for l, stats in enumerate(h.running)
                for k, v in stats.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hw.TrainingWarning)
            out["predict (evaluation mode)"] = impl.predict(spec, h.final_params, p.x, h.running)
        return out

    table = {name: quantities(impl, runs[name]) for name, impl in impls.items()}
    ours = table[primary]
    scale = max(float(np.abs(v).max()) for k, v in ours.items() if "after" in k)
    cells, values, where = {}, {}, {}
    for name in references:
        for row, value in ours.items():
            atol = rtol * scale if "after" in row else 0.0
            cells[row, name] = compare_leaf(value, table[name][row], row, None, rtol=rtol,
                                            atol_scale=ATOL64_SCALE, atol=atol)
            values[row, name] = (value, table[name][row])
    for row in ours:
        where[row] = (("running = 0.9 running + 0.1 (mu, var N / (N - 1)), each step",
                       "handwritten.layers.norm.BatchNorm1d.update_state") if "running" in row else
                      ("x_hat = (z - running_mean) / sqrt(running_var + eps)",
                       "handwritten.blocks.normalize_running") if "predict" in row else
                      ("theta <- theta + Delta theta, each step", "handwritten.training.train"))
    return CheckReport(spec, BLOCK_TRAINING_BATCH, primary, tuple(references), tuple(ours),
                       cells, values, where, replay="bpnet check --all --only blocks")


def block_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """Hidden blocks on hand-picked networks: every trace quantity against torch and JAX;
    batch norm's running statistics against torch's F.batch_norm (training comes last:
    ``training_cases``)."""
    for spec in BLOCK_CASES:
        p = Problem(spec, BATCH, 9, labels=spec.loss == "softmax_cross_entropy")
        parts = sorted({n for n in spec.norms if n} | ({"dropout"} if any(spec.dropout) else
                                                      set()) | ({"skip"} if any(spec.residual)
                                                                else set()))
        yield "blocks", f"{spec.layer_sizes} {', '.join(parts)}", repr(p), partial(
            blocks_report, p, impls)
    if "reference_torch" in impls:
        yield "blocks", "running statistics", "three batches through F.batch_norm", partial(
            running_statistics_report, impls)
    yield "blocks", "evaluation mode (predict)", ("the batch-norm specs with running "
                                                  "statistics drawn"), partial(
        evaluation_report, impls)


def training_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """Training runs, last: a mistake in any part of a step shows there too, but the cases
    before name the part."""
    yield "blocks", "training and evaluation", (
        f"{BLOCK_CASES[0]!r}, momentum, {BLOCK_TRAINING_EPOCHS} epochs of "
        f"{BLOCK_TRAINING_BATCH}"), partial(block_training_report, impls)
