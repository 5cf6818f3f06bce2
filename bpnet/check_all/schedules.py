"""The schedule group: every learning-rate schedule, step by step, against torch's
schedulers and optax's schedules."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from types import ModuleType

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport
from bpnet.check_all.optimizers import not_supported, supporting
from bpnet.check_all.report import Case
from bpnet.compare import compare_leaf
from bpnet.equations import qualname
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten import schedules
from handwritten.spec import NetworkSpec

SCHEDULE_STEPS = 60
SCHEDULE_CASES = (
    hw.LRSchedule("step", {"step_size": 7, "gamma": 0.5}),
    hw.LRSchedule("multistep", {"milestones": (0, 10, 10, 25), "gamma": 0.3}),
    hw.LRSchedule("exponential", {"gamma": 0.95}),
    hw.LRSchedule("cosine", {"t_max": SCHEDULE_STEPS - 1, "eta_min": 0.001}),
    hw.LRSchedule("onecycle", {"total_steps": SCHEDULE_STEPS, "pct_start": 0.25}),
    hw.LRSchedule("constant", {}, warmup=10, warmup_start=0.1),
    hw.LRSchedule("cosine", {"t_max": SCHEDULE_STEPS - 6}, warmup=5),
)
"""Every schedule, and the warm-up in front of two; within the steps optax agrees (cosine
inside t_max) except onecycle, whose phases optax ends a step later."""


def schedule_report(schedule: hw.LRSchedule, lr: float, impls: Mapping[str, ModuleType]
                    ) -> CheckReport:
    """The learning rates of SCHEDULE_STEPS steps: handwritten's closed forms against
    torch's schedulers and optax's schedules (where optax has the schedule as torch)."""
    import importlib

    optimizer = hw.OptimizerSpec("sgd", lr, schedule=schedule)
    impls = supporting(optimizer, SCHEDULE_STEPS, impls)
    primary, *references = impls
    ours = np.array(schedule.learning_rates(lr, SCHEDULE_STEPS))
    row = f"learning rates of steps 1 to {SCHEDULE_STEPS}"
    cells, values = {}, {}
    for name in references:
        theirs = np.array(importlib.import_module(f"{name}.schedules").learning_rates(
            schedule, lr, SCHEDULE_STEPS))
        cells[row, name] = compare_leaf(ours, theirs, row, None, rtol=RTOL64,
                                        atol_scale=ATOL64_SCALE)
        values[row, name] = (ours, theirs)
    function = schedules.SCHEDULES[schedule.name]
    equation = " ".join((function.__doc__ or "").split())
    return CheckReport(NetworkSpec((1, 1), ("identity",)), 0, primary, tuple(references),
                       (row,), cells, values, {row: (equation, qualname(function))},
                       constants={"lr": lr})


def schedule_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """Every learning-rate schedule, step by step, against torch and optax."""
    for schedule in SCHEDULE_CASES:
        label = schedule.name + (" after a warm-up" if schedule.warmup else "")
        note = not_supported(hw.OptimizerSpec("sgd", 0.1, schedule=schedule), SCHEDULE_STEPS,
                              impls)
        yield "schedule", label, f"{schedule!r}, lr 0.1, {SCHEDULE_STEPS} steps{note}", partial(
            schedule_report, schedule, 0.1, impls)
