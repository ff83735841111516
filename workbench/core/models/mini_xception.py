"""mini-Xception (Arriaga et al. 2017, "Real-time Convolutional Neural Networks for Emotion and Gender
Classification"): two plain 3x3 convs of 8 filters, then residual modules of depthwise-separable
convolutions that halve the resolution, and a last conv to one map per class, globally averaged.
About 60k parameters."""

from __future__ import annotations

import keras

from workbench.core.models import DEFAULT_FILTERS
from workbench.core.models.inputs import face_input

FILTERS = DEFAULT_FILTERS["mini_xception"]
STEM = 8


def make_model(
    input_shape: tuple[int, int, int],
    num_classes: int,
    crop: int | None = None,
    filters=FILTERS,
    bn_momentum: float = 0.99,
) -> keras.Model:
    inputs, x = face_input(input_shape, crop)
    for j in (1, 2):
        x = keras.layers.Conv2D(STEM, 3, use_bias=False, name=f"stem_conv{j}")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"stem_bn{j}")(x)
        x = keras.layers.ReLU(name=f"stem_relu{j}")(x)
    for i, n in enumerate(filters, start=1):
        shortcut = keras.layers.Conv2D(
            n, 1, strides=2, padding="same", use_bias=False, name=f"module{i}_short"
        )(x)
        shortcut = keras.layers.BatchNormalization(
            momentum=bn_momentum, name=f"module{i}_short_bn"
        )(shortcut)
        x = keras.layers.SeparableConv2D(
            n, 3, padding="same", use_bias=False, name=f"module{i}_sep1"
        )(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"module{i}_bn1")(x)
        x = keras.layers.ReLU(name=f"module{i}_relu")(x)
        x = keras.layers.SeparableConv2D(
            n, 3, padding="same", use_bias=False, name=f"module{i}_sep2"
        )(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"module{i}_bn2")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"module{i}_pool")(x)
        x = keras.layers.Add(name=f"module{i}_add")([x, shortcut])
    x = keras.layers.Conv2D(num_classes, 3, padding="same", name="class_maps")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="expression")(x)
    return keras.Model(inputs, outputs, name="mini_xception")
