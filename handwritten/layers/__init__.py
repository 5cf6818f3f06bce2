"""Layers: one place of derivation per layer kind, and the network as a fold over them.

Read ``base`` (the contract), then one file per family -- ``dense``, ``activation``,
``norm`` (BatchNorm1d, LayerNorm), ``dropout``, ``residual`` -- then ``sequential`` (the
spec, and the MLP spec compiled to it) and ``fold`` (forward, backward and tangent, each
one loop over the layers).  docs/layers.md has the contract and "Adding a layer".
"""

from handwritten.layers.activation import Activation
from handwritten.layers.base import Context, Layer
from handwritten.layers.dense import INIT_SCHEMES, Dense
from handwritten.layers.dropout import Dropout
from handwritten.layers.norm import BatchNorm1d, LayerNorm
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
    "BatchNorm1d",
    "Context",
    "Dense",
    "Dropout",
    "Layer",
    "LayerNorm",
    "Residual",
    "Sequential",
    "compile_network",
    "network_grads",
    "network_masks",
    "network_params",
    "network_running",
]
