"""Training with jax.value_and_grad and optax, over the same batches as handwritten."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from handwritten import _checks
from handwritten.network import NetworkSpec, Params
from handwritten.optimizers import OptimizerSpec
from handwritten.training import History, check_training_args
from reference_jax.network import _loss, from_jax, to_jax
from reference_jax.optimizers import MAKERS, make, read_state


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


def train(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray,
          optimizer: OptimizerSpec, *, epochs: int, batch_size: int | None = None,
          batch_order: np.ndarray[Any, Any] | None = None, record_every: int | None = None,
          callback: Callable[[int, Params], None] | None = None) -> History:
    """handwritten.train's contract, with jax.value_and_grad and an optax optimizer."""
    _checks.check_problem(spec, params, x, y)
    batch_size, order, record_every = check_training_args(spec, optimizer, x, epochs,
                                                          batch_size, batch_order, record_every)
    n = x.shape[0]
    if order is None:
        order = np.tile(np.arange(n), (epochs, 1))
    train_step = _step_fn(spec, optimizer.name)
    jparams = to_jax(params)
    opt_state = make(optimizer).init(jparams)
    lr = jnp.asarray(optimizer.lr, dtype=x.dtype)
    hyper = {k: jnp.asarray(v, dtype=x.dtype) for k, v in optimizer.hyperparams.items()}
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    losses = []
    recorded_steps, recorded = [0], [params]
    t = 0
    for epoch in range(epochs):
        for start in range(0, n, batch_size):
            idx = order[epoch, start:start + batch_size]
            jparams, opt_state, loss = train_step(jparams, opt_state, jx[idx], jy[idx], lr, hyper)
            if not np.isfinite(float(loss)):
                raise FloatingPointError(f"training diverged: the loss is {float(loss)} at step "
                                         f"{t + 1} (epoch {epoch + 1})")
            losses.append(np.asarray(loss))
            t += 1
            last = epoch == epochs - 1 and start + batch_size >= n
            if last or (record_every is not None and t % record_every == 0):
                recorded_steps.append(t)
                recorded.append(from_jax(jparams))
        if callback is not None:
            callback(epoch + 1, from_jax(jparams))
    return History(np.array(losses, dtype=x.dtype), tuple(recorded_steps), recorded,
                   read_state(opt_state, t))
