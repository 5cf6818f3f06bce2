"""Training: the only place that loops over epochs and batches.

One *step* is one batch: forward, loss, backward, optimizer update.  With
``batch_size`` b and N samples an epoch has ceil(N / b) steps; the last batch of
an epoch holds the remainder (nothing is dropped).  Which samples form each
batch is fixed by ``batch_order``, an (epochs, N) array whose rows are
permutations of range(N): epoch e visits ``x[batch_order[e]]`` in slices of b.
Draw it once with ``make_batch_order(n, epochs, rng)`` and hand the same array to
every implementation, so all of them see the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from handwritten import _checks
from handwritten.network import NetworkSpec, Params, backward, forward, loss_value
from handwritten.optimizers import OptimizerSpec, State, init_state, step

Array = NDArray[np.floating[Any]]


@dataclass(frozen=True)
class History:
    """What a training run did.

    Attributes
    ----------
    losses : (n_steps,)
        The loss of each step's batch, evaluated before that step's update
        (as the blog prints it), in the params' dtype.
    recorded_steps : tuple of int
        The steps after which params were recorded: 0 (the initial params),
        every ``record_every``-th step (if given), and the last step.
    params : list of Params
        ``params[i]`` holds the params after step ``recorded_steps[i]``.
    state : dict
        The optimizer state after the last step.
    """

    losses: Array
    recorded_steps: tuple[int, ...]
    params: list[Params]
    state: State

    @property
    def final_params(self) -> Params:
        """The params after the last step."""
        return self.params[-1]


def _copy(params: Params) -> Params:
    return [{k: v.copy() for k, v in p.items()} for p in params]


def make_batch_order(n_samples: int, epochs: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """One random permutation of range(n_samples) per epoch, shape (epochs, n_samples)."""
    n_samples = _checks.check_positive_int("n_samples", n_samples)
    epochs = _checks.check_positive_int("epochs", epochs)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return np.stack([rng.permutation(n_samples) for _ in range(epochs)])


def _check_batch_order(batch_order: object, epochs: int, n: int) -> NDArray[np.intp]:
    if not isinstance(batch_order, np.ndarray) or batch_order.dtype.kind not in "iu":
        raise TypeError("batch_order must be an integer numpy.ndarray of shape (epochs, n_samples)")
    if batch_order.shape != (epochs, n):
        raise ValueError(f"batch_order must have shape (epochs, n_samples) = ({epochs}, {n}), "
                         f"got {batch_order.shape}")
    if not (np.sort(batch_order, axis=1) == np.arange(n)).all():
        raise ValueError(f"every row of batch_order must be a permutation of range({n})")
    return batch_order.astype(np.intp)


def check_training_args(spec: object, optimizer: object, x: Array, epochs: object,
                        batch_size: object, batch_order: object, record_every: object
                        ) -> tuple[int, NDArray[np.intp] | None, int | None]:
    """Check train()'s arguments (x already checked); return batch_size and batch_order.

    Shared by the reference implementations, so all three refuse the same inputs.
    """
    if not isinstance(optimizer, OptimizerSpec):
        raise TypeError(f"optimizer must be an OptimizerSpec, got {type(optimizer).__name__}")
    epochs = _checks.check_positive_int("epochs", epochs)
    every = None if record_every is None else _checks.check_positive_int("record_every",
                                                                          record_every)
    n = x.shape[0]
    size = _checks.check_positive_int("batch_size", n if batch_size is None else batch_size)
    if size > n:
        raise ValueError(f"batch_size must be in [1, {n}] (the number of samples), got {size}")
    order = None if batch_order is None else _check_batch_order(batch_order, epochs, n)
    return size, order, every


def train(spec: NetworkSpec, params: Params, x: Array, y: Array, optimizer: OptimizerSpec,
          *, epochs: int, batch_size: int | None = None,
          batch_order: NDArray[np.integer[Any]] | None = None,
          record_every: int | None = None,
          callback: Callable[[int, Params], None] | None = None) -> History:
    """Train from ``params`` (which are not modified) and return the History.

    Parameters
    ----------
    spec, params, x, y
        As for ``loss_and_grads``; all inputs are checked before any step.
    optimizer : OptimizerSpec
    epochs : int >= 1
    batch_size : int in [1, batch], optional
        Samples per step; default (None) is the full batch, one step per epoch.
    batch_order : (epochs, batch) int array, optional
        Row e is the permutation of samples visited in epoch e; default (None)
        is the natural order 0..N-1 in every epoch (no shuffling).
    record_every : int >= 1, optional
        Also record params every this many steps; by default only the initial
        and the final params are kept (a large network's params at every step
        would fill the memory).
    callback : callable, optional
        Called as ``callback(epochs_done, params)`` after every epoch (for
        progress reports); it must not modify ``params``.

    Raises
    ------
    FloatingPointError
        When a step's loss, or the final params, become NaN or inf; the message
        names the step and epoch.
    """
    _checks.check_problem(spec, params, x, y)
    batch_size, order, record_every = check_training_args(spec, optimizer, x, epochs, batch_size,
                                                          batch_order, record_every)
    n = x.shape[0]

    state = init_state(optimizer, params)
    losses = []
    recorded_steps, recorded = [0], [params]
    # a private copy, updated in place (step(..., out=params)): the caller's arrays are
    # never touched, and no step allocates a new set of params
    params = _copy(params)
    steps_per_epoch = -(-n // batch_size)
    t = 0
    for epoch in range(epochs):
        for start in range(0, n, batch_size):
            stop = start + batch_size
            if order is None:
                xb, yb = x[start:stop], y[start:stop]           # views: no copy
            else:
                idx = order[epoch, start:stop]
                xb, yb = x[idx], y[idx]
            _, cache = forward(spec, params, xb)
            loss = loss_value(spec, params, cache, yb)
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged: the loss is {loss} at step {t + 1} "
                    f"(epoch {epoch + 1}, batch {start // batch_size + 1} of {steps_per_epoch}); "
                    "try a smaller learning rate")
            grads, _ = backward(spec, params, xb, yb, cache, keep_deltas=False)
            params, state = step(optimizer, params, grads, state, out=params)
            losses.append(loss)
            t += 1
            if record_every is not None and t % record_every == 0:
                recorded_steps.append(t)
                recorded.append(_copy(params))
        if callback is not None:
            callback(epoch + 1, _copy(params))
    if recorded_steps[-1] != t:
        recorded_steps.append(t)
        recorded.append(params)
    if not all(np.isfinite(v).all() for p in params for v in p.values()):
        raise FloatingPointError(f"training diverged: the params are non-finite after step {t} "
                                 f"(epoch {epochs}); try a smaller learning rate")
    return History(np.array(losses, dtype=x.dtype), tuple(recorded_steps), recorded, state)
