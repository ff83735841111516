"""Augmentation as Keras preprocessing layers inside a tf.data input pipeline.

One knob, `strength` in [0, 1], scales every geometric range; the ranges at strength 1.0 default to
the original project's ImageDataGenerator (rotation 20 deg, width/height shift 0.2, shear 0.2, zoom
0.2, horizontal flip). 0 is the identity. A layer whose range is 0 is left out. Random erasing follows
them, face by face; mixup or cutmix mix whole batches (images and labels) last. The random crop is the
model's first layer (core/models/inputs.py), so a model takes the whole face at test time.
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


def build_eraser(augment: AugmentConfig, seed: int) -> keras.layers.Layer | None:
    """Random erasing (Zhong et al. 2017): with probability `erasing` a face gets a random patch of
    noise; None when off."""
    if augment.erasing <= 0:
        return None
    p = augment.erasing
    # factor (p, p): Keras draws each face's probability from the range, so both ends are p.
    return keras.layers.RandomErasing(
        factor=(p, p), value_range=(0, 255), seed=seed + 5, dtype="float32"
    )


def build_mixers(augment: AugmentConfig, seed: int) -> list[keras.layers.Layer]:
    """Mixup and/or cutmix, each on {"images", "labels"} batches; empty when both alphas are 0."""
    mixers = []
    if augment.mixup_alpha > 0:
        mixers.append(keras.layers.MixUp(alpha=augment.mixup_alpha, seed=seed + 6, dtype="float32"))
    if augment.cutmix_alpha > 0:
        a = augment.cutmix_alpha  # (a, a): Keras draws alpha from the range, so both ends are a
        mixers.append(keras.layers.CutMix(factor=(a, a), seed=seed + 7, dtype="float32"))
    return mixers


def mixed(ds: tf.data.Dataset, mixers: list[keras.layers.Layer], seed: int) -> tf.data.Dataset:
    """Each batch through one of `mixers`, drawn per batch from a seeded stream (timm's switch)."""
    if not mixers:
        return ds

    def mix(x, y, draw):
        def through(layer):
            return lambda: tuple(layer({"images": x, "labels": y}, training=True).values())

        if len(mixers) == 1:
            return through(mixers[0])()
        return tf.cond(draw % 2 == 0, through(mixers[0]), through(mixers[1]))

    draws = tf.data.Dataset.random(seed=seed + 8)
    batches = tf.data.Dataset.zip(ds, draws)
    return batches.map(lambda xy, d: mix(*xy, d), num_parallel_calls=tf.data.AUTOTUNE)


def training_dataset(
    images: np.ndarray, labels: np.ndarray, batch_size: int, augment: AugmentConfig, seed: int
) -> tf.data.Dataset:
    """Shuffled, augmented full batches of (float32 images 0..255, one-hot labels), prefetched.
    `labels`: class indices, or (N, 7) target probabilities (distillation's soft labels)."""
    images_t = tf.constant(images)
    labels_t = tf.one_hot(labels, NUM_CLASSES) if labels.ndim == 1 else tf.constant(labels)
    steps = [
        layer for layer in (build_augmenter(augment, seed), build_eraser(augment, seed)) if layer
    ]
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
    for layer in steps:
        ds = ds.map(
            lambda x, y, layer=layer: (layer(x, training=True), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return mixed(ds, build_mixers(augment, seed), seed).prefetch(tf.data.AUTOTUNE)
