"""A ResNet-18-style net for 40-48 px faces: a 3x3 stem at full resolution (no stride, no max-pool:
the face is already small), four stages of two basic blocks (3x3 -> BN -> ReLU -> 3x3 -> BN, plus
the shortcut), the last three halving the resolution; global average pooling, Dropout, softmax.
ResNet-18's layout at half its widths by default (2.8M parameters)."""

from __future__ import annotations

import keras

from workbench.core.models import DEFAULT_FILTERS
from workbench.core.models.inputs import face_input, pooled_softmax

FILTERS = DEFAULT_FILTERS["resnet"]


def conv_bn(x, filters: int, stride: int, name: str, bn_momentum: float, relu: bool = True):
    # No bias: the BatchNorm right after it has its own shift.
    x = keras.layers.Conv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def basic_block(x, filters: int, stride: int, name: str, bn_momentum: float):
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        # A 1x1 projection where the block changes the shape, as ResNet's option B.
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=stride, use_bias=False, name=f"{name}_proj"
        )(x)
        shortcut = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_proj_bn")(
            shortcut
        )
    y = conv_bn(x, filters, stride, f"{name}a", bn_momentum)
    y = conv_bn(y, filters, 1, f"{name}b", bn_momentum, relu=False)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def make_model(
    input_shape: tuple[int, int, int],
    num_classes: int,
    crop: int | None = None,
    filters=FILTERS,
    bn_momentum: float = 0.99,
    dense_dropout: float = 0.5,
) -> keras.Model:
    inputs, x = face_input(input_shape, crop)
    x = conv_bn(x, filters[0], 1, "stem", bn_momentum)
    for i, n in enumerate(filters, start=1):
        for j in (1, 2):
            stride = 2 if i > 1 and j == 1 else 1
            x = basic_block(x, n, stride, f"stage{i}_block{j}", bn_momentum)
    outputs = pooled_softmax(x, num_classes, dense_dropout)
    return keras.Model(inputs, outputs, name="resnet")
