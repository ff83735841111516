"""Test-time views of one FER-2013 model: accuracy per `train.tta` mode on PublicTest, where a recipe
picks its views, and on PrivateTest, each with its macro-F1 and paired gain over the centre view alone.

    python benchmarks/tta_views.py MODEL_URI [--data ../shared/data/fer2013/fer2013.csv.gz]
        [--json benchmarks/results/tta_views.json]

MODEL_URI: an MLflow model (models:/m-<id>, runs:/<run_id>/model) of a model that crops (augment.crop).
Pick the views on the PublicTest column; the PrivateTest column says what that choice is worth.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from workbench.cli import quiet_tensorflow

quiet_tensorflow()

from results_file import write_results  # noqa: E402

from workbench.core import stats  # noqa: E402
from workbench.core.settings import TTA_MODES  # noqa: E402
from workbench.core.tta import predict  # noqa: E402
from workbench.serve import shipped  # noqa: E402
from workbench.serve.evaluation import score  # noqa: E402
from workbench.serve.predictor import load_classifier  # noqa: E402

SETS = {"PublicTest": "val", "PrivateTest": "test"}


def mode_row(model, mode: str, sets: dict) -> dict:
    row = {"mode": mode}
    for name, faces in sets.items():
        t0 = time.perf_counter()
        probs, plain = predict(model, faces.images, mode)
        centre = probs if plain is None else plain  # predict returns the centre view beside
        gain = stats.paired(faces.labels, probs.argmax(1), centre.argmax(1)).figures()
        scores = score(faces.labels, probs)
        row[name] = {
            "accuracy": scores["accuracy"],
            "accuracy_ci": scores["accuracy_ci"],
            "macro_f1": scores["macro_f1"],
            "macro_f1_ci": scores["macro_f1_ci"],
            "gain_over_centre": gain["accuracy_gain"],
            "mcnemar_p": gain["mcnemar_p"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an MLflow model URI of a model that crops")
    parser.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    parser.add_argument("--json", default="benchmarks/results/tta_views.json")
    args = parser.parse_args()
    model = load_classifier(args.model)
    split, _ = shipped.official_split(
        args.data, int(model.input_shape[1]), int(model.input_shape[-1])
    )
    sets = {name: getattr(split, part) for name, part in SETS.items()}
    rows = []
    print(
        f"{'views':<8} "
        + " ".join(f"{n + ' [95%]':>24} {'gain':>8} {'p':>8} {'mF1':>6}" for n in SETS)
    )
    for mode in TTA_MODES:
        rows.append(mode_row(model, mode, sets))
        cells = [rows[-1][n] for n in SETS]
        print(
            f"{mode:<8} "
            + " ".join(
                f"{c['accuracy']:.4f} [{c['accuracy_ci'][0]:.3f}, {c['accuracy_ci'][1]:.3f}]"
                f"{c['gain_over_centre'][0]:+9.4f} {c['mcnemar_p']:8.2g} {c['macro_f1']:6.4f}"
                for c in cells
            )
        )
    write_results(Path(args.json), {"model": args.model, "data": args.data, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
