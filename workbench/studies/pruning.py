"""The bridge from Keras training to an Optuna trial: report every epoch, stop when pruned."""

from __future__ import annotations

import keras
import mlflow
import optuna


class OptunaReporter(keras.callbacks.Callback):
    """Reports the objective metric (a key of the epoch logs) every epoch and stops training when the
    pruner says so. It stops gracefully instead of raising inside fit (as optuna-integration's callback
    does), so that the pruned trial's MLflow run still logs its curves and ends FINISHED."""

    def __init__(self, trial: optuna.Trial, metric: str):
        super().__init__()
        self.trial, self.metric = trial, metric
        self.pruned, self.last_step = False, 0

    def on_train_begin(self, logs=None) -> None:
        run = mlflow.active_run()
        if run is not None:  # lets another worker close this run if this process dies
            self.trial.set_user_attr("mlflow_run_id", run.info.run_id)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        value = (logs or {}).get(self.metric)
        if value is None:
            return
        # Step = epochs trained (1, 2, ...): the resource Optuna's pruners count (min_resource: 1 is a
        # decision after the first epoch, max_resource: the epochs an unpruned trial trains).
        self.trial.report(float(value), epoch + 1)
        self.last_step = epoch + 1
        # After the last epoch there is nothing left to save: the trial completes with its value.
        last = epoch + 1 >= (self.params or {}).get("epochs", float("inf"))
        if not last and self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True
