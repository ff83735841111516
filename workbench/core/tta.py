"""Test-time augmentation: the model's probabilities averaged over views of each face.

`flip`: the face and its mirror. `tencrop`: the four corner crops and the centre crop, each with its
mirror, for a model whose first layer crops the centre (augment.crop). `dense`: every crop 2 px apart
(25 for 40 of 48), each with its mirror. `warped`: tencrop of the face and of four warped copies of
it (zoomed in and out 10%, turned 8 degrees either way: inside the ranges faces are trained with),
50 views, the best on FER-2013's PublicTest (docs/benchmarks.md). Each off-centre crop is fed as the
face shifted so that its centre crop is that crop: the model is called as it is logged.
"""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np

from workbench.core.models.inputs import centre_offset, crop_of
from workbench.core.settings import CROPPING_TTA, TTA_MODES  # noqa: F401  (TTA_MODES re-exported)
from workbench.errors import WorkbenchError

BATCH = 256
DENSE_STEP = 2  # px between neighbouring crops of `dense`
WARPS = ((1.0, 0.0), (0.9, 0.0), (1.1, 0.0), (1.0, -8.0), (1.0, 8.0))  # `warped`: (zoom, degrees)


def offsets(length: int, crop: int, tta: str) -> list[int]:
    """Where the crops of `tta` start along one side of the face."""
    if tta in ("tencrop", "warped"):
        return [0, length - crop]
    return sorted({*range(0, length - crop + 1, DENSE_STEP), length - crop})


def crop_shifts(height: int, width: int, crop: int, tta: str) -> list[tuple[int, int]]:
    """(dy, dx) that move each crop's top-left corner onto the centre crop's, the centre first.
    np.roll wraps pixels round, but only outside the centre crop."""
    cy, cx = centre_offset(height, crop), centre_offset(width, crop)
    shifts = [
        (cy - top, cx - left)
        for top in offsets(height, crop, tta)
        for left in offsets(width, crop, tta)
    ]
    return [(0, 0)] + [s for s in shifts if s != (0, 0)]


def warp(images: np.ndarray, zoom: float, degrees: float) -> np.ndarray:
    """The faces enlarged `zoom` times and turned `degrees` about their centres, the edges repeated
    as the training augmentation fills them (fill_mode "nearest")."""
    if (zoom, degrees) == (1.0, 0.0):
        return images
    cy, cx = (images.shape[1] - 1) / 2, (images.shape[2] - 1) / 2
    t = np.radians(degrees)
    (a0, a1), (b0, b1) = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / zoom
    # affine_transform maps each output pixel to the input point it samples.
    transform = [a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy, 0.0, 0.0]
    return np.asarray(
        keras.ops.image.affine_transform(images, np.float32(transform), fill_mode="nearest")
    )


def views(images: np.ndarray, tta: str, crop: int | None) -> Iterator[np.ndarray]:
    """The face as it is first, then the other views `tta` averages."""
    if tta in CROPPING_TTA:
        if crop is None:
            raise WorkbenchError(f"train.tta {tta} needs a model that crops (augment.crop)")
        faces = (warp(images, *w) for w in WARPS) if tta == "warped" else [images]
        shifts = crop_shifts(images.shape[1], images.shape[2], crop, tta)
        for face in faces:
            for dy, dx in shifts:
                shifted = np.roll(face, (dy, dx), axis=(1, 2)) if dy or dx else face
                yield shifted
                yield shifted[:, :, ::-1, :]
        return
    yield images
    if tta == "flip":
        yield images[:, :, ::-1, :]


def predict(
    model: keras.Model, images: np.ndarray, tta: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities averaged over the views, those of the face alone or None without TTA)."""
    x = images.astype(np.float32)
    probs = [model.predict(v, batch_size=BATCH, verbose=0) for v in views(x, tta, crop_of(model))]
    return np.mean(probs, axis=0), (probs[0] if len(probs) > 1 else None)
