"""Training with torch autograd and torch.optim, over the same batches as handwritten."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from handwritten.spec import History, NetworkSpec, OptimizerSpec, Params
from handwritten.training import Schedule
from reference_torch import blocks, schedules
from reference_torch.network import (
    forward,
    from_torch,
    loss_value,
    tensor,
    to_torch,
)
from reference_torch.optimizers import clip, make, read_state


def train(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray,
          optimizer: OptimizerSpec, *, epochs: int, batch_size: int | None = None,
          batch_order: np.ndarray[Any, Any] | None = None, record_every: int | None = None,
          callback: Callable[[int, Params], None] | None = None,
          rng: np.random.Generator | None = None) -> History:
    """handwritten.train's contract; gradients from autograd, steps from torch.optim (the
    gradients clipped by torch.nn.utils, the learning rate from torch's scheduler), batch
    norm's running statistics updated by F.batch_norm itself, dropout's masks from the
    schedule (drawn from ``rng`` as handwritten draws them)."""
    schedule = Schedule.for_training(spec, params, x, y, optimizer, epochs, batch_size,
                                     batch_order, record_every, callback, rng)
    tparams = to_torch(params)
    truns = blocks.init_running(spec, x.dtype)
    opt = make(optimizer, tparams)
    scheduler = schedules.make(optimizer.schedule, opt, optimizer.lr)
    tx, ty = tensor(x), tensor(y)
    losses, recorded = [], [params]
    for batch in schedule:
        rows = batch.rows if isinstance(batch.rows, slice) else torch.from_numpy(batch.rows)
        opt.zero_grad()
        _, cache = forward(spec, tparams, tx[rows], masks=batch.masks, running=truns)
        loss = loss_value(spec, tparams, cache, ty[rows])
        schedule.check_loss(loss.item(), batch)
        loss.backward()
        clip(optimizer, tparams)
        opt.step()
        schedules.step(scheduler)
        losses.append(loss.item())
        if batch.record:
            recorded.append(from_torch(tparams))
        if callback is not None and batch.end_of_epoch:
            callback(batch.epoch + 1, from_torch(tparams))
    return schedule.history(losses, recorded, read_state(opt, optimizer, schedule.n_steps,
                                                         tparams), x.dtype, from_torch(truns))
