"""Face detection for prediction, and alignment on the eyes.

Two detectors, picked by name (`--detector`):
- `mtcnn`: the MTCNN cascade of the `mtcnn` package (TensorFlow; its weights ship inside its wheel, so
  nothing is downloaded at run time). Finds profiles and small faces, and gives eye landmarks.
- `haar`: OpenCV's own frontal-face Haar cascade (inside opencv-python): fast, frontal faces only, no
  landmarks.
Both return boxes widened to match the training crops. The measured recall of each on labelled faces
is in the README ("Prediction") and `benchmarks/predict_speed.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from workbench.data.decode import clip_box
from workbench.serve import DEFAULT_DETECTOR, MIN_FACE

CASCADE = "haarcascade_frontalface_default.xml"
# Haar settings: the combination that finds the most labelled ExpW faces (docs/benchmarks.md).
SCALE_FACTOR = 1.05
MIN_NEIGHBOURS = 5
HAAR_MARGIN = 0.10
# MTCNN's boxes run from the brows to the chin; ExpW's label boxes (and so the training crops) are
# square and larger: the box grows by this fraction of its width on every side.
MTCNN_MARGIN = 0.15
MTCNN_MIN_SCORE = 0.9


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


Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    # (the eye on the image's left, on its right), in pixels
    eyes: tuple[Point, Point] | None = None

    def scaled(self, factor: float) -> Face:
        """The same face in an image `factor` times as large (boxes found on a shrunk copy)."""
        b = self.box
        box = Box(*(round(v * factor) for v in (b.left, b.top, b.right, b.bottom)))
        eyes = None
        if self.eyes is not None:
            eyes = tuple((x * factor, y * factor) for x, y in self.eyes)
        return Face(box, self.score, eyes)


def widen(x: float, y: float, w: float, h: float, margin: float, shape) -> Box:
    """The box grown by `margin` of its width on every side, clipped to the image (a detection always
    lies inside its image, so something of it is left)."""
    m = margin * w
    top, left, right, bottom = clip_box(
        int(round(y - m)),
        int(round(x - m)),
        int(round(x + w + m)),
        int(round(y + h + m)),
        *shape[:2],
    )
    return Box(left, top, right, bottom)


class HaarDetector:
    name = "haar"

    def __init__(self, min_face: int = MIN_FACE, margin: float = HAAR_MARGIN):
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV could not load its {CASCADE}")
        self.min_face, self.margin = min_face, margin

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces (boxes with the margin, clipped to the image), largest first."""
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        found = self.cascade.detectMultiScale(
            gray,
            scaleFactor=SCALE_FACTOR,
            minNeighbors=MIN_NEIGHBOURS,
            minSize=(self.min_face, self.min_face),
        )
        faces = [
            Face(widen(x, y, w, h, self.margin, gray.shape), 1.0)
            for x, y, w, h in (found if len(found) else [])
        ]
        return largest_first(faces)


class MtcnnDetector:
    name = "mtcnn"

    def __init__(
        self,
        min_face: int = MIN_FACE,
        margin: float = MTCNN_MARGIN,
        min_score: float = MTCNN_MIN_SCORE,
    ):
        from mtcnn import MTCNN  # TensorFlow: imported only when this detector is asked for

        self.mtcnn = MTCNN(device="CPU:0")
        self.min_face, self.margin, self.min_score = min_face, margin, min_score

    def detect(self, rgb: np.ndarray) -> list[Face]:
        # mtcnn 1.0 fails on some photos when asked for a larger min_face_size than its 20 (its image
        # pyramid gets a level too small for its nets): detect from 20 px, then keep the large enough.
        found = self.mtcnn.detect_faces(np.ascontiguousarray(rgb))
        faces = []
        for f in found:
            x, y, w, h = f["box"]
            if f["confidence"] < self.min_score or max(w, h) < self.min_face:
                continue
            k = f["keypoints"]
            eyes = tuple(
                sorted((tuple(map(float, k["left_eye"])), tuple(map(float, k["right_eye"]))))
            )
            faces.append(
                Face(widen(x, y, w, h, self.margin, rgb.shape), float(f["confidence"]), eyes)
            )
        return largest_first(faces)


DETECTORS = {"mtcnn": MtcnnDetector, "haar": HaarDetector}


def make_detector(name: str = DEFAULT_DETECTOR, min_face: int = MIN_FACE):
    return DETECTORS[name](min_face=min_face)


def largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: -f.box.width * f.box.height)


def eye_angle(face: Face) -> float:
    """Degrees to rotate the image (counter-clockwise) so that the eyes are level; 0 without landmarks."""
    if face.eyes is None:
        return 0.0
    (x1, y1), (x2, y2) = face.eyes
    return math.degrees(math.atan2(y2 - y1, x2 - x1))


def crop(rgb: np.ndarray, face: Face, align: bool) -> np.ndarray:
    """The face's box; with `align` (and landmarks), cut from the image turned about the box's centre
    so that the eyes are level, the same box size, borders replicated."""
    b = face.box
    angle = eye_angle(face) if align else 0.0
    if abs(angle) < 1.0:  # nothing to turn: the plain crop, exactly
        return rgb[b.top : b.bottom, b.left : b.right]
    cx, cy = (b.left + b.right) / 2, (b.top + b.bottom) / 2
    turn = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    # Shift so that the box lands at the output's origin: warp only the box, not the whole photo.
    turn[0, 2] -= b.left
    turn[1, 2] -= b.top
    return cv2.warpAffine(
        rgb, turn, (b.width, b.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def iou(a: Box, b: Box) -> float:
    iw = max(0, min(a.right, b.right) - max(a.left, b.left))
    ih = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = iw * ih
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union else 0.0


def recall(detector, photos: dict[str, np.ndarray], labelled: list[tuple[str, Box]]) -> float:
    """The fraction of labelled faces that some detected box overlaps with IoU >= 0.5."""
    found = {name: [f.box for f in detector.detect(rgb)] for name, rgb in photos.items()}
    hits = sum(
        max((iou(box, d) for d in found[name]), default=0.0) >= 0.5 for name, box in labelled
    )
    return hits / len(labelled)
