"""Time to accuracy on full FER-2013: PublicTest accuracy against training minutes for each recipe, and
its PrivateTest scores once at the end (epoch picked on PublicTest), paired against the first row.

    python benchmarks/time_to_accuracy.py [--data fer2013.csv.gz] [--experiments fer2013-original
        fer2013-fast fer2013] [--set KEY=VALUE ...] [--json benchmarks/results/time_to_accuracy.json]

Each experiment is `python -m workbench.run NAME`'s run: a finished run of the same config and data is
read back, an unfinished one resumed, none started. The first row (the original project's recipe,
experiments/fer2013-original.yaml) is the baseline the others are tested against, face by face.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli import quiet_tensorflow, user_errors

quiet_tensorflow()

import mlflow  # noqa: E402
from results_file import write_results  # noqa: E402

from workbench.config import ExperimentConfig, load_config  # noqa: E402
from workbench.studies import paired  # noqa: E402
from workbench.tracking import store  # noqa: E402

THRESHOLDS = (0.55, 0.60, 0.65, 0.70)  # PublicTest accuracies whose first epoch the table times
EXPERIMENTS = ("fer2013-original", "fer2013-fast", "fer2013")


def finished_or_trained(cfg: ExperimentConfig) -> str:
    """The newest FINISHED run of cfg on its data, else the run trained (or resumed) now."""
    from workbench.data import load_faces
    from workbench.experiment import resume_key, run_experiment

    key = resume_key(cfg, load_faces(cfg.data, cfg.data_seed).digest)
    experiment_id = store.configure(cfg.experiment_name)  # before the client: it sets the store
    found = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.resume_key = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else run_experiment(cfg).run_id


def curve(run_id: str) -> list[tuple[float, float]]:
    """(training minutes at the end of each epoch, its PublicTest accuracy)."""
    client = mlflow.MlflowClient()
    history = {
        key: {m.step: m.value for m in client.get_metric_history(run_id, key)}
        for key in ("epoch_seconds", "val_accuracy")
    }
    minutes, points = 0.0, []
    for step in sorted(history["val_accuracy"]):
        minutes += history["epoch_seconds"].get(step, 0.0) / 60
        points.append((round(minutes, 2), round(history["val_accuracy"][step], 4)))
    return points


def row(name: str, run_id: str) -> dict:
    m = mlflow.MlflowClient().get_run(run_id).data.metrics
    points = curve(run_id)
    reached = {
        f"{t:.2f}": next((minutes for minutes, acc in points if acc >= t), None) for t in THRESHOLDS
    }
    return {
        "experiment": name,
        "run_id": run_id,
        "epochs": int(m["epochs_run"]),
        "best_epoch": int(m["best_epoch"]) + 1,
        "train_minutes": round(m.get("train_seconds", 0.0) / 60, 1),
        "images_per_second": round(m.get("train_images_per_second", 0.0), 1),
        "parameters": int(m["model_parameters"]),
        "best_publictest_accuracy": max(acc for _, acc in points),
        "minutes_to_publictest": reached,
        "privatetest": {
            k: [m[f"test_{k}"], m[f"test_{k}_ci_low"], m[f"test_{k}_ci_high"]]
            for k in ("accuracy", "macro_f1")
        },
        "chance": {k: m[f"test_chance_{k}"] for k in ("uniform", "majority")},
        "curve": points,
    }


def against(baseline: dict, other: dict) -> dict:
    """`other` (A) against the baseline row (B), face by face."""
    return paired.compare_pair(other["run_id"], baseline["run_id"]).figures()


def table(rows: list[dict]) -> str:
    head = "| experiment | epochs (best) | train min | img/s | PublicTest best | "
    head += " | ".join(f"min to {t:.2f}" for t in THRESHOLDS)
    head += " | PrivateTest acc [95%] | macro-F1 | vs first row |\n"
    lines = [head + "|---" * (9 + len(THRESHOLDS) - 1) + "|"]
    for r in rows:
        acc, f1 = r["privatetest"]["accuracy"], r["privatetest"]["macro_f1"]
        gain = r.get("vs_baseline")
        vs = (
            "baseline"
            if gain is None
            else f"{gain['accuracy_gain'][0]:+.4f}, p {gain['mcnemar_p']:.2g}"
        )
        reached = " | ".join(
            "-" if v is None else f"{v:.0f}" for v in r["minutes_to_publictest"].values()
        )
        lines.append(
            f"| {r['experiment']} | {r['epochs']} ({r['best_epoch']}) | {r['train_minutes']} | "
            f"{r['images_per_second']:.0f} | {r['best_publictest_accuracy']:.4f} | {reached} | "
            f"{acc[0]:.4f} [{acc[1]:.3f}, {acc[2]:.3f}] | {f1[0]:.4f} | {vs} |"
        )
    chance = rows[0]["chance"]
    lines.append(
        f"\nChance on PrivateTest: {chance['uniform']:.3f} uniform, {chance['majority']:.3f} always "
        "the commonest class. Minutes: training only (epochs and their PublicTest scoring); "
        "'vs first row': paired accuracy gain, exact McNemar p."
    )
    return "\n".join(lines)


def figure(rows: list[dict]):
    """PublicTest accuracy against training minutes, one line per recipe."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in rows:
        minutes, acc = zip(*r["curve"], strict=True)
        fig.add_scatter(x=minutes, y=acc, mode="lines+markers", name=r["experiment"])
    fig.update_layout(
        title="Time to accuracy on FER-2013 (PublicTest, per epoch)",
        xaxis_title="training minutes",
        yaxis_title="PublicTest accuracy",
    )
    return fig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/time_to_accuracy.json")
    )
    args = parser.parse_args()
    with user_errors():
        rows = []
        for name in args.experiments:
            cfg = load_config(name, [f"data.path={args.data}", *args.set])
            rows.append(row(name, finished_or_trained(cfg)))
        for r in rows[1:]:
            r["vs_baseline"] = against(rows[0], r)
        text = table(rows)
        print(f"\n{text}\n")
        args.json.with_suffix(".md").write_text(text + "\n")
        figure(rows).write_html(args.json.with_suffix(".html"), include_plotlyjs="cdn")
        write_results(args.json, {"data": args.data, "overrides": args.set, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
