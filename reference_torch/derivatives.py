"""Forward mode and per-example gradients through torch.func: nothing derived by hand.

    jvp                  torch.func.jvp of the network's output in the params
    per_example_grads    torch.func.vmap(torch.func.grad(one sample's loss)), times the
                         reduction's share of that sample (1/batch under "mean")
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch
from torch.func import grad, vmap
from torch.func import jvp as torch_jvp

from handwritten import checks
from handwritten.spec import NetworkSpec, Params
from reference_torch.network import forward, from_torch, loss_value, tensor, to_torch


def jvp(spec: NetworkSpec, params: Params, x: np.ndarray, v: Params
        ) -> tuple[np.ndarray, np.ndarray]:
    """handwritten.derivatives.jvp's contract, by torch.func.jvp."""
    dtype = checks.check_x(spec, x)
    checks.check_params(spec, params, dtype)
    checks.check_params(spec, v, dtype, name="v")
    tx = tensor(x)
    with warnings.catch_warnings():
        # torch 2.13's forward-mode AD scripts a helper on first use and warns that
        # torch.jit.script is deprecated: torch's own internals, not this call
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated",
                                DeprecationWarning)
        result = torch_jvp(lambda p: forward(spec, p, tx)[0],
                           (to_torch(params, requires_grad=False),),
                           (to_torch(v, requires_grad=False),))
    out, tangent = result[0], result[1]               # (primal output, tangent output)
    return out.detach().numpy(), tangent.detach().numpy()


def per_example_grads(spec: NetworkSpec, params: Params, x: np.ndarray, y: np.ndarray
                      ) -> Params:
    """handwritten.derivatives.per_example_grads' contract, by vmap over torch.func.grad of
    each sample's loss (a batch of one, the data term only), times 1/batch under "mean"."""
    checks.check_problem(spec, params, x, y)
    data = dataclasses.replace(spec, weight_decay=0.0)

    def one(p: list[dict[str, torch.Tensor]], xi: torch.Tensor, yi: torch.Tensor
            ) -> torch.Tensor:
        _, cache = forward(data, p, xi[None])
        return loss_value(data, p, cache, yi[None])

    share = 1.0 / x.shape[0] if spec.reduction == "mean" else 1.0
    grads = vmap(grad(one), in_dims=(None, 0, 0))(to_torch(params, requires_grad=False),
                                                  tensor(x), tensor(y))
    return [{k: g * share for k, g in layer.items()} for layer in from_torch(grads)]
