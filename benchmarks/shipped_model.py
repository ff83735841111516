"""The shipped model on faces it never trained on, and what eye alignment does to it.

    python benchmarks/shipped_model.py [--shared ../shared/data] [--json benchmarks/results/shipped_model.json]
        [--candidate model.keras [--candidate-tta tencrop]]

Rows (accuracy, macro-F1, chance = 1/7 and the commonest class's share, beside each):
- FER-2013 PrivateTest, whole (3,589 faces): the card's own figure, recomputed from the weights.
- ExpW, cross-dataset (trained on FER-2013, tested on ExpW web photos): the 5,705 faces96 crops, cut by
  label.lst's boxes; and the 368 labelled faces of origin_sample cut from their photos three ways: by the
  label box, by the matching MTCNN detection (IoU >= 0.5) as it is, and the same detection turned so
  the eyes are level (what `workbench.predict` does by default). The last two are on the same faces, so
  their difference is alignment's effect alone.
- FER+ (10 taggers a face, majority label): the 1,167 FER-2013 faces that can be joined to FER+ (see
  ../shared/data/ferplus/SOURCE.md). They are Training faces, so the model has seen them: the row says how
  often the model agrees with FER+'s majority against FER-2013's own label, not how well it generalises.
- CK+48 (posed lab faces, ../shared/data/ckplus48): its 927 faces of the six classes it shares with
  FER-2013 (contempt left out; CK+ has no neutral), scored over all seven outputs.

With `--candidate FILE`, a model meant to replace the shipped one is scored on the very same faces and
each row gets the paired difference (candidate - shipped, bootstrap 95% interval) and exact McNemar p.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli import quiet_tensorflow

quiet_tensorflow()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from results_file import write_results  # noqa: E402

from workbench.config import DataConfig  # noqa: E402
from workbench.core import stats  # noqa: E402
from workbench.core.metrics import chance_levels, evaluate  # noqa: E402
from workbench.core.tta import TTA_MODES, predict  # noqa: E402
from workbench.data import load_faces  # noqa: E402
from workbench.data.decode import read_rgb, resize_face  # noqa: E402
from workbench.data.expw import crop_face, parse_label_file  # noqa: E402
from workbench.data.folders import CLASS_SYNONYMS  # noqa: E402
from workbench.serve import shipped  # noqa: E402
from workbench.serve.detect import Box, crop, iou, make_detector  # noqa: E402

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


def paired_rows(sets, candidate, current) -> dict[str, dict]:
    """Per row, the candidate (A) against the shipped model (B) on the same faces."""
    return {
        name: stats.paired(labels, candidate[name][1], current[name][1]).figures()
        for name, (_, labels) in sets.items()
    }


def print_table(rows: dict, candidate: dict | None, pairs: dict | None) -> None:
    head = f"{'data':<52} {'faces':>6} {'accuracy [95%]':>23} {'macro-F1':>9} {'chance':>7} {'majority':>9}"
    if candidate:
        head += f" {'candidate':>10} {'gain [95%]':>24} {'McNemar p':>10}"
    print(head)
    for name, (r, _) in rows.items():
        acc = f"{r['accuracy']:.4f} [{r['accuracy_ci'][0]:.3f}, {r['accuracy_ci'][1]:.3f}]"
        line = (
            f"{name:<52} {r['faces']:>6} {acc:>23} {r['macro_f1']:>9.4f} "
            f"{r['chance_uniform']:>7.3f} {r['chance_majority']:>9.3f}"
        )
        if candidate:
            g = pairs[name]["accuracy_gain"]
            gain = f"{g[0]:+.4f} [{g[1]:+.3f}, {g[2]:+.3f}]"
            line += f" {candidate[name][0]['accuracy']:>10.4f} {gain:>24} {pairs[name]['mcnemar_p']:>10.2g}"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared/data", help="the project's real data")
    parser.add_argument("--json", default="benchmarks/results/shipped_model.json")
    parser.add_argument(
        "--candidate", type=Path, help="a .keras model to test against the shipped one"
    )
    parser.add_argument("--candidate-tta", default="flip", choices=TTA_MODES)
    args = parser.parse_args()
    model, card, tta = shipped.load_model(), shipped.card(), shipped.tta()
    size, channels = int(model.input_shape[1]), int(model.input_shape[-1])
    sets, agreement = evaluation_sets(Path(args.shared), size, channels)
    rows = scored(model, tta, sets)
    candidate = pairs = None
    if args.candidate:
        other = shipped.load_model(args.candidate)
        if tuple(other.input_shape[1:]) != tuple(model.input_shape[1:]):
            raise SystemExit(
                f"{args.candidate}: input {other.input_shape[1:]}, the shipped model's {model.input_shape[1:]}"
            )
        candidate = scored(other, args.candidate_tta, sets)
        pairs = paired_rows(sets, candidate, rows)
    print(
        f"\nshipped model: {card['model']}, TTA {tta} (card PrivateTest {card['test']['accuracy']:.4f})\n"
    )
    print_table(rows, candidate, pairs)
    print(
        f"FER+ majority and FER-2013 label agree on {agreement['labels agree']:.1%} of the joined faces"
    )
    figures = {
        "model": card["model"],
        "mlflow_run": card["mlflow"]["run_id"],
        "tta": tta,
        "card_privatetest_accuracy": card["test"]["accuracy"],
        "rows": {name: r for name, (r, _) in rows.items()},
        "ferplus": agreement,
    }
    if candidate:
        figures["candidate"] = {"file": str(args.candidate), "tta": args.candidate_tta}
        figures["candidate"]["rows"] = {name: r for name, (r, _) in candidate.items()}
        figures["candidate"]["paired"] = pairs
    write_results(Path(args.json), figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
