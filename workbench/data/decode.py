"""Shared decoding helpers: threaded map with a progress bar, image reading, crop/clip and resize."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np
from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(
    fn: Callable[[T], R], items: Sequence[T], workers: int | None, desc: str, unit: str
) -> list[R]:
    """Threads, not processes: OpenCV and NumPy parsing release the GIL, and threads share memory."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # disable=None: a bar on a terminal, silence in CI logs.
        return list(
            tqdm(
                pool.map(fn, items),
                total=len(items),
                desc=desc,
                unit=unit,
                disable=None,
                leave=False,
            )
        )


def chunks(seq: Sequence[T], size: int) -> list[Sequence[T]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def read_rgb(path: str | os.PathLike) -> np.ndarray | None:
    """RGB uint8 image, or None if the file is missing, unreadable or not an image."""
    data = np.fromfile(path, dtype=np.uint8) if os.path.isfile(path) else None
    if data is None or data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def clip_box(
    top: int, left: int, right: int, bottom: int, height: int, width: int
) -> tuple[int, int, int, int] | None:
    """Clip a (top, left, right, bottom) box to the image; None if nothing of it is left.

    Rows top..bottom and columns left..right, end-exclusive like a NumPy slice (as the original
    project cropped: image[top:bottom, left:right]).
    """
    t, b = max(0, top), min(height, bottom)
    l, r = max(0, left), min(width, right)
    if b <= t or r <= l:
        return None
    return t, l, r, b


@dataclass(frozen=True)
class FaceShape:
    """What every decoded face becomes: size x size, 1 (grey) or 3 (RGB) channels, resized how.

    `area` shrinks with INTER_AREA (no aliasing); `linear` is cv2.resize's default INTER_LINEAR,
    what the original project used. Both enlarge with INTER_LINEAR.
    """

    size: int
    channels: int = 3
    resize: str = "area"

    def fit(self, image: np.ndarray) -> np.ndarray:
        return resize_face(image, self.size, self.channels, self.resize)

    def empty(self) -> np.ndarray:
        return np.empty((0, self.size, self.size, self.channels), np.uint8)


def resize_face(
    image: np.ndarray, size: int, channels: int = 3, resize: str = "area"
) -> np.ndarray:
    """(size, size, channels) uint8 from a grey (H, W) or RGB (H, W, 3) image."""
    h, w = image.shape[:2]
    shrink = h > size or w > size
    interpolation = cv2.INTER_AREA if shrink and resize == "area" else cv2.INTER_LINEAR
    out = cv2.resize(image, (size, size), interpolation=interpolation)
    if out.ndim == 2:
        return out[:, :, None] if channels == 1 else cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[:, :, None] if channels == 1 else out
