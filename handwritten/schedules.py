"""Learning-rate schedules: the learning rate of every step, as a pure function of the step.

Step t = 1, 2, ... of training uses the learning rate ``lr_k`` at k = t - 1, the
number of steps taken before it (``state["t"]`` of the optimizer).  This is
torch.optim.lr_scheduler with ``scheduler.step()`` called after every
``optimizer.step()`` -- per step, not per epoch -- and optax's ``schedule(count)``.
With base learning rate lr (``OptimizerSpec.lr``):

    constant      lr_k = lr
    step          lr_k = lr * gamma ** (k // step_size)                        (StepLR)
    multistep     lr_k = lr * gamma ** (number of milestones m <= k)           (MultiStepLR)
    exponential   lr_k = lr * gamma ** k                                       (ExponentialLR)
    cosine        lr_k = eta_min + (lr - eta_min) * (1 + cos(pi k / t_max)) / 2
                                                                     (CosineAnnealingLR)
    onecycle      from lr / div_factor up to lr at k = pct_start * total_steps - 1, then down
                  to lr / (div_factor * final_div_factor) at k = total_steps - 1, each half a
                  cosine:  anneal(start, end, p) = end + (start - end) * (1 + cos(pi p)) / 2
                                                    (OneCycleLR, cos, two phases, lr only)

and a linear warm-up of w steps in front of any of them but onecycle (LinearLR then
the schedule, as torch's SequentialLR with milestone w):

    k < w         lr_k = lr * (s + (1 - s) * k / w)          s = warmup_start
    k >= w        the schedule at k - w

Torch computes most of these recursively (lr_k from lr_(k-1)), which rounds
differently from these closed forms by a few ulps per step.  Two conventions
differ from optax (bpnet follows torch, the primary reference):

- cosine beyond t_max: torch's CosineAnnealingLR keeps following the cosine back up
  (period 2 t_max); optax's cosine_decay_schedule stays at its floor.
- onecycle: optax's cosine_onecycle_schedule peaks at k = int(pct_start * total_steps)
  and ends at k = total_steps; torch one step earlier in each phase.

A run with a onecycle schedule may take at most total_steps steps (torch refuses more).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

REQUIRED = None
"""Marks a setting without a default: the schedule needs it given."""

SCHEDULE_SETTINGS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "constant": {},
    "step": {"step_size": REQUIRED, "gamma": 0.1},
    "multistep": {"milestones": REQUIRED, "gamma": 0.1},
    "exponential": {"gamma": REQUIRED},
    "cosine": {"t_max": REQUIRED, "eta_min": 0.0},
    "onecycle": {"total_steps": REQUIRED, "pct_start": 0.3, "div_factor": 25.0,
                 "final_div_factor": 1e4},
})
"""Every schedule's settings and their defaults (torch's; REQUIRED where torch has none)."""

WARMUP_START = 1 / 3
"""The warm-up's first factor s by default (torch.optim.lr_scheduler.LinearLR's start_factor)."""


def constant_lr(lr: float, k: int, settings: Mapping[str, Any]) -> float:
    """lr_k = lr."""
    return lr


def decayed(lr: float, gamma: float, n: int) -> float:
    """lr * gamma ** n, as torch's schedulers reach it, one multiplication by gamma per
    decay: inf once it is beyond the largest float, 0 below the smallest.  Python's **
    raises OverflowError where gamma ** n alone is beyond the largest float (gamma 2
    after 1,024 decays) although lr * gamma ** n may not be: there lr is multiplied by
    powers of gamma that stay in range, until the product is inf or n is used up."""
    try:
        return float(lr * gamma ** n)
    except OverflowError:                       # only for gamma > 1
        pass
    chunk = max(1, int(700 / math.log(gamma)))  # gamma ** chunk <= e ** 700 < 1.8e308
    rate = lr
    while n > 0 and 0 < rate < math.inf:
        rate *= gamma ** min(chunk, n)
        n -= chunk
    return rate


def step_lr(lr: float, k: int, settings: Mapping[str, Any]) -> float:
    """lr_k = lr * gamma ** (k // step_size): decays by gamma every step_size steps."""
    return decayed(lr, settings["gamma"], k // settings["step_size"])


def multistep_lr(lr: float, k: int, settings: Mapping[str, Any]) -> float:
    """lr_k = lr * gamma ** (number of milestones m <= k); a repeated milestone counts twice."""
    return decayed(lr, settings["gamma"], bisect_right(settings["milestones"], k))


def exponential_lr(lr: float, k: int, settings: Mapping[str, Any]) -> float:
    """lr_k = lr * gamma ** k."""
    return decayed(lr, settings["gamma"], k)


def cosine_lr(lr: float, k: int, settings: Mapping[str, Any]) -> float:
    """lr_k = eta_min + (lr - eta_min) * (1 + cos(pi k / t_max)) / 2: from lr down to eta_min
    at k = t_max, then (torch) back up along the same cosine."""
    eta_min = settings["eta_min"]
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * k / settings["t_max"])) / 2


def anneal(start: float, end: float, p: float) -> float:
    """Half a cosine from start (p = 0) to end (p = 1)."""
    return end + (start - end) / 2 * (math.cos(math.pi * p) + 1)


def onecycle_lr(lr: float, k: int, settings: Mapping[str, Any]) -> float:
    """Up from lr / div_factor to lr over the first phase, down to its last value over the
    second (torch's phases: they end at k = pct_start * total_steps - 1 and total_steps - 1)."""
    initial = lr / settings["div_factor"]
    final = initial / settings["final_div_factor"]
    peak_at = settings["pct_start"] * settings["total_steps"] - 1
    if k <= peak_at:
        return anneal(initial, lr, k / peak_at)
    return anneal(lr, final, (k - peak_at) / (settings["total_steps"] - 1 - peak_at))


SCHEDULES: dict[str, Callable[[float, int, Mapping[str, Any]], float]] = {
    "constant": constant_lr,
    "step": step_lr,
    "multistep": multistep_lr,
    "exponential": exponential_lr,
    "cosine": cosine_lr,
    "onecycle": onecycle_lr,
}
"""Every schedule by name: (lr, k, settings) -> lr_k."""


def warmup(lr: float, k: int, steps: int, start: float) -> float:
    """lr_k = lr * (s + (1 - s) * k / w) for k < w: linearly from s * lr up towards lr."""
    return lr * (start + (1 - start) * k / steps)


def learning_rate(lr: float, k: int, name: str, settings: Mapping[str, Any],
                  warmup_steps: int = 0, warmup_start: float = WARMUP_START) -> float:
    """The learning rate of step k + 1 (k steps taken before it) under a schedule."""
    if k < warmup_steps:
        return warmup(lr, k, warmup_steps, warmup_start)
    return SCHEDULES[name](lr, k - warmup_steps, settings)


def learning_rates(lr: float, steps: int, name: str, settings: Mapping[str, Any],
                   warmup_steps: int = 0, warmup_start: float = WARMUP_START) -> list[float]:
    """The learning rates of steps 1 to ``steps`` (k = 0 to steps - 1)."""
    return [learning_rate(lr, k, name, settings, warmup_steps, warmup_start)
            for k in range(steps)]
