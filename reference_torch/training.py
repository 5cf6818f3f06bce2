"""Training with torch autograd and torch.optim, over the same batches as handwritten."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from handwritten import _checks
from handwritten.network import NetworkSpec, Params
from handwritten.optimizers import OptimizerSpec
from handwritten.training import History, check_training_args
from reference_torch.network import _tensor, forward, from_torch, loss_value, to_torch
from reference_torch.optimizers import make, read_state


def train(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray,
          optimizer: OptimizerSpec, *, epochs: int, batch_size: int | None = None,
          batch_order: np.ndarray[Any, Any] | None = None, record_every: int | None = None,
          callback: Callable[[int, Params], None] | None = None) -> History:
    """handwritten.train's contract; gradients from autograd, steps from torch.optim."""
    _checks.check_problem(spec, params, x, y)
    batch_size, order, record_every = check_training_args(spec, optimizer, x, epochs,
                                                          batch_size, batch_order, record_every)
    n = x.shape[0]
    if order is None:
        order = np.tile(np.arange(n), (epochs, 1))
    tparams = to_torch(params)
    opt = make(optimizer, tparams)
    tx, ty = _tensor(x), _tensor(y)
    losses = []
    recorded_steps, recorded = [0], [params]
    t = 0
    for epoch in range(epochs):
        for start in range(0, n, batch_size):
            idx = torch.from_numpy(order[epoch, start:start + batch_size])
            opt.zero_grad()
            _, cache = forward(spec, tparams, tx[idx])
            loss = loss_value(spec, tparams, cache, ty[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged: the loss is {loss.item()} at step "
                                         f"{t + 1} (epoch {epoch + 1})")
            loss.backward()
            opt.step()
            losses.append(loss.item())
            t += 1
            last = epoch == epochs - 1 and start + batch_size >= n
            if last or (record_every is not None and t % record_every == 0):
                recorded_steps.append(t)
                recorded.append(from_torch(tparams))
        if callback is not None:
            callback(epoch + 1, from_torch(tparams))
    return History(np.array(losses, dtype=x.dtype), tuple(recorded_steps), recorded,
                   read_state(opt, optimizer, t, tparams))
