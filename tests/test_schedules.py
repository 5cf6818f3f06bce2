"""Learning-rate schedules: handwritten's closed forms against torch.optim.lr_scheduler and
optax, step by step, and the two places where optax's convention is not torch's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handwritten as hw
from bpnet.problems import draw_schedule
from bpnet.tolerances import RTOL64
from tests.strategies import HypothesisChooser

pytest.importorskip("torch")
pytest.importorskip("jax")
from reference_jax import schedules as jax_schedules
from reference_jax.optimizers import unsupported
from reference_torch import schedules as torch_schedules

STEPS = 120


def _agree(ours: list[float], theirs: list[float], what: str) -> None:
    # torch's recursive forms (lr_k from lr_(k-1)) round a few ulps per step, so the
    # relative tolerance is the float64 gradient tolerance (1e-10), far above 120 steps'
    # worth of ulps (~3e-14) and far below any wrong formula (a wrong step is off by gamma).
    scale = max(abs(v) for v in theirs)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert abs(a - b) <= RTOL64 * abs(b) + 1e-15 * scale, (
            f"{what}: step {k + 1} lr {a!r} vs {b!r}")


@given(data=st.data(), lr=st.floats(1e-4, 1.0))
def test_every_schedule_matches_torchs_scheduler_step_by_step(data: st.DataObject,
                                                              lr: float) -> None:
    schedule = draw_schedule(HypothesisChooser(data.draw)) or hw.LRSchedule()
    steps = min(STEPS, schedule.max_steps or STEPS)
    _agree(schedule.learning_rates(lr, steps), torch_schedules.learning_rates(schedule, lr, steps),
           f"{schedule!r} vs torch")


@given(data=st.data(), lr=st.floats(1e-4, 1.0))
def test_every_schedule_optax_has_matches_it_step_by_step(data: st.DataObject, lr: float) -> None:
    schedule = draw_schedule(HypothesisChooser(data.draw)) or hw.LRSchedule()
    steps = min(STEPS, schedule.max_steps or STEPS)
    if unsupported(hw.OptimizerSpec("sgd", lr, schedule=schedule), steps) is not None:
        steps = schedule.warmup + schedule.settings.get("t_max", 0) + 1
        if schedule.name == "onecycle":
            return                       # the documented difference, tested below
    _agree(schedule.learning_rates(lr, steps), jax_schedules.learning_rates(schedule, lr, steps),
           f"{schedule!r} vs optax")


def test_cosine_beyond_t_max_rises_again_in_torch_and_stays_in_optax() -> None:
    """torch's CosineAnnealingLR (and handwritten) follows the cosine back up after t_max;
    optax's cosine_decay_schedule stays at the floor: reference_jax refuses such runs."""
    schedule = hw.LRSchedule("cosine", {"t_max": 10, "eta_min": 0.01})
    ours = schedule.learning_rates(0.1, 21)
    optax_rates = jax_schedules.make(schedule, 0.1)
    assert ours[10] == pytest.approx(0.01) and ours[20] == pytest.approx(0.1)
    assert float(optax_rates(20)) == pytest.approx(0.01)
    _agree(ours, torch_schedules.learning_rates(schedule, 0.1, 21), "cosine vs torch")
    opt = hw.OptimizerSpec("sgd", 0.1, schedule=schedule)
    assert unsupported(opt, 11) is None and "t_max = 10" in (unsupported(opt, 12) or "")


def test_onecycle_peaks_one_step_earlier_in_torch_than_in_optax() -> None:
    """torch's phases end at pct_start * total_steps - 1 and total_steps - 1; optax's
    cosine_onecycle_schedule at int(pct_start * total_steps) and total_steps."""
    import optax

    total, pct = 40, 0.25
    schedule = hw.LRSchedule("onecycle", {"total_steps": total, "pct_start": pct})
    ours = np.array(schedule.learning_rates(1.0, total))
    theirs = np.array([float(optax.cosine_onecycle_schedule(total, 1.0, pct)(k))
                       for k in range(total + 1)])
    assert int(np.argmax(ours)) == pct * total - 1 and ours.max() == 1.0
    assert int(np.argmax(theirs)) == int(pct * total)
    assert ours[-1] == pytest.approx(1 / 25 / 1e4) and theirs[-1] == pytest.approx(1 / 25 / 1e4)
    _agree(list(ours), torch_schedules.learning_rates(schedule, 1.0, total), "onecycle vs torch")


def test_warmup_then_schedule_is_torchs_sequential_lr() -> None:
    """LinearLR for the first w steps, then the schedule restarted at its own step 0."""
    schedule = hw.LRSchedule("step", {"step_size": 3, "gamma": 0.5}, warmup=4, warmup_start=0.2)
    rates = schedule.learning_rates(1.0, 10)
    assert rates == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5], rel=1e-15)
    _agree(rates, torch_schedules.learning_rates(schedule, 1.0, 10), "warm-up vs torch")


@pytest.mark.parametrize(("schedule", "lr", "steps"), [
    (hw.LRSchedule("exponential", {"gamma": 2.0}), 0.1, 1100),     # 2 ** k overflows at 1024
    (hw.LRSchedule("exponential", {"gamma": 2.0}), 1e-300, 2000),  # 2 ** k does, lr 2 ** k not
    (hw.LRSchedule("step", {"step_size": 1, "gamma": 1e200}), 0.1, 4),
    (hw.LRSchedule("step", {"step_size": 1, "gamma": 1e155}), 1e-300, 4),
    (hw.LRSchedule("exponential", {"gamma": 1e-200}), 0.1, 4),     # below the smallest float
], ids=["exp-inf", "exp-finite", "step-inf", "step-finite", "exp-zero"])
def test_a_decay_beyond_the_float_range_is_torchs_inf_or_finite_value(
        schedule: hw.LRSchedule, lr: float, steps: int) -> None:
    """gamma ** k out of the float range is no OverflowError: torch multiplies by gamma
    once per decay and reaches inf (or 0), or a finite lr * gamma ** k where lr is small."""
    ours = schedule.learning_rates(lr, steps)
    # inf only where torch's is inf; elsewhere the float64 tolerance, as _agree
    np.testing.assert_allclose(ours, torch_schedules.learning_rates(schedule, lr, steps),
                               rtol=RTOL64, atol=0)
