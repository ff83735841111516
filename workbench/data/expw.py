"""ExpW: `label.lst` (image_name face_id top left right bottom confidence label) + the original images.

Each face is cropped by its box (rows top..bottom, columns left..right, clipped to the image);
the group id is the source image, so a grouped split keeps all faces of one photo together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench import NUM_CLASSES
from workbench.data.decode import FaceShape, clip_box, parallel_map, read_rgb
from workbench.data.faces import Faces, Skipped
from workbench.errors import WorkbenchError

FIELDS = (
    "image_name",
    "face_id",
    "face_box_top",
    "face_box_left",
    "face_box_right",
    "face_box_bottom",
    "face_box_confidence",
    "expression_label",
)
IMAGE_DIR_CANDIDATES = (
    "origin",
    "image/origin",
    "../image/origin",
    "images",
    "Images",
)


@dataclass(frozen=True)
class Box:
    line: int
    image: str
    face_id: int
    top: int
    left: int
    right: int
    bottom: int
    confidence: float
    label: int


def find_label_file(path: Path) -> Path:
    if path.is_file():
        return path
    for candidate in (path / "label.lst", path / "label" / "label.lst"):
        if candidate.is_file():
            return candidate
    raise WorkbenchError(f"{path}: no label.lst in this folder (expected {path / 'label.lst'})")


def find_images_dir(label_file: Path, images_dir: str | None) -> Path:
    if images_dir:
        found = Path(images_dir)
        if not found.is_dir():
            raise WorkbenchError(f"data.images_dir: {found} is not a folder of ExpW images")
        return found
    for rel in IMAGE_DIR_CANDIDATES:
        candidate = (label_file.parent / rel).resolve()
        if candidate.is_dir():
            return candidate
    raise WorkbenchError(
        f"{label_file}: no image folder found next to it (tried {', '.join(IMAGE_DIR_CANDIDATES)}); "
        "set data.images_dir"
    )


def crop_name(box: Box) -> str:
    return f"{Path(box.image).stem}_{box.face_id}.jpg"


def find_crops(crops_dir: Path) -> dict[str, Path]:
    """File name -> path of every crop below crops_dir (class subfolders allowed)."""
    if not crops_dir.is_dir():
        raise WorkbenchError(f"data.crops_dir: {crops_dir} is not a folder of face crops")
    return {p.name: p for p in sorted(crops_dir.rglob("*.jpg"))}


def parse_label_file(label_file: Path) -> list[Box]:
    boxes = []
    with open(label_file, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(FIELDS):
                raise WorkbenchError(
                    f"{label_file}:{n}: {len(parts)} fields, expected {len(FIELDS)} ({' '.join(FIELDS)})"
                )
            values = []
            for name, text, kind in zip(
                FIELDS[1:], parts[1:], (int, int, int, int, int, float, int)
            ):
                try:
                    values.append(kind(text))
                except ValueError:
                    raise WorkbenchError(
                        f"{label_file}:{n}: field {name} is {text!r}, expected a number"
                    ) from None
            if not 0 <= values[-1] < NUM_CLASSES:
                raise WorkbenchError(
                    f"{label_file}:{n}: field expression_label is {values[-1]}, expected 0..6"
                )
            name = Path(parts[0])
            if name.is_absolute() or ".." in name.parts:
                # Names are read below the image folder only: a label file must not reach other files.
                raise WorkbenchError(
                    f"{label_file}:{n}: field image_name is {parts[0]!r}; expected a name inside the "
                    "image folder (no absolute path, no '..')"
                )
            boxes.append(Box(n, parts[0], *values))
    return boxes


def crop_face(image: np.ndarray, box: Box) -> np.ndarray | None:
    clipped = clip_box(box.top, box.left, box.right, box.bottom, *image.shape[:2])
    if clipped is None:
        return None
    t, l, r, b = clipped
    return image[t:b, l:r]


class ExpwSource:
    format = "expw"

    def __init__(
        self,
        path: Path,
        images_dir: str | None,
        min_confidence: float,
        select=None,
        crops_dir: str | None = None,
    ):
        self.label_file = find_label_file(path)
        self.path = self.label_file
        self.crops = find_crops(Path(crops_dir)) if crops_dir else None
        self.root = None if self.crops is not None else find_images_dir(self.label_file, images_dir)
        boxes = [b for b in parse_label_file(self.label_file) if b.confidence > min_confidence]
        if not boxes:
            raise WorkbenchError(
                f"{self.label_file}: no face has confidence above data.min_confidence={min_confidence}"
            )
        if select is not None:
            boxes = [boxes[i] for i in np.sort(select(len(boxes)))]
        self.boxes = boxes
        self.by_image: dict[str, list[int]] = defaultdict(list)
        for i, box in enumerate(boxes):
            self.by_image[box.image].append(i)

    def files(self) -> list[Path]:
        if self.crops is not None:
            return [self.label_file] + [
                p for b in self.boxes if (p := self.crops.get(crop_name(b))) is not None
            ]
        return [self.label_file] + [
            self.root / name for name in self.by_image if (self.root / name).is_file()
        ]

    def _read_crop(self, i: int, shape: FaceShape) -> list[tuple[int, np.ndarray | str]]:
        path = self.crops.get(crop_name(self.boxes[i]))
        face = read_rgb(path) if path is not None else None
        return [(i, "missing or unreadable crop" if face is None else shape.fit(face))]

    def _decode_image(
        self, image_name: str, shape: FaceShape
    ) -> list[tuple[int, np.ndarray | str]]:
        image = read_rgb(self.root / image_name)
        out = []
        for i in self.by_image[image_name]:
            if image is None:
                out.append((i, "missing or unreadable image"))
                continue
            face = crop_face(image, self.boxes[i])
            out.append(
                (
                    i,
                    "zero-area box after clipping to the image"
                    if face is None
                    else shape.fit(face),
                )
            )
        return out

    def decode(self, shape: FaceShape, workers: int | None) -> Faces:
        boxes = self.boxes
        results: list[np.ndarray | str] = [""] * len(boxes)
        if self.crops is not None:
            parts = parallel_map(
                lambda i: self._read_crop(i, shape),
                list(range(len(boxes))),
                workers,
                f"read crops for {self.label_file.name}",
                "face",
            )
        else:
            parts = parallel_map(
                lambda name: self._decode_image(name, shape),
                list(self.by_image),
                workers,
                f"decode {self.label_file.name}",
                "image",
            )
        for part in parts:
            for i, face in part:
                results[i] = face
        keep = [i for i, face in enumerate(results) if not isinstance(face, str)]
        kept = [boxes[i] for i in keep]
        return Faces(
            images=np.stack([results[i] for i in keep]) if keep else shape.empty(),
            labels=np.array([b.label for b in kept], dtype=np.int64),
            groups=np.array([b.image for b in kept], dtype=str),
            splits=np.full(len(kept), "", dtype=str),
            ids=np.array([f"{b.image}#{b.face_id}" for b in kept], dtype=str),
            format=self.format,
            path=str(self.label_file),
            skipped=[
                Skipped(f"{boxes[i].image} (label.lst:{boxes[i].line})", face)
                for i, face in enumerate(results)
                if isinstance(face, str)
            ],
        )
