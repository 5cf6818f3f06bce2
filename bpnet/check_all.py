"""``bpnet check --all``: everything registered in handwritten, through every implementation.

One command that a student runs after editing handwritten/: every activation (in
ordinary and saturated units), every loss under every reduction, weight decay, every
activation and loss at the extremes (kinks, saturation, huge logits, exact 0/1, float32
and float64) against the float80 oracle of ``bpnet.oracle``,
hand-picked and randomly drawn networks (the suite's own generator, non-zero
biases), every optimizer (one step from a random state, then a few steps of its
own, every state buffer and update compared), every initialisation scheme (against
torch.nn.init and jax.nn.initializers, statistically), and the blog's seed.py
functions.  Each entry is a ``CheckReport``; the first failing entry names the
quantity, its equation and the function of handwritten that computes it.

Before anything runs, every registered name must have a counterpart in each
reference: ``registry_gaps`` says in one line which does not.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import handwritten as hw
from bpnet.check import CheckReport, cross_check
from bpnet.compare import LeafReport, compare_leaf
from bpnet.equations import block_equations, qualname
from bpnet.problems import (
    GeneratorChooser,
    Problem,
    draw_optimizer,
    make_params,
    random_problems,
)
from bpnet.tolerances import ATOL64_SCALE, RTOL64
from handwritten import schedules, seed
from handwritten.activations import activation
from handwritten.checks import no_counterpart
from handwritten.layers import (
    Activation,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GroupNorm,
    LayerNorm,
    MaxPool2d,
    Residual,
    Sequential,
)
from handwritten.optimizers import clip_gradients
from handwritten.spec import FLAGS, OPTIMIZER_DEFAULTS, NetworkSpec, State

REGISTRIES: Mapping[str, tuple[str, str, str, str]] = {
    # kind: (handwritten's module and registry, a reference's module and registry)
    "activation": ("activations", "ACTIVATIONS", "activations", "ACTIVATIONS"),
    "loss": ("losses", "LOSSES", "losses", "LOSSES"),
    "optimizer": ("optimizers", "OPTIMIZERS", "optimizers", "MAKERS"),
    "schedule": ("schedules", "SCHEDULES", "schedules", "SCHEDULES"),
    "init scheme": ("network", "INIT_SCHEMES", "network", "INITIALIZERS"),
    "layer": ("layers", "LAYERS", "layers", "LAYERS"),
    "norm": ("spec", "NORMS", "blocks", "AXES"),
}
"""Every registry of handwritten and its counterpart in each reference."""


def _registry(implementation: str, kind: str) -> Collection[str]:
    """The names of an implementation's registry of one kind
    (reference_torch.activations.ACTIVATIONS, ...)."""
    import importlib

    ours, our_name, module, name = REGISTRIES[kind]
    if implementation == "handwritten":
        module, name = ours, our_name
    registry = getattr(importlib.import_module(f"{implementation}.{module}"), name)
    return [n for n in registry if n is not None]          # NORMS holds None: no norm


def _where(implementation: str, kind: str) -> str:
    """Where a reference keeps a kind: its file, and the registry when not named alike."""
    _, _, module, name = REGISTRIES[kind]
    registry = f" ({name})" if kind in ("optimizer", "init scheme", "layer") else ""
    return f"{implementation}/{module}.py{registry}"


def registry_gaps(references: Mapping[str, ModuleType],
                  names: Collection[str] | None = None) -> list[str]:
    """One line per name registered in handwritten that a reference lacks (or the reverse);
    only for ``names`` (a spec's activations and loss, say) when given."""
    gaps = []
    for kind in REGISTRIES:
        ours = _registry("handwritten", kind)
        for ref in references:
            theirs = _registry(ref, kind)
            module = _where(ref, kind)
            gaps += [no_counterpart(kind, name, module)
                     for name in ours if name not in theirs and (names is None or name in names)]
            gaps += [f"{kind} {name!r} in {module} is not registered in handwritten"
                     for name in theirs if name not in ours and (names is None or name in names)]
    return gaps


@dataclass(frozen=True)
class Entry:
    """One line of the --all table: a registered entry, the case run, and its report."""

    group: str
    name: str
    case: str
    report: CheckReport
    seconds: float

    @property
    def ok(self) -> bool:
        return self.report.ok


# the cases ---------------------------------------------------------------------------------

BATCH = 8
"""Rows per case: neither 1 nor the number of outputs, so a wrong 1/batch shows as itself."""
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


def problem_cases(impls: Mapping[str, ModuleType], n_random: int = 12
                  ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
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


# optimizers: one step from a random state, then a few of their own -------------------------

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


def optimizer_cases(impls: Mapping[str, ModuleType]
                    ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
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


# beyond the gradient: forward mode and per-example gradients ---------------------------------

DERIVATIVE_CASES = (
    NetworkSpec((4, 8, 6, 3), ("silu", "tanh", "identity"), "mse", "mean", weight_decay=0.1),
    NetworkSpec((5, 9, 4), ("celu:0.7", "softmax"), "softmax_cross_entropy", "mean"),
    seed.BLOG_SPEC,
)


def derivatives_report(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType]
                       ) -> CheckReport:
    """handwritten.derivatives' jvp (along a drawn direction), per-example gradients and
    their norms against each reference's (torch.func, JAX)."""
    import importlib

    from handwritten import derivatives

    primary, *references = impls
    spec, params, x, y = problem.spec, problem.params, problem.x, problem.y
    v = make_params(spec, np.random.default_rng(problem.seed + 1), np.float64)
    ours: dict[str, Any] = dict(zip(("output", "output_dot"), derivatives.jvp(spec, params, x, v)))
    per = derivatives.per_example_grads(spec, params, x, y)
    ours |= {f"per-example layer {l} {k}": per[l][k] for l in range(spec.n_layers)
             for k in ("W", "b")}
    ours["per-example norms"] = derivatives.per_example_grad_norms(spec, params, x, y)
    where = {"output": ("z_dot = a_prev_dot @ W + a_prev @ W_dot + b_dot; a_dot = f'(z) z_dot",
                        qualname(derivatives.tangent_forward))}
    where["output_dot"] = where["output"]
    where |= {row: ("d_W[i] = outer(a_prev[i], d_z[i]), d_b[i] = d_z[i]",
                    qualname(derivatives.per_example_grads))
              for row in ours if row.startswith("per-example layer")}
    where["per-example norms"] = ("||d_W[i]||**2 = ||a_prev[i]||**2 ||d_z[i]||**2",
                                  qualname(derivatives.per_example_grad_norms))
    cells, values = {}, {}
    for name in references:
        ref = importlib.import_module(f"{name}.derivatives")
        theirs: dict[str, Any] = dict(zip(("output", "output_dot"), ref.jvp(spec, params, x, v)))
        their_per = ref.per_example_grads(spec, params, x, y)
        theirs |= {f"per-example layer {l} {k}": their_per[l][k] for l in range(spec.n_layers)
                   for k in ("W", "b")}
        theirs["per-example norms"] = np.sqrt(sum(
            (g.reshape(x.shape[0], -1) ** 2).sum(axis=1) for layer in their_per
            for g in layer.values()))
        for row, value in ours.items():
            cells[row, name] = compare_leaf(value, theirs[row], row, None, rtol=RTOL64,
                                            atol_scale=ATOL64_SCALE)
            values[row, name] = (value, theirs[row])
    return CheckReport(spec, problem.batch, primary, tuple(references), tuple(ours), cells,
                       values, where, constants={"1/batch": 1 / problem.batch},
                       replay="bpnet check --all --only derivatives")


def derivative_cases(impls: Mapping[str, ModuleType]
                     ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
    """jvp and per-example gradients on hand-picked networks, against torch and JAX."""
    for spec in DERIVATIVE_CASES:
        p = Problem(spec, BATCH, 9, labels=spec.loss == "softmax_cross_entropy")
        yield "derivatives", f"jvp, per-example {spec.layer_sizes}", repr(p), partial(
            derivatives_report, p, impls)


SECOND_ORDER_CASES = (
    NetworkSpec((4, 8, 6, 3), ("gelu", "tanh", "identity"), "mse", "mean", weight_decay=0.1),
    NetworkSpec((5, 9, 4), ("elu:0.5", "softmax"), "softmax_cross_entropy", "mean"),
    NetworkSpec((3, 6, 5, 2), ("softplus", "silu", "sigmoid"), "bce", "sum"),
    NetworkSpec((3, 7, 3), ("celu:2", "softmax"), "half_mse", "mean"),
    NetworkSpec((4, 6, 2), ("selu", "sigmoid"), "bce_with_logits", "mean"),
    seed.BLOG_SPEC,
)
"""Every activation's and loss's second derivative at least once (relu and leaky_relu's
f'' = 0 is identity's)."""

R_EQUATIONS = {
    "R{z}": "R{z} = R{a_prev} @ W + a_prev @ W_dot + b_dot",
    "R{a}": "R{a} = f'(z) * R{z}",
    "R{d_a}": "R{d_a} = R{d_z_next} @ W_next.T + d_z_next @ W_dot_next.T  (output: H_loss R{a})",
    "R{d_z}": "R{d_z} = f'(z) * R{d_a} + second(z, a, d_a, R{z})  (fused output: H_loss R{z})",
    "R{d_W}": "R{d_W} = R{a_prev}.T @ d_z + a_prev.T @ R{d_z} + lambda W_dot",
    "R{d_b}": "R{d_b} = R{d_z}.sum(axis=0)",
}


def _r_where(spec: NetworkSpec, quantity: str, l: int) -> tuple[str, str]:
    """(equation, function) of one R-quantity: the registry's second derivative where it
    enters (R{d_z} of an activation, the output's R{d_a} or fused R{d_z} of the loss)."""
    from handwritten import derivatives

    out = l == spec.n_layers - 1
    loss = hw.LOSSES[spec.loss]
    if out and loss.second is not None and (
            (quantity == "R{d_z}" and spec.fused_output) or quantity == "R{d_a}"):
        return f"{loss.hessian}  (the loss's Hessian)", qualname(loss.second)
    entry = activation(spec.activations[l])
    if quantity == "R{d_z}" and entry.second is not None:
        return f"R{{d_z}} = f'(z) * R{{d_a}} + {entry.second_derivative}", qualname(entry.second)
    function = (derivatives.tangent_forward if quantity in ("R{z}", "R{a}")
                else derivatives.r_backward)
    return R_EQUATIONS[quantity], qualname(function)


def second_order_report(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType]
                        ) -> CheckReport:
    """handwritten.derivatives' R-operator trace (every R-quantity, in the order the passes
    form them), hvp and gnvp along a drawn direction, against torch's double backward and
    JAX's forward over reverse."""
    import importlib

    from bpnet.compare import compare_params, compare_r_trace
    from handwritten import derivatives

    primary, *references = impls
    spec, params, x, y = problem.spec, problem.params, problem.x, problem.y
    v = make_params(spec, np.random.default_rng(problem.seed + 1), np.float64)
    ours_trace = derivatives.r_trace(spec, params, x, y, v)
    ours_gn = derivatives.gnvp(spec, params, x, y, v)
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    rows: list[str] = []
    where: dict[str, tuple[str, str]] = {}
    for name in references:
        ref = importlib.import_module(f"{name}.derivatives")
        theirs_trace = ref.r_trace(spec, params, x, y, v)
        theirs_gn = ref.gnvp(spec, params, x, y, v)
        reports = [*compare_r_trace(ours_trace, theirs_trace, rtol=RTOL64,
                                    atol_scale=ATOL64_SCALE),
                   *(dataclasses.replace(r, quantity=f"gnvp {r.quantity}")
                     for r in compare_params(ours_gn, theirs_gn, rtol=RTOL64,
                                             atol_scale=ATOL64_SCALE))]
        for r in reports:
            row = f"layer {r.layer} {r.quantity}"
            if row not in where:
                rows.append(row)
                if r.quantity.startswith("gnvp"):
                    where[row] = ("J^T H_loss J v: R-backward without the loss-gradient terms",
                                  qualname(derivatives.gnvp))
                else:
                    where[row] = _r_where(spec, r.quantity, r.layer or 0)
            cells[row, name] = r
            key, l = r.quantity.removeprefix("gnvp "), r.layer or 0
            values[row, name] = ((ours_gn[l][key], theirs_gn[l][key])
                                 if r.quantity.startswith("gnvp")
                                 else (ours_trace[l][key], theirs_trace[l][key]))
    return CheckReport(spec, problem.batch, primary, tuple(references), tuple(rows), cells,
                       values, where, constants={"1/batch": 1 / problem.batch},
                       replay="bpnet check --all --only second")


def second_order_cases(impls: Mapping[str, ModuleType]
                       ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
    """The R-operator trace and the Gauss-Newton product on hand-picked networks."""
    for spec in SECOND_ORDER_CASES:
        p = Problem(spec, BATCH, 9, labels=spec.loss == "softmax_cross_entropy")
        yield "second order", f"hvp, gnvp {spec.layer_sizes} {spec.loss}", repr(p), partial(
            second_order_report, p, impls)


# hidden blocks: batch norm, layer norm, dropout, residual ---------------------------------

BLOCK_CASES = (
    NetworkSpec((4, 6, 6, 3), ("tanh", "silu", "identity"), "mse", "mean",
                norms=("batch", "layer"), dropout=(0.0, 0.3), residual=(False, True)),
    NetworkSpec((5, 8, 8, 8, 3), ("gelu", "relu", "elu", "softmax"), "softmax_cross_entropy",
                "mean", weight_decay=0.1, norms=("layer", "batch", None),
                dropout=(0.2, 0.0, 0.5), residual=(False, True, True)),
    NetworkSpec((3, 6, 6, 2), ("sigmoid", "softplus", "sigmoid"), "bce", "sum",
                norms=("batch", "batch"), dropout=(0.0, 0.0), residual=(False, True)),
)
"""Every block part (both norms, dropout, skips) with smooth and kinked activations."""

BLOCK_EQUATIONS = {
    "mu": ("mu = mean(z) along the norm's axis", "handwritten.blocks.normalize"),
    "var": ("var = mean((z - mu)**2), biased", "handwritten.blocks.normalize"),
    "x_hat": ("x_hat = (z - mu) / sqrt(var + eps)", "handwritten.blocks.normalize"),
    "n": ("n = gamma * x_hat + beta", "handwritten.blocks.normalize"),
    "h": ("h = f(n)", "handwritten.network.hidden_block"),
    "d_h": ("d_h = d_a * m / (1 - p)", "handwritten.blocks.dropout_backward"),
    "d_n": ("d_n = f'(n) * d_h", "handwritten.network.hidden_block_backward"),
    "d_x_hat": ("d_x_hat = d_n * gamma", "handwritten.blocks.normalize_backward"),
    "d_gamma": ("d_gamma = sum(d_n * x_hat, axis=0)", "handwritten.blocks.normalize_backward"),
    "d_beta": ("d_beta = sum(d_n, axis=0)", "handwritten.blocks.normalize_backward"),
}
"""Each block quantity's function; its equation is written out for the layer (with its
mask, its p, its skip) by bpnet.explain.block_equations where that has it."""


def blocks_report(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType],
                  replay: str = "bpnet check --all --only blocks") -> CheckReport:
    """Every trace quantity of a spec with hidden blocks against torch and JAX (each also
    within SPREAD_FACTOR of the two references' own difference: bpnet.tolerances).
    ``replay``: the command a failure prints ("": ``bpnet check --replay`` of the case)."""
    from bpnet.compare import compare_trace

    primary, *references = impls
    spec, args = problem.spec, (problem.params, problem.x, problem.y, problem.masks)
    theirs = {name: impls[name].trace(spec, *args) for name in references}
    try:
        ours = hw.trace(spec, *args)
    except Exception as error:
        # the forward alone, in derivation order, names a forward quantity that is wrong
        # before the backward that stumbles on it
        raise RaisedInCase(_forward_report(problem, impls, theirs), error) from error
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    rows: list[str] = []
    where: dict[str, tuple[str, str]] = {}
    for name in references:
        spread = next((theirs[o] for o in references if o != name), None)
        for r in compare_trace(ours, theirs[name], rtol=RTOL64, atol_scale=ATOL64_SCALE,
                               spread=spread):
            row = r.label
            if row not in rows:
                rows.append(row)
            cells[row, name] = r
            if r.layer is not None:
                values[row, name] = (ours.layers[r.layer][r.quantity],
                                     theirs[name].layers[r.layer][r.quantity])
                if r.quantity in BLOCK_EQUATIONS:
                    equation, function = BLOCK_EQUATIONS[r.quantity]
                    written = block_equations(spec, r.layer).get(r.quantity)
                    where[row] = (written or equation, function)
    return CheckReport(spec, problem.batch, primary, tuple(references), tuple(rows), cells,
                       values, where, constants={"1/batch": 1 / problem.batch},
                       replay=replay)


def _forward_report(problem: Problem[NetworkSpec], impls: Mapping[str, ModuleType],
                    theirs: Mapping[str, Any]) -> CheckReport | None:
    """The forward quantities of a block case (handwritten.network.forward) against the
    references' traces; None when the forward raises too."""
    from bpnet.compare import compare_layers
    from handwritten import network
    from handwritten.spec import FORWARD_QUANTITIES

    primary, *references = impls
    spec = problem.spec
    try:
        _, cache = network.forward(spec, problem.params, problem.x, problem.masks)
    except Exception:
        return None
    rows: list[str] = []
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    where: dict[str, tuple[str, str]] = {}
    for name in references:
        for r in compare_layers(cache, theirs[name].layers, FORWARD_QUANTITIES, rtol=RTOL64,
                                atol_scale=ATOL64_SCALE):
            if r.label not in rows:
                rows.append(r.label)
            cells[r.label, name] = r
            if r.layer is not None and not r.problem:
                values[r.label, name] = (cache[r.layer][r.quantity],
                                         theirs[name].layers[r.layer][r.quantity])
            if r.quantity in BLOCK_EQUATIONS and r.layer is not None:
                equation, function = BLOCK_EQUATIONS[r.quantity]
                where[r.label] = (block_equations(spec, r.layer).get(r.quantity, equation),
                                  function)
    return CheckReport(spec, problem.batch, primary, tuple(references), tuple(rows), cells,
                       values, where, constants={"1/batch": 1 / problem.batch},
                       replay="bpnet check --all --only blocks")


def running_statistics_report(impls: Mapping[str, ModuleType]) -> CheckReport:
    """handwritten.blocks.running_update against the update torch's F.batch_norm makes of
    its running_mean and running_var in training mode (momentum 0.1, unbiased variance),
    over three batches in a row (torch alone: JAX has no batch-norm primitive)."""
    import torch
    import torch.nn.functional as F

    from handwritten import blocks
    from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS

    primary = next(iter(impls))
    rng = np.random.default_rng(5)
    mean: Any = np.zeros(6)
    var: Any = np.ones(6)
    t_mean, t_var = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    for _ in range(3):
        z = rng.normal(size=(BATCH, 6)) * 2 + 1
        stats = blocks.normalize("batch", z, np.ones(6), np.zeros(6))
        mean, var = blocks.running_update(mean, var, stats["mu"], stats["var"], BATCH)
        F.batch_norm(torch.from_numpy(z), t_mean, t_var, training=True,
                     momentum=BATCH_NORM_MOMENTUM, eps=NORM_EPS)
    rows = ("running_mean", "running_var")
    ours, theirs = dict(zip(rows, (mean, var))), dict(zip(rows, (t_mean.numpy(), t_var.numpy())))
    cells = {(row, "reference_torch"): compare_leaf(ours[row], theirs[row], row, None,
                                                    rtol=RTOL64, atol_scale=ATOL64_SCALE)
             for row in rows}
    values = {(row, "reference_torch"): (ours[row], theirs[row]) for row in rows}
    where = {row: ("running = (1 - 0.1) running + 0.1 (mu, var N / (N - 1))",
                   qualname(blocks.running_update)) for row in rows}
    spec = NetworkSpec((6, 6, 1), ("tanh", "identity"), norms=("batch",))
    return CheckReport(spec, BATCH, primary, ("reference_torch",), rows, cells, values, where,
                       replay="bpnet check --all --only blocks")


BLOCK_TRAINING_EPOCHS = 4
BLOCK_TRAINING_BATCH = 6


def evaluation_report(impls: Mapping[str, ModuleType]) -> CheckReport:
    """predict in evaluation mode (no dropout, batch norm normalized with given running
    statistics: mean ~ N(0, 1), var ~ U(0.5, 2)) on every BLOCK_CASES spec with batch norm,
    against each reference's predict."""
    cases = []
    for i, spec in enumerate(s for s in BLOCK_CASES if "batch" in s.norms):
        rng = np.random.default_rng(12 + i)
        running: hw.Running = [{"mean": rng.normal(size=n), "var": rng.uniform(0.5, 2.0, n)}
                               if spec.norm(l) == "batch" else {}
                               for l, n in enumerate(spec.layer_sizes[1:])]
        cases.append((f"predict {spec.layer_sizes}", spec, running))
    return _predict_report(impls, cases, (
        "batch norm in evaluation mode: x_hat = (z - running_mean) / sqrt(running_var + eps); "
        "no dropout", "handwritten.network.hidden_block -> handwritten.blocks.normalize_running"),
        "bpnet check --all --only blocks")


def _predict_report(impls: Mapping[str, ModuleType],
                    cases: Sequence[tuple[str, NetworkSpec | Sequential, hw.Running]],
                    where: tuple[str, str], replay: str) -> CheckReport:
    """handwritten's predict against each reference's, one row a (name, spec, running)."""
    primary, *references = impls
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    for row, spec, running in cases:
        p = Problem(spec, BATCH, 12)
        ours = hw.predict(spec, p.params, p.x, running)
        for name in references:
            theirs = impls[name].predict(spec, p.params, p.x, running)
            cells[row, name] = dataclasses.replace(compare_leaf(
                ours, theirs, row, None, rtol=RTOL64, atol_scale=ATOL64_SCALE), quantity=row)
            values[row, name] = (ours, theirs)
    rows = tuple(row for row, _, _ in cases)
    return CheckReport(cases[0][1], BATCH, primary, tuple(references), rows, cells, values,
                       dict.fromkeys(rows, where), replay=replay)


def block_training_report(impls: Mapping[str, ModuleType]) -> CheckReport:
    """BLOCK_CASES[0] (batch norm, layer norm, dropout, a skip) trained with momentum in
    mini-batches by every implementation, the dropout masks from Generators seeded alike:
    the final params, batch norm's running statistics (History.running) and predict's
    evaluation-mode output.  Tolerance: a trajectory's rounding floor trajectory_rtol(k)
    after k steps, relative to the largest param (normwise: a batch-norm layer's b is 0 up
    to rounding noise, held on the scale of the params, as bpnet compare holds it)."""
    from bpnet.tolerances import trajectory_rtol

    primary, *references = impls
    spec = BLOCK_CASES[0]
    p = Problem(spec, 4 * BLOCK_TRAINING_BATCH, 11)
    opt = hw.OptimizerSpec("momentum", 0.05, {"momentum": 0.9})
    kwargs = {"epochs": BLOCK_TRAINING_EPOCHS, "batch_size": BLOCK_TRAINING_BATCH,
              "batch_order": hw.Shuffle(3)}
    runs = {name: impl.train(spec, p.params, p.x, p.y, opt, rng=np.random.default_rng(4),
                             **kwargs) for name, impl in impls.items()}
    steps = len(runs[primary].losses)
    rtol = trajectory_rtol(steps)

    def quantities(impl: ModuleType, h: hw.History) -> dict[str, Any]:
        out = {f"layer {l} {k} after {steps} steps": v for l, layer in enumerate(h.final_params)
               for k, v in layer.items()}
        out |= {f"layer {l} running {k}": v for l, stats in enumerate(h.running)
                for k, v in stats.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hw.TrainingWarning)
            out["predict (evaluation mode)"] = impl.predict(spec, h.final_params, p.x, h.running)
        return out

    table = {name: quantities(impl, runs[name]) for name, impl in impls.items()}
    ours = table[primary]
    scale = max(float(np.abs(v).max()) for k, v in ours.items() if "after" in k)
    cells, values, where = {}, {}, {}
    for name in references:
        for row, value in ours.items():
            atol = rtol * scale if "after" in row else 0.0
            cells[row, name] = compare_leaf(value, table[name][row], row, None, rtol=rtol,
                                            atol_scale=ATOL64_SCALE, atol=atol)
            values[row, name] = (value, table[name][row])
    for row in ours:
        where[row] = (("running = 0.9 running + 0.1 (mu, var N / (N - 1)), each step",
                       "handwritten.training.update_running") if "running" in row else
                      ("x_hat = (z - running_mean) / sqrt(running_var + eps)",
                       "handwritten.blocks.normalize_running") if "predict" in row else
                      ("theta <- theta + Delta theta, each step", "handwritten.training.train"))
    return CheckReport(spec, BLOCK_TRAINING_BATCH, primary, tuple(references), tuple(ours),
                       cells, values, where, replay="bpnet check --all --only blocks")


def block_cases(impls: Mapping[str, ModuleType]
                ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
    """Hidden blocks on hand-picked networks: every trace quantity against torch and JAX;
    batch norm's running statistics against torch's F.batch_norm (training comes last:
    ``training_cases``)."""
    for spec in BLOCK_CASES:
        p = Problem(spec, BATCH, 9, labels=spec.loss == "softmax_cross_entropy")
        parts = sorted({n for n in spec.norms if n} | ({"dropout"} if any(spec.dropout) else
                                                      set()) | ({"skip"} if any(spec.residual)
                                                                else set()))
        yield "blocks", f"{spec.layer_sizes} {', '.join(parts)}", repr(p), partial(
            blocks_report, p, impls)
    if "reference_torch" in impls:
        yield "blocks", "running statistics", "three batches through F.batch_norm", partial(
            running_statistics_report, impls)
    yield "blocks", "evaluation mode (predict)", ("the batch-norm specs with running "
                                                  "statistics drawn"), partial(
        evaluation_report, impls)


LAYER_CASES = (
    Sequential([LayerNorm(4), Dense(4, 5), Activation("tanh"), Activation("gelu"), Dropout(0.3),
                Dense(5, 3), Activation("softmax")], "softmax_cross_entropy"),
    Sequential([Dense(3, 4), BatchNorm1d(4), Residual([Dense(4, 4), Activation("relu"),
                                                       LayerNorm(4)]),
                Activation("sigmoid"), Dense(4, 2), Activation("sigmoid")], "bce_with_logits",
               weight_decay=0.1),
    Sequential([Dense(3, 4), Activation("elu"), Residual([Dropout(0.5), Dense(4, 4),
                                                          Activation("tanh")]),
                Dense(4, 2)], "mse", "sum"),
)
"""Networks in orders the MLP spec cannot say: a norm first, two activations in a row,
dropout inside a skip, a Residual around a Dense, an activation and a norm."""


def layers_report(problem: Problem[Sequential], impls: Mapping[str, ModuleType],
                  group: str = "layers") -> CheckReport:
    """Every quantity of every node of a Sequential against torch and JAX, named by the
    node's path, with the layer's equation and the method that forms it."""
    from bpnet.compare import compare_trace
    from bpnet.equations import node_equation

    primary, *references = impls
    seq, args = problem.spec, (problem.params, problem.x, problem.y, problem.masks)
    theirs = {name: impls[name].trace(seq, *args) for name in references}
    ours = impls[primary].trace(seq, *args)
    # loss_and_grads is a path of its own: its gradients in place of the trace's, judged as
    # the trace's are (a batch sum on its terms' scale), rows marked "(loss_and_grads)"
    loss, grads = impls[primary].loss_and_grads(seq, *args)
    mixed = hw.Trace(loss, [{**layer, **{f"d_{k}": g for k, g in node.items()}}
                            for layer, node in zip(ours.layers, grads)])
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    rows: list[str] = []
    where: dict[str, tuple[str, str]] = {}
    for name in references:
        spread = next((theirs[o] for o in references if o != name), None)
        found = compare_trace(ours, theirs[name], rtol=RTOL64, atol_scale=ATOL64_SCALE,
                              spread=spread)
        found += [replace(r, quantity=f"{r.quantity} (loss_and_grads)") for r in compare_trace(
            mixed, theirs[name], rtol=RTOL64, atol_scale=ATOL64_SCALE, spread=spread)
            if r.layer is None or r.quantity in ("d_W", "d_b", "d_gamma", "d_beta")]
        for r in found:
            quantity, l = r.quantity.split(" ")[0], r.layer
            if l is not None:
                r = replace(r, path=seq.paths[l])
                source = mixed if r.quantity.endswith("(loss_and_grads)") else ours
                if not r.problem:
                    values[r.label, name] = (source.layers[l][quantity],
                                             theirs[name].layers[l][quantity])
            if r.label not in rows:
                rows.append(r.label)
            cells[r.label, name] = r
            equation = node_equation(seq, r.label)
            if equation is not None:
                where[r.label] = equation
    return CheckReport(seq, problem.batch, primary, tuple(references), tuple(rows), cells,
                       values, where, constants={"1/batch": 1 / problem.batch},
                       replay=f"bpnet check --all --only {group}")


def _drawn_running(seq: Sequential, rng: np.random.Generator) -> hw.Running:
    """Running statistics as training leaves them, one per feature (BatchNorm1d) or channel
    (BatchNorm2d): mean ~ N(0, 1), var ~ U(0.5, 2); {} on every other node."""
    return [{"mean": rng.normal(size=shape[:1]), "var": rng.uniform(0.5, 2.0, shape[:1])}
            if isinstance(layer, BatchNorm1d) else {}
            for (_, layer), shape in zip(seq.nodes, seq.in_shapes)]


def layers_evaluation_report(impls: Mapping[str, ModuleType],
                             cases: Sequence[Sequential] = LAYER_CASES, group: str = "layers"
                             ) -> CheckReport:
    """predict in evaluation mode on every one of ``cases`` (no dropout; batch norm
    normalized with drawn running statistics, ``_drawn_running``), against each
    reference's predict."""
    found: list[tuple[str, NetworkSpec | Sequential, hw.Running]] = [
        (f"predict, {group} case {i}", seq, _drawn_running(seq, np.random.default_rng(12 + i)))
        for i, seq in enumerate(cases)]
    return _predict_report(impls, found, (
        "evaluation mode: a batch norm's x_hat = (h - running_mean) / sqrt(running_var + eps); "
        "Dropout passes h", "handwritten.layers.norm.BatchNorm1d.forward"),
        f"bpnet check --all --only {group}")


def layers_derivatives_report(impls: Mapping[str, ModuleType],
                              cases: Sequence[Sequential] = LAYER_CASES, group: str = "layers"
                              ) -> CheckReport:
    """Forward mode, per-example gradients and second order of every LAYER_CASES
    Sequential: jvp along a drawn params-shaped direction, (where no BatchNorm1d couples the
    batch) each node's per-example gradients, and hvp and gnvp along the same direction,
    against torch.func and JAX."""
    import importlib

    from handwritten import derivatives

    primary, *references = impls
    rows: list[str] = []
    cells: dict[tuple[str, str], LeafReport] = {}
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    where: dict[str, tuple[str, str]] = {}

    def add(row: str, ours: Any, theirs: Any, name: str, found: tuple[str, str],
            atol: float = 0.0) -> None:
        if row not in rows:
            rows.append(row)
        cells[row, name] = dataclasses.replace(compare_leaf(
            ours, theirs, row, None, rtol=RTOL64, atol_scale=ATOL64_SCALE, atol=atol),
            quantity=row)
        values[row, name] = (ours, theirs)
        where[row] = found

    for i, seq in enumerate(cases):
        p = Problem(seq, BATCH, 13, labels=seq.loss == "softmax_cross_entropy")
        v = make_params(seq, np.random.default_rng(13 + i), np.float64)
        _, ours_dot = derivatives.jvp(seq, p.params, p.x, v, p.masks)
        per = None if seq.has_batch_norm else derivatives.per_example_grads(
            seq, p.params, p.x, p.y, p.masks)
        for name in references:
            module = importlib.import_module(f"{name}.derivatives")
            _, their_dot = module.jvp(seq, p.params, p.x, v, p.masks)
            add(f"jvp output tangent, {group} case {i}", ours_dot, their_dot, name,
                ("out_dot: each layer's tangent, folded from the input up",
                 "handwritten.layers.fold.jvp"))
            if per is not None:
                theirs = module.per_example_grads(seq, p.params, p.x, p.y, p.masks)
                for (path, layer), mine, other in zip(seq.nodes, per, theirs):
                    for key in mine:
                        add(f"per-example d_{key}, {group} case {i}, layer {path}", mine[key],
                            other[key], name, (f"{type(layer).__name__}'s sample-i gradient",
                                               f"{type(layer).__module__}."
                                               f"{type(layer).__qualname__}.per_example"))
            for product in ("hvp", "gnvp"):
                mine_all = getattr(derivatives, product)(seq, p.params, p.x, p.y, v, p.masks)
                theirs_all = getattr(module, product)(seq, p.params, p.x, p.y, v, p.masks)
                # an entry of H v is a sum over the batch and the layers above; where it is
                # 0 in exact arithmetic (a bias before a batch norm) it is the rounding of
                # its terms, so each is allowed RTOL64 of the product's own largest entry
                scale = max(float(np.abs(w).max(initial=0.0)) for node in theirs_all
                            for w in node.values())
                for path, mine, other in zip(seq.paths, mine_all, theirs_all):
                    for key in mine:
                        add(f"{product} ({'H' if product == 'hvp' else 'G'} v)_{key}, {group} "
                            f"case {i}, layer {path}", mine[key], other[key], name,
                            ("R{d_" + key + "}: each layer's r_backward, folded back beside "
                             "its backward", "handwritten.layers.fold.second_order"),
                            atol=RTOL64 * scale)
    return CheckReport(cases[0], BATCH, primary, tuple(references), tuple(rows), cells,
                       values, where, replay=f"bpnet check --all --only {group}")


def layers_state_report(impls: Mapping[str, ModuleType],
                        cases: Sequence[Sequential] = LAYER_CASES, group: str = "layers"
                        ) -> CheckReport:
    """Each batch norm node's state after three training-mode batches through the first of
    ``cases`` with one (``fold.update_state``: each layer's ``update_state``) against
    the running buffers torch's F.batch_norm updates from the same node inputs."""
    import torch
    import torch.nn.functional as F

    from handwritten.layers import fold
    from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS

    primary = next(iter(impls))
    seq = next(s for s in cases if s.has_batch_norm)
    state = hw.init_running(seq)
    buffers = {i: (torch.zeros(shape[0], dtype=torch.float64),   # per feature or channel
                   torch.ones(shape[0], dtype=torch.float64))
               for i, ((_, layer), shape) in enumerate(zip(seq.nodes, seq.in_shapes))
               if isinstance(layer, BatchNorm1d)}
    for k in range(3):
        p = Problem(seq, BATCH, 20 + k)
        _, caches = fold.forward(seq, p.params, p.x, fold.Pass(masks=p.masks))
        state = fold.update_state(seq, state, caches)
        h = [p.x] + [c[layer.OUT] for (_, layer), c in zip(seq.nodes, caches)]
        for i, (mean, var) in buffers.items():         # node i's input: node i - 1's output
            F.batch_norm(torch.from_numpy(h[i]), mean, var, training=True,
                         momentum=BATCH_NORM_MOMENTUM, eps=NORM_EPS)
    rows, cells, values, where = [], {}, {}, {}
    for i, (mean, var) in buffers.items():
        for key, theirs in (("mean", mean.numpy()), ("var", var.numpy())):
            row = f"running_{key}, layer {seq.paths[i]}"
            rows.append(row)
            cells[row, "reference_torch"] = compare_leaf(state[i][key], theirs, row, None,
                                                         rtol=RTOL64, atol_scale=ATOL64_SCALE)
            values[row, "reference_torch"] = (state[i][key], theirs)
            where[row] = ("running = (1 - 0.1) running + 0.1 (mu, var N / (N - 1))",
                          f"{type(seq.nodes[i][1]).__module__}."
                          f"{type(seq.nodes[i][1]).__qualname__}.update_state")
    return CheckReport(seq, BATCH, primary, ("reference_torch",), tuple(rows), cells, values,
                       where, replay=f"bpnet check --all --only {group}")


def layer_cases(impls: Mapping[str, ModuleType], cases: Sequence[Sequential] = LAYER_CASES,
                group: str = "layers"
                ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
    """Sequentials in non-MLP orders (``group`` "conv": convolutional ones): every quantity
    of every layer against torch and JAX, evaluation mode, batch norm's state, forward mode,
    per-example gradients and second order."""
    for seq in cases:
        p = Problem(seq, BATCH, 9, labels=seq.loss == "softmax_cross_entropy")
        kinds = ", ".join(dict.fromkeys(type(layer).__name__ for _, layer in seq.nodes))
        yield group, kinds, repr(p), partial(layers_report, p, impls, group)
    yield group, "evaluation mode (predict)", f"the {group} cases with running statistics " \
        "drawn", partial(layers_evaluation_report, impls, cases, group)
    if "reference_torch" in impls:
        yield group, "running statistics (state)", "three batches, F.batch_norm's buffers", \
            partial(layers_state_report, impls, cases, group)
    yield group, "forward mode, per-example gradients, hvp, gnvp", f"the {group} cases, a " \
        "drawn direction", partial(layers_derivatives_report, impls, cases, group)


CONV_CASES = (
    Sequential([Conv2d(2, 4, 3, stride=2, padding=1), BatchNorm2d(4), Activation("relu"),
                MaxPool2d(2, stride=1), Conv2d(4, 4, 3, padding="same", dilation=2, groups=2),
                AvgPool2d(3, stride=2, padding=1, count_include_pad=False), Flatten(),
                Dense(8, 3), Activation("softmax")], "softmax_cross_entropy", weight_decay=0.1,
               in_shape=(2, 7, 6)),
    Sequential([Conv1d(3, 6, 4, padding="same", groups=3, bias=False), GroupNorm(3, 6),
                Activation("tanh"),
                Dropout(0.3), Conv1d(6, 2, 2, stride=2, dilation=2), Activation("relu"),
                Flatten(), Dense(8, 2), Activation("sigmoid")], "bce_with_logits", "sum",
               in_shape=(3, 9)),
    Sequential([Residual([Conv2d(2, 2, 3, padding="same"), Activation("relu")]),
                Activation("relu"), MaxPool2d((3, 2), stride=(1, 2), padding=(1, 0)),
                AdaptiveAvgPool2d(),
                Flatten(), Dense(2, 1)], "half_mse", weight_decay=0.1, in_shape=(2, 5, 5)),
)
"""The convolution chapter's networks: a strided padded Conv2d, spatial batch norm, max
pooling after a relu (ties at its zeros), a grouped dilated 'same' Conv2d, average pooling
counting only the input's elements; a depthwise Conv1d without bias with an even 'same'
kernel, GroupNorm, a strided dilated Conv1d; a residual conv block, non-square overlapping
padded max pooling, global average pooling."""


def conv_cases(impls: Mapping[str, ModuleType]
               ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
    """The convolution chapter: CONV_CASES through every check of the layers group."""
    return layer_cases(impls, CONV_CASES, "conv")


def training_cases(impls: Mapping[str, ModuleType]
                   ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
    """Training runs, last: a mistake in any part of a step shows there too, but the cases
    before name the part."""
    yield "blocks", "training and evaluation", (
        f"{BLOCK_CASES[0]!r}, momentum, {BLOCK_TRAINING_EPOCHS} epochs of "
        f"{BLOCK_TRAINING_BATCH}"), partial(block_training_report, impls)


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


def schedule_cases(impls: Mapping[str, ModuleType]
                   ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
    """Every learning-rate schedule, step by step, against torch and optax."""
    for schedule in SCHEDULE_CASES:
        label = schedule.name + (" after a warm-up" if schedule.warmup else "")
        note = not_supported(hw.OptimizerSpec("sgd", 0.1, schedule=schedule), SCHEDULE_STEPS,
                              impls)
        yield "schedule", label, f"{schedule!r}, lr 0.1, {SCHEDULE_STEPS} steps{note}", partial(
            schedule_report, schedule, 0.1, impls)


# initialisation: the draws' statistics against the frameworks' own initialisers -----------

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


def init_cases(impls: Mapping[str, ModuleType]
               ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
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


# the blog's program ------------------------------------------------------------------------

def blog_cases(impls: Mapping[str, ModuleType]
               ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
    """seed.forward, backward, loss, update and train against each reference's general
    network on BLOG_SPEC (random non-zero biases)."""
    p = Problem(seed.BLOG_SPEC, 20, 6)

    def run() -> CheckReport:
        w1, b1, w2, b2 = seed.from_params(p.params)
        z1, a1, z2, a2 = seed.forward(p.x, w1, b1, w2, b2)
        dw1, db1, dw2, db2 = seed.backward(p.x, p.y, w1, b1, w2, b2, z1, a1, z2, a2)
        lr, epochs = 0.1, 5
        stepped = seed.update(w1, b1, w2, b2, dw1, db1, dw2, db2, lr)
        trained = seed.train(p.x, p.y, w1, b1, w2, b2, lr, epochs, verbose=False)[:4]
        ours: dict[str, tuple[Any, Callable[..., Any], str]] = {
            "z1": (z1, seed.forward, "z1 = x @ w1 + b1"),
            "a1": (a1, seed.forward, "a1 = sigmoid(z1)"),
            "z2": (z2, seed.forward, "z2 = a1 @ w2 + b2"),
            "a2": (a2, seed.forward, "a2 = sigmoid(z2)"),
            "printed loss": (seed.loss(p.y, a2), seed.loss, "mean((y - a2)**2 / 2)"),
            "dw2": (dw2, seed.backward, "dw2 = a1.T @ dz2"),
            "db2": (db2, seed.backward, "db2 = dz2.sum(axis=0)"),
            "dw1": (dw1, seed.backward, "dw1 = x.T @ dz1"),
            "db1": (db1, seed.backward, "db1 = dz1.sum(axis=0)"),
            **{f"update: {k}": (v, seed.update, f"{k} - lr * d{k}")
               for k, v in zip(("w1", "b1", "w2", "b2"), stepped)},
            **{f"train {epochs} epochs: {k}": (v, seed.train, "the update, epoch times")
               for k, v in zip(("w1", "b1", "w2", "b2"), trained)}}
        cells: dict[tuple[str, str], LeafReport] = {}
        values: dict[tuple[str, str], tuple[Any, Any]] = {}
        mean_spec = dataclasses.replace(seed.BLOG_SPEC, reduction="mean")
        opt = hw.OptimizerSpec("sgd", lr)
        for name, impl in list(impls.items())[1:]:
            t = impl.trace(seed.BLOG_SPEC, p.params, p.x, p.y)
            g = impl.loss_and_grads(seed.BLOG_SPEC, p.params, p.x, p.y)[1]
            one, _ = impl.step(opt, p.params, g, hw.init_state(opt, p.params))
            run_ = impl.train(seed.BLOG_SPEC, p.params, p.x, p.y, opt, epochs=epochs)
            theirs = {"z1": t.layers[0]["z"], "a1": t.layers[0]["a"], "z2": t.layers[1]["z"],
                      "a2": t.layers[1]["a"],
                      "printed loss": impl.trace(mean_spec, p.params, p.x, p.y).loss,
                      "dw2": t.layers[1]["d_W"], "db2": t.layers[1]["d_b"],
                      "dw1": t.layers[0]["d_W"], "db1": t.layers[0]["d_b"],
                      **{f"update: {k}": v for k, v in zip(
                          ("w1", "b1", "w2", "b2"), seed.from_params(one))},
                      **{f"train {epochs} epochs: {k}": v for k, v in zip(
                          ("w1", "b1", "w2", "b2"), seed.from_params(run_.final_params))}}
            for row, (a, _, _) in ours.items():
                cells[row, name] = dataclasses.replace(compare_leaf(
                    a, theirs[row], row, None, rtol=RTOL64, atol_scale=ATOL64_SCALE),
                    quantity=row)
                values[row, name] = (a, theirs[row])
        where = {row: (eq, qualname(fn)) for row, (_, fn, eq) in ours.items()}
        return CheckReport(seed.BLOG_SPEC, p.batch, "handwritten.seed", tuple(list(impls)[1:]),
                           tuple(ours), cells, values, where)

    yield "blog", "seed.py vs the general network", repr(p), run


# the extremes: fixed grids of special values against the float80 oracle ------------------

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


def extreme_cases(impls: Mapping[str, ModuleType]
                  ) -> Iterator[tuple[str, str, str, Callable[[], CheckReport]]]:
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


# the whole run -----------------------------------------------------------------------------

def cases(impls: Mapping[str, ModuleType], n_random: int = 12
          ) -> list[tuple[str, str, str, Callable[[], CheckReport]]]:
    """Every case of --all, in the order they run: the derivation's building blocks first,
    whole networks after them, training runs last -- so the first failure printed is the
    most local one."""
    return [*problem_cases(impls, n_random), *extreme_cases(impls), *optimizer_cases(impls),
            *schedule_cases(impls), *derivative_cases(impls), *second_order_cases(impls),
            *block_cases(impls), *layer_cases(impls), *conv_cases(impls), *init_cases(impls),
            *blog_cases(impls),
            *training_cases(impls)]


class RaisedInCase(Exception):
    """A case's computation raised: the report of what came before, and the exception."""

    def __init__(self, report: CheckReport | None, error: Exception) -> None:
        super().__init__(str(error))
        self.report, self.error = report, error


def raised_report(error: Exception, impls: Mapping[str, ModuleType],
                  before: CheckReport | None = None) -> CheckReport:
    """A failing report for a case whose computation raised (a mistake in handwritten that
    breaks a shape, say): the rows compared before it (``before``) and one row "raised",
    named by the innermost frame of handwritten (else the innermost frame) in the
    traceback -- one line of output, never a traceback."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f"{os.sep}handwritten{os.sep}" in f.filename]
    frame = (ours or frames)[-1] if frames else None
    module = ""
    if frame is not None:
        path = Path(frame.filename).with_suffix("")
        parts = path.parts[path.parts.index("handwritten"):] if ours else path.parts[-1:]
        module = ".".join(parts) + "."
    function = f"{module}{frame.name}" if frame is not None else "?"
    line = f" (line {frame.lineno}: {(frame.line or '').strip()})" if frame is not None else ""
    row = "raised"
    problem = f"{type(error).__name__}: {error}"
    primary, *references = impls
    rows = (*(before.rows if before else ()), row)
    cells = {**(before.cells if before else {}),
             (row, references[0] if references else primary): LeafReport(
                 row, None, np.inf, np.inf, 0.0, 0.0, False, problem)}
    where = {**(before.where if before else {}), row: (f"{problem}{line}", function)}
    spec = before.spec if before else NetworkSpec((1, 1), ("identity",))
    return CheckReport(spec, before.batch if before else 0, primary,
                       tuple(references) or (primary,), rows, cells,
                       before.values if before else {}, where,
                       replay=before.replay if before else "")


def check_all(impls: Mapping[str, ModuleType], *, n_random: int = 12,
              on_entry: Callable[[Entry], None] | None = None,
              only: str | None = None) -> list[Entry]:
    """Run every case (or those of the group, or the entry, named ``only``); a case that
    raises is a failing entry (``raised_report``), and the run goes on."""
    entries = []
    for group, name, case, run in cases(impls, n_random):
        if only and only not in (group, group.split(" ")[0], name, name.split(" ")[0]):
            continue
        start = time.perf_counter()
        try:
            report = run()
        except RaisedInCase as raised:
            report = raised_report(raised.error, impls, raised.report)
        except Exception as error:              # a mistake that breaks a shape, say
            report = raised_report(error, impls)
        entry = Entry(group, name, case, report, time.perf_counter() - start)
        entries.append(entry)
        if on_entry is not None:
            on_entry(entry)
    return entries


# replaying the suite's failure line --------------------------------------------------------

_CALLABLES = {"Problem": Problem, "NetworkSpec": NetworkSpec, "OptimizerSpec": hw.OptimizerSpec,
              "LRSchedule": hw.LRSchedule, "Sequential": Sequential, **hw.LAYERS}


REPLAY_LINE = "'Problem(NetworkSpec(...), batch=..., seed=...)'"


def _build(node: ast.AST, fits: Callable[[NetworkSpec, int], None] | None) -> Any:
    """A Problem(...), NetworkSpec(...), Sequential(...) (with its layers) or OptimizerSpec
    call with literal arguments, built; nothing else is evaluated (a ValueError says so)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in _CALLABLES:
        args = [_build(a, fits) for a in node.args]
        kwargs = {k.arg: _build(k.value, fits) for k in node.keywords if k.arg is not None}
        if node.func.id == "Problem" and fits is not None:
            _check_size(args, kwargs, fits)
        return _CALLABLES[node.func.id](*args, **kwargs)
    if isinstance(node, (ast.List, ast.Tuple)):   # a Sequential's layers, a Residual's
        items = [_build(item, fits) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"--replay accepts only Problem(...), NetworkSpec(...), "
                         f"Sequential(...) with its layers, and literal values; found "
                         f"{ast.unparse(node)!r}") from None


def _parse(text: str, option: str, line: str) -> ast.expr:
    if not text.strip():
        raise ValueError(f"{option} is empty; give {line}")
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"{option} expects {line}; it does not parse: {error.msg}") from None
    except (RecursionError, MemoryError):       # "-" * 3000 + "1" and the like
        raise ValueError(f"{option} nests too deeply to parse; give {line}") from None


def parse_problem(text: str, fits: Callable[[NetworkSpec, int], None] | None = None
                  ) -> Problem[Any]:
    """The ``Problem(...)`` line a failing property prints, back as the Problem.

    Only the calls Problem, NetworkSpec, Sequential (and its layers) and OptimizerSpec with
    literal arguments are accepted (nothing is evaluated); anything else is a ValueError
    that says so.  ``fits(spec, batch)`` runs before a Problem draws its arrays: it raises
    ValueError for a case too large for memory.
    """
    tree = _parse(text, "--replay", f"the suite's line {REPLAY_LINE}")
    try:
        problem = _build(tree, fits)
    except (RecursionError, MemoryError):
        raise ValueError(f"--replay nests too deeply to read; give the suite's line "
                         f"{REPLAY_LINE}") from None
    if not isinstance(problem, Problem):
        raise ValueError(f"--replay expects a Problem(...) line, got {type(problem).__name__}")
    return problem


def parse_network(text: str) -> Sequential:
    """``--network``: a ``Sequential([...], loss=..., ...)`` as its repr prints it, built
    from literal arguments only (as ``--replay``)."""
    line = "a Sequential([...]) as its repr prints it"
    try:
        network = _build(_parse(text, "--network", line), None)
    except (RecursionError, MemoryError):
        raise ValueError(f"--network nests too deeply to read; give {line}") from None
    except ValueError as error:
        raise ValueError(str(error).replace("--replay", "--network")) from None
    if not isinstance(network, Sequential):
        raise ValueError(f"--network expects {line}, got {type(network).__name__}")
    return network


def _check_size(args: list[Any], kwargs: dict[str, Any],
                fits: Callable[[NetworkSpec, int], None]) -> None:
    """``fits(spec, batch)`` for the arguments of a Problem(...) call, where they are a
    NetworkSpec and a valid batch (else Problem itself refuses them)."""
    try:
        given = inspect.signature(Problem).bind(*args, **kwargs).arguments
    except TypeError:
        return
    spec, batch = given.get("spec"), given.get("batch")
    if isinstance(spec, NetworkSpec) and type(batch) is int and batch >= 1:
        fits(spec, batch)
