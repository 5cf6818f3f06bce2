"""Activations as torch ops; torch's autograd supplies every derivative."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from handwritten.activations import ELU_ALPHA, LEAKY_RELU_SLOPE

# softplus: torch returns z itself above ``threshold`` (default 20), which differs from
# log(1 + e^z) by e^-z: 2e-9 at z = 20, far above float64's resolution.  At 40 the
# difference, 4e-18, is below float64's resolution (relative to z) and the gradient
# sigmoid(40) rounds to 1.0: thresholding there is exact in both dtypes.
SOFTPLUS_THRESHOLD = 40.0

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, negative_slope=LEAKY_RELU_SLOPE),
    "elu": lambda z: F.elu(z, alpha=ELU_ALPHA),
    "softplus": lambda z: F.softplus(z, beta=1.0, threshold=SOFTPLUS_THRESHOLD),
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
    "identity": lambda z: z,
    "softmax": lambda z: torch.softmax(z, dim=1),
}
