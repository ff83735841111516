"""Fit a compiled model on prepared splits: tf.data input, validation scores, best-epoch restore,
per-epoch metrics through a caller's logger, early stopping or plateau, and resume from a checkpoint."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

from workbench import NUM_CLASSES
from workbench.core.augment import training_dataset
from workbench.core.checkpoint import BestAndCheckpoint, TrainingState, load_state, restore
from workbench.core.metrics import LABELS
from workbench.core.settings import AugmentConfig, TrainConfig

EpochLogger = Callable[[int, dict[str, float]], None]


class ValidationScores(keras.callbacks.Callback):
    """Scores the validation split once per epoch and adds val_loss, val_accuracy, val_macro_f1 and
    val_balanced_accuracy to the epoch's logs, so that the history, the logger, early stopping and a
    sweep's pruner all see them (one predict, instead of Keras' evaluate plus a predict)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.onehot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probs = self.model.predict(self.images, batch_size=self.batch_size, verbose=0)
        pred = probs.argmax(axis=1)
        if logs is not None:
            logs["val_loss"] = float(self.model.loss(self.onehot, probs))
            logs["val_accuracy"] = float((pred == self.labels).mean())
            logs["val_macro_f1"] = float(
                f1_score(self.labels, pred, labels=LABELS, average="macro", zero_division=0)
            )
            logs["val_balanced_accuracy"] = float(balanced_accuracy_score(self.labels, pred))


class LearningRate(keras.callbacks.Callback):
    """Adds the learning rate the epoch ended with to its logs (a schedule or a plateau moves it)."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )


class EpochTime(keras.callbacks.Callback):
    """Adds the epoch's wall time (its steps and its validation scoring) to its logs as epoch_seconds:
    kept in the checkpoint's history, so a run's training time survives interruptions."""

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self.started


class EpochLog(keras.callbacks.Callback):
    """Hands each finished epoch's logs to `log(epoch, metrics)`."""

    def __init__(self, log: EpochLogger):
        super().__init__()
        self.log = log

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.log(epoch, {k: float(v) for k, v in (logs or {}).items()})


def epoch_logs(history: dict[str, list[float]], epoch: int) -> dict[str, float]:
    """One epoch's logs out of a checkpoint's history."""
    return {k: v[epoch] for k, v in history.items() if len(v) > epoch}


def replay(callback: keras.callbacks.Callback, history: dict[str, list[float]]) -> None:
    """The epochs of `history` through `callback.on_epoch_end`, as if it had seen them."""
    for epoch in range(max(map(len, history.values()), default=0)):
        callback.on_epoch_end(epoch, epoch_logs(history, epoch))


class Continued:
    """A Keras callback that also holds `past`, the checkpoint's history, to replay when it begins."""

    def __init__(self, past: dict[str, list[float]], **kwargs):
        super().__init__(**kwargs)
        self.past = past


class ContinuedEarlyStopping(Continued, keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping counts from `on_train_begin`: resumed, it would forget the epochs before
    the stop and wait `patience` more. It first replays the checkpoint's history."""

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        replay(self, self.past)
        self.model.stop_training = False  # a run that had stopped is not fitted again (`stopped`)


class ContinuedPlateau(Continued, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that replays the checkpoint's history first (its wait and best). The
    checkpoint is saved before an epoch's cut, so the rate is rebuilt: the first epoch's, then every
    cut the replay makes, the one after the last epoch included."""

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        if self.past.get("learning_rate"):
            self.model.optimizer.learning_rate = self.past["learning_rate"][0]
            replay(self, self.past)


def stream_seed(seed: int, start_epoch: int) -> int:
    """The seed of a fit's random streams (shuffling, augmentation, crops, dropout): the run's own from
    its first epoch; a resumed fit's own, drawn from (seed, start_epoch), since restarting them from
    `seed` would feed it the first epochs' batches, augmented alike, once more."""
    if start_epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, start_epoch]).generate_state(1)[0] >> 2)


def reseed(model: keras.Model, seed: int) -> None:
    """Every seed generator of `model` (its crop, its dropouts) started afresh from `seed`: Keras saves
    their states with neither the weights nor the checkpoint."""
    draws = np.random.default_rng(seed)
    for v in model.variables:
        if v.path.endswith("seed_generator_state"):
            v.assign(np.array([draws.integers(2**31), 0], dtype=v.dtype))


def stopped(state: TrainingState | None, recipe: TrainConfig) -> bool:
    """Early stopping had ended this run before it was interrupted: Keras' rule with min_delta 0,
    `patience` epochs since the best one."""
    patience = recipe.early_stopping_patience
    return bool(state and patience and state.epochs_done - 1 - state.best_epoch >= patience)


@dataclass
class FitResult:
    history: dict[str, list[float]]  # every epoch of the run, resumed ones included
    best_epoch: int  # 0-based; the weights of this epoch are in the model when restore_best was on
    resumed_from: int  # epochs already done when this call started (0 = a fresh start)


def callbacks_for(
    recipe: TrainConfig, val: tuple[np.ndarray, np.ndarray], best: BestAndCheckpoint, hooks
) -> list[keras.callbacks.Callback]:
    """Order matters: scores first (everything after reads them), then the checkpoint, then the
    logger, so an epoch is logged only once it is saved; the caller's callbacks (a pruner) see a
    logged epoch."""
    eval_batch = max(256, recipe.batch_size)
    out = [
        ValidationScores(val[0].astype(np.float32), val[1], eval_batch),
        LearningRate(),
        EpochTime(),  # after the scoring (its time counts), before the checkpoint saves the logs
        best,
    ]
    if hooks.log_epoch is not None:
        out.append(EpochLog(hooks.log_epoch))
    out += list(hooks.callbacks)
    monitor, mode = recipe.monitor, best.mode
    past = {k: list(v) for k, v in best.state.history.items()}  # the epochs before a resume
    if recipe.early_stopping_patience:
        patience = recipe.early_stopping_patience
        out.append(ContinuedEarlyStopping(past, monitor=monitor, patience=patience, mode=mode))
    if recipe.schedule == "plateau":
        out.append(
            ContinuedPlateau(
                past,
                monitor=monitor,
                mode=mode,
                factor=recipe.plateau_factor,
                patience=recipe.plateau_patience,
                min_lr=1e-6,
            )
        )
    return out


def progress(verbose: bool) -> int:
    """Keras' verbosity: a bar on a terminal, a line per epoch in logs, nothing when quiet."""
    return 0 if not verbose else 1 if sys.stdout.isatty() else 2


@dataclass
class FitHooks:
    """What a caller adds to a fit: where to checkpoint, who logs each epoch, more callbacks."""

    checkpoint_dir: Path | None = None
    log_epoch: EpochLogger | None = None
    callbacks: Sequence[keras.callbacks.Callback] = ()
    verbose: bool = True


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    recipe: TrainConfig,
    augment: AugmentConfig,
    seed: int,
    class_weight: dict[int, float] | None = None,
    hooks: FitHooks | None = None,
) -> FitResult:
    """Train `model` (compiled) for `recipe.epochs`, continuing from `hooks.checkpoint_dir` if it
    holds a state. `hooks.log_epoch(epoch, metrics)` is called once per finished epoch, also for
    restored ones it may have missed (it must ignore an epoch it already has)."""
    hooks = hooks or FitHooks()
    checkpoint_dir, log_epoch = hooks.checkpoint_dir, hooks.log_epoch
    state = load_state(checkpoint_dir)
    initial_epoch = 0 if state is None else state.epochs_done
    streams = stream_seed(seed, initial_epoch)
    if state is not None:
        restore(model, checkpoint_dir, state)
        reseed(model, streams)
        # epochs finished before the stop whose metrics may not have been logged
        if log_epoch is not None:
            for epoch in range(initial_epoch):
                log_epoch(epoch, epoch_logs(state.history, epoch))
    best = BestAndCheckpoint(recipe.monitor, checkpoint_dir, state)
    all_callbacks = callbacks_for(recipe, val, best, hooks)
    if initial_epoch < recipe.epochs and not stopped(state, recipe):
        model.fit(
            training_dataset(train[0], train[1], recipe.batch_size, augment, streams),
            epochs=recipe.epochs,
            initial_epoch=initial_epoch,
            callbacks=all_callbacks,
            class_weight=class_weight,
            verbose=progress(hooks.verbose),
        )
    else:
        best.set_model(model)  # the run had ended before the stop: fit never hands it the model
    best_epoch = best.restore_best() if recipe.restore_best else best.state.best_epoch
    return FitResult(best.state.history, best_epoch, initial_epoch)
