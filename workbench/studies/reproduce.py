"""`make reproduce-65`: the original project's protocol (SMOTE before the split), its honest twin, and the gap.

    python -m workbench.reproduce [--data expw|fer2013] [--path PATH] [--epochs N] [--set key=value ...]

Both protocols train the same model with the same budget on the same faces, as two nested MLflow runs
under one parent run that holds the comparison report. Exits 1 when the original protocol's test
accuracy is below the target (0.645), 0 when it reaches it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli import add_config_arguments, positive_int, quiet_tensorflow, user_errors

TARGET = 0.645
EXPERIMENT = "reproduce-65"
EXPW_HOME = "http://mmlab.ie.cuhk.edu.hk/projects/socialrelation/index.html"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m workbench.reproduce", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", choices=["expw", "fer2013"], default="expw")
    parser.add_argument(
        "--path",
        default=None,
        help="ExpW: folder with label.lst (and its origin/ images; --set data.crops_dir=... for a "
        "folder of crops cut by the same boxes) or the label.lst itself; FER-2013: the CSV",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="fewer epochs for a quick pass (the protocol: 50)",
    )
    parser.add_argument("--target", type=float, default=TARGET)
    parser.add_argument(
        "--report-dir", default="reports", help="where the markdown/HTML comparison is written"
    )
    add_config_arguments(parser)
    return parser.parse_args(argv)


def data_settings(args) -> tuple[dict[str, object], list[str]]:
    """Config values (dotted key -> value, set as they are: a path is never re-read as YAML) for the
    chosen dataset, and notes to print about it."""
    from workbench.data import SAMPLE_EXPW
    from workbench.errors import WorkbenchError

    if args.data == "fer2013":
        if not args.path:
            raise WorkbenchError(
                "--data fer2013 needs --path to the FER-2013 CSV (make reproduce-65 DATA=fer2013 FER=...)"
            )
        path = Path(args.path)
        if not path.is_file():
            raise WorkbenchError(
                f"FER=...: {path} not found; pass the FER-2013 CSV (emotion,pixels,Usage), "
                "e.g. make reproduce-65 DATA=fer2013 FER=/data/fer2013.csv"
            )
        # FER-2013 has no confidence; its own Usage split is ignored by the original protocol (random 70/15/15).
        return {"data.path": str(path), "data.format": "fer2013", "data.min_confidence": 0.0}, []
    if args.path is None:
        note = (
            f"no full ExpW given (make reproduce-65 EXPW=/path/to/ExpW): using the {SAMPLE_EXPW.parent.name} "
            f"sample bundled with the workbench ({SAMPLE_EXPW}), far too small to reach the target. "
            f"ExpW (label.lst + 91,793 faces in origin images) is distributed by its authors: {EXPW_HOME}"
        )
        return {"data.path": str(SAMPLE_EXPW), "data.min_confidence": 0.0}, [note]
    path = Path(args.path)
    if not path.exists():
        raise WorkbenchError(
            f"EXPW={path}: no such file or folder (a folder with label.lst and the origin/ images)"
        )
    return {"data.path": str(path)}, []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow(args.verbose)
    with user_errors():
        from workbench.config import apply_overrides, config_from_dict, load_tree, set_dotted

        settings, notes = data_settings(args)
        if args.epochs is not None:
            settings["train.epochs"] = args.epochs
        tree, source = load_tree(EXPERIMENT)
        for key, value in settings.items():
            set_dotted(tree, key, value)
        original = config_from_dict(apply_overrides(tree, args.overrides), source)  # --set last
        for note in notes:
            print(f"note: {note}")
        from workbench.studies.protocol_pair import run_comparison

        outcome = run_comparison(original, args.data, args.target, Path(args.report_dir))
        print(outcome.verdict)
        return 0 if outcome.reached else 1
