"""The optimizer and clipping groups: every optimizer, OPTIMIZER_STEPS steps from a random
state (or from the first step) in every implementation, each from its own previous params
and state, every buffer, update and param compared; and which references have an
optimizer's options (``supporting``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport
from bpnet.check_all.report import Case
from bpnet.compare import LeafReport, compare_leaf
from bpnet.equations import qualname
from bpnet.problems import GeneratorChooser, draw_optimizer, make_params
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten.optimizers import clip_gradients
from handwritten.spec import FLAGS, OPTIMIZER_DEFAULTS, NetworkSpec, State

OPTIMIZER_STEPS = 3
RANDOM_STEPS = 19
"""A random state is as after 1 to RANDOM_STEPS steps; OPTIMIZER_STEPS more are taken."""


SQUARES = frozenset({"v", "v_max", "s"})
"""Buffers that accumulate squares: drawn non-negative."""


def random_state(optimizer: hw.OptimizerSpec, params: hw.Params, t: int,
                 rng: np.random.Generator) -> State:
    """A state as after t steps: each of the rule's buffers (in its order) drawn from rng,
    signed ones from N(0, 1), accumulated squares (v, v_max, s) from U(0, 1); a centered
    rmsprop's v is gbar**2 + U(0, 1), as its running mean of squares must be; amsgrad's
    v_max, the largest v so far, is v where v is at its largest (about half the entries)
    and v + U(0, 1) elsewhere, so both sides of max(v_max, v) act at the next step and a
    maximum taken with anything but v_max shows; t = 0 is the fresh state."""
    state = hw.init_state(optimizer, params)
    if t == 0:
        return state
    state["t"] = t
    for buffer in hw.OPTIMIZERS[optimizer.name].buffers(optimizer.hyperparams):
        def draw(shape: tuple[int, ...], square: bool = buffer in SQUARES) -> np.ndarray:
            return rng.uniform(0, 1, shape) if square else rng.normal(size=shape)

        state[buffer] = [{k: draw(x.shape).astype(x.dtype) for k, x in layer.items()}
                         for layer in params]
    if "gbar" in state:
        state["v"] = [{k: (v + state["gbar"][l][k] ** 2).astype(v.dtype) for k, v in layer.items()}
                      for l, layer in enumerate(state["v"])]
    if "v_max" in state:
        state["v_max"] = [{k: np.where(rng.uniform(0, 1, above.shape) < 0.5, state["v"][l][k],
                                       state["v"][l][k] + above).astype(above.dtype)
                           for k, above in layer.items()}
                          for l, layer in enumerate(state["v_max"])]
    return state


def _optimizer_reports(optimizer: hw.OptimizerSpec, params: hw.Params, grads: hw.Params,
                       state: State, impls: Mapping[str, ModuleType]
                       ) -> tuple[list[str], dict[tuple[str, str], LeafReport],
                                  dict[tuple[str, str], tuple[Any, Any]]]:
    """Rows, cells and values of OPTIMIZER_STEPS steps: each implementation from its own
    previous params and state, every buffer, the update and the params after each step."""
    primary_name, *references = impls
    buffers = hw.OPTIMIZERS[optimizer.name].buffers(optimizer.hyperparams)
    # per implementation and step: (params before, state after, params after)
    runs: dict[str, list[tuple[hw.Params, State, hw.Params]]] = {}
    for name, impl in impls.items():
        p, s, taken = params, state, []
        for number in range(1, OPTIMIZER_STEPS + 1):
            new_p, s = impl.step(optimizer, p, grads, s)
            if not all(np.isfinite(leaf).all() for tree in (new_p, *(s[b] for b in buffers))
                       for layer in tree for leaf in layer.values()):
                raise FloatingPointError(
                    f"{optimizer!r} diverged: {name}'s params or buffers are non-finite "
                    f"after step {number} of {OPTIMIZER_STEPS} (from t = {state['t']})")
            taken.append((p, s, new_p))
            p = new_p
        runs[name] = taken
    rows: dict[str, None] = {}
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    for t in range(OPTIMIZER_STEPS):
        before, mine, after = runs[primary_name][t]
        for name in references:
            their_before, theirs, their_after = runs[name][t]
            for l in range(len(params)):
                for k in params[l]:                 # W, b (and a norm's gamma, beta)
                    quantities = {f"{b} of layer {l} {k}": (mine[b][l][k], theirs[b][l][k])
                                  for b in buffers}
                    quantities[f"update of layer {l} {k}"] = (
                        after[l][k] - before[l][k], their_after[l][k] - their_before[l][k])
                    quantities[f"layer {l} {k}"] = (after[l][k], their_after[l][k])
                    for label, (a, e) in quantities.items():
                        row = f"step {t + 1}: {label}"
                        rows[row] = None
                        cells[row, name] = dataclasses.replace(
                            compare_leaf(a, e, row, None, rtol=RTOL64, atol_scale=ATOL64_SCALE),
                            quantity=row)
                        values[row, name] = (a, e)
    return list(rows), cells, values


def optimizer_report(optimizer: hw.OptimizerSpec, spec: NetworkSpec, params: hw.Params,
                     grads: hw.Params, impls: Mapping[str, ModuleType],
                     rng: np.random.Generator, fresh: bool = False,
                     blame: Callable[..., Any] | None = None) -> CheckReport:
    """OPTIMIZER_STEPS steps of one optimizer from a random state (as after 1 to
    RANDOM_STEPS steps; ``fresh``: from the state before the first step, where torch's
    first momentum buffer and adagrad's initial sum act) in every implementation, each
    from its own previous params and state: every buffer, the update and the params after
    each step, named by the rule that computes them (or by ``blame``, with its equation:
    the clipping cases name clip_gradients)."""
    t = 0 if fresh else int(rng.integers(1, RANDOM_STEPS + 1))
    state = random_state(optimizer, params, t, rng)
    impls = supporting(optimizer, state["t"] + OPTIMIZER_STEPS, impls)
    rows, cells, values = _optimizer_reports(optimizer, params, grads, state, impls)
    rule = blame or hw.OPTIMIZERS[optimizer.name].update
    equation = " ".join((rule.__doc__ or "").split())
    where = {row: (f"{optimizer.name} from t = {state['t']}: {equation}", qualname(rule))
             for row in rows}
    return CheckReport(spec, 0, next(iter(impls)), tuple(list(impls)[1:]), tuple(rows), cells,
                       values, where, constants=optimizer_constants(optimizer, state["t"] + 1))


def optimizer_constants(optimizer: hw.OptimizerSpec, t: int) -> dict[str, float]:
    """Values a wrong update is typically off by, at step t: a bias correction, lr, ..."""
    h = dict(optimizer.hyperparams)
    lr = optimizer.learning_rate(t - 1)
    named = {"lr": lr, "1/lr": 1 / lr} if lr else {}
    if h.get("weight_decay"):
        named |= {"weight_decay": h["weight_decay"]}
    if h.get("dampening"):
        named |= {"1 - dampening": 1 - h["dampening"]}
    if "lr_decay" in h:
        named |= {"1/(1 + (t - 1) lr_decay)": 1 / (1 + (t - 1) * h["lr_decay"])}
    if "beta1" in h:
        c1, c2 = 1 - h["beta1"] ** t, 1 - h["beta2"] ** t
        named |= {"1/(1 - beta1**t)": 1 / c1, "1 - beta1**t": c1,
                  "1/sqrt(1 - beta2**t)": c2**-0.5, "sqrt(1 - beta2**t)": c2**0.5,
                  "1 - beta1": 1 - h["beta1"], "1 - beta2": 1 - h["beta2"]}
    if "alpha" in h:
        named |= {"1 - alpha": 1 - h["alpha"]}
    if "momentum" in h:
        named |= {"momentum": h["momentum"], "1 + momentum": 1 + h["momentum"]}
    return named


def supporting(optimizer: hw.OptimizerSpec, steps: int, impls: Mapping[str, ModuleType]
               ) -> dict[str, ModuleType]:
    """The implementations that have every option of ``optimizer`` as torch has it for
    ``steps`` steps (``unsupported``: optax lacks dampening, amsgrad, ...); the first,
    the primary, always."""
    first = next(iter(impls))
    return {name: impl for name, impl in impls.items()
            if name == first or getattr(impl, "unsupported", None) is None
            or impl.unsupported(optimizer, steps) is None}


def unsupported_by(optimizer: hw.OptimizerSpec, steps: int, impls: Mapping[str, ModuleType]
                   ) -> dict[str, str]:
    """implementation -> why it cannot run the spec, for those ``supporting`` leaves out."""
    chosen = supporting(optimizer, steps, impls)
    return {name: impl.unsupported(optimizer, steps) for name, impl in impls.items()
            if name not in chosen}


def not_supported(optimizer: hw.OptimizerSpec, steps: int, impls: Mapping[str, ModuleType]
                  ) -> str:
    """"; not reference_jax: <why>" for every implementation ``supporting`` leaves out."""
    return "".join(f"; not {name}: {reason}"
                   for name, reason in unsupported_by(optimizer, steps, impls).items())


def _every_option(name: str) -> hw.OptimizerSpec:
    """The optimizer with every flag on and every optional number away from its default."""
    extra = {"weight_decay": 0.1, "dampening": 0.3, "lr_decay": 0.1,
             "initial_accumulator_value": 0.1}
    hyper: dict[str, float] = {}
    for key in OPTIMIZER_DEFAULTS[name]:
        if key in FLAGS:
            hyper[key] = True
        elif key in extra:
            hyper[key] = extra[key]
        elif key == "momentum" and name == "rmsprop":
            hyper[key] = 0.5
    return hw.OptimizerSpec(name, 0.05, hyper, hw.LRSchedule("step", {"step_size": 2}),
                            clip_value=0.5)


def optimizer_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """Every optimizer with its defaults; clipping by norm and by value (on sgd, so that a
    failure there is the clipping's); then every optimizer with every option on (from the
    first step, where torch's first momentum buffer and adagrad's initial sum act, and from
    a random state, where every buffer acts) and with hyperparameters, schedule and
    clipping drawn as the suite draws them.  The simplest first: the first failure printed
    names the most local mistake."""
    spec = NetworkSpec((4, 6, 3), ("tanh", "identity"), "mse")
    names = sorted(hw.OPTIMIZERS)
    # (group, label, optimizer, from the first step)
    cases: list[tuple[str, str, hw.OptimizerSpec, bool]] = [
        ("optimizer", name, hw.OptimizerSpec(name, 0.05), False) for name in names]
    cases += [("clipping", "clip_norm (active)", hw.OptimizerSpec("sgd", 0.05, clip_norm=0.5),
               False),
              ("clipping", "clip_value (active)", hw.OptimizerSpec("sgd", 0.05, clip_value=0.2),
               False)]
    for name in names:
        rng = np.random.default_rng(7)
        cases += [("optimizer", f"{name} (every option)", _every_option(name), True),
                  ("optimizer", f"{name} (every option, a random state)", _every_option(name),
                   False),
                  ("optimizer", f"{name} (drawn options)",
                   draw_optimizer(GeneratorChooser(rng), name), False)]
    for group, label, optimizer, fresh in cases:
        rng = np.random.default_rng(7)
        params = make_params(spec, rng, np.float64)
        grads = make_params(spec, rng, np.float64)           # any params-shaped draw
        note = not_supported(optimizer, RANDOM_STEPS + OPTIMIZER_STEPS, impls)
        start = "the first step" if fresh else "a random state"
        case = f"{optimizer!r}, {OPTIMIZER_STEPS} steps from {start}{note}"
        blame = clip_gradients if group == "clipping" else None
        yield group, label, case, partial(
            optimizer_report, optimizer, spec, params, grads, impls,
            np.random.default_rng(int(rng.integers(2**32))), fresh, blame)
