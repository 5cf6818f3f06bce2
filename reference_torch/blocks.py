"""A hidden block's optional parts through torch: torch.nn.functional's batch_norm and
layer_norm (their own backward kernels, through autograd), dropout with the given mask.

The normalization is F.batch_norm / F.layer_norm *without* their affine weight and bias, so
that x_hat is a node of the graph (the trace compares d_x_hat); the affine gamma * x_hat +
beta is then one multiply and one add, as torch's own kernels compute it.  mu and var are
reported for the trace from torch.var_mean (biased, as the norms normalize); they are
forward values, not part of the graph (except for the R-trace, which differentiates them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from handwritten.checks import counterpart
from handwritten.spec import BATCH_NORM_MOMENTUM, NORM_EPS, NetworkSpec

AXES = {"batch": 0, "layer": 1}
"""Every norm by name, as the axis its statistics are taken along (F.batch_norm's and
F.layer_norm's)."""


def normalize(norm: str, z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
              running: dict[str, torch.Tensor] | None = None, training: bool = True,
              statistics_in_graph: bool = False) -> dict[str, torch.Tensor]:
    """{"mu", "var", "x_hat", "n"} of handwritten.blocks.normalize, by torch's kernels.

    ``running``: batch norm's running statistics {"mean", "var"} (buffers, as
    torch.nn.BatchNorm1d holds them).  In training mode F.batch_norm updates them in place
    itself (momentum 0.1, unbiased variance: torch's own rule, not ours); with
    ``training=False`` it normalizes with them (evaluation mode: x_hat and n only);
    NotImplementedError for a norm handwritten has and AXES has not.
    ``statistics_in_graph``: mu and var computed in the graph (the R-trace differentiates
    them along a direction), not as forward values only."""
    axis = counterpart(AXES, "norm", norm, "reference_torch/blocks.py")
    if norm == "batch" and not training:
        assert running is not None
        x_hat = F.batch_norm(z, running["mean"], running["var"], training=False, eps=NORM_EPS)
        return {"x_hat": x_hat, "n": x_hat * gamma + beta}
    if norm == "batch":
        mean, var_ = (None, None) if running is None else (running["mean"], running["var"])
        x_hat = F.batch_norm(z, mean, var_, training=True, momentum=BATCH_NORM_MOMENTUM,
                             eps=NORM_EPS)
    else:
        x_hat = F.layer_norm(z, (z.shape[1],), eps=NORM_EPS)
    var, mu = torch.var_mean(z if statistics_in_graph else z.detach(), dim=axis,
                             correction=0)
    return {"mu": mu, "var": var, "x_hat": x_hat, "n": x_hat * gamma + beta}


def init_running(spec: NetworkSpec, dtype: np.dtype[Any]) -> list[dict[str, torch.Tensor]]:
    """Batch norm's running statistics before the first step: the buffers torch.nn.BatchNorm1d
    starts with itself (running_mean 0, running_var 1) on every layer with batch norm, {} on
    every other."""
    kind = torch.from_numpy(np.empty(0, dtype)).dtype
    running: list[dict[str, torch.Tensor]] = []
    for l, n in enumerate(spec.layer_sizes[1:]):
        if spec.norm(l) == "batch":
            norm = torch.nn.BatchNorm1d(n, eps=NORM_EPS, momentum=BATCH_NORM_MOMENTUM, dtype=kind)
            assert norm.running_mean is not None and norm.running_var is not None
            running.append({"mean": norm.running_mean, "var": norm.running_var})
        else:
            running.append({})
    return running


def dropout(h: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout with the given keep-mask, as torch's F.dropout applies its own:
    h * m / (1 - p)."""
    return h * mask / (1 - p)
