"""Layers: one place of derivation per layer kind, and the network as a fold over them.

Read ``base`` (the contract), then one file per family -- ``dense``, ``activation``,
``norm`` (BatchNorm1d, LayerNorm, BatchNorm2d, GroupNorm), ``dropout``, ``residual``, ``conv``
(Conv1d, Conv2d), ``pool`` (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten) -- then
``sequential`` (the spec, and the MLP spec compiled to it) and ``fold`` (forward, backward
and tangent, each one loop over the layers).  docs/layers.md has the contract and "Adding a layer".
"""

from handwritten.layers.activation import Activation
from handwritten.layers.base import Context, Layer
from handwritten.layers.conv import Conv1d, Conv2d
from handwritten.layers.dense import INIT_SCHEMES, Dense
from handwritten.layers.dropout import Dropout
from handwritten.layers.norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from handwritten.layers.pool import AdaptiveAvgPool2d, AvgPool2d, Flatten, MaxPool2d
from handwritten.layers.residual import Residual
from handwritten.layers.sequential import (
    LAYERS,
    Sequential,
    compile_network,
    network_grads,
    network_masks,
    network_params,
    network_running,
)

__all__ = [
    "INIT_SCHEMES",
    "LAYERS",
    "Activation",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Context",
    "Conv1d",
    "Conv2d",
    "Dense",
    "Dropout",
    "Flatten",
    "GroupNorm",
    "Layer",
    "LayerNorm",
    "MaxPool2d",
    "Residual",
    "Sequential",
    "compile_network",
    "network_grads",
    "network_masks",
    "network_params",
    "network_running",
]
