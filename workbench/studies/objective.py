"""A trial is a config: `trial_run_config` turns an Optuna trial into one (the drawn values on the base
experiment, purpose `trial`), and `Objective` runs it through the one run path and returns its score."""

from __future__ import annotations

from typing import Any

import keras
import mlflow
import optuna

from workbench.config import ExperimentConfig
from workbench.errors import is_stop
from workbench.experiment import RunResult, run_experiment
from workbench.studies.best import keep_weights
from workbench.studies.pruning import OptunaReporter
from workbench.studies.search_space import SweepSpec, suggest, trial_config
from workbench.studies.storage import COUNTED, states
from workbench.tracking import checkpoints


class SurplusTrial(Exception):
    """Another worker filled the study while this trial was being created: it is failed, not run."""


def describe(params: dict[str, Any]) -> str:
    """`conv_dropout=0.15 learning_rate=0.001 ...`: the swept values, short, for run names and summaries."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def trial_run_config(
    base_tree: dict,
    values: dict[str, Any],
    study: str,
    number: int,
    parent_run_id: str | None,
    baseline: bool = False,
) -> ExperimentConfig:
    cfg = trial_config(base_tree, values)
    cfg.tracking.run_name = f"trial {number} · " + ("baseline" if baseline else describe(values))
    cfg.purpose.role = "trial"
    cfg.purpose.parent_run_id = parent_run_id
    cfg.purpose.tags = {
        "optuna.study": study,
        "optuna.trial": str(number),
        "trial_state": "RUNNING",
        "sweep.role": "trial",
        **({"sweep.baseline": "true"} if baseline else {}),
    }
    return cfg


def retry_later(trial: optuna.Trial) -> None:
    """Queue a stopped trial again: the same parameters and attributes (baseline, its MLflow run)."""
    trial.study.enqueue_trial(
        trial.params, user_attrs={**trial.user_attrs, "retry_of": trial.number}
    )


class Objective:
    """objective(trial) -> the trial's validation score; counts the epochs this worker trained."""

    def __init__(self, spec: SweepSpec, base_tree: dict, study: str, target: int, parent_run_id):
        self.spec, self.base_tree, self.study, self.target = spec, base_tree, study, target
        self.parent_run_id = parent_run_id
        self.client = mlflow.MlflowClient()
        self.epochs_trained = 0

    def __call__(self, trial: optuna.Trial) -> float:
        ahead = [t for t in states(trial.study, COUNTED) if t.number < trial.number]
        if len(ahead) >= self.target:
            raise SurplusTrial(
                f"trial {trial.number}: the study already holds {self.target} trials"
            )
        values = suggest(trial, self.spec)
        cfg = trial_run_config(
            self.base_tree,
            values,
            self.study,
            trial.number,
            self.parent_run_id,
            baseline=bool(trial.user_attrs.get("baseline")),
        )
        if cfg.seeds > 1:
            cfg.split.seed = cfg.data_seed  # one split for every seed, written in each run's config
        reporter = OptunaReporter(trial, self.spec.objective.metric)
        result = self._train(trial, cfg, [reporter], self._continued_run(trial))
        self.epochs_trained += int(result.metrics["epochs_run"])
        state = "PRUNED" if reporter.pruned else "COMPLETE"
        if not reporter.pruned:  # the study's best is tested with these weights, not trained again
            keep_weights(result)
        self.client.set_tag(result.run_id, "trial_state", state)
        if reporter.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {reporter.last_step}")
        value = float(result.metrics[self.spec.objective.metric])
        if cfg.seeds == 1:
            return value
        # The weights kept are the first seed's: the check before testing them is against its value.
        trial.set_user_attr("kept_weights_value", value)
        return self._mean_over_seeds(trial, cfg, value)

    def _mean_over_seeds(self, trial: optuna.Trial, cfg: ExperimentConfig, first: float) -> float:
        """The trial's score averaged over cfg.seeds training seeds (the faces and split fixed); only
        the first seed reports to the pruner, so a pruned trial costs one training."""
        values = [first]
        for i in range(1, cfg.seeds):
            other = cfg.model_copy(deep=True)
            other.seed, other.split.seed = cfg.seed + i, cfg.data_seed
            other.tracking.run_name = f"{cfg.tracking.run_name} · seed {other.seed}"
            other.purpose.tags = cfg.purpose.tags | {"seeds.index": str(i)}
            result = self._train(trial, other, [])
            self.epochs_trained += int(result.metrics["epochs_run"])
            self.client.set_tag(result.run_id, "trial_state", "COMPLETE")
            values.append(float(result.metrics[self.spec.objective.metric]))
        trial.set_user_attr("seed_values", values)
        return sum(values) / len(values)

    def _continued_run(self, trial: optuna.Trial) -> str | None:
        """A retried trial (stopped, or its worker died) continues its MLflow run from the last
        checkpointed epoch when that is on this machine; the pruner first gets the epochs it had."""
        run_id = trial.user_attrs.get("mlflow_run_id")  # a retry inherits the stopped trial's
        if not run_id or not checkpoints.can_resume(run_id):
            return None
        for m in self.client.get_metric_history(run_id, self.spec.objective.metric):
            trial.report(m.value, m.step + 1)  # the reporter's steps: epochs trained
        return run_id

    def _train(
        self, trial: optuna.Trial, cfg: ExperimentConfig, callbacks, resume: str | None = None
    ) -> RunResult:
        keras.backend.clear_session()  # one process trains many models: free the previous graphs
        try:
            return run_experiment(cfg, callbacks=callbacks, resume_run_id=resume)
        except BaseException as err:
            # Optuna fails the trial (an error, Ctrl-C, SIGTERM): its run says so, not RUNNING.
            if run_id := trial.user_attrs.get("mlflow_run_id"):
                self.client.set_tag(run_id, "trial_state", "FAIL")
            # A stop, not a failure: the next start continues the trial.
            if is_stop(err):
                retry_later(trial)
            raise
