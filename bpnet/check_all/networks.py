"""The groups whose every case is one problem through ``cross_check``: every activation (in
ordinary and saturated units), every loss under every reduction, weight decay, and
hand-picked (with finite differences) and randomly drawn networks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport, cross_check
from bpnet.check_all.report import BATCH, Case
from bpnet.problems import Problem, random_problems
from handwritten import seed
from handwritten.activations import activation
from handwritten.spec import NetworkSpec

SATURATED_SCALE = 6.0
"""make_params' scale for the saturated case: |z| up to ~10, well into every tail."""


def _problem_check(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType],
                   finite_differences: bool = False) -> Callable[[], CheckReport]:
    return partial(cross_check, problem.spec, problem.params, problem.x, problem.y, impls,
                   finite_differences=finite_differences)


def _class_target_seeds(spec: NetworkSpec) -> tuple[int, int]:
    """The first seed whose targets are one-hot rows, and the first whose are soft rows
    (make_targets draws either)."""
    kinds: dict[bool, int] = {}
    for s in range(100):
        y = Problem(spec, BATCH, s).y
        kinds.setdefault(bool(np.all((y == 0) | (y == 1))), s)
        if len(kinds) == 2:
            break
    return kinds[True], kinds[False]


PARAMETRISED = ("leaky_relu:0.2", "elu:0.5", "celu:2.5")
"""The parametrised activations once more, each away from its default parameter."""


def _activations() -> list[tuple[str, Any]]:
    """Every registered activation, then PARAMETRISED: (name, registry entry)."""
    return [*sorted(hw.ACTIVATIONS.items()), *((n, activation(n)) for n in PARAMETRISED)]


def problem_cases(impls: Mapping[str, ModuleType], n_random: int = 12) -> Iterator[Case]:
    """(group, name, case, run) for every case that is one problem through cross_check."""
    for name, act in _activations():
        if act.output_only:      # behind identity: this case exercises no other activation
            spec = NetworkSpec((3, 5, 4), ("identity", name), "mse", "sum")
            problems = {"": Problem(spec, BATCH, 1)}
        else:
            spec = NetworkSpec((3, 5, 5, 2), (name, name, "identity"), "half_mse", "mean")
            problems = {"": Problem(spec, BATCH, 1),
                        " (saturated units)": Problem(spec, BATCH, 2, scale=SATURATED_SCALE)}
        for kind, p in problems.items():
            yield "activation", name + kind, repr(p), _problem_check(p, impls)
    for loss_name, loss in sorted(hw.LOSSES.items()):
        out = sorted(loss.output_activations)[0] if loss.output_activations else "tanh"
        for reduction in hw.REDUCTIONS:
            spec = NetworkSpec((3, 6, 4), ("silu", out), loss_name, reduction)
            problems = {"": Problem(spec, BATCH, 3)}
            if loss.targets == "class":
                problems = {f", {kind}": Problem(spec, BATCH, s)
                            for kind, s in zip(("one-hot", "soft"), _class_target_seeds(spec))}
                problems[", labels"] = Problem(spec, BATCH, 3, labels=True)
            for kind, p in problems.items():
                yield ("loss", f"{loss_name} ({reduction}{kind})", repr(p),
                       _problem_check(p, impls))
    for loss_name in ("mse", "softmax_cross_entropy"):
        out = "softmax" if loss_name == "softmax_cross_entropy" else "identity"
        spec = NetworkSpec((3, 5, 4), ("tanh", out), loss_name, "mean", weight_decay=0.1)
        p = Problem(spec, BATCH, 4)
        yield "weight decay", f"0.1 with {loss_name}", repr(p), _problem_check(p, impls)
    hand_picked = [seed.BLOG_SPEC,
                   NetworkSpec((4, 8, 6, 5, 3), ("tanh", "relu", "tanh", "identity"), "mse"),
                   NetworkSpec((5, 9, 4), ("gelu", "softmax"), "softmax_cross_entropy")]
    for spec in hand_picked:
        p = Problem(spec, BATCH, 5)
        yield ("network", f"{spec.layer_sizes} (+ finite differences)", repr(p),
               _problem_check(p, impls, finite_differences=True))
    for i, p in enumerate(random_problems(n_random, seed=2026, max_depth=4, max_width=8,
                                          max_batch=12)):
        yield "network", f"random #{i + 1} {p.spec.layer_sizes}", repr(p), _problem_check(p, impls)
