"""Fit the model on prepared splits: tf.data input, per-epoch MLflow metrics, optional early stopping."""
from __future__ import annotations

import sys
from collections.abc import Sequence

import keras
import mlflow
import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

from workbench.augment import eval_dataset, training_dataset
from workbench.balance import class_weights
from workbench.config import ExperimentConfig
from workbench.metrics import LABELS
from workbench.protocol import Prepared


class ValidationScores(keras.callbacks.Callback):
    """Adds val_macro_f1 and val_balanced_accuracy to each epoch's logs, so that MLflow, the history,
    early stopping and a sweep's pruner all see them (Keras itself only knows accuracy and loss)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pred = self.model.predict(self.images, batch_size=self.batch_size, verbose=0).argmax(axis=1)
        if logs is not None:
            logs["val_macro_f1"] = float(f1_score(self.labels, pred, labels=LABELS, average="macro",
                                                  zero_division=0))
            logs["val_balanced_accuracy"] = float(balanced_accuracy_score(self.labels, pred))


def fit(model: keras.Model, data: Prepared, cfg: ExperimentConfig,
        callbacks: Sequence[keras.callbacks.Callback] = (), verbose: bool = True) -> dict[str, list[float]]:
    """Returns Keras' history: loss, accuracy, val_loss, val_accuracy, val_macro_f1, val_balanced_accuracy
    per epoch (also logged to MLflow, step = epoch from 0)."""
    train_ds = training_dataset(data.train.images, data.train.labels, cfg.train.batch_size, cfg.augment.strength, cfg.seed)
    eval_batch = max(256, cfg.train.batch_size)
    val_ds = eval_dataset(data.val.images, data.val.labels, eval_batch)
    # Order matters: the scores must be in the logs before MLflow's callback and the caller's read them.
    all_callbacks = [ValidationScores(data.val.images.astype(np.float32), data.val.labels, eval_batch),
                     mlflow.keras.MlflowCallback(log_every_epoch=True), *callbacks]
    if cfg.train.early_stopping_patience:
        all_callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.train.early_stopping_patience, restore_best_weights=True))
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.train.epochs,
        callbacks=all_callbacks,
        class_weight=class_weights(data.train.labels) if cfg.balance.class_weight else None,
        verbose=0 if not verbose else 1 if sys.stdout.isatty() else 2,  # a bar on a terminal, a line per epoch in logs
    )
    return {k: [float(v) for v in values] for k, values in history.history.items()}
