"""Training with jax.value_and_grad and optax, over the same batches as handwritten."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from handwritten.spec import History, NetworkSpec, OptimizerSpec, Params
from handwritten.training import Schedule
from reference_jax.network import _loss, from_jax, to_jax
from reference_jax.optimizers import MAKERS, make, read_state
from reference_jax.precision import float64


@lru_cache(maxsize=64)
def _step_fn(spec: NetworkSpec, name: str) -> Any:
    """A jitted training step for one spec and one optimizer rule.

    The learning rate and hyperparameters are traced arguments (optax accepts arrays
    for them), so a new value reuses the compiled step: XLA compiles once per spec,
    optimizer rule and batch shape.
    """

    @jax.jit
    def train_step(params: Any, opt_state: Any, xb: jax.Array, yb: jax.Array, lr: jax.Array,
                   hyper: dict[str, jax.Array]) -> Any:
        loss, grads = jax.value_and_grad(_loss)(params, xb, yb, spec)
        updates, opt_state = MAKERS[name](lr, hyper).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


@float64
def train(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray,
          optimizer: OptimizerSpec, *, epochs: int, batch_size: int | None = None,
          batch_order: np.ndarray[Any, Any] | None = None, record_every: int | None = None,
          callback: Callable[[int, Params], None] | None = None) -> History:
    """handwritten.train's contract, with jax.value_and_grad and an optax optimizer."""
    schedule = Schedule.for_training(spec, params, x, y, optimizer, epochs, batch_size,
                                     batch_order, record_every, callback)
    train_step = _step_fn(spec, optimizer.name)
    jparams = to_jax(params)
    opt_state = make(optimizer).init(jparams)
    lr = jnp.asarray(optimizer.lr, dtype=x.dtype)
    hyper = {k: jnp.asarray(v, dtype=x.dtype) for k, v in optimizer.hyperparams.items()}
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    losses, recorded = [], [params]
    for batch in schedule:
        jparams, opt_state, loss = train_step(jparams, opt_state, jx[batch.rows], jy[batch.rows],
                                              lr, hyper)
        schedule.check_loss(float(loss), batch)
        losses.append(np.asarray(loss))
        if batch.record:
            recorded.append(from_jax(jparams))
        if callback is not None and batch.end_of_epoch:
            callback(batch.epoch + 1, from_jax(jparams))
    return schedule.history(losses, recorded, read_state(opt_state, schedule.n_steps), x.dtype)
