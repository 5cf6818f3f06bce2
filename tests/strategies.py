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

from bpnet.problems import TYPICAL_HYPERPARAMETERS, Problem, draw_problem, draw_spec
from handwritten import OPTIMIZER_DEFAULTS, NetworkSpec, OptimizerSpec

__all__ = ["HypothesisChooser", "Problem", "optimizer_specs", "problems", "specs"]

T = TypeVar("T")
OPTIMIZER_NAMES = sorted(OPTIMIZER_DEFAULTS)


@dataclass(frozen=True)
class HypothesisChooser:
    """bpnet.problems.Chooser drawing through Hypothesis (so that failures shrink)."""

    draw: st.DrawFn

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))


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
def optimizer_specs(draw: st.DrawFn) -> Any:
    """Any registered optimizer with hyperparameters drawn inside their valid ranges."""
    name = draw(st.sampled_from(OPTIMIZER_NAMES))
    hyper = {k: draw(st.floats(*TYPICAL_HYPERPARAMETERS[k], exclude_min=k == "momentum"))
             for k in OPTIMIZER_DEFAULTS[name]}
    lr = draw(st.floats(1e-4, 0.1))
    return OptimizerSpec(name, lr, hyper)
