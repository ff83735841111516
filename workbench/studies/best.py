"""Once a study is done: its best trial's config trained again as an experiment (tested once on the
test split, every artifact) and written to experiments/<study>-best.yaml to run again."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna

from workbench.config import ExperimentConfig, user_experiments_dir
from workbench.experiment import RunResult, run_experiment
from workbench.files import write_text_atomic
from workbench.studies.search_space import SweepSpec, trial_config
from workbench.studies.storage import states


def retrain_best(
    study: optuna.Study,
    spec: SweepSpec,
    base_tree: dict,
    parent_run_id: str,
    best_dir: Path | None,
) -> tuple[RunResult, Path] | None:
    if not states(study, ("COMPLETE",)):
        return None
    best = study.best_trial
    if study.user_attrs.get("final_trial") == best.number:
        return None  # another worker (or an earlier session) already did it
    study.set_user_attr("final_trial", best.number)
    # best.params holds only what its trial drew (a conditional parameter may be absent)
    cfg = trial_config(base_tree, {k: v for k, v in best.params.items() if k in spec.params})
    cfg.tracking.run_name = f"best of {study.study_name} (trial {best.number}) retrained"
    cfg.purpose.tags = {
        "optuna.study": study.study_name,
        "optuna.trial": str(best.number),
        "sweep.role": "best-retrained",
        "sweep.parent_run_id": parent_run_id,
    }
    result = run_experiment(cfg)
    mlflow.MlflowClient().set_tag(parent_run_id, "sweep.best_run_id", result.run_id)
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
    return result, path


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
        f"# Retrained and tested in MLflow run {run_id}. Run it again: python -m workbench.run {path}\n"
    )
    return write_text_atomic(path, header + cfg.to_yaml())
