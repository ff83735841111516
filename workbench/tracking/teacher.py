"""A distillation teacher: a finished, tested run's model, accepted only if it was trained on exactly
the student's training faces (so it never saw a face the student is validated or tested on)."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import numpy as np

from workbench import NUM_CLASSES
from workbench.core.tta import predict
from workbench.errors import WorkbenchError
from workbench.tracking.lineage import split_input
from workbench.tracking.runs import logged_config


def teacher_run(run_id: str, train_digest: str):
    """The teacher's MLflow run, checked: finished, tested, trained on the faces of `train_digest`."""
    where = f"distill.teacher_run {run_id}"
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise WorkbenchError(f"{where}: no such run in {mlflow.get_tracking_uri()}") from None
    if run.info.status != "FINISHED" or "test_accuracy" not in run.data.metrics:
        raise WorkbenchError(f"{where}: the run is {run.info.status}, untested; finish it first")
    logged = split_input(run, "train")
    theirs = logged.dataset.digest if logged is not None else None
    if theirs is None or not train_digest.startswith(theirs):  # the run logs a prefix of it
        raise WorkbenchError(
            f"{where}: it was trained on other faces (training split {theirs}, this run's "
            f"{train_digest[:16]}); give the teacher's data, split and balance settings"
        )
    return run


def teacher_probabilities(
    run_id: str, train_digest: str, images: np.ndarray, cache_dir: Path
) -> np.ndarray:
    """The teacher's probabilities for `images`, with the test-time views it was tested with; kept in
    `cache_dir` (ten-crop of a big net is minutes on a CPU: a resumed run or a study's trials reuse it)."""
    run = teacher_run(run_id, train_digest)
    cached = cache_dir / "teachers" / f"{run_id}-{train_digest[:16]}.npy"
    if cached.is_file():
        probs = np.load(cached)
        if probs.shape == (len(images), NUM_CLASSES):
            return probs
    tta = logged_config(run_id, f"distill.teacher_run {run_id}").train.tta
    model = mlflow.tensorflow.load_model(f"runs:/{run.info.run_id}/model")
    probs, _ = predict(model, images, tta)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npy")  # one per writer: workers race
    np.save(tmp, probs)
    os.replace(tmp, cached)
    return probs
