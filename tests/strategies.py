"""Composite Hypothesis strategies: sizes first, then arrays of matching shapes.

The draws themselves are ``bpnet.problems``' (the one generator that the
benchmark and ``bpnet check`` use too), made through a Chooser that asks
Hypothesis: related draws stay adjacent, so a failing case shrinks to the
smallest network, batch and layer, and every random array comes from an
explicit, drawn seed (never the global RNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st

from bpnet.problems import (
    MIN_NORM_COUNT,
    Problem,
    draw_block_spec,
    draw_conv_sequential,
    draw_optimizer,
    draw_problem,
    draw_sequential,
    draw_spec,
)
from handwritten import NetworkSpec
from handwritten.losses import LOSSES

__all__ = ["HypothesisChooser", "Problem", "block_problems", "conv_problems", "optimizer_specs",
           "problems", "sequential_problems", "specs"]

T = TypeVar("T")


@dataclass(frozen=True)
class HypothesisChooser:
    """bpnet.problems.Chooser drawing through Hypothesis (so that failures shrink)."""

    draw: st.DrawFn

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))

    def real(self, low: float, high: float) -> float:
        return self.draw(st.floats(low, high))


@st.composite
def specs(draw: st.DrawFn, max_depth: int = 4, max_width: int = 16,
          activations: list[str] | None = None, exclude_losses: tuple[str, ...] = ()
          ) -> NetworkSpec:
    """A valid NetworkSpec: depth, widths, activations, loss, reduction, weight decay."""
    return draw_spec(HypothesisChooser(draw), max_depth, max_width, activations, exclude_losses)


@st.composite
def problems(draw: st.DrawFn, max_depth: int = 4, max_width: int = 16, max_batch: int = 32,
             dtype: str = "float64", exclude_losses: tuple[str, ...] = ()) -> Problem:
    """spec, then batch size, then a seed for params, x and y."""
    return draw_problem(HypothesisChooser(draw), max_depth, max_width, max_batch, dtype,
                        exclude_losses)


@st.composite
def block_problems(draw: st.DrawFn, max_depth: int = 4, max_width: int = 8, max_batch: int = 12,
                   activations: list[str] | None = None) -> Problem:
    """A problem whose hidden layers are blocks (norms, dropout, residual skips drawn:
    bpnet.problems.draw_block_spec), a batch of at least 2 (batch norm needs two), and
    params, x, y and dropout's masks from one drawn seed."""
    chooser = HypothesisChooser(draw)
    spec = draw_block_spec(chooser, max_depth, max_width, activations=activations)
    batch = chooser.integer(MIN_NORM_COUNT if "batch" in spec.norms else 2, max_batch)
    labels = LOSSES[spec.loss].targets == "class" and chooser.choice((False, True))
    return Problem(spec, batch, chooser.integer(0, 2**32 - 1), labels=labels)


@st.composite
def sequential_problems(draw: st.DrawFn, max_layers: int = 5, max_width: int = 6,
                        max_batch: int = 8, activations: list[str] | None = None,
                        exclude_losses: tuple[str, ...] = ()) -> Problem:
    """A random Sequential, its layers in any valid order (bpnet.problems.draw_sequential),
    a batch (of at least MIN_NORM_COUNT with batch norm), then params, x, y and dropout's
    masks (one per node) from one drawn seed."""
    chooser = HypothesisChooser(draw)
    seq = draw_sequential(chooser, max_layers, max_width, activations, exclude_losses)
    batch = chooser.integer(MIN_NORM_COUNT if seq.has_batch_norm else 1, max_batch)
    labels = LOSSES[seq.loss].targets == "class" and chooser.choice((False, True))
    return Problem(seq, batch, chooser.integer(0, 2**32 - 1), labels=labels)


@st.composite
def optimizer_specs(draw: st.DrawFn) -> Any:
    """Any registered optimizer with every option drawn (bpnet.problems.draw_optimizer):
    hyperparameters inside their valid ranges, flags, a schedule, clipping."""
    return draw_optimizer(HypothesisChooser(draw))


@st.composite
def conv_problems(draw: st.DrawFn, max_layers: int = 3, max_channels: int = 4,
                  max_size: int = 7, max_batch: int = 5,
                  exclude_losses: tuple[str, ...] = ()) -> Any:
    """A random convolutional Sequential (bpnet.problems.draw_conv_sequential: Conv1d,
    Conv2d with every argument, pools, BatchNorm2d, Residual, dropout in any valid order),
    a batch, then params, x, y and masks from one drawn seed."""
    chooser = HypothesisChooser(draw)
    seq = draw_conv_sequential(chooser, max_layers, max_channels, max_size,
                               exclude_losses=exclude_losses)
    batch = chooser.integer(MIN_NORM_COUNT if seq.has_batch_norm else 1, max_batch)
    labels = LOSSES[seq.loss].targets == "class" and chooser.choice((False, True))
    return Problem(seq, batch, chooser.integer(0, 2**32 - 1), labels=labels)
