"""The original project's CNN: 5 x (Conv3x3 + ReLU -> BatchNorm -> MaxPool 2 -> Dropout), Dense 1024, softmax.

`dense_batchnorm=True` adds the BatchNormalization between the dense layer and its dropout that the
original's scoring model had (its layer-name counters: 6 BatchNormalization for 5 conv blocks).
"""

from __future__ import annotations

import keras

from workbench.core.models import DEFAULT_FILTERS
from workbench.core.models.inputs import face_input

FILTERS = DEFAULT_FILTERS["reference"]


def make_model(
    input_shape: tuple[int, int, int],
    num_classes: int,
    crop: int | None = None,
    filters=FILTERS,
    bn_momentum: float = 0.99,
    conv_dropout: float = 0.25,
    dense_units: int = 1024,
    dense_batchnorm: bool = False,
    dense_dropout: float = 0.5,
) -> keras.Model:
    inputs, x = face_input(input_shape, crop)
    for i, n in enumerate(filters, start=1):
        x = keras.layers.Conv2D(n, 3, padding="same", activation="relu", name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"block{i}_bn")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = keras.layers.Dropout(conv_dropout, name=f"block{i}_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    if dense_batchnorm:
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name="dense_bn")(x)
    x = keras.layers.Dropout(dense_dropout, name="dense_dropout")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="expression"
    )(x)
    return keras.Model(inputs, outputs, name="reference_cnn")
