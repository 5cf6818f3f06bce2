"""Training with jax.value_and_grad and optax, over the same batches as handwritten.

A ``NetworkSpec`` goes through reference_jax.network's forward, a ``Sequential`` through the
fold of its layers (reference_jax.layers); the jitted step, the optimizer and the running
statistics' update are the same for both.  Params are a list of dicts (one per node of a
Sequential, ``{}`` where a node has none): a pytree optax takes as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from handwritten.layers import Sequential
from handwritten.spec import History, NetworkSpec, OptimizerSpec, Params
from handwritten.training import Schedule
from reference_jax import blocks, layers
from reference_jax.network import from_jax, loss_and_statistics, to_jax
from reference_jax.optimizers import (
    make,
    numbers,
    read_state,
    refuse,
    structure,
    transform,
)
from reference_jax.precision import float64


@lru_cache(maxsize=64)
def _step_fn(spec: NetworkSpec | Sequential, shape: OptimizerSpec) -> Any:
    """A jitted training step for one spec (or Sequential) and one optimizer structure.

    The learning rate, the numeric hyperparameters and the clipping threshold are traced
    arguments (optax accepts arrays for them), so new values reuse the compiled step: XLA
    compiles once per spec, optimizer structure and batch shape.
    """
    statistics = (layers.loss_and_statistics if isinstance(spec, Sequential)
                  else loss_and_statistics)

    @jax.jit
    def train_step(params: Any, opt_state: Any, running: Any, xb: jax.Array, yb: jax.Array,
                   masks: Any, lr: jax.Array, hyper: dict[str, jax.Array], clip: jax.Array
                   ) -> Any:
        (loss, stats), grads = jax.value_and_grad(statistics, has_aux=True)(
            params, xb, yb, spec, masks)
        running = [r if s is None else blocks.running_update(r, *s)    # s: (mu, var, count)
                   for r, s in zip(running, stats)]
        updates, opt_state = transform(shape, lr, hyper, clip).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, running, loss

    return train_step


@float64
def train(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
          optimizer: OptimizerSpec, *, epochs: int, batch_size: int | None = None,
          batch_order: np.ndarray[Any, Any] | None = None, record_every: int | None = None,
          callback: Callable[[int, Params], None] | None = None,
          rng: np.random.Generator | None = None) -> History:
    """handwritten.train's contract, with jax.value_and_grad and an optax optimizer
    (NotImplementedError where optax has not the spec's options as torch has them); batch
    norm's running statistics by torch's rule in jnp, dropout's masks from the schedule
    (per hidden layer of a NetworkSpec, per node of a Sequential)."""
    schedule = Schedule.for_training(spec, params, x, y, optimizer, epochs, batch_size,
                                     batch_order, record_every, callback, rng)
    refuse(optimizer, schedule.n_steps)
    if isinstance(spec, Sequential):
        layers.check_kinds(spec)     # before the step is traced (and cached) for it
    train_step = _step_fn(spec, structure(optimizer))
    jparams = to_jax(params)
    opt_state = make(optimizer).init(jparams)
    lr = jnp.asarray(optimizer.lr, dtype=x.dtype)
    hyper = numbers(optimizer, x.dtype)
    clip = jnp.asarray(optimizer.clip_value or 0.0, dtype=x.dtype)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    running = (layers.init_running(spec, x.dtype) if isinstance(spec, Sequential)
               else blocks.init_running(spec, x.dtype))
    losses, recorded = [], [params]
    for batch in schedule:
        masks = None if batch.masks is None else [None if m is None else jnp.asarray(m)
                                                  for m in batch.masks]
        jparams, opt_state, running, loss = train_step(
            jparams, opt_state, running, jx[batch.rows], jy[batch.rows], masks, lr, hyper, clip)
        schedule.check_loss(float(loss), batch)
        losses.append(np.asarray(loss))
        if batch.record:
            recorded.append(from_jax(jparams))
        if callback is not None and batch.end_of_epoch:
            callback(batch.epoch + 1, from_jax(jparams))
    return schedule.history(losses, recorded, read_state(opt_state, optimizer, schedule.n_steps),
                            x.dtype, from_jax(running))
