"""Fit the model on prepared splits: tf.data input, per-epoch MLflow metrics, optional early stopping."""
from __future__ import annotations

import sys
from collections.abc import Sequence

import keras
import mlflow

from workbench.augment import eval_dataset, training_dataset
from workbench.balance import class_weights
from workbench.config import ExperimentConfig
from workbench.protocol import Prepared


def fit(model: keras.Model, data: Prepared, cfg: ExperimentConfig,
        callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict[str, list[float]]:
    """Returns Keras' history: loss, accuracy, val_loss, val_accuracy per epoch (also logged to MLflow)."""
    train_ds = training_dataset(data.train.images, data.train.labels, cfg.train.batch_size, cfg.augment.strength, cfg.seed)
    val_ds = eval_dataset(data.val.images, data.val.labels, max(256, cfg.train.batch_size))
    all_callbacks = [mlflow.keras.MlflowCallback(log_every_epoch=True), *callbacks]
    if cfg.train.early_stopping_patience:
        all_callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.train.early_stopping_patience, restore_best_weights=True))
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.train.epochs,
        callbacks=all_callbacks,
        class_weight=class_weights(data.train.labels) if cfg.balance.class_weight else None,
        verbose=1 if sys.stdout.isatty() else 2,  # a bar on a terminal, one line per epoch in logs
    )
    return {k: [float(v) for v in values] for k, values in history.history.items()}
