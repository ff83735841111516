"""Test-time augmentation: the model's probabilities averaged over views of each face.

`flip`: the face and its mirror. `tencrop`: the four corner crops and the centre crop, each with its
mirror, for a model whose first layer crops the centre (augment.crop). Each corner crop is fed as the
face shifted so that its centre crop is that corner: the model is called as it is logged.
"""

from __future__ import annotations

from collections.abc import Iterator

import keras
import numpy as np

from workbench.core.models.inputs import centre_offset, crop_of
from workbench.core.settings import TTA_MODES  # noqa: F401  (re-exported)
from workbench.errors import WorkbenchError

BATCH = 256


def corner_shifts(height: int, width: int, crop: int) -> list[tuple[int, int]]:
    """(dy, dx) that move each crop's top-left corner onto the centre crop's: centre, then corners.
    np.roll wraps pixels round, but only outside the centre crop."""
    cy, cx = centre_offset(height, crop), centre_offset(width, crop)
    tops, lefts = (0, height - crop), (0, width - crop)
    return [(0, 0)] + [(cy - top, cx - left) for top in tops for left in lefts]


def views(images: np.ndarray, tta: str, crop: int | None) -> Iterator[np.ndarray]:
    """The face as it is first, then the other views `tta` averages."""
    if tta == "tencrop":
        if crop is None:
            raise WorkbenchError("train.tta tencrop needs a model that crops (augment.crop)")
        for dy, dx in corner_shifts(images.shape[1], images.shape[2], crop):
            shifted = np.roll(images, (dy, dx), axis=(1, 2)) if dy or dx else images
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
