"""The faces a FER-2013 model is judged on beyond its own test split, each set built once for any
model of a given input size, and a model's scores on them (accuracy with its interval, macro-F1,
chance levels). What the shipped model's card states and `make bench-shipped` compares.

- FER-2013 PrivateTest, whole (3,589 faces).
- ExpW, cross-dataset (web photos): the 5,705 faces96 crops, cut by label.lst's boxes; and the 368
  labelled faces of origin_sample cut from their photos three ways: by the label box, by the matching
  MTCNN detection (IoU >= 0.5) as it is, and the same detection turned so the eyes are level (what
  `workbench.predict` does by default); the last two are on the same faces.
- CK+48 (posed lab faces): its 927 faces of the six classes it shares with FER-2013 (contempt left
  out; CK+ has no neutral), scored over all seven outputs.
- FER+ (10 taggers a face, majority label): the 1,167 FER-2013 faces that can be joined to FER+. They
  are Training faces: the row says how often a model agrees with FER+'s majority against FER-2013's
  own label, not how well it generalises.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workbench.config import DataConfig
from workbench.core import stats
from workbench.core.metrics import chance_levels, evaluate
from workbench.core.tta import predict
from workbench.data import load_faces
from workbench.data.decode import read_rgb, resize_face
from workbench.data.expw import crop_face, parse_label_file
from workbench.data.folders import CLASS_SYNONYMS
from workbench.serve import shipped
from workbench.serve.detect import Box, crop, iou, make_detector

# FER+ column -> FER-2013 class index (contempt, unknown and not-a-face have no FER-2013 class)
FERPLUS = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5}
FERPLUS["neutral"] = 6


Faces = tuple[np.ndarray, np.ndarray]  # (images at the model's input size, labels)


def score(labels: np.ndarray, probs: np.ndarray) -> dict:
    labels = np.asarray(labels)
    m = evaluate(labels, probs, prefix="").metrics
    ci = stats.intervals(labels, probs.argmax(axis=1), prefix="")
    return {
        "faces": int(len(labels)),
        "accuracy": m["accuracy"],
        "accuracy_ci": [ci["accuracy_ci_low"], ci["accuracy_ci_high"]],
        "macro_f1": m["macro_f1"],
        "macro_f1_ci": [ci["macro_f1_ci_low"], ci["macro_f1_ci_high"]],
    } | chance_levels(labels)


def resized(crops: list[np.ndarray], size: int, channels: int) -> np.ndarray:
    return np.stack([resize_face(c, size, channels) for c in crops])


def expw_photos(labels: Path, folder: Path, size: int, channels: int) -> dict[str, Faces]:
    """The labelled faces cut by their label box, and those MTCNN finds, cut with and without alignment."""
    boxes = parse_label_file(labels)
    photos = {name: read_rgb(folder / name) for name in {b.image for b in boxes}}
    by_label = [crop_face(photos[b.image], b) for b in boxes]
    out = {"label box": (resized(by_label, size, channels), np.array([b.label for b in boxes]))}
    detector = make_detector("mtcnn")
    found = {name: detector.detect(rgb) for name, rgb in photos.items()}
    matched = []
    for b in boxes:
        target = Box(b.left, b.top, b.right, b.bottom)
        best = max(found[b.image], key=lambda f: iou(target, f.box), default=None)
        if best is not None and iou(target, best.box) >= 0.5:
            matched.append((b, best))
    y = np.array([b.label for b, _ in matched])
    for name, align in (("mtcnn box, not aligned", False), ("mtcnn box, aligned", True)):
        crops = [crop(photos[b.image], f, align) for b, f in matched]
        out[name] = (resized(crops, size, channels), y)
    return out


def ferplus(fer_csv: Path, ferplus_csv: Path, matched_csv: Path, size: int, channels: int):
    """The joined faces under their FER-2013 label and under FER+'s majority, and how often they agree."""
    votes = pd.read_csv(ferplus_csv)
    pairs = pd.read_csv(matched_csv)
    rows = pd.read_csv(fer_csv, usecols=["emotion", "pixels"]).iloc[
        pairs["matched_row_in_fer2013_csv_gz"]
    ]
    v = votes.iloc[pairs["original_row"]][list(votes.columns[2:])].to_numpy()
    top = v.argmax(axis=1)
    unique = (v == v.max(axis=1, keepdims=True)).sum(axis=1) == 1
    columns = list(votes.columns[2:])
    plus = np.array([FERPLUS.get(columns[k], -1) for k in top])
    keep = unique & (plus >= 0)
    faces = [np.array(p.split(), dtype=np.uint8).reshape(48, 48) for p in rows["pixels"]]
    images = resized(faces, size, channels)[keep]
    fer = rows["emotion"].to_numpy()[keep].astype(int)
    sets = {"FER-2013 label": (images, fer), "FER+ majority": (images, plus[keep])}
    return sets, {
        "joined": int(len(pairs)),
        "kept": int(keep.sum()),
        "labels agree": float((fer == plus[keep]).mean()),
    }


def ckplus(folder: Path, size: int, channels: int) -> Faces:
    """CK+48's faces of the classes FER-2013 has (its contempt folder left out)."""
    crops, labels = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name.lower() not in CLASS_SYNONYMS:
            continue
        for png in sorted(sub.glob("*.png")):
            crops.append(read_rgb(png))
            labels.append(CLASS_SYNONYMS[sub.name.lower()])
    return resized(crops, size, channels), np.array(labels)


def evaluation_sets(data: Path, size: int, channels: int) -> tuple[dict[str, Faces], dict]:
    """Every row's faces, once, for any model of this input size."""
    fer_csv = data / "fer2013" / "fer2013.csv.gz"
    test, _ = shipped.privatetest(str(fer_csv), size, channels)
    sets = {"FER-2013 PrivateTest": (test.images, test.labels)}
    faces96 = load_faces(
        DataConfig(
            path=str(data / "expw" / "faces96"),
            format="folders",
            image_size=size,
            channels=channels,
        ),
        seed=0,
    )
    sets["ExpW faces96 crops"] = (faces96.images, faces96.labels)
    photos = expw_photos(
        data / "expw" / "label_origin_sample.lst", data / "expw" / "origin_sample", size, channels
    )
    sets |= {f"ExpW origin_sample, {k}": v for k, v in photos.items()}
    sets["CK+48, six shared classes"] = ckplus(data / "ckplus48" / "CK+48", size, channels)
    plus, agreement = ferplus(
        fer_csv,
        data / "ferplus" / "fer2013new.csv",
        data / "fer2013" / "fer2013_first1167_original_rows_matched.csv",
        size,
        channels,
    )
    sets |= {f"FER+ joined Training faces vs {k}": v for k, v in plus.items()}
    return sets, agreement


def scored(model, tta: str, sets: dict[str, Faces]) -> dict[str, tuple[dict, np.ndarray]]:
    """Each row's scores and the model's predicted class per face."""
    out = {}
    for name, (images, labels) in sets.items():
        probs = predict(model, images, tta)[0]
        out[name] = (score(labels, probs), probs.argmax(axis=1))
    return out
