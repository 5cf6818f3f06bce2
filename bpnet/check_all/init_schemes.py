"""The init group: every initialisation scheme's draws, statistically, against
torch.nn.init and jax.nn.initializers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport
from bpnet.check_all.report import Case
from bpnet.compare import LeafReport, compare_leaf
from bpnet.equations import qualname
from handwritten.spec import NetworkSpec

INIT_SHAPE = (300, 200)
INIT_SE = 6.0
"""Standard errors allowed between the statistics of two independent draws of 60 000
entries (6 of them: ~1e-9 likely by chance), while a wrong scale -- fan_in for
fan_in + fan_out, a missing sqrt(2) -- is off by tens of them (2.4% allowed for the std)."""


def _framework_init(scheme: str, framework: str, shape: tuple[int, int]) -> np.ndarray:
    """One (fan_in, fan_out) draw of the scheme by torch.nn.init or jax.nn.initializers
    (the reference's ``network.init_weight``, seed 0)."""
    import importlib

    return np.asarray(importlib.import_module(f"{framework}.network").init_weight(
        scheme, *shape, 0))


def init_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    spec = NetworkSpec(INIT_SHAPE, ("identity",), "mse")
    n = INIT_SHAPE[0] * INIT_SHAPE[1]
    for scheme in hw.INIT_SCHEMES:
        def run(scheme: str = scheme) -> CheckReport:
            params = hw.init_params(spec, np.random.default_rng(0), scheme)
            w, b = params[0]["W"], params[0]["b"]
            cells: dict[tuple[str, str], LeafReport] = {}
            values: dict[tuple[str, str], tuple[Any, Any]] = {}
            for name in list(impls)[1:]:
                theirs = _framework_init(scheme, name, INIT_SHAPE)
                # (ours, theirs, rtol, atol): a sample std has relative standard error
                # <= 1/sqrt(2n), the difference of two sqrt(2) times that
                stats = {"std of W": (w.std(), theirs.std(), INIT_SE / np.sqrt(n), 0.0)}
                if scheme == "glorot_uniform":     # the bound is sqrt(3) std: both ends seen
                    stats["max |W| / std"] = (np.abs(w).max() / w.std(),
                                              np.abs(theirs).max() / theirs.std(),
                                              INIT_SE / np.sqrt(n), 0.0)
                stats["b"] = (b, np.zeros_like(b), 0.0, 0.0)     # biases start at zero
                for row, (a, e, rtol, atol) in stats.items():
                    cells[row, name] = dataclasses.replace(
                        compare_leaf(a, e, row, None, rtol=rtol, atol=atol), quantity=row)
                    values[row, name] = (a, e)
            rows = tuple(dict.fromkeys(row for row, _ in cells))
            where = {row: (f"W ~ {scheme}", qualname(hw.init_params)) for row in rows}
            return CheckReport(spec, 0, "handwritten", tuple(list(impls)[1:]), rows,
                               cells, values, where)

        yield ("init", scheme, f"init_params(NetworkSpec({INIT_SHAPE}, ...), "
               f"default_rng(0), {scheme!r})", run)
