"""`python -m workbench.compare`: rank logged runs by a metric, print a table, write a plotly report.

    python -m workbench.compare [--experiment NAME ...] [--runs ID ...] [--metric test_macro_f1] [--top 20]
                                [--out reports/compare.html] [--to-mlflow]

The report holds the metric against each key parameter, a per-class F1 heatmap across runs and the
runs' validation curves overlaid. `--to-mlflow` also stores it as an artifact of a small MLflow run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from workbench.cli import positive_int, user_errors
from workbench.errors import WorkbenchError

KEY_PARAMS = (
    "model.name",
    "train.learning_rate",
    "augment.strength",
    "balance.smote",
    "model.conv_dropout",
    "model.dense_dropout",
    "train.epochs",
    "protocol",
)
SHORT = {
    "model.name": "model",
    "train.learning_rate": "lr",
    "augment.strength": "aug",
    "balance.smote": "smote",
    "model.conv_dropout": "conv_drop",
    "model.dense_dropout": "dense_drop",
    "train.epochs": "epochs",
    "protocol": "protocol",
}
CURVES = ("val_macro_f1", "val_accuracy")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m workbench.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        help="MLflow experiment name (repeatable; default baseline)",
    )
    parser.add_argument(
        "--runs", nargs="+", default=[], metavar="ID", help="compare exactly these run ids"
    )
    parser.add_argument(
        "--metric", default="test_macro_f1", help="rank by this metric (higher is better)"
    )
    parser.add_argument(
        "--top", type=positive_int, default=20, help="rows in the table and runs in the report"
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        type=positive_int,
        metavar=("I", "J"),
        help="compare the runs ranked I and J face by face (two --runs are compared by themselves)",
    )
    parser.add_argument("--out", default="reports/compare.html")
    parser.add_argument(
        "--to-mlflow",
        action="store_true",
        help="also log the report to MLflow (experiment 'comparisons')",
    )
    return parser.parse_args(argv)


def find_runs(client, experiments: list[str], run_ids: list[str], metric: str, top: int):
    from mlflow.exceptions import MlflowException

    from workbench.tracking.store import display_uri, tracking_uri

    if run_ids:
        runs = []
        for run_id in run_ids:
            try:
                runs.append(client.get_run(run_id))
            except MlflowException:
                raise WorkbenchError(
                    f"--runs {run_id}: no such run in {display_uri(tracking_uri())}"
                ) from None
        missing = [r.info.run_id for r in runs if metric not in r.data.metrics]
        if missing:
            raise WorkbenchError(
                f"--metric {metric}: run {missing[0]} has no such metric "
                f"(it has e.g. {', '.join(sorted(client.get_run(missing[0]).data.metrics)[:5])})"
            )
        return sorted(runs, key=lambda r: -r.data.metrics[metric])
    ids = []
    for name in experiments or ["baseline"]:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            known = ", ".join(sorted(e.name for e in client.search_experiments())) or "none yet"
            raise WorkbenchError(
                f"--experiment {name}: no such MLflow experiment in {display_uri(tracking_uri())} (known: {known})"
            )
        ids.append(exp.experiment_id)
    # a seeds parent stands for its children: ranked by their mean
    runs = [
        r
        for r in client.search_runs(
            ids, filter_string="attributes.status = 'FINISHED'", max_results=5000
        )
        if metric in r.data.metrics and r.data.tags.get("seeds.role") != "seed"
    ]
    runs = sorted(runs, key=lambda r: -r.data.metrics[metric])[:top]
    if not runs:
        raise WorkbenchError(
            f"--metric {metric}: no finished run in {', '.join(experiments or ['baseline'])} has it "
            "(sweep trials log val_* metrics; the run of their best trial on test logs test_*)"
        )
    return runs


def table(runs, metric: str) -> str:
    from workbench import CLASS_NAMES
    from workbench.core.metrics import chance_verdict

    header = [
        "#",
        "run",
        "name",
        *[SHORT[p] for p in KEY_PARAMS],
        metric,
        "95% interval",
        "test_acc",
        "chance",
        "beats",
        "macro_f1",
        *[f"f1_{c[:3]}" for c in CLASS_NAMES],
    ]
    rows = []
    for i, r in enumerate(runs, start=1):
        m, p = r.data.metrics, r.data.params
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"  # noqa: E731
        verdict = chance_verdict(m) if "test_chance_uniform" in m and "test_accuracy" in m else None
        rows.append(
            [
                str(i),
                r.info.run_id[:8],
                (r.info.run_name or "")[:38],
                *[_short(p.get(k, "-")) for k in KEY_PARAMS],
                fmt(m.get(metric)),
                f"[{m[f'{metric}_ci_low']:.3f}, {m[f'{metric}_ci_high']:.3f}]"
                if f"{metric}_ci_low" in m
                else "-",
                fmt(m.get("test_accuracy")),
                f"{verdict.chance:.3f}" if verdict else "-",
                ("yes" if verdict.beats else "NO") if verdict else "-",
                fmt(m.get("test_macro_f1")),
                *[fmt(m.get(f"test_f1_{c}")) for c in CLASS_NAMES],
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header, *rows]
    )


def pair_to_compare(found, args):
    """The two runs to compare face by face: `--pair I J` of the table, or the two `--runs`."""
    if args.pair:
        i, j = args.pair
        if max(i, j) > len(found) or i == j:
            raise WorkbenchError(f"--pair {i} {j}: two different ranks of the {len(found)} rows")
        return found[i - 1], found[j - 1]
    if len(args.runs) == 2:
        by_id = {r.info.run_id: r for r in found}
        return by_id[args.runs[0]], by_id[args.runs[1]]
    return None


def label(run) -> str:
    return f"{run.info.run_id[:8]} {run.info.run_name or ''}".strip()


def _short(value: str) -> str:
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return {"split-then-resample": "honest", "original-smote-before-split": "ORIGINAL"}.get(
            value, value
        )[:12]


def report_figures(client, runs, metric: str):
    """The ranking report's figures: the metric against each parameter that varies, per-class F1,
    and the validation curves."""
    labels = [f"{r.info.run_id[:8]} {(r.info.run_name or '')[:30]}" for r in runs]
    return {
        "metric_vs_params": metric_scatter(runs, metric, labels),
        "per_class_f1": f1_heatmap(runs, labels),
        "validation_curves": validation_curves(client, runs, labels),
    }


def metric_scatter(runs, metric: str, labels: list[str]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    params = [p for p in KEY_PARAMS if len({r.data.params.get(p) for r in runs}) > 1]
    params = params or list(KEY_PARAMS[:3])
    fig = make_subplots(
        rows=1, cols=len(params), subplot_titles=[SHORT[p] for p in params], shared_yaxes=True
    )
    for col, p in enumerate(params, start=1):
        x = [r.data.params.get(p) for r in runs]
        try:
            x = [float(v) for v in x]
        except (TypeError, ValueError):
            pass
        y = [r.data.metrics[metric] for r in runs]
        marker = go.Scatter(x=x, y=y, mode="markers", text=labels, marker={"size": 10})
        fig.add_trace(marker.update(showlegend=False), row=1, col=col)
        if p == "train.learning_rate":
            fig.update_xaxes(type="log", row=1, col=col)
    fig.update_layout(
        title=f"{metric} against each parameter that varies",
        width=320 * len(params) + 100,
        height=420,
    )
    fig.update_yaxes(title_text=metric, row=1, col=1)
    return fig


def f1_heatmap(runs, labels: list[str]):
    import plotly.graph_objects as go

    from workbench import CLASS_NAMES

    z = [[r.data.metrics.get(f"test_f1_{c}", float("nan")) for c in CLASS_NAMES] for r in runs]
    text = [[f"{v:.2f}" for v in row] for row in z]
    cells = go.Heatmap(
        z=z, x=list(CLASS_NAMES), y=labels, colorscale="Viridis", zmin=0, zmax=1, text=text
    )
    fig = go.Figure(cells.update(texttemplate="%{text}"))
    fig.update_layout(
        title="Per-class test F1 across runs",
        yaxis_autorange="reversed",
        width=900,
        height=160 + 28 * len(runs),
    )
    return fig


def validation_curves(client, runs, labels: list[str]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(CURVES), subplot_titles=CURVES)
    for r, label in zip(runs, labels):
        for col, key in enumerate(CURVES, start=1):
            history = sorted(client.get_metric_history(r.info.run_id, key), key=lambda h: h.step)
            if not history:
                continue
            line = go.Scatter(
                x=[h.step + 1 for h in history],
                y=[h.value for h in history],
                name=label,
                legendgroup=label,
                mode="lines+markers",
            )
            fig.add_trace(line.update(showlegend=col == 1), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title="Validation curves", width=1200, height=480)
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with user_errors():
        import mlflow

        from workbench.files import atomic_path, writable_dir
        from workbench.tracking import runs, store
        from workbench.tracking.figures import write_figures, write_report

        uri = store.tracking_uri()
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        out = Path(args.out)
        writable_dir(out.parent, "--out")
        found = find_runs(client, args.experiment, args.runs, args.metric, args.top)
        print(table(found, args.metric))
        pair = pair_to_compare(found, args)
        if pair is not None:
            from workbench.studies.paired import compare_pair, describe

            a, b = pair
            print("\n" + describe(compare_pair(a.info.run_id, b.info.run_id), label(a), label(b)))
        figs = report_figures(client, found, args.metric)
        with atomic_path(out) as tmp:
            write_report(figs, tmp, f"{len(found)} runs ranked by {args.metric}")
        print(f"\nreport: {out}")
        if args.to_mlflow:
            store.configure("comparisons")
            with runs.tracked_run(
                f"compare {len(found)} runs by {args.metric}",
                tags={"compared_runs": ",".join(r.info.run_id for r in found)},
            ):
                with tempfile.TemporaryDirectory() as d:
                    write_figures(figs, Path(d), png=False)
                    (Path(d) / "table.txt").write_text(table(found, args.metric) + "\n")
                    mlflow.log_artifacts(d, "compare")
                mlflow.log_artifact(str(out), "compare")
            print("logged to MLflow experiment 'comparisons'")
    return 0
