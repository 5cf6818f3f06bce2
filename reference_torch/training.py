"""Training with torch autograd and torch.optim, over the same batches as handwritten.

A ``NetworkSpec`` goes through reference_torch.network's forward, a ``Sequential`` through
the fold of its layers (reference_torch.layers); the loop, the optimizer and the schedule
are the same for both.  Params are a list of dicts (one per node of a Sequential, ``{}``
where a node has none); torch.optim gets their leaves in that order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from handwritten.layers import Sequential
from handwritten.spec import History, Masks, NetworkSpec, OptimizerSpec, Params
from handwritten.training import Schedule
from reference_torch import blocks, layers, schedules
from reference_torch.network import (
    TorchParams,
    forward,
    from_torch,
    loss_value,
    tensor,
    to_torch,
)
from reference_torch.optimizers import clip, make, read_state

Running = list[dict[str, torch.Tensor]]


def init_running(spec: NetworkSpec | Sequential, dtype: np.dtype[Any]) -> Running:
    """Batch norm's running statistics before the first step: torch.nn.BatchNorm1d's own
    buffers on every layer (a Sequential: every node) with batch norm, {} elsewhere."""
    if isinstance(spec, Sequential):
        return layers.init_running(spec, dtype)
    return blocks.init_running(spec, dtype)


def batch_loss(spec: NetworkSpec | Sequential, tparams: TorchParams, xb: torch.Tensor,
               yb: torch.Tensor, masks: Masks | None, running: Running) -> torch.Tensor:
    """One step's loss in training mode, with the step's dropout masks; F.batch_norm
    updates the running statistics in place as it normalizes with the batch's own."""
    if isinstance(spec, Sequential):
        z, a = layers.forward(spec, layers.Pass(tparams, masks=masks, running=running), xb)
        return layers.loss_value(spec, tparams, z, a, yb)
    _, cache = forward(spec, tparams, xb, masks=masks, running=running)
    return loss_value(spec, tparams, cache, yb)


def train(spec: NetworkSpec | Sequential, params: Params, x: np.ndarray, y: np.ndarray,
          optimizer: OptimizerSpec, *, epochs: int, batch_size: int | None = None,
          batch_order: np.ndarray[Any, Any] | None = None, record_every: int | None = None,
          callback: Callable[[int, Params], None] | None = None,
          rng: np.random.Generator | None = None) -> History:
    """handwritten.train's contract; gradients from autograd, steps from torch.optim (the
    gradients clipped by torch.nn.utils, the learning rate from torch's scheduler), batch
    norm's running statistics updated by F.batch_norm itself, dropout's masks from the
    schedule (drawn from ``rng`` as handwritten draws them: per hidden layer of a
    NetworkSpec, per node of a Sequential)."""
    schedule = Schedule.for_training(spec, params, x, y, optimizer, epochs, batch_size,
                                     batch_order, record_every, callback, rng)
    if isinstance(spec, Sequential):
        layers.check_kinds(spec)
    tparams = to_torch(params)
    truns = init_running(spec, x.dtype)
    opt = make(optimizer, tparams)
    scheduler = schedules.make(optimizer.schedule, opt, optimizer.lr)
    tx, ty = tensor(x), tensor(y)
    losses, recorded = [], [params]
    for batch in schedule:
        rows = batch.rows if isinstance(batch.rows, slice) else torch.from_numpy(batch.rows)
        opt.zero_grad()
        loss = batch_loss(spec, tparams, tx[rows], ty[rows], batch.masks, truns)
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
