"""What the models share: the raw face, an optional crop of it and scaling to 0..1 at the start;
global average pooling, Dropout and a float32 softmax at the end.

The crop is part of the model, so a logged or shipped model takes the whole face (48 x 48 on
FER-2013) and needs no preprocessing: random crops while training, the centre crop otherwise.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="workbench")
class FaceCrop(keras.layers.Layer):
    """A `size` x `size` crop of each face: at a random place per face in training, the centre one
    at inference. Keras' RandomCrop crops a whole batch at one place and resizes at inference."""

    def __init__(self, size: int, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # raw 0..255 pixels, whatever the precision policy
        super().__init__(**kwargs)
        self.size, self.seed = size, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        height, width = images.shape[1], images.shape[2]
        if not training:
            top, left = centre_offset(height, self.size), centre_offset(width, self.size)
            return images[:, top : top + self.size, left : left + self.size, :]
        batch = tf.shape(images)[0]
        span = tf.range(self.size)
        rows = keras.random.randint((batch, 1), 0, height - self.size + 1, seed=self.generator)
        cols = keras.random.randint((batch, 1), 0, width - self.size + 1, seed=self.generator)
        x = tf.gather(images, rows + span, axis=1, batch_dims=1)
        return tf.gather(x, cols + span, axis=2, batch_dims=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self) -> dict:
        return super().get_config() | {"size": self.size, "seed": self.seed}


def centre_offset(length: int, size: int) -> int:
    return (length - size) // 2


def face_input(input_shape: tuple[int, int, int], crop: int | None) -> tuple:
    """(the model's input, the cropped face scaled to 0..1) for a builder to continue from."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = FaceCrop(crop, name="crop")(inputs) if crop else inputs
    return inputs, keras.layers.Rescaling(1.0 / 255, name="scale")(x)


def pooled_softmax(x, num_classes: int, dropout: float):
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    # float32 whatever the precision policy: the softmax and its loss stay accurate under bf16.
    return keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="expression"
    )(x)


def crop_of(model: keras.Model) -> int | None:
    """The crop a model was built with (None: it sees the whole face)."""
    for layer in model.layers:
        if isinstance(layer, FaceCrop):
            return layer.size
    return None
