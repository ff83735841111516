"""Resumable training: after every epoch, the weights (optimizer state included), the best epoch so
far and the history go to a folder; `fit` started again with that folder continues from there.

Each epoch writes `epoch-<n>.weights.h5` and then `state.json` (temp file, then rename) naming it,
so a kill at any instant leaves either the previous epoch's state or this one's, never a mix.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from workbench.errors import WorkbenchError
from workbench.files import write_json_atomic

STATE = "state.json"


@dataclass
class TrainingState:
    epochs_done: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1
    best_value: float | None = None

    def improved(self, value: float, mode: str) -> bool:
        if value is None or math.isnan(value):
            return False
        return self.best_value is None or (
            value < self.best_value if mode == "min" else value > self.best_value
        )


def load_state(folder: Path | None) -> TrainingState | None:
    path = folder / STATE if folder else None
    if path is None or not path.is_file():
        return None
    data = json.loads(path.read_text())
    return TrainingState(
        data["epochs_done"], data["history"], data["best_epoch"], data["best_value"]
    )


def restore(model: keras.Model, folder: Path, state: TrainingState) -> None:
    """Weights and optimizer state of the last finished epoch (the optimizer must exist first)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(folder / f"epoch-{state.epochs_done}.weights.h5")


class BestAndCheckpoint(keras.callbacks.Callback):
    """Tracks the best epoch by `monitor` (its weights kept in memory) and, with a folder, saves the
    training state after every epoch. `restore_best()` puts the best weights back."""

    def __init__(self, monitor: str, folder: Path | None, state: TrainingState | None = None):
        super().__init__()
        self.monitor, self.folder = monitor, folder
        self.mode = "min" if monitor.endswith("loss") else "max"
        self.state = state or TrainingState()
        self.best_weights: list[np.ndarray] | None = None
        if state is not None and folder is not None and (folder / "best.weights.h5").is_file():
            self._best_file = folder / "best.weights.h5"
        else:
            self._best_file = None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        for key, value in logs.items():
            self.state.history.setdefault(key, []).append(float(value))
        self.state.epochs_done = epoch + 1
        value = logs.get(self.monitor)
        improved = self.state.improved(None if value is None else float(value), self.mode)
        if improved:
            self.state.best_epoch, self.state.best_value = epoch, float(value)
            self.best_weights = [w.copy() for w in self.model.get_weights()]
        if self.folder is not None:
            self._save(improved)

    def _save(self, improved: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._check_room(2 if improved else 1)
        n = self.state.epochs_done
        self._save_weights(f"epoch-{n}.weights.h5")
        if improved:
            self._save_weights("best.weights.h5")
        write_json_atomic(self.folder / STATE, self.state.__dict__)  # the commit point
        for old in self.folder.glob("epoch-*.weights.h5"):
            if old.name != f"epoch-{n}.weights.h5":
                old.unlink(missing_ok=True)

    def _check_room(self, files: int) -> None:
        """A one-line error before writing on a disk too full for the epoch's files: HDF5 failing
        mid-write takes the process down (exit 139), leaving the run RUNNING."""
        variables = [*self.model.variables, *getattr(self.model.optimizer, "variables", [])]
        needed = files * sum(
            int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables
        ) + (1 << 20)
        free = shutil.disk_usage(self.folder).free
        if free < needed:
            raise WorkbenchError(
                f"checkpoints in {self.folder}: {free / 1e6:.1f} MB free, an epoch needs "
                f"{needed / 1e6:.1f} MB (No space left on device); free some space and run the "
                "same command again: it resumes from the last saved epoch"
            )

    def _save_weights(self, name: str) -> None:
        # Keras wants the name to end in .weights.h5, so the temporary file gets a prefix, not a suffix.
        tmp = self.folder / f"partial-{name}"
        try:
            self.model.save_weights(tmp)
            os.replace(tmp, self.folder / name)
        finally:
            tmp.unlink(missing_ok=True)

    def restore_best(self) -> int:
        """Load the best epoch's weights into the model; returns that epoch (-1 if none was scored)."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        # resumed, and no epoch since beat the one before the stop
        elif self._best_file is not None:
            self.model.load_weights(self._best_file)
        return self.state.best_epoch
