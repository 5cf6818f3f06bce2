"""bpnet's hand-derived backpropagation network: NumPy only, every gradient by hand.

Read in this order: ``activations`` (each value beside its derivative),
``losses`` (each loss beside its gradient), ``spec`` (the shared vocabulary:
NetworkSpec, Params, Trace, OptimizerSpec, History), ``checks`` (the input
checks every implementation shares), ``network`` (forward, backward, the shared
interface), ``schedules`` (the learning rate of every step), ``optimizers`` (each update
rule as it states Delta theta),
``training`` (the only loop), ``layers`` (the layer contract: one file per layer kind,
a ``Sequential`` of them, and the fold that runs it), ``derivatives`` (beyond the gradient:
forward mode, second order by the R-operator, Gauss-Newton, per-example gradients), and
``seed`` (the blog post's original program).
The derivation behind every line is in docs/derivation.md.
"""

from handwritten.activations import ACTIVATIONS
from handwritten.layers import LAYERS, Sequential
from handwritten.losses import LOSSES, REDUCTIONS
from handwritten.network import (
    INIT_SCHEMES,
    backward,
    forward,
    init_params,
    init_running,
    loss_and_grads,
    predict,
    trace,
)
from handwritten.optimizers import OPTIMIZERS, apply_updates, init_state, step, update
from handwritten.spec import (
    OPTIMIZER_DEFAULTS,
    History,
    LRSchedule,
    NetworkSpec,
    OptimizerSpec,
    Params,
    Running,
    Shuffle,
    Trace,
)
from handwritten.training import Schedule, TrainingWarning, make_batch_order, train

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "LAYERS",
    "LOSSES",
    "OPTIMIZERS",
    "OPTIMIZER_DEFAULTS",
    "REDUCTIONS",
    "History",
    "LRSchedule",
    "NetworkSpec",
    "OptimizerSpec",
    "Params",
    "Running",
    "Schedule",
    "Sequential",
    "Shuffle",
    "Trace",
    "TrainingWarning",
    "apply_updates",
    "backward",
    "forward",
    "init_params",
    "init_running",
    "init_state",
    "loss_and_grads",
    "make_batch_order",
    "predict",
    "step",
    "trace",
    "train",
    "update",
]
