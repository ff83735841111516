"""Duplicate faces across FER-2013's splits, and the shipped model's PrivateTest scores with and
without the test faces that copy a training face (exact pixels, or pHash within the threshold).

    python benchmarks/duplicates.py [--fer ../shared/data/fer2013/fer2013.csv.gz]

Writes benchmarks/results/duplicates_fer2013.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "duplicates_fer2013.json"
FER_DEFAULT = "../shared/data/fer2013/fer2013.csv.gz"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer", default=FER_DEFAULT, help="the full FER-2013 CSV")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    from workbench.cli import quiet_tensorflow, user_errors

    quiet_tensorflow()
    with user_errors():
        from workbench.config import load_config
        from workbench.core import stats
        from workbench.core.tta import predict
        from workbench.data import load_faces
        from workbench.dedupe import audit_duplicates
        from workbench.experiment import prepare_faces
        from workbench.serve import shipped

        model = shipped.load_model()
        cfg = load_config("baseline", [f"data.path={args.fer}"])
        cfg.data.image_size = int(model.input_shape[1])
        faces = load_faces(cfg.data, cfg.data_seed)
        prepared = prepare_faces(faces, cfg)
        dups = audit_duplicates(prepared)
        tta = shipped.tta()
        probs, _ = predict(model, prepared.test.images, tta)
        y, pred = prepared.test.labels, probs.argmax(axis=1)
        keep = ~dups.splits["test"].duplicated
        exact_only = ~dups.splits["test"].exact

        def scored(mask):
            point = dict(zip(stats.SCORED, map(float, stats.scores(y[mask], pred[mask]))))
            ci = stats.intervals(y[mask], pred[mask], prefix="")
            return {"faces": int(mask.sum())} | {
                k: [round(point[k], 4), round(ci[f"{k}_ci_low"], 4), round(ci[f"{k}_ci_high"], 4)]
                for k in ("accuracy", "macro_f1")
            }

        result = {
            "dataset": faces.path,
            "digest": faces.digest[:16],
            "hash": f"pHash 64-bit (32x32 grey DCT, 8x8 low frequencies), Hamming <= {dups.threshold}",
            "counts": dups.metrics() | {"train_faces": len(prepared.train)},
            "shipped_model": shipped.card()["model"],
            "privatetest_all": scored(keep | ~keep),
            "privatetest_without_exact_copies": scored(exact_only),
            "privatetest_without_copies": scored(keep),
            "privatetest_copies_only": scored(~keep),
        }
        for key, value in result.items():
            print(f"{key}: {value}")
        write_results(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
