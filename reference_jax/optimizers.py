"""optax, configured to handwritten's optimizer specs, and one step from a given state.

    sgd       optax.sgd(lr)
    momentum  optax.sgd(lr, momentum=mu)
    nesterov  optax.sgd(lr, momentum=mu, nesterov=True)
    adam      optax.adam(lr, b1, b2, eps)
    adamw     optax.adamw(lr, b1, b2, eps, weight_decay)
    rmsprop   optax.rmsprop(lr, decay=alpha, eps=eps, eps_in_sqrt=False)

Where optax and torch differ in form but not in value:

- optax's adam divides by sqrt(v / (1 - beta2**t)) + eps, torch by
  sqrt(v) / sqrt(1 - beta2**t) + eps: the same number, rounded differently.
- optax's adamw subtracts lr * weight_decay * theta along with the adam update;
  torch multiplies theta by (1 - lr * weight_decay) first.  Both decay the
  *old* theta, so the results agree up to rounding.
- optax's rmsprop puts eps inside the square root by default; eps_in_sqrt=False
  gives torch's g / (sqrt(v) + eps).  Its default decay is 0.9; torch's alpha
  is 0.99, and handwritten passes its own value explicitly.

handwritten's state names map to optax's: momentum "b" -> TraceState.trace,
adam "m"/"v"/"t" -> ScaleByAdamState.mu/nu/count, rmsprop "v" -> ScaleByRmsState.nu.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax

from handwritten.optimizers import check_step
from handwritten.spec import OptimizerSpec, Params, State
from reference_jax.network import from_jax, to_jax
from reference_jax.precision import float64

MAKERS: dict[str, Callable[[Any, dict[str, Any]], optax.GradientTransformation]] = {
    "sgd": lambda lr, h: optax.sgd(lr),
    "momentum": lambda lr, h: optax.sgd(lr, momentum=h["momentum"]),
    "nesterov": lambda lr, h: optax.sgd(lr, momentum=h["momentum"], nesterov=True),
    "adam": lambda lr, h: optax.adam(lr, b1=h["beta1"], b2=h["beta2"], eps=h["eps"]),
    "adamw": lambda lr, h: optax.adamw(lr, b1=h["beta1"], b2=h["beta2"], eps=h["eps"],
                                       weight_decay=h["weight_decay"]),
    "rmsprop": lambda lr, h: optax.rmsprop(lr, decay=h["alpha"], eps=h["eps"],
                                           eps_in_sqrt=False),
}
"""Every handwritten optimizer by name, as the optax transformation that implements it."""

# optax state field -> handwritten state key
_FIELDS = {"trace": "b", "mu": "m", "nu": "v", "count": "t"}


def make(optimizer: OptimizerSpec) -> optax.GradientTransformation:
    """The optax transformation for a handwritten OptimizerSpec."""
    return MAKERS[optimizer.name](optimizer.lr, dict(optimizer.hyperparams))


def _map_states(opt_state: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply fn to every optax state namedtuple in a (possibly chained) state."""
    if isinstance(opt_state, tuple) and not hasattr(opt_state, "_fields"):
        return tuple(_map_states(s, fn) for s in opt_state)
    return fn(opt_state)


def load_state(opt_state: Any, state: State) -> Any:
    """optax state with handwritten's buffers and step count put in."""
    def put(s: Any) -> Any:
        fields = {f: (jnp.asarray(state["t"], s.count.dtype) if f == "count"
                      else to_jax(state[_FIELDS[f]]))
                  for f in getattr(s, "_fields", ()) if f in _FIELDS and _FIELDS[f] in state}
        return s._replace(**fields) if fields else s
    return _map_states(opt_state, put)


def read_state(opt_state: Any, t: int) -> State:
    """handwritten's state from optax's."""
    state: State = {"t": t}

    def get(s: Any) -> Any:
        for f in getattr(s, "_fields", ()):
            if f in _FIELDS and f != "count":
                state[_FIELDS[f]] = from_jax(getattr(s, f))
        return s
    _map_states(opt_state, get)
    return state


@float64
def step(optimizer: OptimizerSpec, params: Params, grads: Params, state: State
         ) -> tuple[Params, State]:
    """One optax update from exactly this state; the interface of handwritten's ``step``."""
    check_step(optimizer, params, grads, state)
    opt = make(optimizer)
    jparams = to_jax(params)
    opt_state = load_state(opt.init(jparams), state)
    updates, new_state = opt.update(to_jax(grads), opt_state, jparams)
    return from_jax(optax.apply_updates(jparams, updates)), read_state(new_state, state["t"] + 1)
