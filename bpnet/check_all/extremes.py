"""The extremes group: every activation and loss (both reductions) in float32 and float64
at fixed grids of special values -- kinks, saturation, huge logits, exact 0/1 -- against the
float80 oracle of ``bpnet.oracle``."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport
from bpnet.check_all.networks import _activations
from bpnet.check_all.report import Case
from bpnet.compare import LeafReport
from bpnet.equations import qualname
from handwritten.spec import NetworkSpec

ORACLE_COLUMN = "float80 oracle"


def _oracle_report(rows: dict[str, str], where: dict[str, tuple[str, str]]) -> CheckReport:
    """A report of one column, the oracle: each row's problem ("" where it agrees)."""
    cells = {(row, ORACLE_COLUMN): LeafReport(row, None, 0.0 if not problem else np.inf,
                                              0.0 if not problem else np.inf, 0.0, 0.0,
                                              not problem, problem)
             for row, problem in rows.items()}
    return CheckReport(NetworkSpec((1, 1), ("identity",), "mse"), 0, "handwritten",
                       (ORACLE_COLUMN,), tuple(rows), cells, where=where)


@contextmanager
def _warnings_as_problem(rows: dict[str, str], row: str) -> Iterator[None]:
    """A NumPy RuntimeWarning (an overflow, 0/0) inside is a failing row, as in the suite."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        yield
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    rows[row] = f"RuntimeWarning: {messages[0]}" if messages else ""


def _logit_rows(dtype: str) -> np.ndarray:
    """Rows of three logits: gaps up to the float limits, ties with the row's maximum."""
    from bpnet.oracle import specials

    big = [v for v in specials(dtype) if abs(v) <= float(np.finfo(dtype).max) / 4]
    rows = [[v, 0.0, -v] for v in big] + [[v, v, 0.0] for v in big] + [[0.0, -v, 1e4]
                                                                       for v in big]
    return np.array(rows, dtype=dtype)


def _loss_inputs(name: str, dtype: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """(z, a, y, labels) grids at the extremes each loss's targets allow."""
    from bpnet.oracle import specials

    info = np.finfo(dtype)
    if name == "softmax_cross_entropy":
        z = _logit_rows(dtype)
        a = hw.ACTIVATIONS["softmax"].forward(z)
        idx = np.arange(len(z)) % 3
        return [(z, a, np.eye(3, dtype=dtype)[idx], False), (z, a, idx, True)]
    targets = np.array([0.0, 0.25, 1.0], dtype=dtype)
    if name == "bce":
        p = np.array([0.0, 1.0, 0.5, info.eps, 1 - info.eps, info.smallest_normal, 1e-30,
                      info.smallest_subnormal, info.smallest_normal / 16], dtype=dtype)
        a, y = np.meshgrid(p, targets)
        return [(a.copy(), a, y, False)]
    z_values = np.array(specials(dtype), dtype=dtype)
    if name == "bce_with_logits":
        z, y = np.meshgrid(z_values, targets)
        return [(z, hw.ACTIVATIONS["sigmoid"].forward(z), y, False)]
    bound = float(np.sqrt(info.max)) / 4        # (a - y)**2 stays representable
    a = np.clip(z_values, -bound, bound).reshape(-1, 1)
    return [(a, a, a[::-1].copy(), False)]


def extreme_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """Every activation and loss (both reductions) in float32 and float64 at inputs where
    bugs live -- kinks, saturation, huge logits, exact 0/1 -- against the float80 oracle
    (framework-free: autograd references differ there by design)."""
    from bpnet.oracle import WIDE_ENOUGH, activation_problems, loss_problems, specials

    if not WIDE_ENOUGH:
        return
    dtypes = ("float64", "float32")
    for name, act in _activations():
        def run_activation(name: str = name, act: Any = act) -> CheckReport:
            rows: dict[str, str] = {}
            for dtype in dtypes:
                z = (_logit_rows(dtype) if act.output_only
                     else np.array(specials(dtype), dtype=dtype).reshape(-1, 1))
                with _warnings_as_problem(rows, f"{dtype} no RuntimeWarning"):
                    for q, problem in activation_problems(name, z).items():
                        rows[f"{dtype} {q}"] = problem
            where = {row: ((f"a = {name}(z)", qualname(act.forward)) if row.endswith(" a")
                           else (f"d_z = {act.derivative}", qualname(act.backward)))
                     for row in rows}
            return _oracle_report(rows, where)

        yield "extremes", name, f"{name} at {len(specials('float64'))} special values", \
            run_activation
    for name, loss in sorted(hw.LOSSES.items()):
        for reduction in hw.REDUCTIONS:
            def run_loss(name: str = name, loss: Any = loss, reduction: str = reduction
                         ) -> CheckReport:
                rows: dict[str, str] = {}
                for dtype in dtypes:
                    for z, a, y, labels in _loss_inputs(name, dtype):
                        kind = " labels" if labels else ""
                        with _warnings_as_problem(rows, f"{dtype}{kind} no RuntimeWarning"):
                            for q, problem in loss_problems(name, reduction, z, a, y,
                                                            labels).items():
                                rows[f"{dtype}{kind} {q}"] = problem
                where = {row: ((f"L = {loss.equation}", qualname(loss.value))
                               if row.endswith("value") else (loss.gradient, qualname(loss.grad)))
                         for row in rows}
                return _oracle_report(rows, where)

            yield ("extremes", f"{name} ({reduction})", f"{name} at exact 0/1, kinks and "
                   "huge inputs", run_loss)
