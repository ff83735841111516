"""Augmentation as Keras preprocessing layers inside a tf.data input pipeline.

One knob, `strength` in [0, 1], scales every range; the ranges at strength 1.0 default to the original
project's ImageDataGenerator (rotation 20 deg, width/height shift 0.2, shear 0.2, zoom 0.2, horizontal
flip). 0 is the identity. A layer whose range is 0 is left out.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from workbench import NUM_CLASSES
from workbench.core.settings import AugmentConfig

# ImageDataGenerator reads shear_range as an angle in degrees, so the original's 0.2 is a 0.2 degree
# shear; Keras' RandomShear takes a fraction of the image, so the same shear is tan(0.2 deg).
ORIGINAL = AugmentConfig()  # the original project's ImageDataGenerator ranges, at strength 1


def build_augmenter(ranges: AugmentConfig, seed: int) -> keras.Sequential | None:
    """The ranges at their strength; None at strength 0 or with every range 0 (no layer at all: the
    pipeline is exactly the identity)."""
    strength = ranges.strength
    if strength <= 0:
        return None
    fill = "nearest"  # ImageDataGenerator's default fill mode
    layers = []
    # float32 whatever the model's precision policy: this runs in tf.data on raw 0..255 pixels.
    kw = {"fill_mode": fill, "dtype": "float32"}
    if ranges.rotation_deg > 0:
        layers.append(
            keras.layers.RandomRotation(ranges.rotation_deg / 360.0 * strength, seed=seed, **kw)
        )
    if ranges.shift > 0:
        layers.append(
            keras.layers.RandomTranslation(
                ranges.shift * strength, ranges.shift * strength, seed=seed + 1, **kw
            )
        )
    if ranges.shear_deg > 0:
        shear = math.tan(math.radians(ranges.shear_deg)) * strength
        layers.append(keras.layers.RandomShear(x_factor=shear, y_factor=shear, seed=seed + 2, **kw))
    if ranges.zoom > 0:
        # Independent height and width factors, as ImageDataGenerator draws zx and zy separately.
        layers.append(
            keras.layers.RandomZoom(
                ranges.zoom * strength, ranges.zoom * strength, seed=seed + 3, **kw
            )
        )
    if ranges.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 4, dtype="float32"))
    return keras.Sequential(layers, name="augment") if layers else None


def training_dataset(
    images: np.ndarray, labels: np.ndarray, batch_size: int, augment: AugmentConfig, seed: int
) -> tf.data.Dataset:
    """Shuffled, augmented full batches of (float32 images 0..255, one-hot labels), prefetched."""
    images_t = tf.constant(images)
    labels_t = tf.one_hot(labels, NUM_CLASSES)
    augmenter = build_augmenter(augment, seed)
    n = len(images)
    # Shuffle indices, not images: the shuffle buffer then costs 8 bytes a face. Full batches only: a
    # last, smaller batch makes Keras trace the training step a second time (~10-25 s on 2 cores); the
    # faces left out differ every epoch (reshuffled), and none is left out when all fit in one batch.
    ds = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=n >= batch_size)
    )
    ds = ds.map(
        lambda idx: (tf.cast(tf.gather(images_t, idx), tf.float32), tf.gather(labels_t, idx)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augmenter is not None:
        ds = ds.map(
            lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return ds.prefetch(tf.data.AUTOTUNE)
