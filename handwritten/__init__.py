"""bpnet's hand-derived backpropagation network: NumPy only, every gradient by hand.

Read in this order: ``activations`` (each value beside its derivative),
``losses`` (each loss beside its gradient), ``network`` (forward, backward, the
shared interface), ``optimizers`` (each update rule as a pure step),
``training`` (the only loop), and ``seed`` (the blog post's original program).
The derivation behind every line is in docs/derivation.md.
"""

from handwritten.activations import ACTIVATIONS
from handwritten.losses import LOSSES, REDUCTIONS
from handwritten.network import (
    INIT_SCHEMES,
    NetworkSpec,
    Params,
    Trace,
    backward,
    forward,
    init_params,
    loss_and_grads,
    predict,
    trace,
)
from handwritten.optimizers import OPTIMIZERS, OptimizerSpec, init_state, step
from handwritten.training import History, make_batch_order, train

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "LOSSES",
    "OPTIMIZERS",
    "REDUCTIONS",
    "History",
    "NetworkSpec",
    "OptimizerSpec",
    "Params",
    "Trace",
    "backward",
    "forward",
    "init_params",
    "init_state",
    "loss_and_grads",
    "make_batch_order",
    "predict",
    "step",
    "trace",
    "train",
]
