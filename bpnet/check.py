"""One case through every implementation, a report of every quantity: bpnet's central check.

``cross_check`` runs one problem (spec, params, x, y) through the primary
implementation (handwritten) and every reference, optionally also through
central finite differences, and compares them with the suite's float64
tolerance policy (``bpnet.tolerances``).  The report's rows are the trace
quantities in derivation order (z and a from the input up, the loss, then d_a,
d_z, d_W, d_b from the output down, then ``loss_and_grads``' own loss and
gradients); its columns are the pairs "handwritten vs <reference>".  So the
first failure is the first derivation step that disagrees.

Every spec takes this one path: a spec with hidden blocks adds each block's
quantities (mu, var, x_hat, ..., d_gamma, d_beta) and a ``Sequential`` names each
row by its node's path; dropout's masks are the ``masks`` argument.

``bpnet check`` (every spec), ``check --all``'s network, block and layer cases,
the test suite's cross-framework properties and the benchmark all call this one
function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from bpnet import implementations as impls
from bpnet.compare import LeafReport, compare_leaf, compare_trace
from bpnet.diagnose import error_shape
from bpnet.equations import BLOCK_EQUATIONS, block_equations, implementing
from bpnet.problems import replay_command
from bpnet.tolerances import ATOL64_SCALE, FD_ATOL_SCALE, FD_RTOL, RTOL64
from handwritten import NetworkSpec, Params, Sequential, Trace
from handwritten.activations import TAIL
from handwritten.spec import Masks

FINITE_DIFFERENCES = "finite differences"

SATURATION = {"sigmoid": 2 * TAIL, "tanh": TAIL, "elu": TAIL}
"""|z| beyond which an activation's derivative is computed from z, not from its output
(handwritten.activations.TAIL): an error confined there is named as such."""


@dataclass(frozen=True)
class CheckReport:
    """Every quantity of one case, per implementation pair.

    ``cells[(row, column)]`` is the LeafReport of quantity ``row`` (a label such as
    "layer 0 d_z") for the pair "handwritten vs ``column``"; a row that a column does
    not check (finite differences check only d_W and d_b) has no cell there.
    """

    spec: NetworkSpec | Sequential
    batch: int
    primary: str
    columns: tuple[str, ...]
    rows: tuple[str, ...]
    cells: Mapping[tuple[str, str], LeafReport]
    values: Mapping[tuple[str, str], tuple[Any, Any]] = field(
        default_factory=dict, repr=False, compare=False)
    """(row, column) -> (the primary's array, the column's array), for the diagnosis."""
    where: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False,
                                                 compare=False)
    """row -> (equation, function) for rows that are not trace quantities."""
    z: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """row -> the pre-activation z of the row's layer, where it has the row's shape."""
    related: Mapping[str, dict[str, Any]] = field(default_factory=dict, repr=False,
                                                  compare=False)
    """row -> arrays the row's error may be proportional to (d_W: the layer's W)."""
    constants: Mapping[str, float] = field(default_factory=dict, repr=False, compare=False)
    """Named values a ratio of errors may equal, beyond 1/batch, -1, 2, ... (diagnose)."""
    replay: str = field(default="", compare=False)
    """The command that re-runs the case, when ``bpnet check --replay`` would not (a case of
    ``check --all``'s derivative groups: the R-trace is not part of the plain check)."""

    @property
    def ok(self) -> bool:
        return all(cell.ok for cell in self.cells.values())

    def worst(self) -> dict[str, float]:
        """The largest relative error of each column, over every row."""
        return {column: max((c.max_rel for (_, col), c in self.cells.items() if col == column),
                            default=0.0) for column in self.columns}

    def worst_text(self, column: str) -> str:
        """The column's largest relative error, where that means something: every cell
        within its relative tolerance.  Otherwise -- an entry of the reference is 0 or so
        near it that the absolute floor decides, and its relative error may be any number,
        inf included -- the largest share of the tolerance used: "12% of tol", "3e-05 of tol"
        ("2.5x tol" where a cell fails; "FAIL" where one has no comparable array)."""
        cells = [c for (_, col), c in self.cells.items() if col == column]
        if not cells:
            return "skipped"
        if any(c.problem for c in cells):
            return "FAIL"
        if all(c.max_rel <= c.rtol for c in cells):      # NaN compares False: not here
            return f"{max(c.max_rel for c in cells):.1e}"
        used = max(c.used for c in cells)
        if used > 1:
            return f"{used:.3g}x tol"
        return f"{used:.0%} of tol" if used >= 0.01 else f"{used:.0e} of tol"

    def failures(self) -> list[tuple[str, LeafReport]]:
        """(column, report) of every failing cell, in derivation order, then column order."""
        return [(column, self.cells[row, column]) for row in self.rows for column in self.columns
                if (row, column) in self.cells and not self.cells[row, column].ok]

    def first_failure(self) -> tuple[str, LeafReport] | None:
        """The first derivation step that disagrees, and with which implementation."""
        failures = self.failures()
        return failures[0] if failures else None

    def verdict(self) -> str:
        """One line: ok, or the first failing quantity, the pair and the function."""
        first = self.first_failure()
        if first is None:
            return "ok: every quantity agrees within the tolerance policy"
        column, report = first
        found = self.implementing(report.label)
        function = f" -- {found[1]}" if found else ""
        return (f"FAIL: first disagreement in derivation order: {report.label} "
                f"({self.primary} vs {column}): {report}{function}")

    def implementing(self, row: str) -> tuple[str, str] | None:
        """(equation, function of handwritten) of a row, when known."""
        return self.where.get(row) or implementing(self.spec, row)

    def message(self, case: str = "") -> str:
        """The verdict; for a failure also its diagnosis and, given the case's
        ``Problem(...)`` line, the command that replays it."""
        lines = [self.verdict()]
        if not self.ok:
            lines += ["  " + line for line in self.diagnosis()]
            if case.startswith("Problem("):
                lines += [f"  case: {case}", f"  replay: {self.replay or replay_command(case)}"]
        return "\n".join(lines)

    def diagnosis(self) -> list[str]:
        """For the first failure: its equation and function, and the shape of its error."""
        first = self.first_failure()
        if first is None:
            return []
        column, report = first
        lines = []
        found = self.implementing(report.label)
        if found:
            lines.append(f"{found[0]}  -- {found[1]}")
        if (report.label, column) in self.values:
            ours, theirs = self.values[report.label, column]
            name = report.label.split(" ")[-1]
            layer = report.layer if report.layer is not None else -1
            activation = (self.spec.activations[layer] if isinstance(self.spec, NetworkSpec)
                          and 0 <= layer < self.spec.n_layers else "")
            lines.append("error: " + error_shape(
                ours, theirs, rtol=report.rtol, atol=report.atol, spec=self.spec,
                batch=self.batch, z=self.z.get(report.label),
                saturation=SATURATION.get(activation) if name in ("a", "d_z") else None,
                related=self.related.get(report.label), constants=self.constants))
        return lines

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


def _finite_difference_reports(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray,
                               y: np.ndarray, trace: Any, masks: Masks | None = None
                               ) -> tuple[list[LeafReport], dict[tuple[str, str], Any]]:
    """The primary's gradient of every param (d_W and d_b; a norm's d_gamma and d_beta)
    against central differences of handwritten's forward pass, dropout with ``masks``; a
    Sequential's rows named by the node's path."""
    from bpnet.finite_diff import network_grads

    fd, valid = network_grads(spec, params, x, y, masks)
    paths = spec.paths if isinstance(spec, Sequential) else None
    atol = FD_ATOL_SCALE * max(1.0, abs(float(trace.loss)))
    reports, values = [], {}
    for l, layer in enumerate(trace.layers):
        for key, estimate in fd[l].items():
            ours = layer[f"d_{key}"]
            report = compare_leaf(ours, estimate, f"d_{key}", l, rtol=FD_RTOL, atol=atol,
                                  mask=valid[l][key])
            if paths is not None:
                report = dataclasses.replace(report, path=paths[l])
            reports.append(report)
            # entries the differences cannot judge (at a kink) are left out of the diagnosis;
            # an array of the wrong shape is compared whole (error_shape names a transpose)
            judged = np.where(valid[l][key], estimate, ours) if np.shape(ours) == np.shape(
                estimate) else estimate
            values[report.label, FINITE_DIFFERENCES] = (ours, judged)
    return reports, values


def cross_check(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
                implementations: Mapping[str, ModuleType] | None = None, *,
                masks: Masks | None = None, finite_differences: bool = False,
                grads: bool = True) -> CheckReport:
    """Run one float64 case through every implementation and compare every quantity.

    Every spec takes this one path: a plain ``NetworkSpec``, one with hidden blocks (batch
    norm, layer norm, dropout, residual), and a ``Sequential``.  What differs is data:

    - the spread: a quantity of a spec with blocks or of a Sequential is also held within
      SPREAD_FACTOR of the two references' own difference (``bpnet.tolerances``): a norm's
      backward rounds differently in every framework.  A plain MLP has no norm, and its
      quantities are held to the fixed tolerance alone.
    - loss_and_grads' rows: a plain MLP's loss and gradients are compared with each
      reference's own ``loss_and_grads``, each on its own scale.  A spec with blocks or a
      Sequential puts them in place of the trace's and compares that with each reference's
      trace, judged as the trace is (with the spread, and a batch sum such as d_b on its
      terms' scale: a bias that a batch norm follows sums to 0).
    - row names: a Sequential's rows name each node by its path ("layer 2.1 d_W").
    - the diagnosis' material: a plain MLP's rows carry the layer's z (where the error sits
      on a kink or in a saturated tail) and W or b (an error proportional to it); a hidden
      block's quantities (mu, var, ..., d_beta) carry their equation written out for the
      layer (a Sequential's every row has its node's equation: ``implementing``).

    Parameters
    ----------
    spec, params, x, y
        The case, as for ``handwritten.trace``; float64 (float32 is judged by the
        suite's float32 policy, against the float64 result, not here).
    implementations : mapping of name -> module, optional
        The first is the primary (checked), the others the references it is checked
        against.  Default: handwritten and every reference whose framework is installed.
    masks : list of arrays or None, optional
        Dropout's 0/1 keep-masks, as ``handwritten.trace`` takes them: one per hidden layer
        of a ``NetworkSpec`` (None where p = 0), one entry per node of a ``Sequential``;
        handed to every implementation alike (not to a plain MLP's, which has no dropout:
        ``reference_jax.bucketed`` takes none).
    finite_differences : bool
        Also compare the primary's gradient of every param (d_W, d_b, a norm's d_gamma and
        d_beta; every node's params of a Sequential) with central finite differences of
        handwritten's forward, dropout with the same ``masks`` (``bpnet.finite_diff``:
        framework-free; slow for large networks).  Rows that no reference has are added
        from the output down.
    grads : bool
        Also compare every implementation's ``loss_and_grads`` (a separate code path
        from ``trace``): rows marked "(loss_and_grads)".
    """
    if isinstance(x, np.ndarray) and x.dtype != np.float64:
        raise TypeError(f"cross_check compares float64 cases; x has dtype {x.dtype}")
    plain = isinstance(spec, NetworkSpec) and not spec.has_blocks
    if plain and masks is not None and any(m is not None for m in masks):
        raise ValueError("cross_check: masks are dropout's, and this spec has no dropout: "
                         "give masks=None")
    chosen = dict(implementations if implementations is not None else impls.available())
    (primary_name, primary), *references = chosen.items()
    case = (spec, params, x, y) if plain else (spec, params, x, y, masks)
    theirs = {name: ref.trace(*case) for name, ref in references}
    ours = primary.trace(*case)
    ours_grads = (_as_trace(primary.loss_and_grads(*case), None if plain else ours) if grads
                  else None)
    paths = spec.paths if isinstance(spec, Sequential) else None
    rows: dict[str, None] = {}                                   # an ordered set
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    where: dict[str, tuple[str, str]] = {}
    for name, ref in references:
        spread = None if plain else next((t for o, t in theirs.items() if o != name), None)
        pairs = [(ours, theirs[name], "")]
        if ours_grads is not None:
            pairs.append((ours_grads, _as_trace(ref.loss_and_grads(*case)) if plain
                          else theirs[name], " (loss_and_grads)"))
        for mine, other, suffix in pairs:
            for r in compare_trace(mine, other, rtol=RTOL64, atol_scale=ATOL64_SCALE,
                                   spread=spread):
                if suffix and r.layer is not None and r.quantity not in GRADS:
                    continue                    # loss_and_grads returns the loss and grads
                quantity, l = r.quantity, r.layer
                r = dataclasses.replace(r, quantity=quantity + suffix,
                                        path=None if paths is None or l is None else paths[l])
                if l is None and quantity == "loss":
                    values[r.label, name] = (mine.loss, other.loss)
                elif l is not None and quantity in mine.layers[l].keys() & other.layers[l]:
                    values[r.label, name] = (mine.layers[l][quantity],
                                             other.layers[l][quantity])
                rows[r.label] = None
                cells[r.label, name] = r
                if isinstance(spec, NetworkSpec) and l is not None and not suffix \
                        and quantity in BLOCK_EQUATIONS:
                    equation, function = BLOCK_EQUATIONS[quantity]
                    where[r.label] = (block_equations(spec, l).get(quantity) or equation,
                                      function)
    columns = [name for name, _ in references]
    if finite_differences:
        found, fd_values = _finite_difference_reports(spec, params, x, y, ours, masks)
        columns.append(FINITE_DIFFERENCES)
        cells |= {(r.label, FINITE_DIFFERENCES): r for r in found}
        rows |= {r.label: None for r in sorted(found, key=lambda r: -(r.layer or 0))}
        values |= fd_values
    z, related = _plain_diagnosis(ours, params) if plain else ({}, {})
    return CheckReport(spec, x.shape[0], primary_name, tuple(columns), tuple(rows), cells,
                       values, where, z, related)


GRADS = ("d_W", "d_b", "d_gamma", "d_beta")
"""The trace's names of the gradients loss_and_grads returns."""


def _as_trace(found: tuple[Any, Params], trace: Trace | None = None) -> Trace:
    """loss_and_grads' (loss, grads) as a trace: d_<key> of every param, in place of
    ``trace``'s own loss and d_W, d_b, ... where that is given (its other quantities stay:
    the terms a batch sum is judged on)."""
    loss, grads = found
    layers = [{} for _ in grads] if trace is None else trace.layers
    return Trace(loss, [{**layer, **{f"d_{k}": g for k, g in node.items()}}
                        for layer, node in zip(layers, grads)])


def _plain_diagnosis(ours: Trace, params: Params
                     ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A plain MLP's rows' z (the pre-activation, for the rows of its shape) and related
    arrays (d_W: the layer's W, d_b: its b), for ``error_shape``."""
    z = {f"layer {l} {q}": layer["z"] for l, layer in enumerate(ours.layers)
         for q in ("z", "a", "d_a", "d_z") if q in layer and layer[q].shape == layer["z"].shape}
    related = {f"layer {l} d_{k}{suffix}": {f"{k}{l}": p[k]} for l, p in enumerate(params)
               for k in ("W", "b") for suffix in ("", " (loss_and_grads)")}
    return z, related
