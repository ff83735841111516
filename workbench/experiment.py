"""One experiment end to end: faces -> split/balance -> model -> metrics -> one MLflow run.

Every run checkpoints every epoch. The same config started again (or `resume_run_id`) continues an
unfinished run in place: same run id, metrics continuing at their steps. A sweep's trial continues
only as its own retry, which passes `resume_run_id`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf

from workbench import NUM_CLASSES, dedupe
from workbench.config import ExperimentConfig
from workbench.core import distill, duplicates, recipe, stats
from workbench.core.balance import class_weights
from workbench.core.metrics import Evaluation, chance_levels, chance_verdict, evaluate
from workbench.core.models import options_for
from workbench.core.models.registry import flops_per_image, make_model
from workbench.core.protocol import Prepared, prepare
from workbench.core.train import FitHooks, FitResult, fit
from workbench.core.tta import predict
from workbench.data import load_faces
from workbench.data.cache import cache_root
from workbench.data.faces import Faces
from workbench.errors import WorkbenchError
from workbench.tracking import (
    checkpoints,
    figures,
    lineage,
    logged_model,
    provenance,
    runs,
    store,
    teacher,
)


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
    prepared: Prepared  # the faces as split and balanced: a comparison measures its leak on them
    resumed_from: int = 0
    # The model as tested (the best epoch's weights): a sweep keeps a complete trial's.
    model: keras.Model | None = None


@dataclass
class Trained:
    """A model already trained with this config (a sweep's best trial): its weights at the best epoch,
    that training's per-epoch history, and the validation score the weights must give again
    (metric, value) before they are tested, so that other faces or weights fail loudly."""

    weights: list[np.ndarray]  # as keras.Model.get_weights() gives them
    history: dict[str, list[float]]
    best_epoch: int
    check: tuple[str, float]
    source_run_id: str


def seed_everything(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def prepare_faces(faces: Faces, cfg: ExperimentConfig) -> Prepared:
    return prepare(faces, cfg.protocol, cfg.split, cfg.balance, cfg.seed, cfg.data_seed)


def resume_key(cfg: ExperimentConfig, data_digest: str) -> str:
    """Same config and same data: the same run, to be continued rather than started again."""
    return runs.run_key(cfg.to_yaml(), data_digest)


def build_compiled_model(
    cfg: ExperimentConfig, input_shape: tuple[int, int, int], steps_per_epoch: int, precision: str
) -> tuple[keras.Model, list[keras.callbacks.Callback]]:
    """The compiled model, and the callbacks its training needs (the learning-rate schedule's)."""
    t = cfg.train
    with recipe.dtype_policy(precision):
        model = make_model(
            cfg.model.name,
            input_shape,
            NUM_CLASSES,
            crop=cfg.augment.crop,
            **options_for(cfg.model.name, cfg.model.model_dump()),
        )
    lr = recipe.learning_rate(
        t.schedule, t.learning_rate, steps_per_epoch, t.epochs, t.warmup_epochs
    )
    optimizer = recipe.make_optimizer(
        t.optimizer, recipe.starting_rate(lr), t.weight_decay, t.momentum
    )
    # Under mixed_float16, compile wraps the optimizer in a LossScaleOptimizer itself (auto_scale_loss).
    return recipe.compile_model(model, optimizer, t.label_smoothing), recipe.schedule_callbacks(lr)


def run_experiment(
    cfg: ExperimentConfig,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    resume_run_id: str | None = None,
    trained: Trained | None = None,
) -> RunResult:
    """Train and evaluate cfg as one MLflow run. What the run is for (`cfg.purpose`) decides the rest:
    a trial is scored on validation (never the test split) and logs the light artifacts; an experiment
    or a comparison's arm is tested once and logs everything (the model, face grids, per-face
    manifest, report page). Every run checkpoints every epoch. `callbacks` are Keras' (a
    sweep's pruning reporter). `trained`: test those weights instead of training (their history is
    logged as this run's epochs). A run stopped at any instant, its end included, resumes in place."""
    purpose = cfg.purpose
    seed_everything(cfg.seed, cfg.train.deterministic)
    faces, prepared, dups = data_phase(cfg)  # before the run: bad data never leaves a FAILED run
    experiment_id = store.configure(cfg.experiment_name)
    key = resume_key(cfg, faces.digest)
    resume_run_id = resume_target(cfg, experiment_id, key, resume_run_id, trained)
    targets = training_targets(cfg, faces, prepared, trained)  # a bad teacher: no FAILED run
    precision = recipe.resolve_precision(cfg.train.precision)
    tags = run_tags(cfg, faces, key, precision, trained)
    name = cfg.tracking.run_name or cfg.name
    with runs.tracked_run(name, purpose.parent_run_id, tags, resume_run_id) as run:
        run_id, fresh = run.info.run_id, resume_run_id is None
        if not fresh:
            print(f"resuming MLflow run {run_id} from its last finished epoch")
        folder = None if trained else checkpoints.checkpoint_dir(run_id)  # every epoch, every run
        with checkpoints.owned(folder):
            record = log_inputs(cfg, faces, prepared, fresh)
            dedupe.log_duplicates(dups, prepared, cfg, fresh)
            model, result = train_phase(
                cfg, prepared, precision, callbacks, folder, trained, run_id, targets
            )
            metrics, ev, split = test_phase(cfg, model, prepared, result, run_id, dups)
            header = report_header(cfg, faces, metrics, purpose.evaluate_on, run_id)
            log_evaluation(
                ev, result.history, split, cfg.seed, purpose.light, purpose.evaluate_on, header
            )
            model_uri = model_phase(cfg, run_id, model, split)
        checkpoints.drop_checkpoints(folder)  # finished: nothing left to resume
    return RunResult(
        run_id=run_id,
        experiment_id=experiment_id,
        metrics=metrics,
        history=result.history,
        evaluation=ev,
        lineage=record,
        model_uri=model_uri,
        tracking_uri=store.tracking_uri(),
        prepared=prepared,
        resumed_from=result.resumed_from,
        model=model,
    )


def data_phase(cfg: ExperimentConfig) -> tuple[Faces, Prepared, duplicates.Audit]:
    """The faces, split and balanced, and the audit of evaluation faces that copy training ones
    (dropped from evaluation when `data.dedupe` says so)."""
    faces = load_faces(cfg.data, cfg.data_seed)
    prepared = prepare_faces(faces, cfg)
    dups = dedupe.audit_duplicates(prepared)
    if cfg.data.dedupe == "drop-from-eval":
        prepared = dedupe.drop_duplicates(prepared, dups)
    return faces, prepared, dups


def resume_target(
    cfg: ExperimentConfig,
    experiment_id: str,
    key: str,
    resume_run_id: str | None,
    trained: Trained | None,
) -> str | None:
    """The run to continue: the one asked for (never a FINISHED one), else this config's unfinished
    run when it is resumable, else None (a new run)."""
    if resume_run_id is not None:
        runs.check_resumable(resume_run_id)
        return resume_run_id
    if not cfg.purpose.resumable or trained is not None:
        return None
    found = checkpoints.find_resumable_run(experiment_id, key)
    if found is None:
        name = cfg.tracking.run_name or cfg.name
        for other in checkpoints.resumable_with_other_config(experiment_id, name, key):
            print(
                f"note: unfinished run {other} of {name!r} was started with another config (edited, or "
                f"a key added since) and is not resumed; `--resume {other}` continues it"
            )
    return found


def model_phase(cfg: ExperimentConfig, run_id: str, model: keras.Model, split: Faces) -> str | None:
    """The model logged once with an input example (full runs that log it), its URI."""
    if cfg.purpose.light or not cfg.tracking.log_model:
        return None
    return logged_model.log_model_once(run_id, model, split.images[:1].astype(np.float32))


def run_tags(
    cfg: ExperimentConfig, faces: Faces, key: str, precision: str, trained: Trained | None
) -> dict[str, str]:
    return {
        "protocol": cfg.protocol,
        "dataset": Path(faces.path).name,
        "dataset_digest": faces.digest[:16],
        "model": cfg.model.name,
        "precision": precision,
        "purpose": cfg.purpose.role,
        "resume_key": key,
        **provenance.provenance_tags(),
        **cfg.purpose.tags,
        **({"weights_from_run": trained.source_run_id} if trained else {}),
    }


def log_inputs(cfg: ExperimentConfig, faces: Faces, prepared: Prepared, fresh: bool) -> dict:
    """The config and the dataset's lineage (a resumed run has them already); returns the lineage."""
    if fresh:
        lineage.log_config(cfg, faces.path)
        if prepared.smote_k_used is not None:
            mlflow.log_param("balance.smote_k_used", prepared.smote_k_used)
    if faces.skipped:
        n = len(faces.skipped)
        print(f"{n} face{'s' * (n != 1)} skipped at load (see dataset/lineage.json)")
    return lineage.log_dataset(
        prepared.parts(),
        prepared.synthetic,
        faces,
        cfg.protocol,
        prepared.split_method,
        manifest=not cfg.purpose.light,
        inputs=fresh,
    )


def train_phase(
    cfg: ExperimentConfig,
    prepared: Prepared,
    precision: str,
    callbacks: Sequence[keras.callbacks.Callback],
    folder: Path | None,
    trained: Trained | None,
    run_id: str,
    targets: np.ndarray,
) -> tuple[keras.Model, FitResult]:
    """The compiled model, trained on `targets` (or resumed, or given `trained`'s weights), at its
    best epoch."""
    steps = recipe.steps_per_epoch(len(prepared.train), cfg.train.batch_size)
    model, schedule = build_compiled_model(cfg, prepared.train.images.shape[1:], steps, precision)
    if "model_parameters" not in runs.logged_metrics(run_id):
        mlflow.log_metrics(
            {
                "model_parameters": float(model.count_params()),
                "model_flops_per_image": float(flops_per_image(model)),
            }
        )
    log_epoch = runs.epoch_logger(run_id)
    if trained is not None:
        return model, load_trained(model, trained, prepared.val, cfg.train.tta, log_epoch)
    verbose = not cfg.purpose.light
    hooks = FitHooks(folder, log_epoch, [*schedule, *callbacks], verbose)
    return model, train(model, cfg, prepared, targets, hooks)


def test_phase(
    cfg: ExperimentConfig,
    model: keras.Model,
    prepared: Prepared,
    result: FitResult,
    run_id: str,
    dups: duplicates.Audit,
) -> tuple[dict[str, float], Evaluation, Faces]:
    """Scores on the split the run is for, logged once (a run resumed after logging them keeps them)."""
    split_name = cfg.purpose.evaluate_on
    split = prepared.test if split_name == "test" else prepared.val
    probs, plain = predict(model, split.images, cfg.train.tta)
    ev = evaluate(split.labels, probs, prefix=f"{split_name}_")
    if split_name == "test":
        ev.metrics |= stats.intervals(split.labels, ev.y_pred, prefix="test_")
        if cfg.data.dedupe == "off" and dups.found("test"):
            ev.metrics |= dedupe.without_duplicates(ev, dups.splits["test"].duplicated)
    epochs_run = len(result.history.get("loss", []))
    metrics = ev.metrics | {"epochs_run": float(epochs_run), "best_epoch": float(result.best_epoch)}
    metrics |= {f"{split_name}_{k}": v for k, v in chance_levels(split.labels).items()}
    if plain is not None:
        no_tta = evaluate(split.labels, plain, prefix=f"{split_name}_notta_").metrics
        metrics |= {k: v for k, v in no_tta.items() if k.endswith(("accuracy", "macro_f1"))}
    # Every epoch's time, those before an interruption included.
    timed = result.history.get("epoch_seconds", [])
    if timed:
        metrics |= {
            "train_seconds": sum(timed),
            "train_images_per_second": len(prepared.train) * len(timed) / sum(timed),
        }
    # Test scores at step 0, one value each (the UI shows them as numbers and bars); a trial's
    # validation scores at the last epoch's step, continuing their per-epoch curves.
    step = 0 if split_name == "test" else max(epochs_run - 1, 0)
    # A resumed run that logged its test scores before the stop keeps them (logged once); a trial's
    # validation scores continue the per-epoch curves of the same names, so they are always logged.
    logged = runs.logged_metrics(run_id) if split_name == "test" else {}
    mlflow.log_metrics({k: v for k, v in metrics.items() if k not in logged}, step=step)
    mlflow.set_tags(chance_verdict(metrics, split_name).tags())
    return metrics, ev, split


def load_trained(model: keras.Model, trained: Trained, val, tta: str, log_epoch) -> FitResult:
    """`trained`'s weights in `model`, checked against the validation score they gave when trained;
    its history logged as this run's epochs."""
    model.set_weights(trained.weights)
    metric, expected = trained.check
    scored_again(model, val, tta, metric, expected, trained.source_run_id)
    epochs = len(trained.history.get("loss", []))
    for epoch in range(epochs):
        log_epoch(epoch, {k: v[epoch] for k, v in trained.history.items() if len(v) > epoch})
    return FitResult(trained.history, trained.best_epoch, epochs)


def scored_again(
    model: keras.Model, split, tta: str, metric: str, expected: float, run_id: str
) -> Evaluation:
    """The model's evaluation on `split`, which must give `metric` the value run `run_id` logged for
    it: the same faces and the same weights, or a one-line error."""
    probs, _ = predict(model, split.images, tta)
    ev = evaluate(split.labels, probs, prefix=metric.split("_", 1)[0] + "_")
    got = ev.metrics[metric]
    if abs(got - expected) > 1e-6:
        raise WorkbenchError(
            f"run {run_id}: its model scores {metric} {got:.6f} now, {expected:.6f} when it ran "
            "(different faces or weights); train its config again"
        )
    return ev


def finished_run_result(run_id: str, cfg: ExperimentConfig) -> RunResult:
    """A finished, tested run of cfg as if it had just run: its logged metrics, its model's predictions
    on the same test split again (the split is seeded), checked against the logged accuracy. What a
    resumed comparison uses for an arm that finished before the interruption."""
    run = mlflow.MlflowClient().get_run(run_id)
    _, prepared, _ = data_phase(cfg)
    model_uri = f"runs:/{run_id}/model"
    model = mlflow.tensorflow.load_model(model_uri)
    logged = run.data.metrics["test_accuracy"]
    ev = scored_again(model, prepared.test, cfg.train.tta, "test_accuracy", logged, run_id)
    history = {
        key: [m.value for m in mlflow.MlflowClient().get_metric_history(run_id, key)]
        for key in ("loss", "val_loss", "accuracy", "val_accuracy")
    }
    return RunResult(
        run_id=run_id,
        experiment_id=run.info.experiment_id,
        metrics=dict(run.data.metrics),
        history=history,
        evaluation=ev,
        lineage={},
        model_uri=model_uri,
        tracking_uri=store.tracking_uri(),
        prepared=prepared,
    )


def training_targets(
    cfg: ExperimentConfig, faces: Faces, prepared: Prepared, trained: Trained | None
) -> np.ndarray:
    """What the model learns each training face as: its label, or (distillation) the label blended
    with the teacher's probabilities, from a teacher trained on exactly these faces."""
    labels = prepared.train.labels
    if cfg.distill.teacher_run is None or trained is not None:
        return labels
    train = prepared.train
    digest = lineage.split_entry(faces, "train", train, prepared.synthetic["train"])["digest"]
    cache = cache_root(cfg.data.cache_dir)
    probs = teacher.teacher_probabilities(cfg.distill.teacher_run, digest, train.images, cache)
    return distill.soft_targets(labels, probs, cfg.distill)


def train(
    model: keras.Model, cfg: ExperimentConfig, prepared: Prepared, targets: np.ndarray, hooks
) -> FitResult:
    weights = class_weights(prepared.train.labels) if cfg.balance.class_weight else None
    return fit(
        model,
        (prepared.train.images, targets),
        (prepared.val.images, prepared.val.labels),
        cfg.train,
        cfg.augment,
        cfg.seed,
        weights,
        hooks,
    )


def report_header(
    cfg: ExperimentConfig, faces: Faces, metrics: dict[str, float], split: str, run_id: str
) -> str:
    """What report.html opens with: the run, its data, the settings that matter, its scores beside chance."""
    verdict = chance_verdict(metrics, split)
    t, d = cfg.train, cfg.data
    rows = [
        ("run", f"{cfg.tracking.run_name or cfg.name} ({run_id})"),
        (
            "data",
            f"{faces.path} (digest {faces.digest[:16]}, {len(faces)} faces, {d.image_size}x{d.image_size} "
            f"{'grey' if d.channels == 1 else 'RGB'})",
        ),
        ("protocol", cfg.protocol),
        (
            "model",
            f"{cfg.model.name}, {int(metrics['model_parameters']):,} parameters"
            if "model_parameters" in metrics
            else cfg.model.name,
        ),
        (
            "recipe",
            f"{t.optimizer} lr {t.learning_rate:g} ({t.schedule}), batch {t.batch_size}, "
            f"{int(metrics['epochs_run'])} epochs (best {int(metrics['best_epoch']) + 1}), augmentation "
            f"{cfg.augment.strength:g}, SMOTE {'on' if cfg.balance.smote else 'off'}",
        ),
        (f"{split} accuracy", stats.with_interval(metrics, f"{split}_accuracy")),
        (f"{split} macro-F1", stats.with_interval(metrics, f"{split}_macro_f1")),
        (f"{split} balanced accuracy", stats.with_interval(metrics, f"{split}_balanced_accuracy")),
        (
            "chance",
            f"{metrics[f'{split}_chance_uniform']:.3f} uniform, {metrics[f'{split}_chance_majority']:.3f} "
            "always the commonest class",
        ),
    ]
    warnings = []
    if not verdict.beats:
        warnings.append(f"This model does not beat chance ({verdict.chance:.3f}).")
    if verdict.zero_f1:
        warnings.append(f"F1 is 0 for {', '.join(verdict.zero_f1)}: never predicted right.")
    return figures.header_table(rows, warnings)


def log_evaluation(
    ev: Evaluation,
    history: dict[str, list[float]],
    faces: Faces,
    seed: int,
    light: bool,
    split: str,
    header: str,
) -> None:
    """The evaluation's report, per-face predictions, figures and report page."""
    images, ids = faces.images, faces.ids
    mlflow.log_dict(ev.report, "metrics/classification_report.json")
    if not light:
        lineage.log_predictions(ev, ids, split)
    mlflow.log_text(ev.report_text, "metrics/classification_report.txt")
    figs = {
        "curves": figures.curves(history),
        "confusion_matrix": figures.confusion(ev, normalized=False, split=split),
        "confusion_matrix_normalized": figures.confusion(ev, normalized=True, split=split),
        "per_class_f1": figures.per_class_f1(ev, split),
    }
    if not light:
        figs[f"{split}_predictions"] = figures.prediction_grid(images, ev, seed)
        figs["confident_mistakes"] = figures.confident_mistakes(images, ev)
    with tempfile.TemporaryDirectory() as tmp:
        # A sweep's trials: HTML only (a PNG renderer per trial adds up); the study's page compares them.
        js = None if light else store.shared_plotly_js()
        figures.write_figures(figs, Path(tmp), png=not light, plotly_js=js)
        if not light:
            figures.write_report(figs, Path(tmp) / "report.html", "Run report", header, js)
        mlflow.log_artifacts(tmp, "figures")
