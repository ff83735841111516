"""One experiment end to end: faces -> split/balance -> model -> metrics -> one MLflow run."""
from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf

from workbench import figures, tracking
from workbench.config import ExperimentConfig
from workbench.data import load_faces
from workbench.data.faces import Faces
from workbench.metrics import Evaluation, evaluate
from workbench.model import build_model
from workbench.protocol import Prepared, prepare
from workbench.train import fit


@dataclass
class RunResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    history: dict[str, list[float]]
    evaluation: Evaluation
    lineage: dict
    model_uri: str | None
    tracking_uri: str


def seed_everything(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def load_and_prepare(cfg: ExperimentConfig) -> tuple[Faces, Prepared]:
    faces = load_faces(cfg.data, cfg.seed)
    return faces, prepare(faces, cfg)


def run_experiment(cfg: ExperimentConfig, callbacks: Sequence[keras.callbacks.Callback] = (), nested: bool = False,
                   light: bool = False, tags: dict[str, str] | None = None,
                   data: tuple[Faces, Prepared] | None = None, evaluate_on: str = "test",
                   verbose: bool = True) -> RunResult:
    """Train and evaluate cfg as one MLflow run. `light` (sweep trials) skips the heavier artifacts:
    the model, the face grids, the per-face manifest and the offline report page.
    `evaluate_on="val"` (sweep trials) never touches the test split: choices are made on validation."""
    seed_everything(cfg.seed, cfg.train.deterministic)
    faces, prepared = data or load_and_prepare(cfg)  # before the run: bad data never leaves a FAILED run
    experiment_id = tracking.configure(cfg.experiment_name)
    run_tags = {"protocol": cfg.protocol, "dataset": Path(faces.path).name, "dataset_digest": faces.digest[:16],
                **tracking.git_state(), **tracking.package_versions(), **(tags or {})}
    name = tracking.run_name(cfg, Path(faces.path).name)
    with tracking.tracked_run(name, nested=nested, tags=run_tags) as run:
        tracking.log_config(cfg)
        lineage = tracking.log_dataset(prepared.parts(), prepared.synthetic, faces, cfg.protocol,
                                       prepared.split_method, manifest=not light)
        model = build_model(cfg.model, cfg.data.image_size, cfg.train.learning_rate)
        started = time.perf_counter()
        history = fit(model, prepared, cfg, callbacks, verbose=verbose)
        train_seconds = time.perf_counter() - started
        epochs_run = len(history.get("loss", []))
        split = prepared.test if evaluate_on == "test" else prepared.val
        eval_images = split.images.astype(np.float32)
        ev = evaluate(split.labels, model.predict(eval_images, batch_size=256, verbose=0), prefix=f"{evaluate_on}_")
        metrics = ev.metrics | {"epochs_run": float(epochs_run), "train_seconds": train_seconds,
                                "train_images_per_second": len(prepared.train) * epochs_run / train_seconds}
        # At the last epoch's step, so that val_accuracy's final value continues its per-epoch curve.
        mlflow.log_metrics(metrics, step=max(epochs_run - 1, 0))
        log_evaluation(ev, history, split.images, cfg.seed, light)
        model_uri = None if light or not cfg.tracking.log_model else tracking.log_model(model, eval_images[:1])
    return RunResult(run.info.run_id, experiment_id, metrics, history, ev, lineage, model_uri, tracking.tracking_uri())


def log_evaluation(ev: Evaluation, history: dict[str, list[float]], test_images: np.ndarray, seed: int,
                   light: bool) -> None:
    mlflow.log_dict(ev.report, "metrics/classification_report.json")
    mlflow.log_text(ev.report_text, "metrics/classification_report.txt")
    figs = {
        "curves": figures.curves(history),
        "confusion_matrix": figures.confusion(ev, normalized=False),
        "confusion_matrix_normalized": figures.confusion(ev, normalized=True),
        "per_class_f1": figures.per_class_f1(ev),
    }
    if not light:
        figs["test_predictions"] = figures.prediction_grid(test_images, ev, seed)
        figs["confident_mistakes"] = figures.confident_mistakes(test_images, ev)
    with tempfile.TemporaryDirectory() as tmp:
        figures.write_figures(figs, Path(tmp), png=True)
        if not light:
            figures.write_report(figs, Path(tmp) / "report.html", "Run report")
        mlflow.log_artifacts(tmp, "figures")
