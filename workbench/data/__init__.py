"""Data sources -> Faces: ExpW label.lst, FER-2013 CSV and class folders, decoded once and cached."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from workbench.config import DataConfig
from workbench.data import cache
from workbench.data.decode import FaceShape
from workbench.data.expw import ExpwSource
from workbench.data.faces import SPLITS, Faces, Skipped
from workbench.data.fer2013 import Fer2013Source
from workbench.data.folders import FoldersSource
from workbench.errors import WorkbenchError

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
DEFAULT_DATASET = SAMPLES_DIR / "fer2013_sample.csv.gz"
SAMPLE_EXPW = SAMPLES_DIR / "expw" / "label.lst"

__all__ = [
    "Faces",
    "Skipped",
    "SPLITS",
    "load_faces",
    "DEFAULT_DATASET",
    "SAMPLE_EXPW",
    "detect_format",
]


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if path.is_file():
        if name.endswith((".csv", ".csv.gz")):
            return "fer2013"
        if name.endswith(".lst"):
            return "expw"
    elif path.is_dir():
        if (path / "label.lst").is_file() or (path / "label" / "label.lst").is_file():
            return "expw"
        return "folders"
    raise WorkbenchError(
        f"data.path: cannot tell the format of {path}; set data.format to fer2013, expw or folders"
    )


# Where each format's public dataset comes from, for the error that it is missing.
SOURCES = {
    "fer2013": "FER-2013 is fer2013.csv of Kaggle's 'Challenges in Representation Learning: Facial "
    "Expression Recognition Challenge'",
    "expw": "ExpW is at http://mmlab.ie.cuhk.edu.hk/projects/socialrelation/index.html",
}


def where_to_get(cfg: DataConfig, path: Path) -> str:
    fmt = cfg.format if cfg.format != "auto" else ("fer2013" if ".csv" in path.name else "")
    hint = f"{SOURCES[fmt]}; " if fmt in SOURCES else ""
    return f"{hint}point --set data.path=... at it"


def _make_source(cfg: DataConfig, path: Path, select):
    fmt = cfg.format if cfg.format != "auto" else detect_format(path)
    if fmt == "fer2013":
        if not path.is_file():
            raise WorkbenchError(f"data.path: {path} is not a FER-2013 CSV file")
        return Fer2013Source(path, select)
    if fmt == "expw":
        return ExpwSource(path, cfg.images_dir, cfg.min_confidence, select, cfg.crops_dir)
    if not path.is_dir():
        raise WorkbenchError(f"data.path: {path} is not a folder of class folders")
    return FoldersSource(path, select)


def load_faces(cfg: DataConfig, seed: int) -> Faces:
    """Decode (or fetch from the cache) the faces described by cfg; fail if too many were skipped."""
    path = Path(cfg.path).expanduser() if cfg.path else DEFAULT_DATASET
    if not path.exists():
        raise WorkbenchError(f"data.path: {path} does not exist ({where_to_get(cfg, path)})")

    def select(n: int) -> np.ndarray:
        # Seeded sample of max_faces rows, taken before decoding so unused faces cost nothing.
        if cfg.max_faces is None or cfg.max_faces >= n:
            return np.arange(n)
        return np.random.default_rng(seed).choice(n, cfg.max_faces, replace=False)

    source = _make_source(cfg, path, select)
    shape = FaceShape(cfg.image_size, cfg.channels, cfg.resize)
    params = {**asdict(shape), "max_faces": cfg.max_faces, "seed": seed if cfg.max_faces else None}
    if source.format == "expw":
        params["min_confidence"] = cfg.min_confidence
    root = source.path.parent if source.path.is_file() else source.path
    key = cache.cache_key(
        source.format, cache.sources_digest(root, source.files(), cfg.workers), params
    )
    cache_dir = cache.cache_root(cfg.cache_dir)
    faces = cache.load(cache_dir, key)
    if faces is None:
        faces = source.decode(shape, cfg.workers)
        faces.digest = key
        cache.store(cache_dir, key, faces)
    faces.path = str(source.path)
    # Entries that are not files (broken links) are not among the files the key covers: listed anew.
    faces.skipped = [*getattr(source, "not_files", []), *faces.skipped]
    check_skipped(faces, cfg.max_skip_fraction)
    return faces


def check_skipped(faces: Faces, max_fraction: float) -> None:
    total = len(faces) + len(faces.skipped)
    if total == 0:
        raise WorkbenchError(f"{faces.path}: no faces found")
    if len(faces.skipped) / total > max_fraction:
        first = faces.skipped[0]
        raise WorkbenchError(
            f"{faces.path}: {len(faces.skipped)} of {total} faces skipped "
            f"(first: {first.item}: {first.reason}), above data.max_skip_fraction={max_fraction}; "
            "fix or remove those files, or raise the limit"
        )
