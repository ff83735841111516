"""Class folders: `<root>/<class>/*.jpg|png`, optionally under `train/`, `val/`, `test/`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workbench import CLASS_NAMES
from workbench.data.decode import FaceShape, parallel_map, read_rgb
from workbench.data.faces import Faces, Skipped
from workbench.errors import WorkbenchError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
CLASS_SYNONYMS = {name: i for i, name in enumerate(CLASS_NAMES)} | {
    "anger": 0,
    "disgusted": 1,
    "fearful": 2,
    "happiness": 3,
    "sadness": 4,
    "surprised": 5,
    "calm": 6,
}


def class_index(folder: Path) -> int:
    try:
        return CLASS_SYNONYMS[folder.name.lower()]
    except KeyError:
        raise WorkbenchError(
            f"{folder}: unknown class folder '{folder.name}' (expected one of {', '.join(CLASS_NAMES)}); "
            "rename or remove it"
        ) from None


def list_images(root: Path) -> tuple[list[tuple[Path, int, str]], list[Skipped]]:
    """(file, label, split) for every image, split "" without a train/test level; and the entries
    named like images that are not readable files (a dangling link, a link loop, a folder `x.jpg`)."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = [p for p in subdirs if p.name.lower() in SPLIT_NAMES]
    if split_dirs and len(split_dirs) < len(subdirs):
        others = [p.name for p in subdirs if p not in split_dirs]
        raise WorkbenchError(
            f"{root}: has split folders ({', '.join(p.name for p in split_dirs)}) beside other folders "
            f"({', '.join(others[:4])}); move the class folders under the split folders, or rename the split folders"
        )
    layout = [(d, SPLIT_NAMES[d.name.lower()]) for d in split_dirs] if split_dirs else [(root, "")]
    items, skipped = [], []
    for base, split in layout:
        for class_dir in sorted(
            p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            label = class_index(class_dir)
            for f in sorted(class_dir.iterdir()):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if f.is_file():  # follows links: False for a dangling link, a loop or a folder
                    items.append((f, label, split))
                else:
                    skipped.append(
                        Skipped(
                            str(f.relative_to(root)),
                            "not a readable file (a folder, or a broken link)",
                        )
                    )
    if not items:
        raise WorkbenchError(
            f"{root}: no images found (expected {root}/<class>/*.jpg, classes {', '.join(CLASS_NAMES)})"
        )
    return items, skipped


class FoldersSource:
    format = "folders"

    def __init__(self, root: Path, select=None):
        self.path = root
        items, self.not_files = list_images(root)
        self.items = items if select is None else [items[i] for i in np.sort(select(len(items)))]

    def files(self) -> list[Path]:
        return [f for f, _, _ in self.items]

    def decode(self, shape: FaceShape, workers: int | None) -> Faces:
        items, root = self.items, self.path

        def decode_one(item: tuple[Path, int, str]) -> np.ndarray | None:
            image = read_rgb(item[0])
            return None if image is None else shape.fit(image)

        decoded = parallel_map(decode_one, items, workers, f"decode {root.name}", "image")
        keep = [i for i, face in enumerate(decoded) if face is not None]
        rel = [str(f.relative_to(root)) for f, _, _ in items]
        return Faces(
            images=np.stack([decoded[i] for i in keep]) if keep else shape.empty(),
            labels=np.array([items[i][1] for i in keep], dtype=np.int64),
            # One face per file: the file stem is its source image.
            groups=np.array([items[i][0].stem for i in keep], dtype=str),
            splits=np.array([items[i][2] for i in keep], dtype=str),
            ids=np.array([rel[i] for i in keep], dtype=str),
            format=self.format,
            path=str(root),
            # Only what decoding found: the listing's skips (not_files) are added after the cache.
            skipped=[
                Skipped(rel[i], "unreadable image")
                for i, face in enumerate(decoded)
                if face is None
            ],
        )
