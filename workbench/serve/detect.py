"""Face detection for prediction: OpenCV's own frontal-face Haar cascade (it ships inside opencv-python,
so nothing is downloaded at run time), boxes widened by a margin to match the training crops.

Settings measured on the 368 labelled faces of ../shared/data/expw/origin_sample: scale 1.05, 5
neighbours and a 10% margin find 62.8% of them with IoU >= 0.5 (the best of the 12 combinations
tried; 1.1/5/no margin: 54.1%).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"
SCALE_FACTOR = 1.05
MIN_NEIGHBOURS = 5
MARGIN = 0.10


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


class FaceDetector:
    def __init__(self, min_face: int = 32, margin: float = MARGIN):
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV could not load its {CASCADE}")
        self.min_face, self.margin = min_face, margin

    def detect(self, rgb: np.ndarray) -> list[Box]:
        """Boxes (with the margin, clipped to the image), largest first."""
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        found = self.cascade.detectMultiScale(
            gray,
            scaleFactor=SCALE_FACTOR,
            minNeighbors=MIN_NEIGHBOURS,
            minSize=(self.min_face, self.min_face),
        )
        h, w = gray.shape
        boxes = []
        for x, y, bw, bh in found if len(found) else []:
            m = int(round(self.margin * bw))
            boxes.append(
                Box(
                    int(max(0, x - m)),
                    int(max(0, y - m)),
                    int(min(w, x + bw + m)),
                    int(min(h, y + bh + m)),
                )
            )
        return sorted(boxes, key=lambda b: -b.width * b.height)


def iou(a: Box, b: Box) -> float:
    iw = max(0, min(a.right, b.right) - max(a.left, b.left))
    ih = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = iw * ih
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union else 0.0
