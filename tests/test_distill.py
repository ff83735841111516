"""Distillation: soft targets blend the label with the softened teacher, reach the training batches
as given, and come from a teacher that was trained on exactly the student's training faces."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import TINY

from workbench.config import load_config
from workbench.core.augment import training_dataset
from workbench.core.distill import soft_targets, soften
from workbench.core.settings import AugmentConfig, DistillConfig
from workbench.core.tta import predict
from workbench.errors import WorkbenchError
from workbench.experiment import data_phase, run_experiment, training_targets

RNG = np.random.default_rng(3)
TEACHER = RNG.dirichlet(np.ones(7), 40)
LABELS = np.arange(40) % 7


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p)).sum(axis=1)


def test_soft_targets_blend_the_label_with_the_softened_teacher():
    only_label = soft_targets(LABELS, TEACHER, DistillConfig(weight=0.0))
    assert np.array_equal(only_label, np.eye(7)[LABELS])
    only_teacher = soft_targets(LABELS, TEACHER, DistillConfig(weight=1.0))
    assert np.allclose(only_teacher, TEACHER, atol=1e-6)
    half = soft_targets(LABELS, TEACHER, DistillConfig(weight=0.5))
    assert np.allclose(half, 0.5 * TEACHER + 0.5 * np.eye(7)[LABELS], atol=1e-6)
    assert np.allclose(half.sum(axis=1), 1.0, atol=1e-6)
    hot = soften(TEACHER, 4.0)
    assert (entropy(hot) > entropy(TEACHER)).all()
    assert np.array_equal(hot.argmax(axis=1), TEACHER.argmax(axis=1))


def test_soft_targets_reach_the_training_batches_as_given():
    faces = np.repeat(np.arange(40, dtype=np.uint8), 48 * 48).reshape(40, 48, 48, 1)
    targets = soft_targets(LABELS, TEACHER, DistillConfig())
    for x, y in training_dataset(faces, targets, 8, AugmentConfig(strength=0.0), seed=1):
        which = x.numpy()[:, 0, 0, 0].astype(int)  # each face is filled with its index
        assert np.allclose(y.numpy(), targets[which])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    store = tmp_path_factory.mktemp("store")
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    cache = f"data.cache_dir={tmp_path_factory.mktemp('cache')}"
    cfg = load_config("baseline", [*TINY, cache, "train.tta=flip", "tracking.experiment=distil"])
    result = run_experiment(cfg)
    yield cfg, result, cache
    mp.undo()


def student(cache: str, teacher_run: str, *more: str):
    return load_config(
        "baseline",
        [
            *TINY,
            cache,
            "model.name=mini_xception",
            "tracking.experiment=distil",
            f"distill.teacher_run={teacher_run}",
            *more,
        ],
    )


def test_a_student_learns_the_teachers_probabilities_for_its_training_faces(teacher):
    _, result, cache = teacher
    cfg = student(cache, result.run_id, "distill.weight=1.0")
    faces, prepared, _ = data_phase(cfg)
    targets = training_targets(cfg, faces, prepared, None)
    model = mlflow.tensorflow.load_model(result.model_uri)
    expected, _ = predict(model, prepared.train.images, "flip")  # the teacher's own test-time views
    assert np.allclose(targets, expected, atol=1e-5)
    # Kept in the data cache: a resumed run or another trial reads it instead of predicting again.
    (cached,) = (Path(cache.split("=", 1)[1]) / "teachers").glob(f"{result.run_id}-*.npy")
    np.save(cached, np.full_like(expected, 1 / 7))
    assert np.allclose(training_targets(cfg, faces, prepared, None), 1 / 7)
    cached.unlink()

    run = run_experiment(cfg)
    assert mlflow.MlflowClient().get_run(run.run_id).data.params["distill.teacher_run"] == (
        result.run_id
    )
    assert 0.0 <= run.metrics["test_accuracy"] <= 1.0


def test_a_teacher_trained_on_other_faces_or_unknown_is_refused_in_one_line(teacher):
    _, result, cache = teacher
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("distil").experiment_id
    before = len(client.search_runs([experiment]))
    with pytest.raises(WorkbenchError, match=r"distill.teacher_run .*trained on other faces"):
        run_experiment(student(cache, result.run_id, "split.seed=7"))
    with pytest.raises(WorkbenchError, match=r"distill.teacher_run nope: no such run"):
        run_experiment(student(cache, "nope"))
    assert len(client.search_runs([experiment])) == before  # refused before any run began
