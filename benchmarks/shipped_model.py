"""The shipped model on faces it never trained on, and what eye alignment does to it.

    python benchmarks/shipped_model.py [--shared ../shared/data] [--json benchmarks/results/shipped_model.json]

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
from workbench.core.metrics import chance_levels, evaluate  # noqa: E402
from workbench.core.tta import predict  # noqa: E402
from workbench.data import load_faces  # noqa: E402
from workbench.data.decode import read_rgb, resize_face  # noqa: E402
from workbench.data.expw import crop_face, parse_label_file  # noqa: E402
from workbench.serve import shipped  # noqa: E402
from workbench.serve.detect import Box, crop, iou, make_detector  # noqa: E402

# FER+ column -> FER-2013 class index (contempt, unknown and not-a-face have no FER-2013 class)
FERPLUS = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5}
FERPLUS["neutral"] = 6


def score(labels: np.ndarray, probs: np.ndarray) -> dict:
    m = evaluate(np.asarray(labels), probs, prefix="").metrics
    return {
        "faces": int(len(labels)),
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
    } | chance_levels(np.asarray(labels))


def classify(model, crops: list[np.ndarray], tta: str) -> np.ndarray:
    size, channels = int(model.input_shape[1]), int(model.input_shape[-1])
    images = np.stack([resize_face(c, size, channels) for c in crops])
    return predict(model, images, tta)[0]


def expw_photos(model, tta: str, labels: Path, folder: Path) -> dict[str, dict]:
    """The labelled faces cut by their label box, and those MTCNN finds, cut with and without alignment."""
    boxes = parse_label_file(labels)
    photos = {name: read_rgb(folder / name) for name in {b.image for b in boxes}}
    by_label = [crop_face(photos[b.image], b) for b in boxes]
    out = {"label box": score(np.array([b.label for b in boxes]), classify(model, by_label, tta))}
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
        out[name] = score(y, classify(model, crops, tta))
    return out


def ferplus(model, tta: str, fer_csv: Path, ferplus_csv: Path, matched_csv: Path) -> dict:
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
    images = np.stack(
        [np.array(p.split(), dtype=np.uint8).reshape(48, 48) for p in rows["pixels"]]
    )[keep]
    probs = classify(model, list(images), tta)
    fer = rows["emotion"].to_numpy()[keep].astype(int)
    return {
        "joined": int(len(pairs)),
        "kept": int(keep.sum()),
        "FER-2013 label": score(fer, probs),
        "FER+ majority": score(plus[keep], probs),
        "labels agree": float((fer == plus[keep]).mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared/data", help="the project's real data")
    parser.add_argument("--json", default="benchmarks/results/shipped_model.json")
    args = parser.parse_args()
    data = Path(args.shared)
    model, card = shipped.load_model(), shipped.card()
    tta = shipped.tta()

    fer_csv = data / "fer2013" / "fer2013.csv.gz"
    private = shipped.sample_check(model, tta, str(fer_csv))
    size = int(model.input_shape[1])
    crops = load_faces(
        DataConfig(path=str(data / "expw" / "faces96"), format="folders", image_size=size),
        seed=0,
    )
    expw = {"faces96 crops": score(crops.labels, predict(model, crops.images, tta)[0])}
    expw |= expw_photos(
        model, tta, data / "expw" / "label_origin_sample.lst", data / "expw" / "origin_sample"
    )
    plus = ferplus(
        model,
        tta,
        fer_csv,
        data / "ferplus" / "fer2013new.csv",
        data / "fer2013" / "fer2013_first1167_original_rows_matched.csv",
    )

    print(f"\nshipped model: {card['model']}, TTA {tta}\n")
    print(
        f"{'data':<48} {'faces':>6} {'accuracy':>9} {'macro-F1':>9} {'chance':>7} {'majority':>9}"
    )
    rows = [("FER-2013 PrivateTest (card: " + f"{card['test']['accuracy']:.4f})", private)]
    rows += [(f"ExpW {k}", v) for k, v in expw.items()]
    rows += [
        (f"FER+ joined Training faces vs {k}", plus[k]) for k in ("FER-2013 label", "FER+ majority")
    ]
    for name, r in rows:
        print(
            f"{name:<48} {r['faces']:>6} {r['accuracy']:>9.4f} {r['macro_f1']:>9.4f} "
            f"{r['chance_uniform']:>7.3f} {r['chance_majority']:>9.3f}"
        )
    print(f"FER+ majority and FER-2013 label agree on {plus['labels agree']:.1%} of those faces")
    write_results(
        Path(args.json),
        {
            "model": card["model"],
            "mlflow_run": card["mlflow"]["run_id"],
            "tta": tta,
            "fer2013_privatetest": private,
            "card_privatetest_accuracy": card["test"]["accuracy"],
            "expw": expw,
            "ferplus": plus,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
