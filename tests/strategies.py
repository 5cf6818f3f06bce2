"""Composite Hypothesis strategies: sizes first, then arrays of matching shapes.

An architecture is drawn first (depth, widths, an activation per layer from the
registries, a loss that accepts the output activation, a reduction, weight
decay), then the batch size, then a seed from which a ``numpy.random.Generator``
makes bounded params and data.  Related draws stay adjacent, so a failing case
shrinks to the smallest network, batch and layer, and every random array comes
from an explicit, drawn seed (never the global RNG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from bpnet.datasets import make_params, make_targets
from handwritten import ACTIVATIONS, LOSSES, OPTIMIZERS, REDUCTIONS, NetworkSpec

HIDDEN_ACTIVATIONS = sorted(n for n, a in ACTIVATIONS.items() if not a.output_only)
ALL_ACTIVATIONS = sorted(ACTIVATIONS)
OPTIMIZER_NAMES = sorted(OPTIMIZERS)


def losses_for(output_activation: str) -> list[str]:
    """Losses that accept this output activation."""
    return sorted(name for name, loss in LOSSES.items()
                  if loss.output_activations is None
                  or output_activation in loss.output_activations)


@dataclass
class Problem:
    """One drawn case.  Its repr is a line a user can paste to rebuild it exactly."""

    spec: NetworkSpec
    batch: int
    seed: int
    dtype: str = "float64"
    labels: bool = False

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.params = make_params(self.spec, rng, self.dtype)
        self.x = rng.uniform(-1.5, 1.5, (self.batch, self.spec.layer_sizes[0])).astype(self.dtype)
        self.y = make_targets(self.spec, rng, self.batch, self.dtype, self.labels)

    def __repr__(self) -> str:
        return (f"Problem({self.spec!r}, batch={self.batch}, seed={self.seed}, "
                f"dtype={self.dtype!r}, labels={self.labels})  "
                "# from tests.strategies import Problem; from handwritten import NetworkSpec")

    def astype(self, dtype: str) -> Problem:
        """The same draw in another dtype (float32 values are the float64 ones rounded)."""
        return Problem(self.spec, self.batch, self.seed, dtype, self.labels)


@st.composite
def specs(draw: st.DrawFn, max_depth: int = 4, max_width: int = 16,
          activations: list[str] | None = None, exclude_losses: tuple[str, ...] = ()
          ) -> NetworkSpec:
    """A valid NetworkSpec: depth, widths, activations, loss, reduction, weight decay."""
    depth = draw(st.integers(1, max_depth))
    sizes = tuple(draw(st.lists(st.integers(1, max_width), min_size=depth + 1,
                                max_size=depth + 1)))
    hidden = activations or HIDDEN_ACTIVATIONS
    names = [draw(st.sampled_from(hidden)) for _ in range(depth - 1)]
    out_choices = [a for a in (activations or ALL_ACTIVATIONS)
                   if not (a == "softmax" and sizes[-1] < 2)]
    names.append(draw(st.sampled_from(out_choices or ["identity"])))
    loss = draw(st.sampled_from([n for n in losses_for(names[-1]) if n not in exclude_losses]))
    reduction = draw(st.sampled_from(REDUCTIONS))
    weight_decay = draw(st.sampled_from([0.0, 0.1]))
    return NetworkSpec(sizes, tuple(names), loss, reduction, weight_decay)


@st.composite
def problems(draw: st.DrawFn, max_depth: int = 4, max_width: int = 16, max_batch: int = 32,
             dtype: str = "float64", exclude_losses: tuple[str, ...] = ()) -> Problem:
    """spec, then batch size, then a seed for params, x and y."""
    spec = draw(specs(max_depth=max_depth, max_width=max_width, exclude_losses=exclude_losses))
    batch = draw(st.integers(1, max_batch))
    labels = LOSSES[spec.loss].targets == "class" and draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return Problem(spec, batch, seed, dtype, labels)


@st.composite
def optimizer_specs(draw: st.DrawFn) -> Any:
    """Any registered optimizer with hyperparameters drawn inside their valid ranges."""
    from handwritten import OptimizerSpec

    name = draw(st.sampled_from(OPTIMIZER_NAMES))
    ranges = {"momentum": (0.0, 0.99), "beta1": (0.0, 0.99), "beta2": (0.9, 0.9999),
              "alpha": (0.8, 0.999), "eps": (1e-10, 1e-6), "weight_decay": (0.0, 0.5)}
    hyper = {k: draw(st.floats(*ranges[k], exclude_min=k == "momentum"))
             for k in OPTIMIZERS[name].defaults}
    lr = draw(st.floats(1e-4, 0.1))
    return OptimizerSpec(name, lr, hyper)
