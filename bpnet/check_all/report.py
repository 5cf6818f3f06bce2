"""What every group of ``bpnet check --all`` shares: a case before it runs (``Case``), its
line of the table after (``Entry``), the batch of its problems, the report of a case whose
computation raised, and handwritten's predict against each reference's."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport
from bpnet.compare import LeafReport, compare_leaf
from bpnet.problems import Problem
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten.layers import Sequential
from handwritten.spec import NetworkSpec

Case = tuple[str, str, str, Callable[[], CheckReport]]
"""(group, name, case, run): one entry of --all before it runs -- its group and name, the
case in words (a Problem's repr where it is one), and what computes its report."""


@dataclass(frozen=True)
class Entry:
    """One line of the --all table: a registered entry, the case run, and its report."""

    group: str
    name: str
    case: str
    report: CheckReport
    seconds: float

    @property
    def ok(self) -> bool:
        return self.report.ok


BATCH = 8
"""Rows per case: neither 1 nor the number of outputs, so a wrong 1/batch shows as itself."""


class RaisedInCase(Exception):
    """A case's computation raised: the report of what came before, and the exception."""

    def __init__(self, report: CheckReport | None, error: Exception) -> None:
        super().__init__(str(error))
        self.report, self.error = report, error


def raised_report(error: Exception, impls: Mapping[str, ModuleType],
                  before: CheckReport | None = None) -> CheckReport:
    """A failing report for a case whose computation raised (a mistake in handwritten that
    breaks a shape, say): the rows compared before it (``before``) and one row "raised",
    named by the innermost frame of handwritten (else the innermost frame) in the
    traceback -- one line of output, never a traceback."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f"{os.sep}handwritten{os.sep}" in f.filename]
    frame = (ours or frames)[-1] if frames else None
    module = ""
    if frame is not None:
        path = Path(frame.filename).with_suffix("")
        parts = path.parts[path.parts.index("handwritten"):] if ours else path.parts[-1:]
        module = ".".join(parts) + "."
    function = f"{module}{frame.name}" if frame is not None else "?"
    line = f" (line {frame.lineno}: {(frame.line or '').strip()})" if frame is not None else ""
    row = "raised"
    problem = f"{type(error).__name__}: {error}"
    primary, *references = impls
    rows = (*(before.rows if before else ()), row)
    cells = {**(before.cells if before else {}),
             (row, references[0] if references else primary): LeafReport(
                 row, None, np.inf, np.inf, 0.0, 0.0, False, problem)}
    where = {**(before.where if before else {}), row: (f"{problem}{line}", function)}
    spec = before.spec if before else NetworkSpec((1, 1), ("identity",))
    return CheckReport(spec, before.batch if before else 0, primary,
                       tuple(references) or (primary,), rows, cells,
                       before.values if before else {}, where,
                       replay=before.replay if before else "")


def _predict_report(impls: Mapping[str, ModuleType],
                    cases: Sequence[tuple[str, NetworkSpec | Sequential, hw.Running]],
                    where: tuple[str, str], replay: str) -> CheckReport:
    """handwritten's predict against each reference's, one row a (name, spec, running)."""
    primary, *references = impls
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    for row, spec, running in cases:
        p = Problem(spec, BATCH, 12)
        ours = hw.predict(spec, p.params, p.x, running)
        for name in references:
            theirs = impls[name].predict(spec, p.params, p.x, running)
            cells[row, name] = dataclasses.replace(compare_leaf(
                ours, theirs, row, None, rtol=RTOL64, atol_scale=ATOL64_SCALE), quantity=row)
            values[row, name] = (ours, theirs)
    rows = tuple(row for row, _, _ in cases)
    return CheckReport(cases[0][1], BATCH, primary, tuple(references), rows, cells, values,
                       dict.fromkeys(rows, where), replay=replay)
