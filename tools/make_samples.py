"""Rebuild the real samples shipped in workbench/samples/ from ../shared/data (provenance in SOURCE.md).

Deterministic: Python random.Random(0). Run from the repository root:
    python tools/make_samples.py ../shared/data
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

PER_CLASS = {"Training": 400, "PublicTest": 50, "PrivateTest": 50}
EXPW_IMAGES_PER_LABEL = 5


def fer_sample(shared: Path, out: Path) -> list[int]:
    rows_by_key: dict[tuple[str, int], list[int]] = defaultdict(list)
    with gzip.open(shared / "fer2013" / "fer2013.csv.gz", "rt", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        lines = list(reader)
    for i, (emotion, _pixels, usage) in enumerate(lines):
        rows_by_key[(usage, int(emotion))].append(i)
    rng = random.Random(0)
    chosen: list[int] = []
    for usage, n in PER_CLASS.items():
        for emotion in range(7):
            chosen += rng.sample(rows_by_key[(usage, emotion)], n)
    chosen.sort()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["emotion", "pixels", "Usage"])
    for i in chosen:
        w.writerow(lines[i])
    # mtime=0 keeps the gzip bytes (and so the dataset digest) reproducible.
    with (
        open(out, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz,
    ):
        gz.write(buf.getvalue().encode())
    return chosen


def expw_sample(shared: Path, out_dir: Path) -> list[str]:
    lines = (shared / "expw" / "label_origin_sample.lst").read_text().splitlines()
    by_image: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        by_image[line.split()[0]].append(line)
    labels_of = {img: {int(l.split()[7]) for l in ls} for img, ls in by_image.items()}
    rng = random.Random(0)
    images = sorted(by_image)
    chosen: list[str] = []
    # Keep every multi-face image (exercises grouping) plus EXPW_IMAGES_PER_LABEL per label.
    multi = [img for img in images if len(by_image[img]) > 1]
    chosen += multi
    for label in range(7):
        pool = [img for img in images if label in labels_of[img] and img not in chosen]
        chosen += rng.sample(pool, EXPW_IMAGES_PER_LABEL)
    chosen.sort()
    (out_dir / "origin").mkdir(parents=True, exist_ok=True)
    for img in chosen:
        shutil.copyfile(shared / "expw" / "origin_sample" / img, out_dir / "origin" / img)
    (out_dir / "label.lst").write_text("".join(l + "\n" for img in chosen for l in by_image[img]))
    return chosen


def main() -> None:
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    out = Path("workbench/samples")
    rows = fer_sample(shared, out / "fer2013_sample.csv.gz")
    (out / "fer2013_sample_rows.txt").write_text("".join(f"{i}\n" for i in rows))
    imgs = expw_sample(shared, out / "expw")
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.suffix in {".gz", ".lst"}:
            print(p, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    print(len(rows), "FER rows;", len(imgs), "ExpW images")


if __name__ == "__main__":
    main()
