"""What a study leaves on its parent run: Optuna's own plotly figures (optimization history,
importances, parallel coordinates, slice, contour, intermediate values), the trials table and counts,
study/report.html (best trial, epochs saved by pruning, the best trial on test beside chance), and
the summary printed at the end. A figure that cannot be drawn yet is noted, not fatal."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import optuna
import plotly.graph_objects as go
from optuna import visualization as vis

from workbench.core.metrics import chance_verdict
from workbench.core.stats import with_interval
from workbench.studies.objective import describe
from workbench.studies.storage import FINISHED, baseline_trial, best_value, states
from workbench.tracking.figures import header_table, write_figures, write_report

if TYPE_CHECKING:
    from workbench.studies.best import Final


def varied_params(study: optuna.Study) -> list[str]:
    """Parameters that took two or more values among the complete trials: the only ones a contour
    can draw (Optuna warns once per pair otherwise, ~80 lines for a 40-trial default study)."""
    seen: dict[str, set] = {}
    for t in states(study, ("COMPLETE",)):
        for key, value in t.params.items():
            seen.setdefault(key, set()).add(value)
    return sorted(key for key, values in seen.items() if len(values) > 1)


def plot_varied_contour(study: optuna.Study) -> go.Figure:
    varied = varied_params(study)
    if len(varied) < 2:
        raise ValueError(f"fewer than 2 parameters varied: {varied}")
    return vis.plot_contour(study, params=varied)


FIGURES = {
    "optimization_history": vis.plot_optimization_history,
    "param_importances": vis.plot_param_importances,
    "parallel_coordinate": vis.plot_parallel_coordinate,
    "slice": vis.plot_slice,
    "contour": plot_varied_contour,
    "intermediate_values": vis.plot_intermediate_values,
}


def study_figures(study: optuna.Study) -> tuple[dict[str, go.Figure], list[str]]:
    figs, notes = {}, []
    for name, plot in FIGURES.items():
        try:
            figs[name] = plot(study)
        except (
            ValueError,
            RuntimeError,
            ZeroDivisionError,
        ) as err:  # e.g. importances need 2+ trials
            notes.append(f"{name}: not drawn ({err})")
    return figs, notes


def epochs_saved(study: optuna.Study, full_epochs: int) -> tuple[int, int]:
    """(epochs the finished trials trained, epochs they would have trained unpruned)."""
    finished = states(study, FINISHED)
    trained = sum(len(t.intermediate_values) for t in finished)
    return trained, full_epochs * len(finished)


def margin_text(study: optuna.Study, metric: str) -> str | None:
    """`best 0.4712 vs baseline 0.4391: +0.0321`, or None without a finished baseline trial."""
    base = baseline_trial(study)
    if base is None or best_value(study) is None:
        return None
    best = study.best_trial
    return (
        f"best {metric} {best.value:.4f} (trial {best.number}) vs the baseline's {base.value:.4f} "
        f"(trial {base.number}): {best.value - base.value:+.4f}"
    )


def log_study(study: optuna.Study, metric: str, epochs_this_worker: int) -> None:
    """Counts, the best value, Optuna's figures and the trials table on the active (parent) run."""
    finished = states(study, FINISHED)
    complete = states(study, ("COMPLETE",))
    mlflow.log_metrics(
        {
            "trials_complete": len(complete),
            "trials_pruned": len(finished) - len(complete),
            "trials_failed": len(states(study, ("FAIL",))),
            "epochs_trained_all_workers": sum(len(t.intermediate_values) for t in study.trials),
            "epochs_trained_this_worker": epochs_this_worker,
        }
    )
    if (best := best_value(study)) is not None:
        mlflow.log_metric(f"best_{metric}", best)
        mlflow.set_tag("optuna.best_trial", str(study.best_trial.number))
        if (base := baseline_trial(study)) is not None:
            mlflow.log_metrics(
                {f"baseline_{metric}": base.value, f"margin_{metric}": best - base.value}
            )
    figs, notes = study_figures(study)
    with tempfile.TemporaryDirectory() as tmp:
        write_figures(figs, Path(tmp), png=False)
        study.trials_dataframe().to_csv(Path(tmp) / "trials.csv", index=False)
        if notes:
            (Path(tmp) / "figures_skipped.txt").write_text("\n".join(notes) + "\n")
        mlflow.log_artifacts(tmp, "study")


def log_report(
    study: optuna.Study,
    storage: str,
    metric: str,
    full_epochs: int,
    parent_run_id: str,
    final: Final | None,
) -> None:
    """study/report.html on the parent run."""
    finished = states(study, FINISHED)
    pruned = states(study, ("PRUNED",))
    trained, full = epochs_saved(study, full_epochs)
    rows = [
        ("study", f"{study.study_name} ({storage})"),
        (
            "trials",
            f"{len(finished)} finished: {len(finished) - len(pruned)} complete, {len(pruned)} pruned, "
            f"{len(states(study, ('FAIL',)))} failed",
        ),
        (
            "epochs",
            f"{trained} trained of {full} without pruning ({1 - trained / max(full, 1):.0%} saved)",
        ),
    ]
    warnings = []
    if best_value(study) is not None:
        best = study.best_trial
        rows += [
            ("best trial", f"{best.number}: {metric} {best.value:.4f} (validation)"),
            ("its parameters", describe(best.params)),
        ]
        if margin := margin_text(study, metric):
            rows.append(("against the baseline", margin))
    if final:
        m = final.result.metrics
        verdict = chance_verdict(m)
        rows.append(
            (
                "best trial on test",
                f"accuracy {with_interval(m, 'test_accuracy')}, macro-F1 "
                f"{with_interval(m, 'test_macro_f1')} (chance {verdict.chance:.3f}; run "
                f"{final.result.run_id})",
            )
        )
        if final.verdict:
            rows.append(("best vs baseline on test", final.verdict.split(": ", 1)[1]))
        if not verdict.beats:
            warnings.append(f"The best trial does not beat chance on test ({verdict.chance:.3f}).")
    figs, _ = study_figures(study)
    with tempfile.TemporaryDirectory() as tmp:
        write_report(
            figs,
            Path(tmp) / "report.html",
            f"Study {study.study_name}",
            header_table(rows, warnings),
        )
        mlflow.MlflowClient().log_artifacts(parent_run_id, tmp, "study")


def print_summary(
    study: optuna.Study,
    storage: str,
    metric: str,
    maximize: bool,
    epochs_this_worker: int,
    final: Final | None,
) -> None:
    finished = states(study, FINISHED)
    print()
    print(
        f"study {study.study_name} ({storage}): {len(finished)} finished trials "
        f"({len(states(study, ('PRUNED',)))} pruned, {len(states(study, ('FAIL',)))} failed), "
        f"{epochs_this_worker} epochs trained by this worker"
    )
    complete = sorted(states(study, ("COMPLETE",)), key=lambda t: t.value, reverse=maximize)
    for t in complete[:5]:
        print(f"  trial {t.number:>3}  {metric}={t.value:.4f}  {describe(t.params)}")
    if margin := margin_text(study, metric):
        print(f"  {margin}")
    if final:
        m = final.result.metrics
        print(
            f"best trial on test: accuracy {with_interval(m, 'test_accuracy')}, macro-F1 "
            f"{with_interval(m, 'test_macro_f1')} (run {final.result.run_id}); written "
            f"{final.config_path}"
        )
        if final.against_baseline:
            print(final.against_baseline)
