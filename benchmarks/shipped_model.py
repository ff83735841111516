"""The shipped model on faces it never trained on, and what eye alignment does to it.

    python benchmarks/shipped_model.py [--shared ../shared/data] [--json benchmarks/results/shipped_model.json]
        [--candidate DIR/model.keras [--candidate-tta tencrop]]


The rows are workbench/serve/evaluation.py's (accuracy, macro-F1, chance = 1/7 and the commonest
class's share beside each), then the faces/s the model classifies as predict does. With
`--candidate FILE`, a model meant to replace the shipped one is scored on the very same faces and
each row gets the paired difference (candidate - shipped, bootstrap 95% interval) and exact McNemar p.
A candidate: `python tools/ship_model.py RUN_ID --out DIR` (its card beside it gives the test-time
views), then `--candidate DIR/model.keras`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from workbench.cli import quiet_tensorflow

quiet_tensorflow()

from results_file import write_results  # noqa: E402

from workbench.core import stats  # noqa: E402
from workbench.core.tta import TTA_MODES  # noqa: E402
from workbench.serve import shipped  # noqa: E402
from workbench.serve.evaluation import evaluation_sets, scored  # noqa: E402
from workbench.serve.predictor import view_probabilities  # noqa: E402

SPEED_SET, BATCH = "FER-2013 PrivateTest", 64  # predict's default batch


def candidate_tta(path: Path) -> str:
    """The test-time views of the card beside a candidate file, else flip."""
    return shipped.tta(path.parent) if (path.parent / shipped.CARD_FILE.name).is_file() else "flip"


def faces_per_second(model, tta: str, sets) -> float:
    """Faces classified a second as predict does (batches of 64, `tta`'s views), after a warm-up."""
    x = sets[SPEED_SET][0][:2048].astype("float32")
    view_probabilities(model, x[:BATCH], tta, BATCH)  # traces the graph
    t0 = time.perf_counter()
    view_probabilities(model, x, tta, BATCH)
    return len(x) / (time.perf_counter() - t0)


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
    parser.add_argument(
        "--candidate-tta",
        choices=TTA_MODES,
        help="default: its card's (tools/ship_model.py --out DIR writes one beside it), else flip",
    )
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
        args.candidate_tta = args.candidate_tta or candidate_tta(args.candidate)
        candidate = scored(other, args.candidate_tta, sets)
        pairs = paired_rows(sets, candidate, rows)
    print(
        f"\nshipped model: {card['model']}, TTA {tta} (card PrivateTest {card['test']['accuracy']:.4f})\n"
    )
    print_table(rows, candidate, pairs)
    print(
        f"FER+ majority and FER-2013 label agree on {agreement['labels agree']:.1%} of the joined faces"
    )
    speed = {"shipped": faces_per_second(model, tta, sets)}
    if candidate:
        speed["candidate"] = faces_per_second(other, args.candidate_tta, sets)
    print(
        "faces/s, batches of 64 with their views: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in speed.items())
    )
    figures = {
        "model": card["model"],
        "mlflow_run": card["mlflow"]["run_id"],
        "tta": tta,
        "card_privatetest_accuracy": card["test"]["accuracy"],
        "rows": {name: r for name, (r, _) in rows.items()},
        "ferplus": agreement,
        "faces_per_second": speed["shipped"],
    }
    if candidate:
        figures["candidate"] = {"file": str(args.candidate), "tta": args.candidate_tta}
        figures["candidate"]["rows"] = {name: r for name, (r, _) in candidate.items()}
        figures["candidate"]["paired"] = pairs
        figures["candidate"]["faces_per_second"] = speed["candidate"]
    write_results(Path(args.json), figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
