"""Augmentation as Keras preprocessing layers inside a tf.data input pipeline.

One knob, `strength` in [0, 1]: 1.0 reproduces the original project's ImageDataGenerator ranges
(rotation 20 deg, width/height shift 0.2, shear 0.2, zoom 0.2, horizontal flip), 0 is the identity.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from workbench import NUM_CLASSES

ORIGINAL_ROTATION_DEG = 20.0
ORIGINAL_SHIFT = 0.2
ORIGINAL_ZOOM = 0.2
# ImageDataGenerator reads shear_range as an angle in degrees, so the original's 0.2 is a 0.2 degree
# shear; Keras' RandomShear takes a fraction of the image, so the same shear is tan(0.2 deg).
ORIGINAL_SHEAR_DEG = 0.2


def build_augmenter(strength: float, seed: int) -> keras.Sequential | None:
    """None at strength 0 (no layer at all, so the pipeline is exactly the identity)."""
    if strength <= 0:
        return None
    fill = "nearest"  # ImageDataGenerator's default fill mode
    shear = math.tan(math.radians(ORIGINAL_SHEAR_DEG)) * strength
    return keras.Sequential(
        [
            keras.layers.RandomRotation(ORIGINAL_ROTATION_DEG / 360.0 * strength, fill_mode=fill, seed=seed),
            keras.layers.RandomTranslation(ORIGINAL_SHIFT * strength, ORIGINAL_SHIFT * strength, fill_mode=fill, seed=seed + 1),
            keras.layers.RandomShear(x_factor=shear, y_factor=shear, fill_mode=fill, seed=seed + 2),
            # Independent height and width factors, as ImageDataGenerator draws zx and zy separately.
            keras.layers.RandomZoom(ORIGINAL_ZOOM * strength, ORIGINAL_ZOOM * strength, fill_mode=fill, seed=seed + 3),
            keras.layers.RandomFlip("horizontal", seed=seed + 4),
        ],
        name="augment",
    )


def training_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, strength: float, seed: int) -> tf.data.Dataset:
    """Shuffled, augmented batches of (float32 images 0..255, one-hot labels), prefetched."""
    images_t = tf.constant(images)
    labels_t = tf.one_hot(labels, NUM_CLASSES)
    augmenter = build_augmenter(strength, seed)
    n = len(images)
    # Shuffle indices, not images: the shuffle buffer then costs 8 bytes a face.
    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    ds = ds.map(lambda idx: (tf.cast(tf.gather(images_t, idx), tf.float32), tf.gather(labels_t, idx)),
                num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None:
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((images, tf.one_hot(labels, NUM_CLASSES))).batch(batch_size)
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE)
