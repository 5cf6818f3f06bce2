"""handwritten's learning-rate schedules as optax schedules: lr_k = schedule(count = k).

    constant      lr
    step          exponential_decay(lr, transition_steps=step_size, decay_rate=gamma,
                                    staircase=True)
    multistep     piecewise_constant_schedule(lr, {milestone: gamma ** repeats})
    exponential   exponential_decay(lr, transition_steps=1, decay_rate=gamma)
    cosine        eta_min + cosine_decay_schedule(lr - eta_min, decay_steps=t_max)
    warm-up       join_schedules([linear_schedule(warmup_start * lr, lr, warmup),
                                  the schedule], boundaries=[warmup])

optax's count is the number of updates before the current one, bpnet's k; it is
handed to the schedule as a float of the learning rate's dtype (optax would compute
in float32, the type its int32 count promotes to).  Two
schedules differ from torch's (which bpnet follows), so ``unsupported`` names them
and reference_jax does not run them:

- cosine beyond t_max: optax's cosine_decay_schedule stays at its floor, torch's
  CosineAnnealingLR rises again along the cosine;
- onecycle: optax's cosine_onecycle_schedule peaks at k = int(pct_start * total_steps)
  and ends at k = total_steps, torch's OneCycleLR at pct_start * total_steps - 1 and
  total_steps - 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from handwritten.checks import counterpart
from handwritten.spec import LRSchedule


def _multistep(lr: Any, s: Mapping[str, Any]) -> Any:
    counts = Counter(s["milestones"])
    return optax.piecewise_constant_schedule(lr, {m: s["gamma"] ** n for m, n in counts.items()})


def _cosine(lr: Any, s: Mapping[str, Any]) -> Any:
    cosine = optax.cosine_decay_schedule(lr - s["eta_min"], s["t_max"])
    return lambda count: s["eta_min"] + cosine(count)


ONECYCLE = ("optax's cosine_onecycle_schedule peaks at step int(pct_start * total_steps) "
            "and ends at total_steps; torch's OneCycleLR one step earlier in each phase")
"""Why reference_jax has no onecycle schedule (``unsupported``)."""


def _onecycle(lr: Any, s: Mapping[str, Any]) -> Any:
    raise NotImplementedError(f"reference_jax cannot run the onecycle schedule: {ONECYCLE}")


SCHEDULES: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    "constant": lambda lr, s: lambda count: lr,
    "step": lambda lr, s: optax.exponential_decay(lr, s["step_size"], s["gamma"],
                                                  staircase=True),
    "multistep": _multistep,
    "exponential": lambda lr, s: optax.exponential_decay(lr, 1, s["gamma"]),
    "cosine": _cosine,
    "onecycle": _onecycle,
}
"""Every handwritten schedule by name, as an optax schedule (lr, settings) -> count -> lr_k;
onecycle is named and refused (``unsupported`` says why)."""


def _main(schedule: LRSchedule, lr: Any) -> Any:
    """The schedule's optax schedule (NotImplementedError for a name SCHEDULES has not:
    never a constant learning rate in its place)."""
    maker = counterpart(SCHEDULES, "schedule", schedule.name, "reference_jax/schedules.py")
    return maker(lr, schedule.settings)


def make(schedule: LRSchedule | None, lr: Any) -> Any:
    """The optax learning rate of a handwritten LRSchedule (lr itself when constant)."""
    if schedule is None or (schedule.name == "constant" and not schedule.warmup):
        return lr
    main = _main(schedule, lr)
    if schedule.warmup:
        warm = optax.linear_schedule(schedule.warmup_start * lr, lr, schedule.warmup)
        main = optax.join_schedules([warm, main], [schedule.warmup])
    # optax computes a schedule in the float type its int32 count promotes to, float32: a
    # float64 run's learning rate would be rounded to float32 (3e-8).  The count goes in as
    # a float of lr's own type instead (an exact integer either way).
    dtype = jnp.result_type(lr)
    return lambda count: main(jnp.asarray(count, dtype))


def unsupported(schedule: LRSchedule | None, steps: int) -> str | None:
    """Why optax's schedule is not torch's over the first ``steps`` steps, or None."""
    if schedule is None:
        return None
    if schedule.name == "onecycle":
        return ONECYCLE
    if schedule.name == "cosine" and steps - 1 - schedule.warmup > schedule.settings["t_max"]:
        return (f"the run goes beyond t_max = {schedule.settings['t_max']}, where optax's "
                "cosine_decay_schedule stays at eta_min and torch's CosineAnnealingLR rises "
                "again")
    return None


def learning_rates(schedule: LRSchedule | None, lr: float, steps: int) -> list[float]:
    """The learning rates optax's schedule gives steps 1 to ``steps`` (counts 0 to steps - 1)."""
    with jax.enable_x64(True):
        rate = make(schedule, jnp.asarray(lr, jnp.float64))
        return [float(rate(jnp.asarray(k, jnp.int32)) if callable(rate) else rate)
                for k in range(steps)]
