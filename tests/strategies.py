"""Composite Hypothesis strategies: sizes first, then arrays of matching shapes.

Array values come from a ``numpy.random.Generator`` seeded with a drawn integer
(never the global RNG), so a failing case shrinks to the smallest network, batch
and layer while staying cheap to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from handwritten import ACTIVATIONS, LOSSES, REDUCTIONS, NetworkSpec, Params

HIDDEN_ACTIVATIONS = sorted(n for n, a in ACTIVATIONS.items() if not a.output_only)
ALL_ACTIVATIONS = sorted(ACTIVATIONS)


@dataclass
class Problem:
    """One drawn case; ``repr`` is a spec a user can paste into a reproduction."""

    spec: NetworkSpec
    params: Params
    x: np.ndarray
    y: np.ndarray
    seed: int


def losses_for(output_activation: str) -> list[str]:
    """Losses that accept this output activation."""
    return sorted(name for name, loss in LOSSES.items()
                  if loss.output_activations is None
                  or output_activation in loss.output_activations)


@st.composite
def specs(draw: st.DrawFn, max_depth: int = 3, max_width: int = 6,
          activations: list[str] | None = None) -> NetworkSpec:
    """A valid NetworkSpec: depth, widths, activations, loss, reduction, weight decay."""
    depth = draw(st.integers(1, max_depth))
    sizes = tuple(draw(st.lists(st.integers(1, max_width), min_size=depth + 1,
                                max_size=depth + 1)))
    hidden = activations or HIDDEN_ACTIVATIONS
    names = [draw(st.sampled_from(hidden)) for _ in range(depth - 1)]
    out_choices = [a for a in (activations or ALL_ACTIVATIONS)
                   if not (a == "softmax" and sizes[-1] < 2)]
    names.append(draw(st.sampled_from(out_choices or ["identity"])))
    loss = draw(st.sampled_from(losses_for(names[-1])))
    reduction = draw(st.sampled_from(REDUCTIONS))
    weight_decay = draw(st.sampled_from([0.0, 0.1]))
    return NetworkSpec(sizes, tuple(names), loss, reduction, weight_decay)


def make_targets(spec: NetworkSpec, rng: np.random.Generator, batch: int,
                 dtype: Any, labels: bool = False) -> np.ndarray:
    """Targets the spec's loss accepts: reals, probabilities, or classes."""
    n_out = spec.layer_sizes[-1]
    kind = LOSSES[spec.loss].targets
    if kind == "class":
        idx = rng.integers(0, n_out, size=batch)
        return idx if labels else np.eye(n_out, dtype=dtype)[idx]
    if kind == "probability":
        return rng.uniform(0, 1, size=(batch, n_out)).astype(dtype)
    return rng.uniform(-1, 1, size=(batch, n_out)).astype(dtype)


def make_params(spec: NetworkSpec, rng: np.random.Generator, dtype: Any,
                scale: float = 1.0) -> Params:
    """Bounded params: W ~ U(-s, s) * sqrt(3 / fan_in) (unit-variance layers), b ~ U(-s, s)/2."""
    params = []
    for fan_in, fan_out in zip(spec.layer_sizes[:-1], spec.layer_sizes[1:]):
        w = rng.uniform(-scale, scale, (fan_in, fan_out)) * np.sqrt(3.0 / fan_in)
        b = rng.uniform(-scale, scale, fan_out) / 2
        params.append({"W": w.astype(dtype), "b": b.astype(dtype)})
    return params


@st.composite
def problems(draw: st.DrawFn, dtype: Any = np.float64, max_batch: int = 8,
             spec_strategy: st.SearchStrategy[NetworkSpec] | None = None) -> Problem:
    """spec, then batch size, then params, x and y from a drawn seed."""
    spec = draw(spec_strategy if spec_strategy is not None else specs())
    batch = draw(st.integers(1, max_batch))
    labels = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    params = make_params(spec, rng, dtype)
    x = rng.uniform(-1.5, 1.5, (batch, spec.layer_sizes[0])).astype(dtype)
    y = make_targets(spec, rng, batch, dtype, labels)
    return Problem(spec, params, x, y, seed)
