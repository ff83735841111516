"""The one shape every loader returns: uint8 faces (grey or RGB), labels 0..6, a group id and an official split per face."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workbench import CLASS_NAMES, NUM_CLASSES

SPLITS = ("train", "val", "test")


@dataclass
class Skipped:
    item: str
    reason: str


@dataclass
class Faces:
    images: np.ndarray  # (N, S, S, C) uint8: C = 1 (grey) or 3 (RGB)
    labels: np.ndarray  # (N,) int64 in 0..6
    groups: np.ndarray  # (N,) str: faces sharing a group come from one source image
    # (N,) str: the dataset's own split ("train"/"val"/"test") or "" if it has none
    splits: np.ndarray
    ids: np.ndarray  # (N,) str: where each face came from (file, row, box), for lineage and figures
    format: str = ""
    path: str = ""
    digest: str = ""  # sha256 of the source files read and the preprocessing parameters
    skipped: list[Skipped] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        if (
            self.images.dtype != np.uint8
            or self.images.ndim != 4
            or self.images.shape[-1] not in (1, 3)
        ):
            raise ValueError(
                f"faces must be uint8 (N,S,S,1|3), got {self.images.dtype} {self.images.shape}"
            )
        for name in ("labels", "groups", "splits", "ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} faces")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> Faces:
        return Faces(
            images=self.images[index],
            labels=self.labels[index],
            groups=self.groups[index],
            splits=self.splits[index],
            ids=self.ids[index],
            format=self.format,
            path=self.path,
            digest=self.digest,
            skipped=self.skipped,
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=NUM_CLASSES)
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts)}

    @property
    def has_official_split(self) -> bool:
        return bool(len(self)) and bool(np.all(np.isin(self.splits, SPLITS)))
