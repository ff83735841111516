"""Time to accuracy on full FER-2013: PublicTest accuracy against training minutes for each recipe, and
its PrivateTest scores once at the end (epoch picked on PublicTest), paired against the first row.

    python benchmarks/time_to_accuracy.py [--data fer2013.csv.gz] [--experiments fer2013-original
        fer2013-fast fer2013] [--set KEY=VALUE ...] [--json benchmarks/results/time_to_accuracy.json]
        [--so-far [--run NAME=RUN_ID ...]]

Each experiment is `python -m workbench.run NAME`'s run: a finished run of the same config and data is
read back, an unfinished one resumed, none started. The first row (the original project's recipe,
experiments/fer2013-original.yaml) is the baseline the others are tested against, face by face.
`--so-far` trains nothing: each experiment's newest run as it stands (or the run named by `--run`),
its PublicTest curve to the last logged epoch; PrivateTest and the paired test only for finished
runs (an unfinished run is never tested); `--run LABEL=RUN_ID` with a LABEL that is none of the
experiments adds that run as a further row (a variant: `--run fer2013-fast/resnet=...`). Written
beside --json as <name>_so_far.*.
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
from workbench.tracking import lineage, store  # noqa: E402

THRESHOLDS = (0.55, 0.60, 0.65, 0.70)  # PublicTest accuracies whose first epoch the table times
EXPERIMENTS = ("fer2013-original", "fer2013-fast", "fer2013")


def newest_run(cfg: ExperimentConfig, finished: bool) -> str | None:
    """The newest run of cfg on its data (only a FINISHED one with `finished`), else None."""
    from workbench.data import load_faces
    from workbench.experiment import resume_key

    key = resume_key(cfg, load_faces(cfg.data, cfg.data_seed).digest)
    experiment_id = store.configure(cfg.experiment_name)  # before the client: it sets the store
    status = " and attributes.status = 'FINISHED'" if finished else ""
    found = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.resume_key = '{key}'{status}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def finished_or_trained(cfg: ExperimentConfig) -> str:
    """The newest FINISHED run of cfg on its data, else the run trained (or resumed) now."""
    from workbench.experiment import run_experiment

    return newest_run(cfg, finished=True) or run_experiment(cfg).run_id


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
    run = mlflow.MlflowClient().get_run(run_id)
    m, points = run.data.metrics, curve(run_id)
    reached = {
        f"{t:.2f}": next((minutes for minutes, acc in points if acc >= t), None) for t in THRESHOLDS
    }
    accuracies = [acc for _, acc in points]
    speed = images_per_second(run, points)
    tested = run.info.status == "FINISHED" and "test_accuracy" in m
    return {
        "experiment": name,
        "run_id": run_id,
        "status": run.info.status,
        "epochs": len(points),
        # the epoch the run restored (its monitor's), else the best PublicTest accuracy's so far
        "best_epoch": int(m["best_epoch"]) + 1 if tested else accuracies.index(max(accuracies)) + 1,
        "train_minutes": points[-1][0],
        "images_per_second": speed and round(speed, 1),
        "parameters": int(m["model_parameters"]),
        "best_publictest_accuracy": max(accuracies),
        "minutes_to_publictest": reached,
        "privatetest": {
            k: [m[f"test_{k}"], m[f"test_{k}_ci_low"], m[f"test_{k}_ci_high"]]
            for k in ("accuracy", "macro_f1")
        }
        if tested
        else None,
        "chance": {k: m[f"test_chance_{k}"] for k in ("uniform", "majority")} if tested else None,
        "curve": points,
    }


def images_per_second(run, points: list[tuple[float, float]]) -> float | None:
    """Training faces times epochs over training seconds (the run's own figure once it finished)."""
    if "train_images_per_second" in run.data.metrics:
        return run.data.metrics["train_images_per_second"]
    logged = lineage.split_input(run, "train")
    faces = {t.key: t.value for t in logged.tags}.get("faces") if logged else None
    return int(faces) * len(points) / (points[-1][0] * 60) if faces else None


def against(baseline: dict, other: dict) -> dict:
    """`other` (A) against the baseline row (B), face by face."""
    return paired.compare_pair(other["run_id"], baseline["run_id"]).figures()


def table(rows: list[dict]) -> str:
    head = "| experiment | epochs (best) | train min | img/s | PublicTest best | "
    head += " | ".join(f"min to {t:.2f}" for t in THRESHOLDS)
    head += " | PrivateTest acc [95%] | macro-F1 | vs first row |\n"
    lines = [head + "|---" * (9 + len(THRESHOLDS) - 1) + "|"]
    for r in rows:
        reached = " | ".join(
            "-" if v is None else f"{v:.0f}" for v in r["minutes_to_publictest"].values()
        )
        speed = "-" if r["images_per_second"] is None else f"{r['images_per_second']:.0f}"
        lines.append(
            f"| {r['experiment']} | {r['epochs']} ({r['best_epoch']}) | {r['train_minutes']:.1f} | "
            f"{speed} | {r['best_publictest_accuracy']:.4f} | {reached} | {tested_cells(r)} |"
        )
    chance = next((r["chance"] for r in rows if r["chance"]), None)
    note = "Minutes: training only (epochs and their PublicTest scoring); 'vs first row': paired "
    note += "accuracy gain, exact McNemar p; '-': not reached, or not tested (an unfinished run)."
    if chance:
        note = (
            f"Chance on PrivateTest: {chance['uniform']:.3f} uniform, {chance['majority']:.3f} "
            f"always the commonest class. {note}"
        )
    lines.append(f"\n{note}")
    return "\n".join(lines)


def tested_cells(r: dict) -> str:
    """PrivateTest accuracy [95%] | macro-F1 | vs first row; dashes for an unfinished run."""
    if r["privatetest"] is None:
        return f"- ({r['status'].lower()}) | - | -"
    acc, f1 = r["privatetest"]["accuracy"], r["privatetest"]["macro_f1"]
    gain = r.get("vs_baseline")
    vs = (
        "baseline"
        if gain is None
        else f"{gain['accuracy_gain'][0]:+.4f}, p {gain['mcnemar_p']:.2g}"
    )
    return f"{acc[0]:.4f} [{acc[1]:.3f}, {acc[2]:.3f}] | {f1[0]:.4f} | {vs}"


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
    parser.add_argument("--so-far", action="store_true", help="train nothing: the runs as they are")
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=RUN_ID",
        help="the run to table for experiment NAME; any other NAME labels one more row",
    )
    args = parser.parse_args()
    chosen = dict(item.split("=", 1) for item in args.run)
    out = args.json.with_name(f"{args.json.stem}_so_far.json") if args.so_far else args.json
    with user_errors():
        rows = []
        for name in args.experiments:
            cfg = load_config(name, [f"data.path={args.data}", *args.set])
            if not args.so_far:
                rows.append(row(name, finished_or_trained(cfg)))
            elif (run_id := chosen.get(name) or newest_run(cfg, finished=False)) and curve(run_id):
                rows.append(row(name, run_id))
            else:
                print(f"{name}: no epoch of a run of this config on this data yet (left out)")
        # A --run whose name is no experiment of the list is a variant's run (e.g. another model).
        rows += [
            row(label, run_id) for label, run_id in chosen.items() if label not in args.experiments
        ]
        tested = [r for r in rows if r["privatetest"] is not None]
        for r in tested[1:]:
            r["vs_baseline"] = against(tested[0], r)
        text = table(rows)
        print(f"\n{text}\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text + "\n")
        figure(rows).write_html(out.with_suffix(".html"), include_plotlyjs="cdn")
        write_results(out, {"data": args.data, "overrides": args.set, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
