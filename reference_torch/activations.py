"""Activations as torch ops; torch's autograd supplies every derivative."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from handwritten.activations import CELU_ALPHA, ELU_ALPHA, LEAKY_RELU_SLOPE
from handwritten.checks import counterpart

# softplus: torch returns z itself above ``threshold`` (default 20), which differs from
# log(1 + e^z) by e^-z: 2e-9 at z = 20, far above float64's resolution.  At 40 the
# difference, 4e-18, is below float64's resolution (relative to z) and the gradient
# sigmoid(40) rounds to 1.0: thresholding there is exact in both dtypes.
SOFTPLUS_THRESHOLD = 40.0

# celu: torch 2.13's F.celu backward is accurate to only ~2e-8 relative for alpha != 1 (a
# coefficient rounded to float32: at alpha = 1.5659 its derivative at z = -0.028 is off by
# 2.2e-8, its value exact), so celu is written as its definition, alpha * elu(z / alpha),
# through F.elu (alpha 1), whose backward is exact (tests/test_references.py shows both).

ACTIVATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": lambda z, p=LEAKY_RELU_SLOPE: F.leaky_relu(z, negative_slope=p),
    "elu": lambda z, p=ELU_ALPHA: F.elu(z, alpha=p),
    "celu": lambda z, p=CELU_ALPHA: p * F.elu(z / p),
    "selu": F.selu,
    "softplus": lambda z: F.softplus(z, beta=1.0, threshold=SOFTPLUS_THRESHOLD),
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
    "identity": lambda z: z,
    "softmax": lambda z: torch.softmax(z, dim=1),
}
"""Every activation by name; a parametrised one takes its parameter as ``p``."""


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The op of an activation name, its parameter bound ("leaky_relu:0.2");
    NotImplementedError for a name handwritten has and this table has not.  The name was
    validated by NetworkSpec; its parameter is read here, not by handwritten's split_name,
    which is code under test."""
    base, _, value = name.partition(":")
    op = counterpart(ACTIVATIONS, "activation", base, "reference_torch/activations.py")
    return partial(op, p=float(value)) if value else op
