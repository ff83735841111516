"""FER-2013 CSV (`emotion,pixels,Usage`): 48x48 grayscale rows -> faces (grey or RGB); Usage gives the official split."""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd

from workbench import NUM_CLASSES
from workbench.data.decode import FaceShape, chunks, parallel_map
from workbench.data.faces import Faces, Skipped
from workbench.errors import WorkbenchError

USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
REQUIRED = ("emotion", "pixels")


def _open_text(path: Path):
    # utf-8-sig: a spreadsheet's byte-order mark must not become part of the first column's name.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def read_header(path: Path) -> list[str]:
    try:
        with _open_text(path) as f:
            return next(csv.reader(f), [])
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as err:
        raise unreadable(path, err) from None


def read_rows(path: Path) -> pd.DataFrame:
    header = read_header_checked(path)
    usecols = [c for c in ("emotion", "pixels", "Usage") if c in header]
    try:
        with _open_text(path) as f:
            return pd.read_csv(f, usecols=usecols, dtype=str, keep_default_na=False)
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, pd.errors.ParserError) as err:
        raise unreadable(path, err) from None


def unreadable(path: Path, err: Exception) -> WorkbenchError:
    if isinstance(err, UnicodeDecodeError):
        return WorkbenchError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start} of a block); save the CSV as UTF-8"
        )
    if isinstance(err, EOFError):
        return WorkbenchError(
            f"{path}: the file ends early ({err}); it is truncated, copy or download it again"
        )
    if isinstance(err, pd.errors.ParserError):
        return WorkbenchError(
            f"{path}: not a well-formed CSV ({str(err).strip().splitlines()[0]}); look for an unclosed quote"
        )
    return WorkbenchError(f"{path}: cannot read as CSV ({err})")


def parse_pixels(text: str) -> np.ndarray | str:
    """A row's `pixels` -> integers, or why not. int32, not uint8: 300 must be refused, not wrapped to 44."""
    try:
        values = (
            np.fromstring(text, dtype=np.int32, sep=" ") if text.strip() else np.empty(0, np.int32)
        )
    except ValueError:
        bad = next((t for t in text.split() if not t.isdigit()), text[:20])
        return f"pixel {bad!r} is not an integer 0..255"
    if values.size and (values.min() < 0 or values.max() > 255):
        bad = values[(values < 0) | (values > 255)][0]
        return f"pixel value {bad} is outside 0..255"
    return values.astype(np.uint8)


def _decode_chunk(args: tuple[list[str], FaceShape]) -> list[np.ndarray | str]:
    """Each pixel string -> a face, or a skip reason."""
    rows, shape = args
    out: list[np.ndarray | str] = []
    for pixels in rows:
        values = parse_pixels(pixels)
        if isinstance(values, str):
            out.append(values)
            continue
        side = math.isqrt(values.size)
        if values.size == 0 or side * side != values.size:
            out.append(f"pixels has {values.size} values, not a square image (48x48 = 2304)")
            continue
        out.append(shape.fit(values.reshape(side, side)))
    return out


class Fer2013Source:
    format = "fer2013"

    def __init__(self, path: Path, select=None):
        """`select(n_rows) -> row indices` picks rows before decoding (sampling); default: all rows."""
        read_header_checked(path)
        self.path, self.select = path, select

    def files(self) -> list[Path]:
        return [self.path]

    def decode(self, shape: FaceShape, workers: int | None) -> Faces:
        return load_fer2013(self.path, shape, workers, self.select)


def read_header_checked(path: Path) -> list[str]:
    header = read_header(path)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise WorkbenchError(
            f"{path}: header {','.join(header) or '(empty)'} lacks column '{missing[0]}' "
            "(a FER-2013 CSV has the header emotion,pixels,Usage)"
        )
    return header


def official_usage(column: pd.Series, path: Path) -> np.ndarray:
    """Usage -> train/val/test; all empty when the column is. A value outside the three names is
    refused: one typo would otherwise drop the official split for the whole dataset without a word."""
    text = column.str.strip()
    split = text.map(USAGE_TO_SPLIT)
    unknown = split.isna() & (text != "")
    if unknown.any():
        first = int(np.flatnonzero(unknown.to_numpy())[0])
        raise WorkbenchError(
            f"{path}:{column.index[first] + 2}: Usage {text.iloc[first]!r} is not one of {', '.join(USAGE_TO_SPLIT)} "
            f"({int(unknown.sum())} such rows); correct it, or empty the column to split at random"
        )
    return split.fillna("").to_numpy()


def load_fer2013(path: Path, shape: FaceShape, workers: int | None, select=None) -> Faces:
    df = read_rows(path)
    index = np.arange(len(df)) if select is None else np.sort(select(len(df)))
    df = df.iloc[index]
    label_text = df["emotion"].str.strip()
    valid_label = label_text.isin([str(i) for i in range(NUM_CLASSES)]).to_numpy()
    pixels = df["pixels"].tolist()
    decoded = [
        face
        for part in parallel_map(
            _decode_chunk,
            [(c, shape) for c in chunks(pixels, 1000)],
            workers,
            f"decode {path.name}",
            "chunk",
        )
        for face in part
    ]
    usage = official_usage(df["Usage"], path) if "Usage" in df else np.full(len(df), "")
    keep, skipped = [], []
    for j, (row, face, ok) in enumerate(zip(index, decoded, valid_label)):
        where = f"{path.name}:{row + 2}"  # +2: 1-based lines after the header
        if not ok:
            skipped.append(Skipped(where, f"emotion {label_text.iloc[j]!r} is not a label 0..6"))
        elif isinstance(face, str):
            skipped.append(Skipped(where, face))
        else:
            keep.append(j)
    keep_a = np.asarray(keep, dtype=np.int64)
    images = np.stack([decoded[j] for j in keep]) if keep else shape.empty()
    rows = index[keep_a]
    return Faces(
        images=images,
        labels=label_text.to_numpy()[keep_a].astype(np.int64),
        groups=np.array([f"row{r}" for r in rows]),
        splits=usage[keep_a].astype(str),
        ids=np.array([f"{path.name}:{r + 2}" for r in rows]),
        format="fer2013",
        path=str(path),
        skipped=skipped,
    )
