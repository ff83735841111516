"""The reference CNN: 5 x (Conv3x3 + ReLU -> BatchNorm -> MaxPool 2 -> Dropout), Dense 1024, softmax over 7."""
from __future__ import annotations

import keras

from workbench import NUM_CLASSES
from workbench.config import ModelConfig


def build_model(cfg: ModelConfig, image_size: int, learning_rate: float) -> keras.Model:
    """Takes raw 0..255 RGB (float32): scaling is part of the model, so a logged model needs no preprocessing."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="scale")(inputs)
    for i, filters in enumerate(cfg.filters, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = keras.layers.Dropout(cfg.conv_dropout, name=f"block{i}_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(cfg.dense_dropout, name="dense_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="expression")(x)
    model = keras.Model(inputs, outputs, name="reference_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
