"""handwritten's learning-rate schedules as torch.optim.lr_scheduler, stepped once per step.

    constant      (no scheduler)
    step          StepLR(step_size, gamma)
    multistep     MultiStepLR(milestones, gamma)
    exponential   ExponentialLR(gamma)
    cosine        CosineAnnealingLR(T_max=t_max, eta_min)
    onecycle      OneCycleLR(max_lr=lr, total_steps, pct_start, div_factor, final_div_factor,
                             anneal_strategy="cos", three_phase=False, cycle_momentum=False)
    warm-up       SequentialLR([LinearLR(start_factor=warmup_start, total_iters=warmup),
                                the schedule], milestones=[warmup])

``scheduler.step()`` follows every ``optimizer.step()`` (bpnet's per-step
convention).  OneCycleLR cycles the momentum (or adam's beta1) against the
learning rate by default; bpnet schedules the learning rate only, so
cycle_momentum is off.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim import lr_scheduler

from handwritten.checks import counterpart
from handwritten.spec import LRSchedule

Maker = Callable[[torch.optim.Optimizer, float, Mapping[str, Any]],
                 lr_scheduler.LRScheduler | None]

SCHEDULES: dict[str, Maker] = {
    "constant": lambda opt, lr, s: None,
    "step": lambda opt, lr, s: lr_scheduler.StepLR(opt, step_size=s["step_size"],
                                                   gamma=s["gamma"]),
    "multistep": lambda opt, lr, s: lr_scheduler.MultiStepLR(
        opt, milestones=list(s["milestones"]), gamma=s["gamma"]),
    "exponential": lambda opt, lr, s: lr_scheduler.ExponentialLR(opt, gamma=s["gamma"]),
    "cosine": lambda opt, lr, s: lr_scheduler.CosineAnnealingLR(opt, T_max=s["t_max"],
                                                                eta_min=s["eta_min"]),
    "onecycle": lambda opt, lr, s: lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=s["total_steps"], pct_start=s["pct_start"],
        div_factor=s["div_factor"], final_div_factor=s["final_div_factor"],
        anneal_strategy="cos", three_phase=False, cycle_momentum=False),
}
"""Every handwritten schedule by name, as the torch scheduler on an optimizer (opt, lr,
settings) -> scheduler; None for a constant learning rate."""


def _main(schedule: LRSchedule, opt: torch.optim.Optimizer, lr: float
          ) -> lr_scheduler.LRScheduler | None:
    """The schedule's scheduler (NotImplementedError for a name SCHEDULES has not: never a
    constant learning rate in its place)."""
    maker = counterpart(SCHEDULES, "schedule", schedule.name, "reference_torch/schedules.py")
    return maker(opt, lr, schedule.settings)


def make(schedule: LRSchedule | None, opt: torch.optim.Optimizer, lr: float
         ) -> lr_scheduler.LRScheduler | None:
    """The torch scheduler of a handwritten LRSchedule on ``opt`` (None: a constant lr)."""
    if schedule is None:
        return None
    with warnings.catch_warnings():
        # SequentialLR steps its second scheduler with an explicit epoch (deprecated API)
        warnings.simplefilter("ignore", UserWarning)
        main = _main(schedule, opt, lr)
        if not schedule.warmup:
            return main
        warm = lr_scheduler.LinearLR(opt, start_factor=schedule.warmup_start, end_factor=1.0,
                                     total_iters=schedule.warmup)
        if main is None:
            return warm
        return lr_scheduler.SequentialLR(opt, [warm, main], milestones=[schedule.warmup])


def step(scheduler: Any) -> None:
    """One scheduler step (nothing without a scheduler)."""
    if scheduler is not None:
        with warnings.catch_warnings():
            # "lr_scheduler.step() before optimizer.step()": advancing a fresh scheduler to a
            # state's step count, and SequentialLR's deprecated explicit-epoch call
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()


def learning_rates(schedule: LRSchedule | None, lr: float, steps: int) -> list[float]:
    """The learning rates torch's scheduler gives steps 1 to ``steps`` (an SGD optimizer
    stepped along, as torch expects)."""
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([param], lr=lr)
    scheduler = make(schedule, opt, lr)
    rates = []
    for _ in range(steps):
        rates.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        step(scheduler)
    return rates
