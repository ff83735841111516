"""Once a study is done: its best trial tested once on the test split as an experiment (every artifact),
with the weights the trial trained (a complete trial keeps them in its run), and its config written to
experiments/<study>-best.yaml to run again.

Testing the trial's own weights instead of training its config again tests exactly the model the
study picked and saves a full training."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
from mlflow.exceptions import MlflowException

from workbench.config import ExperimentConfig, user_experiments_dir
from workbench.experiment import RunResult, Trained, run_experiment
from workbench.files import write_text_atomic
from workbench.studies.paired import compare_pair, describe
from workbench.studies.search_space import SweepSpec, trial_config
from workbench.studies.storage import baseline_trial, states

# A complete trial's run: weights/weights.npz (the layers' weights, BatchNorm statistics included, not
# the optimizer's: a third of the size) and weights/training.json (history, best epoch).
WEIGHTS = "weights"


def keep_weights(result: RunResult) -> None:
    """Logs a finished trial's weights (its best epoch's) and their training history to its run."""
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "weights.npz", *result.model.get_weights())
        training = {"history": result.history, "best_epoch": int(result.metrics["best_epoch"])}
        (Path(tmp) / "training.json").write_text(json.dumps(training))
        mlflow.MlflowClient().log_artifacts(result.run_id, tmp, WEIGHTS)


def trained_weights(trial: optuna.trial.FrozenTrial, metric: str, into: Path) -> Trained | None:
    """The weights `trial` kept in its run (downloaded into `into`), or None when it kept none (a study
    begun before trials kept them): then its config is trained again."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id is None:
        return None
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=WEIGHTS, dst_path=str(into)
            )
        )
    except (MlflowException, OSError):
        return None
    if not (local / "weights.npz").is_file() or not (local / "training.json").is_file():
        return None
    training = json.loads((local / "training.json").read_text())
    with np.load(local / "weights.npz") as npz:
        weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    return Trained(
        weights,
        training["history"],
        training["best_epoch"],
        (metric, float(trial.user_attrs.get("kept_weights_value", trial.value))),
        run_id,
    )


@dataclass
class Final:
    """A finished study's best trial on test, and (with a baseline trial) the paired comparison of
    the two on the same test faces."""

    result: RunResult
    config_path: Path
    against_baseline: str | None = None  # paired.describe's lines
    verdict: str | None = None


def test_trial(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    spec: SweepSpec,
    base_tree: dict,
    parent_run_id: str,
    role: str,
) -> tuple[RunResult, ExperimentConfig]:
    """`trial` tested once on the test split with the weights it trained (its config trained again
    when it kept none), as a run tagged sweep.role = `role`."""
    # trial.params holds only what it drew (a conditional parameter may be absent)
    cfg = trial_config(base_tree, {k: v for k, v in trial.params.items() if k in spec.params})
    with tempfile.TemporaryDirectory() as tmp:
        trained = trained_weights(trial, spec.objective.metric, Path(tmp))
        how = "its weights tested" if trained else "retrained"
        cfg.tracking.run_name = f"{role} of {study.study_name} (trial {trial.number}), {how}"
        cfg.purpose.tags = {
            "optuna.study": study.study_name,
            "optuna.trial": str(trial.number),
            "sweep.role": role,
            "sweep.parent_run_id": parent_run_id,
        }
        return run_experiment(cfg, trained=trained), cfg


def best_on_test(
    study: optuna.Study,
    spec: SweepSpec,
    base_tree: dict,
    parent_run_id: str,
    best_dir: Path | None,
) -> Final | None:
    if not states(study, ("COMPLETE",)):
        return None
    best = study.best_trial
    if study.user_attrs.get("final_trial") == best.number:
        return None  # another worker (or an earlier run of the sweep) already did it
    study.set_user_attr("final_trial", best.number)
    result, cfg = test_trial(study, best, spec, base_tree, parent_run_id, "best")
    client = mlflow.MlflowClient()
    client.set_tag(parent_run_id, "sweep.best_run_id", result.run_id)
    path = write_best_config(
        cfg,
        best_dir,
        study.study_name,
        best.number,
        best.value,
        spec.objective.metric,
        result.run_id,
    )
    study.set_user_attr("final_run_id", result.run_id)
    final = Final(result, path)
    base = baseline_trial(study)
    if base is not None and base.number != best.number:
        base_result, _ = test_trial(study, base, spec, base_tree, parent_run_id, "baseline")
        compared = compare_pair(result.run_id, base_result.run_id)
        final.verdict = f"best trial vs baseline on test: {compared.verdict}"
        final.against_baseline = describe(
            compared, f"best (trial {best.number})", f"baseline (trial {base.number})"
        )
        client.set_tag(parent_run_id, "sweep.best_vs_baseline", compared.verdict)
        client.log_metric(parent_run_id, "best_minus_baseline_test_accuracy", compared.accuracy[0])
        client.log_metric(parent_run_id, "best_vs_baseline_mcnemar_p", compared.p_value)
    return final


def write_best_config(
    cfg: ExperimentConfig,
    directory: Path | None,
    study: str,
    trial: int,
    value: float,
    metric: str,
    run_id: str,
) -> Path:
    directory = directory or user_experiments_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{study}-best.yaml"
    cfg = cfg.model_copy(deep=True)
    cfg.name = f"{study}-best"
    cfg.tracking.run_name = None
    cfg.purpose = type(cfg.purpose)()  # run again by hand, it is an experiment
    header = (
        f"# Best trial {trial} of study {study}: {metric} = {value:.4f} (validation).\n"
        f"# Tested in MLflow run {run_id}. Run it again: python -m workbench.run {path}\n"
    )
    return write_text_atomic(path, header + cfg.to_yaml())
