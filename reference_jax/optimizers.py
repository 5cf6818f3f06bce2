"""optax, configured to handwritten's optimizer specs, and one step from a given state.

    sgd       optax.sgd(lr)
    momentum  optax.sgd(lr, momentum=mu)
    nesterov  optax.sgd(lr, momentum=mu, nesterov=True)
    adam      optax.adam(lr, b1, b2, eps)
    adamw     optax.adamw(lr, b1, b2, eps, weight_decay)
    rmsprop   optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False, centered,
                            momentum=mu or None)
    adagrad   optax.adagrad(lr / (1 + count * lr_decay), initial_accumulator_value, eps=0)

each behind ``optax.chain`` of what torch does to the gradient first:
``optax.clip(clip_value)``, ``optax.scale(-1.0)`` (maximize) and
``optax.add_decayed_weights(weight_decay)`` (torch's coupled weight decay; adamw's
is its own, decoupled).  The learning rate is the optax schedule of
``reference_jax.schedules``.

Where optax and torch differ in form but not in value:

- optax's adam divides by sqrt(v / (1 - beta2**t)) + eps, torch by
  sqrt(v) / sqrt(1 - beta2**t) + eps: the same number, rounded differently.
- optax's adamw subtracts lr * weight_decay * theta along with the adam update;
  torch multiplies theta by (1 - lr * weight_decay) first.  Both decay the
  *old* theta, so the results agree up to rounding.
- optax's rmsprop puts eps inside the square root by default; eps_in_sqrt=False
  gives torch's g / (sqrt(v) + eps).  Its default decay is 0.9; torch's alpha
  is 0.99, and handwritten passes its own value explicitly.  Its momentum trace
  follows the learning rate (trace = -lr * b with torch's b), torch's precedes it.

Where they differ in value, ``UNSUPPORTED`` says how, and reference_jax refuses
the spec (``unsupported`` names the reason; bpnet then checks against torch alone):
dampening, amsgrad, adagrad's eps, clip_norm, rmsprop's momentum under a changing
learning rate, and the schedules of ``reference_jax.schedules.unsupported``.

handwritten's state names map to optax's: momentum "b" -> TraceState.trace,
adam "m"/"v"/"t" -> ScaleByAdamState.mu/nu/count, rmsprop "v"/"gbar" ->
ScaleByRmsState.nu or ScaleByRStdDevState.nu/mu, adagrad "s" ->
ScaleByRssState.sum_of_squares, and every count (schedules too) -> "t".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import optax

from handwritten import checks
from handwritten.checks import counterpart
from handwritten.spec import FLAGS, OptimizerSpec, Params, State
from reference_jax import schedules
from reference_jax.network import from_jax, to_jax
from reference_jax.precision import float64

UNSUPPORTED = {
    "dampening": "optax.sgd's momentum trace has no dampening (b <- mu b + g)",
    "amsgrad": ("optax.amsgrad keeps the maximum of the bias-corrected second moments "
                "v / (1 - beta2**t); torch the maximum of v, corrected after"),
    "adagrad eps": ("optax.adagrad adds eps inside the square root, g / sqrt(s + eps); torch "
                    "outside, g / (sqrt(s) + eps): the same only at eps = 0"),
    "clip_norm": ("optax.clip_by_global_norm scales by clip_norm / n, torch's "
                  "clip_grad_norm_ by clip_norm / (n + 1e-6)"),
    "rmsprop momentum": ("optax's rmsprop applies the learning rate before its momentum "
                         "trace, torch after: the same only at a constant, non-zero lr"),
}
"""The options optax does not have as torch has them, and how they differ."""


def unsupported(optimizer: OptimizerSpec, steps: int) -> str | None:
    """Why optax cannot take the first ``steps`` steps of this spec as torch does, or None."""
    h = optimizer.hyperparams
    if h.get("dampening", 0.0) != 0.0:
        return UNSUPPORTED["dampening"]
    if h.get("amsgrad"):
        return UNSUPPORTED["amsgrad"]
    if optimizer.name == "adagrad" and h["eps"] != 0.0:
        return UNSUPPORTED["adagrad eps"]
    if optimizer.clip_norm is not None:
        return UNSUPPORTED["clip_norm"]
    if optimizer.name == "rmsprop" and h["momentum"] > 0 and (
            optimizer.lr == 0 or optimizer.schedule is not None):
        return UNSUPPORTED["rmsprop momentum"]
    return schedules.unsupported(optimizer.schedule, steps)


def _rmsprop(optimizer: OptimizerSpec, lr: Any, h: dict[str, Any]) -> optax.GradientTransformation:
    momentum = h["momentum"] if optimizer.hyperparams["momentum"] > 0 else None
    return optax.rmsprop(lr, decay=h["alpha"], eps=h["eps"], eps_in_sqrt=False,
                         centered=optimizer.hyperparams["centered"], momentum=momentum)


def _adagrad(optimizer: OptimizerSpec, lr: Any, h: dict[str, Any]) -> optax.GradientTransformation:
    scheduled = lr if callable(lr) else (lambda count: lr)
    return optax.adagrad(lambda count: scheduled(count) / (1 + count * h["lr_decay"]),
                         initial_accumulator_value=h["initial_accumulator_value"], eps=0.0)


Maker = Callable[[OptimizerSpec, Any, dict[str, Any]], optax.GradientTransformation]

MAKERS: dict[str, Maker] = {
    "sgd": lambda o, lr, h: optax.sgd(lr),
    "momentum": lambda o, lr, h: optax.sgd(lr, momentum=h["momentum"]),
    "nesterov": lambda o, lr, h: optax.sgd(lr, momentum=h["momentum"], nesterov=True),
    "adam": lambda o, lr, h: optax.adam(lr, b1=h["beta1"], b2=h["beta2"], eps=h["eps"]),
    "adamw": lambda o, lr, h: optax.adamw(lr, b1=h["beta1"], b2=h["beta2"], eps=h["eps"],
                                          weight_decay=h["weight_decay"]),
    "rmsprop": _rmsprop,
    "adagrad": _adagrad,
}
"""Every handwritten optimizer by name, as the optax transformation that implements it:
(spec, lr or schedule, numeric hyperparameters) -> transformation; lr and the numbers
may be traced, the structure (flags, rmsprop's momentum or none) comes from the spec."""


def transform(optimizer: OptimizerSpec, lr: Any = None, hyper: dict[str, Any] | None = None,
              clip_value: Any = None) -> optax.GradientTransformation:
    """The whole optax recipe of a spec: clipping, maximize, coupled weight decay, the
    optimizer, the schedule.  lr, hyper's numbers and clip_value default to the spec's and
    may be traced arrays (the structure always comes from the spec)."""
    h = dict(optimizer.hyperparams) if hyper is None else hyper
    base_lr = optimizer.lr if lr is None else lr
    parts = []
    if optimizer.clip_value is not None:
        parts.append(optax.clip(optimizer.clip_value if clip_value is None else clip_value))
    if optimizer.hyperparams["maximize"]:
        parts.append(optax.scale(-1.0))
    if optimizer.name != "adamw" and optimizer.hyperparams["weight_decay"] > 0:
        parts.append(optax.add_decayed_weights(h["weight_decay"]))
    maker = counterpart(MAKERS, "optimizer", optimizer.name,
                        "reference_jax/optimizers.py (MAKERS)")
    parts.append(maker(optimizer, schedules.make(optimizer.schedule, base_lr), h))
    return optax.chain(*parts)


def make(optimizer: OptimizerSpec) -> optax.GradientTransformation:
    """The optax transformation for a handwritten OptimizerSpec (``step`` and ``train``
    first refuse what optax has not as torch has it: ``unsupported``)."""
    return transform(optimizer)


def numbers(optimizer: OptimizerSpec, dtype: Any) -> dict[str, Any]:
    """The spec's numeric hyperparameters as arrays (the flags are structure, not numbers)."""
    return {k: jnp.asarray(v, dtype=dtype) for k, v in optimizer.hyperparams.items()
            if k not in FLAGS}


def _fields(optimizer: OptimizerSpec) -> dict[str, str]:
    """optax state field -> handwritten state key, for one optimizer."""
    if optimizer.name == "rmsprop":
        return {"nu": "v", "mu": "gbar", "trace": "b", "count": "t"}
    return {"trace": "b", "mu": "m", "nu": "v", "sum_of_squares": "s", "count": "t"}


def _trace_scale(optimizer: OptimizerSpec) -> float:
    """optax's trace per handwritten b: rmsprop's trace follows the learning rate."""
    return -optimizer.lr if optimizer.name == "rmsprop" else 1.0


def _map_states(opt_state: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply fn to every optax state namedtuple in a (possibly chained) state."""
    if isinstance(opt_state, tuple) and not hasattr(opt_state, "_fields"):
        return tuple(_map_states(s, fn) for s in opt_state)
    return fn(opt_state)


def load_state(opt_state: Any, optimizer: OptimizerSpec, state: State) -> Any:
    """optax state with handwritten's buffers and step count put in."""
    fields = _fields(optimizer)
    scale = _trace_scale(optimizer)

    def value(f: str, current: Any) -> Any:
        if f == "count":
            return jnp.asarray(state["t"], current.dtype)
        tree = to_jax(state[fields[f]])
        return tree if f != "trace" or scale == 1.0 else [
            {k: scale * v for k, v in layer.items()} for layer in tree]

    def put(s: Any) -> Any:
        new = {f: value(f, getattr(s, f)) for f in getattr(s, "_fields", ())
               if f in fields and fields[f] in state}
        return s._replace(**new) if new else s
    return _map_states(opt_state, put)


def read_state(opt_state: Any, optimizer: OptimizerSpec, t: int) -> State:
    """handwritten's state from optax's."""
    fields = _fields(optimizer)
    scale = _trace_scale(optimizer)
    state: State = {"t": t}

    def get(s: Any) -> Any:
        for f in getattr(s, "_fields", ()):
            if f in fields and f != "count":
                tree = from_jax(getattr(s, f))
                if f == "trace" and scale != 1.0:
                    tree = [{k: v / scale for k, v in layer.items()} for layer in tree]
                state[fields[f]] = tree
        return s
    _map_states(opt_state, get)
    return state


@lru_cache(maxsize=64)
def _buffers(shape: OptimizerSpec) -> tuple[str, ...]:
    names: list[str] = []
    fields = _fields(shape)

    def get(s: Any) -> Any:
        names.extend(fields[f] for f in getattr(s, "_fields", ()) if f in fields and f != "count")
        return s
    _map_states(make(shape).init([{"p": jnp.zeros(1)}]), get)
    return tuple(names)


def buffers(optimizer: OptimizerSpec) -> tuple[str, ...]:
    """The buffers optax keeps for this optimizer and its options (its counts aside), by
    handwritten's names: what ``step`` expects a state to hold.  Read off optax itself (its
    state for a single number), not off handwritten's registry, which is code under test."""
    return _buffers(structure(optimizer))


def refuse(optimizer: OptimizerSpec, steps: int) -> None:
    """NotImplementedError naming the difference, when optax has not this spec as torch."""
    reason = unsupported(optimizer, steps)
    if reason is not None:
        raise NotImplementedError(f"reference_jax cannot run {optimizer!r}: {reason}")


def structure(optimizer: OptimizerSpec) -> OptimizerSpec:
    """The spec with every number that can be traced set to a placeholder: what decides
    the compiled step's shape (the name, the flags, the schedule, whether rmsprop has
    momentum and whether gradients are clipped by value)."""
    hyper = {k: v for k, v in optimizer.hyperparams.items() if k in FLAGS}
    if optimizer.name == "rmsprop":
        hyper["momentum"] = 0.5 if optimizer.hyperparams["momentum"] > 0 else 0.0
    if "weight_decay" in optimizer.hyperparams and optimizer.name != "adamw":
        hyper["weight_decay"] = 0.5 if optimizer.hyperparams["weight_decay"] > 0 else 0.0
    return dataclasses.replace(optimizer, lr=1.0, hyperparams=hyper,
                               clip_value=None if optimizer.clip_value is None else 1.0)


@lru_cache(maxsize=64)
def _compiled(shape: OptimizerSpec) -> tuple[Any, Any]:
    """The jitted init and update of one optimizer structure (``structure``): the learning
    rate, the numbers and the clipping threshold are traced arguments, so XLA compiles once
    per structure and params shape, not for every operation of every new shape."""

    @jax.jit
    def init(params: Any, lr: jax.Array, hyper: dict[str, jax.Array], clip: jax.Array) -> Any:
        return transform(shape, lr, hyper, clip).init(params)

    @jax.jit
    def update(params: Any, grads: Any, opt_state: Any, lr: jax.Array,
               hyper: dict[str, jax.Array], clip: jax.Array) -> tuple[Any, Any]:
        updates, new_state = transform(shape, lr, hyper, clip).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state

    return init, update


@float64
def step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State
         ) -> tuple[Params, State]:
    """One optax update from exactly this state; the interface of handwritten's ``step``.
    What optax has not at all is refused first: a state optax could not hold (amsgrad's
    v_max) would otherwise be refused as a wrong state."""
    checks.check_optimizer(optimizer)
    refuse(optimizer, 1)
    checks.check_step(optimizer, params, grads, state, buffers(optimizer))
    checks.check_schedule_room(optimizer, state["t"], 1)
    refuse(optimizer, state["t"] + 1)
    init, update = _compiled(structure(optimizer))
    dtype = next(v for node in params for v in node.values()).dtype   # a node may have none
    numbers_ = (jnp.asarray(optimizer.lr, dtype=dtype), numbers(optimizer, dtype),
                jnp.asarray(optimizer.clip_value or 0.0, dtype=dtype))
    jparams = to_jax(params)
    opt_state = load_state(init(jparams, *numbers_), optimizer, state)
    new_params, new_state = update(jparams, to_jax(grads), opt_state, *numbers_)
    return from_jax(new_params), read_state(new_state, optimizer, state["t"] + 1)
