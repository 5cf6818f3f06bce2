"""Training: the only place that loops over epochs and batches.

One *step* is one batch: forward, loss, backward, optimizer update.  With
``batch_size`` b and N samples an epoch has ceil(N / b) steps; the last batch of
an epoch holds the remainder (nothing is dropped).  Which samples form each
batch is fixed by ``batch_order``, an (epochs, N) array whose rows are
permutations of range(N): epoch e visits ``x[batch_order[e]]`` in slices of b.
Draw it once with ``make_batch_order(n, epochs, rng)`` and hand the same array to
every implementation, so all of them see the same batches -- or hand them
``Shuffle(seed)``, the same rows drawn one epoch at a time.

``Schedule`` is that loop's bookkeeping, shared by all three ``train``
functions: which rows each step sees, after which steps params are recorded,
when training has diverged (a non-finite loss, or non-finite final params, with
one message for all), and what a finished run that did not train tells about
itself (``diagnose``, a ``TrainingWarning``).

Hidden blocks (``NetworkSpec.norms``, ``dropout``): each step's dropout keep-masks are
drawn by the schedule from ``train``'s ``rng`` (``draw_masks``), so every implementation
handed a Generator seeded alike sees the same masks; batch norm's running statistics
(``Running``) are updated after each step's forward with the batch's mean and variance
(``blocks.running_update``) and returned in ``History.running``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from handwritten import blocks, checks
from handwritten.activations import activation
from handwritten.layers import (
    Activation,
    Dropout,
    Sequential,
    compile_network,
    fold,
    network_grads,
    network_masks,
    network_params,
)
from handwritten.layers.sequential import layer_of_node, network_blocks
from handwritten.optimizers import apply_updates, init_state, rule_update
from handwritten.spec import (
    History,
    Masks,
    NetworkSpec,
    OptimizerSpec,
    Params,
    Running,
    Shuffle,
    State,
)
from handwritten.tree import tree_leaves, tree_map

Array = NDArray[np.floating[Any]]


def make_batch_order(n_samples: int, epochs: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """One random permutation of range(n_samples) per epoch, shape (epochs, n_samples)."""
    n_samples = checks.positive_int("n_samples", n_samples)
    epochs = checks.positive_int("epochs", epochs)
    checks.check_rng(rng)
    return np.stack([rng.permutation(n_samples) for _ in range(epochs)])


def draw_masks(spec: NetworkSpec | Sequential, batch: int, rng: np.random.Generator,
               dtype: np.dtype[Any]) -> list[Array | None]:
    """Dropout's keep-masks for one step of ``batch`` rows: per node of a Sequential, in
    pass order, on each Dropout with p > 0 a (batch, *shape) array m with m = 1 where
    ``rng.random() >= p`` (probability 1 - p) and 0 elsewhere; None on every other node
    (nothing is drawn for it).  A NetworkSpec: its compiled Sequential's masks (the same
    draws: one (batch, fan_out) per hidden layer with p > 0, in layer order), handed back
    per hidden layer, None where the layer has no dropout."""
    if isinstance(spec, NetworkSpec):
        nodes = draw_masks(compile_network(spec), batch, rng, dtype)
        return [None if block.dropout is None else nodes[block.dropout]
                for block in network_blocks(spec)[:-1]]      # the hidden layers'
    return [(rng.random((batch, *shape)) >= layer.p).astype(dtype)
            if isinstance(layer, Dropout) and layer.p else None
            for (_, layer), shape in zip(spec.nodes, spec.in_shapes)]


def update_running(running: Running, cache: list[dict[str, Array]], batch: int) -> None:
    """After a training-mode forward: every batch-norm layer's running statistics one
    momentum step towards the batch's mean and unbiased variance (in place), from a
    NetworkSpec's per-layer cache (``network.forward``; bpnet.compare steps so).  ``train``
    carries them on the fold's nodes instead (``BatchNorm1d.update_state``)."""
    for stats, layer in zip(running, cache):
        if stats:
            stats["mean"], stats["var"] = blocks.running_update(
                stats["mean"], stats["var"], layer["mu"], layer["var"], batch)


def copy_params(params: Params) -> Params:
    """Fresh copies of every array of a params-shaped structure."""
    return tree_map(lambda theta: theta.copy(), params)


class Batch(NamedTuple):
    """One step of a schedule."""

    step: int                             # t = 1, 2, ...
    epoch: int                            # 0-based
    number: int                           # 1-based, within the epoch
    rows: slice | NDArray[np.intp]        # the samples: x[rows], y[rows]
    end_of_epoch: bool
    record: bool                          # params are recorded after this step
    masks: Masks | None = None            # dropout's keep-masks for this step (draw_masks)


@dataclass(frozen=True)
class Schedule:
    """Which samples each step sees, after which steps params are recorded, and the
    divergence checks: the bookkeeping every ``train`` shares.

    Build it with ``Schedule.for_training``, which checks every argument of ``train``.
    """

    n_samples: int
    epochs: int
    batch_size: int
    batch_order: NDArray[np.intp] | Shuffle | None = None
    record_every: int | None = None
    problem: tuple[NetworkSpec | Sequential, Array, Array] | None = field(
        default=None, repr=False, compare=False)
    """(spec, x, y), for the diagnostics of a finished run (``diagnose``)."""
    maximize: bool = False
    """The optimizer ascends the loss (its ``maximize`` flag): a rising loss is no alarm."""
    rng: np.random.Generator | None = field(default=None, repr=False, compare=False)
    """Where each step's dropout masks come from (``draw_masks``), when the spec has dropout."""

    @classmethod
    def for_training(cls, spec: NetworkSpec | Sequential, params: Params, x: Array, y: Array,
                     optimizer: OptimizerSpec, epochs: object, batch_size: object,
                     batch_order: object, record_every: object, callback: object,
                     rng: object = None) -> Schedule:
        """Check every argument of ``train`` (the problem first), then build the schedule."""
        checks.check_problem(spec, params, x, y, masks=None, training=True)
        n = x.shape[0]
        epochs_, size, order, every = checks.check_training_args(
            optimizer, n, epochs, batch_size, batch_order, record_every, callback)
        checks.check_trainable(spec, n, size, rng)
        return cls(n, epochs_, size, order, every, (spec, x, y),
                   bool(optimizer.hyperparams.get("maximize")),
                   rng if has_dropout(spec) else None)   # type: ignore[arg-type]

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_samples // self.batch_size)

    @property
    def n_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def recorded_steps(self) -> tuple[int, ...]:
        """0 (the initial params), every record_every-th step, and the last step."""
        every = self.record_every or self.n_steps
        return (0, *range(every, self.n_steps, every), self.n_steps)

    def __iter__(self) -> Iterator[Batch]:
        t, per_epoch, last = 0, self.steps_per_epoch, self.n_steps
        n, size, every = self.n_samples, self.batch_size, self.record_every
        given = self.batch_order
        rng = np.random.default_rng(given.seed) if isinstance(given, Shuffle) else None
        # the (number, start, stop) of each batch: the same in every epoch
        batches = [(k, start, start + size) for k, start in enumerate(range(0, n, size), 1)]
        for epoch in range(self.epochs):
            order: NDArray[np.intp] | None
            if rng is not None:
                order = rng.permutation(n)                      # one epoch at a time
            else:
                order = None if given is None else given[epoch]  # type: ignore[index]
            for number, start, stop in batches:
                rows = slice(start, stop) if order is None else order[start:stop]  # slice: a view
                t += 1
                masks = None
                if self.rng is not None and self.problem is not None:
                    spec, x, _ = self.problem
                    masks = draw_masks(spec, min(stop, n) - start, self.rng, x.dtype)
                yield Batch(t, epoch, number, rows, number == per_epoch,
                            t == last or (every is not None and t % every == 0), masks)

    def check_loss(self, loss: float | np.floating[Any], batch: Batch) -> None:
        """Stop with a message naming the step when a batch's loss is NaN or inf."""
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training diverged: the loss is {loss} at step {batch.step} (epoch "
                f"{batch.epoch + 1}, batch {batch.number} of {self.steps_per_epoch}); "
                "try a smaller learning rate")

    def history(self, losses: list[Any], recorded: list[Params], state: State,
                dtype: np.dtype[Any], running: Running | None = None) -> History:
        """The run's History, once the final params are checked to be finite, with its
        diagnostics (``diagnose``); a run with any warns once with a TrainingWarning.

        ``recorded[0]`` (the caller's initial params) is copied, so that changing a
        History can never change the caller's arrays.
        """
        if not all(np.isfinite(v).all() for p in recorded[-1] for v in p.values()):
            raise FloatingPointError(
                f"training diverged: the params are non-finite after step {self.n_steps} "
                f"(epoch {self.epochs}); try a smaller learning rate")
        # batch norm's running statistics can overflow while the loss, computed from the
        # batch's own statistics, stays finite: the network they make for prediction is gone
        if running and not all(np.isfinite(v).all() for r in running for v in r.values()):
            raise FloatingPointError(
                f"training diverged: batch norm's running statistics are non-finite after "
                f"step {self.n_steps} (epoch {self.epochs}); try a smaller learning rate")
        assert len(recorded) == len(self.recorded_steps)
        notes = () if self.problem is None else diagnose(*self.problem, recorded[0], recorded[-1],
                                                         maximize=self.maximize)
        if notes:
            warnings.warn(TrainingWarning("training did not train: " + "; ".join(notes)),
                          stacklevel=3)
        return History(np.array(losses, dtype=dtype), self.recorded_steps,
                       [copy_params(recorded[0]), *recorded[1:]], state, notes,
                       [] if running is None else running)


class TrainingWarning(UserWarning):
    """A run finished without an error but did not train (see ``History.diagnostics``).

    Silence it with ``warnings.simplefilter("ignore", TrainingWarning)``."""


SATURATED = 1e-8
"""A unit is saturated when its activation's derivative is below this on every sample."""


def diagnose(spec: NetworkSpec | Sequential, x: Array, y: Array, initial: Params,
             final: Params, *, maximize: bool = False) -> tuple[str, ...]:
    """What a finished run tells about itself, evaluated on all the data by handwritten's
    fold (whichever implementation trained; a NetworkSpec's compiled Sequential, on the
    same arrays):

    - the loss ended above where it started (below, when the optimizer maximizes);
    - every gradient is exactly zero at the final params (nothing can move them);
    - every unit of a hidden activation is saturated: its derivative is below SATURATED
      on every sample (a dead relu layer, a sigmoid layer pinned at 0 or 1).

    Every Activation node is read but the network's output (the last layer, when it is
    one) and an output-only one (softmax).  A unit is one entry of a sample's activation:
    a feature of (batch, features), each (c, h, w) of an image's (N, C, H, W); the count
    is every non-batch entry (every entry saturated is every channel saturated: counted
    by channel, only the number would change).  A NetworkSpec's note names the layer,
    "layer 1: all 16 relu units saturated (...)"; a Sequential's the node, by path and
    layer, "node 3 (Activation(name='relu')): all 16 relu units saturated (...)".

    Evaluated without dropout and with batch norm over all the data (training mode: the
    diagnosis needs no running statistics).
    """
    seq, owner = spec, None
    if isinstance(spec, NetworkSpec):      # its compiled Sequential, on the same arrays
        seq, owner = compile_network(spec), layer_of_node(spec)
        initial, final = network_params(spec, initial), network_params(spec, final)
    assert isinstance(seq, Sequential)
    notes = []
    run = fold.Pass(weight_decay=seq.weight_decay)
    _, start = fold.forward(seq, initial, x, run)
    _, caches = fold.forward(seq, final, x, run)
    before = fold.loss_value(seq, initial, start, y)
    after = fold.loss_value(seq, final, caches, y)
    if (after < before) if maximize else (after > before):
        moved = "fell" if maximize else "rose"
        notes.append(f"the loss on all the data {moved} from {before:.6g} to {after:.6g}"
                     + (" (the optimizer maximizes it)" if maximize else ""))
    grads, _ = fold.backward(seq, final, caches, y, run, keep=False)
    if not any(np.any(g) for g in tree_leaves(grads)):
        notes.append("every gradient is exactly zero at the final params")
    output = seq.level(0)[-1] if isinstance(seq.layers[-1], Activation) else None
    for i, ((path, layer), cache) in enumerate(zip(seq.nodes, caches)):
        if not isinstance(layer, Activation) or i == output or layer.output_only:
            continue
        z, a = cache["z"], cache["a"]          # in a block: the norm's n, the f(n) = h
        slope = np.abs(activation(layer.name).backward(z, a, np.ones_like(z)))
        if (slope.max(axis=0) < SATURATED).all():
            where = f"node {path} ({layer!r})" if owner is None else f"layer {owner[i]}"
            notes.append(f"{where}: all {math.prod(slope.shape[1:])} {layer.name} units "
                         f"saturated ({layer.name}' < {SATURATED:g} on every sample)")
    return tuple(notes)


def has_dropout(spec: NetworkSpec | Sequential) -> bool:
    """True when some layer drops units (its masks are drawn each step)."""
    return spec.has_dropout if isinstance(spec, Sequential) else any(spec.dropout)


def train(spec: NetworkSpec | Sequential, params: Params, x: Array, y: Array,
          optimizer: OptimizerSpec,
          *, epochs: int, batch_size: int | None = None,
          batch_order: NDArray[np.integer[Any]] | Shuffle | None = None,
          record_every: int | None = None,
          callback: Callable[[int, Params], None] | None = None,
          rng: np.random.Generator | None = None) -> History:
    """Train from ``params`` (which are not modified) and return the History.

    Parameters
    ----------
    spec, params, x, y
        As for ``loss_and_grads``; all inputs are checked before any step.
    optimizer : OptimizerSpec
    epochs : int >= 1
    batch_size : int in [1, batch], optional
        Samples per step; default (None) is the full batch, one step per epoch.  With
        batch norm every batch must hold at least 2 samples (the last one too).
    batch_order : (epochs, batch) int array, or Shuffle, optional
        Row e is the permutation of samples visited in epoch e; ``Shuffle(seed)``
        draws the same rows one epoch at a time; default (None) is the natural
        order 0..N-1 in every epoch (no shuffling).
    record_every : int >= 1, optional
        Also record params every this many steps; by default only the initial
        and the final params are kept (a large network's params at every step
        would fill the memory).
    callback : callable, optional
        Called as ``callback(epochs_done, params)`` after every epoch (for
        progress reports); it gets a copy of the params.
    rng : numpy.random.Generator, optional
        Where dropout's keep-masks come from, drawn each step (``draw_masks``); required
        when the spec has dropout, unused otherwise.

    Raises
    ------
    FloatingPointError
        When a step's loss, or the final params, become NaN or inf; the message
        names the step and epoch.

    Notes
    -----
    Batch norm's running statistics start as torch's (mean 0, variance 1) and come back
    in ``History.running``, for ``predict``.  Every step is the fold of a Sequential's
    layers (``handwritten.layers.fold``): a Sequential's own, params, masks and running
    statistics one entry per node; a NetworkSpec's compiled network (``compile_network``,
    once per call), on the same arrays, with everything handed back in the NetworkSpec's
    per-layer layout.
    """
    schedule = Schedule.for_training(spec, params, x, y, optimizer, epochs, batch_size,
                                     batch_order, record_every, callback, rng)
    losses = []
    recorded = [params]
    # a private copy, updated in place: the caller's arrays are never touched, and no
    # step allocates a new set of params
    params = copy_params(params)
    # every step is the fold of a Sequential's layers; a NetworkSpec's compiled one runs
    # on the same arrays, and the optimizer with it, node by node (its state, masks and
    # running statistics are handed back in the NetworkSpec's per-layer layout at the end)
    seq, nodes, mlp = spec, params, None
    if isinstance(spec, NetworkSpec):
        seq, nodes, mlp = compile_network(spec), network_params(spec, params), spec
    assert isinstance(seq, Sequential)
    state = init_state(optimizer, nodes)           # checked once above, not at every step
    running = fold.init_state(seq, x.dtype)
    run = fold.Pass(weight_decay=seq.weight_decay)     # the same at every step without dropout
    has_state = seq.has_state
    for batch in schedule:
        xb, yb = x[batch.rows], y[batch.rows]
        if batch.masks is not None:
            masks = batch.masks if mlp is None else network_masks(mlp, batch.masks)
            run = fold.Pass(masks=masks, weight_decay=seq.weight_decay)
        _, caches = fold.forward(seq, nodes, xb, run)
        if has_state:
            running = fold.update_state(seq, running, caches)
        loss, d_start = fold.loss_and_d_start(seq, nodes, caches, yb)
        schedule.check_loss(loss, batch)
        grads, _ = fold.backward_from_loss(seq, nodes, caches, d_start, run, keep=False)
        del caches                                  # free the activations before the update
        updates, state = rule_update(optimizer, grads, state, nodes)
        apply_updates(nodes, updates, in_place=True)   # params' arrays too: they are shared
        losses.append(loss)
        if batch.record:
            recorded.append(params if batch.step == schedule.n_steps else copy_params(params))
        if callback is not None and batch.end_of_epoch:
            callback(batch.epoch + 1, copy_params(params))
    if mlp is not None:                             # every buffer is params-shaped
        state = {k: v if k == "t" else network_grads(mlp, v) for k, v in state.items()}
        running = network_grads(mlp, running)
    return schedule.history(losses, recorded, state, x.dtype, running)
