"""The conv group: the convolution chapter's networks through every check of the layers
group."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import ModuleType

from bpnet.check_all.layers import layer_cases
from bpnet.check_all.report import Case
from handwritten.layers import (
    Activation,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GroupNorm,
    MaxPool2d,
    Residual,
    Sequential,
)

CONV_CASES = (
    Sequential([Conv2d(2, 4, 3, stride=2, padding=1), BatchNorm2d(4), Activation("relu"),
                MaxPool2d(2, stride=1), Conv2d(4, 4, 3, padding="same", dilation=2, groups=2),
                AvgPool2d(3, stride=2, padding=1, count_include_pad=False), Flatten(),
                Dense(8, 3), Activation("softmax")], "softmax_cross_entropy", weight_decay=0.1,
               in_shape=(2, 7, 6)),
    Sequential([Conv1d(3, 6, 4, padding="same", groups=3, bias=False), GroupNorm(3, 6),
                Activation("tanh"),
                Dropout(0.3), Conv1d(6, 2, 2, stride=2, dilation=2), Activation("relu"),
                Flatten(), Dense(8, 2), Activation("sigmoid")], "bce_with_logits", "sum",
               in_shape=(3, 9)),
    Sequential([Residual([Conv2d(2, 2, 3, padding="same"), Activation("relu")]),
                Activation("relu"), MaxPool2d((3, 2), stride=(1, 2), padding=(1, 0)),
                AdaptiveAvgPool2d(),
                Flatten(), Dense(2, 1)], "half_mse", weight_decay=0.1, in_shape=(2, 5, 5)),
)
"""The convolution chapter's networks: a strided padded Conv2d, spatial batch norm, max
pooling after a relu (ties at its zeros), a grouped dilated 'same' Conv2d, average pooling
counting only the input's elements; a depthwise Conv1d without bias with an even 'same'
kernel, GroupNorm, a strided dilated Conv1d; a residual conv block, non-square overlapping
padded max pooling, global average pooling."""


def conv_cases(impls: Mapping[str, ModuleType]) -> Iterator[Case]:
    """The convolution chapter: CONV_CASES through every check of the layers group."""
    return layer_cases(impls, CONV_CASES, "conv")
