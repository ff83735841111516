"""A small VGG-style net: stages of 2 x (Conv3x3 -> BatchNorm -> ReLU), MaxPool 2, Dropout; global
average pooling, Dropout, softmax. 1.18M parameters at the default widths; trains fast on a CPU."""

from __future__ import annotations

import keras

from workbench.core.models import DEFAULT_FILTERS
from workbench.core.models.inputs import face_input, pooled_softmax

FILTERS = DEFAULT_FILTERS["vgg"]


def make_model(
    input_shape: tuple[int, int, int],
    num_classes: int,
    crop: int | None = None,
    filters=FILTERS,
    bn_momentum: float = 0.99,
    conv_dropout: float = 0.25,
    dense_dropout: float = 0.5,
) -> keras.Model:
    inputs, x = face_input(input_shape, crop)
    for i, n in enumerate(filters, start=1):
        for j in (1, 2):
            # No bias: the BatchNorm right after it has its own shift.
            x = keras.layers.Conv2D(n, 3, padding="same", use_bias=False, name=f"stage{i}_conv{j}")(
                x
            )
            x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"stage{i}_bn{j}")(x)
            x = keras.layers.ReLU(name=f"stage{i}_relu{j}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"stage{i}_pool")(x)
        x = keras.layers.Dropout(conv_dropout, name=f"stage{i}_dropout")(x)
    outputs = pooled_softmax(x, num_classes, dense_dropout)
    return keras.Model(inputs, outputs, name="vgg")
