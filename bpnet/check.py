"""One case through every implementation, a report of every quantity: bpnet's central check.

``cross_check`` runs one problem (spec, params, x, y) through the primary
implementation (handwritten) and every reference, optionally also through
central finite differences, and compares them with the suite's float64
tolerance policy (``bpnet.tolerances``).  The report's rows are the trace
quantities in derivation order (z and a from the input up, the loss, then d_a,
d_z, d_W, d_b from the output down, then ``loss_and_grads``' own loss and
gradients); its columns are the pairs "handwritten vs <reference>".  So the
first failure is the first derivation step that disagrees.

``bpnet check``, the test suite's cross-framework properties and the benchmark
all call this one function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from bpnet import implementations as impls
from bpnet.compare import LeafReport, compare_layers, compare_leaf, compare_trace
from bpnet.tolerances import ATOL64_SCALE, FD_ATOL_SCALE, FD_RTOL, RTOL64
from handwritten import NetworkSpec, Params

FINITE_DIFFERENCES = "finite differences"


@dataclass(frozen=True)
class CheckReport:
    """Every quantity of one case, per implementation pair.

    ``cells[(row, column)]`` is the LeafReport of quantity ``row`` (a label such as
    "layer 0 d_z") for the pair "handwritten vs ``column``"; a row that a column does
    not check (finite differences check only d_W and d_b) has no cell there.
    """

    spec: NetworkSpec
    batch: int
    primary: str
    columns: tuple[str, ...]
    rows: tuple[str, ...]
    cells: Mapping[tuple[str, str], LeafReport]

    @property
    def ok(self) -> bool:
        return all(cell.ok for cell in self.cells.values())

    def failures(self) -> list[tuple[str, LeafReport]]:
        """(column, report) of every failing cell, in derivation order, then column order."""
        return [(column, self.cells[row, column]) for row in self.rows for column in self.columns
                if (row, column) in self.cells and not self.cells[row, column].ok]

    def first_failure(self) -> tuple[str, LeafReport] | None:
        """The first derivation step that disagrees, and with which implementation."""
        failures = self.failures()
        return failures[0] if failures else None

    def verdict(self) -> str:
        """One line: ok, or the first failing quantity and the pair."""
        first = self.first_failure()
        if first is None:
            return "ok: every quantity agrees within the tolerance policy"
        column, report = first
        return (f"FAIL: first disagreement in derivation order: {report.label} "
                f"({self.primary} vs {column}): {report}")

    def table(self) -> str:
        """Rows in derivation order, one column of max relative errors per pair."""
        width = 22
        header = f"{'quantity':30s}" + "".join(
            f"{'vs ' + c.replace('reference_', ''):>{width}s}" for c in self.columns)
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(f"{row:30s}" + "".join(
                f"{_cell(self.cells.get((row, c))):>{width}s}" for c in self.columns))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data: ok, the first failure, and every row's cells."""
        first = self.first_failure()
        rows = []
        for row in self.rows:
            some = next(self.cells[row, c] for c in self.columns if (row, c) in self.cells)
            entry: dict[str, Any] = {"quantity": row, "layer": some.layer, "name": some.quantity}
            for c in self.columns:
                if (row, c) in self.cells:
                    cell = self.cells[row, c]
                    entry[f"vs {c}"] = {"max_abs": cell.max_abs, "max_rel": cell.max_rel,
                                        "ok": cell.ok}
            rows.append(entry)
        return {"spec": dataclasses.asdict(self.spec), "batch": self.batch, "ok": self.ok,
                "first_failure": None if first is None else {
                    "pair": f"{self.primary} vs {first[0]}", "quantity": first[1].label},
                "rows": rows}


def _cell(report: LeafReport | None) -> str:
    if report is None:
        return ""
    if report.problem:
        return "FAIL " + report.problem[:14]
    return f"{report.max_rel:9.2e} {'ok' if report.ok else 'FAIL'}"


def _grads_reports(primary: Any, other: Any) -> list[LeafReport]:
    """loss_and_grads of two implementations: the loss, then d_W, d_b from the output down."""
    (loss, grads), (ref_loss, ref_grads) = primary, other
    reports = [compare_leaf(loss, ref_loss, "loss (loss_and_grads)", None, rtol=RTOL64,
                            atol_scale=ATOL64_SCALE)]
    names = {"W": "d_W", "b": "d_b"}
    for report in compare_layers(grads, ref_grads, ("W", "b"), rtol=RTOL64,
                                 atol_scale=ATOL64_SCALE, reverse=True):
        name = names.get(report.quantity, report.quantity)
        reports.append(dataclasses.replace(report, quantity=f"{name} (loss_and_grads)"))
    return reports


def _finite_difference_reports(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray,
                               trace: Any) -> list[LeafReport]:
    """The primary's d_W and d_b against central differences of handwritten's forward pass."""
    from bpnet.finite_diff import network_grads

    fd, masks = network_grads(spec, params, x, y)
    atol = FD_ATOL_SCALE * max(1.0, abs(float(trace.loss)))
    return [compare_leaf(layer[f"d_{key}"], fd[l][key], f"d_{key}", l, rtol=FD_RTOL, atol=atol,
                         mask=masks[l][key])
            for l, layer in enumerate(trace.layers) for key in ("W", "b")]


def cross_check(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray,
                implementations: Mapping[str, ModuleType] | None = None, *,
                finite_differences: bool = False, grads: bool = True) -> CheckReport:
    """Run one float64 case through every implementation and compare every quantity.

    Parameters
    ----------
    spec, params, x, y
        The case, as for ``handwritten.trace``; float64 (float32 is judged by the
        suite's float32 policy, against the float64 result, not here).
    implementations : mapping of name -> module, optional
        The first is the primary (checked), the others the references it is checked
        against.  Default: handwritten and every reference whose framework is installed.
    finite_differences : bool
        Also compare the primary's d_W and d_b with central finite differences
        (framework-free; slow for large networks).
    grads : bool
        Also compare every implementation's ``loss_and_grads`` (a separate code path
        from ``trace`` in the references).
    """
    if isinstance(x, np.ndarray) and x.dtype != np.float64:
        raise TypeError(f"cross_check compares float64 cases; x has dtype {x.dtype}")
    chosen = dict(implementations if implementations is not None else impls.available())
    (primary_name, primary), *references = chosen.items()
    ours = primary.trace(spec, params, x, y)
    ours_grads = primary.loss_and_grads(spec, params, x, y) if grads else None
    columns: dict[str, list[LeafReport]] = {}
    for name, ref in references:
        reports = compare_trace(ours, ref.trace(spec, params, x, y), rtol=RTOL64,
                                atol_scale=ATOL64_SCALE)
        if ours_grads is not None:
            reports += _grads_reports(ours_grads, ref.loss_and_grads(spec, params, x, y))
        columns[name] = reports
    if finite_differences:
        columns[FINITE_DIFFERENCES] = _finite_difference_reports(spec, params, x, y, ours)
    rows = {r.label: None for reports in columns.values() for r in reports}   # ordered union
    cells = {(r.label, name): r for name, reports in columns.items() for r in reports}
    return CheckReport(spec, x.shape[0], primary_name, tuple(columns), tuple(rows), cells)

