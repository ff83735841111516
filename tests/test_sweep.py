"""Optuna sweeps for real: space errors, resume, nested MLflow runs, two workers on PostgreSQL, a killed worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import SMALL_NET
from mlflow import MlflowClient
from sqlalchemy.exc import OperationalError

from workbench.config import load_config, load_tree
from workbench.studies.search_space import base_values, load_spec, suggest, trial_config
from workbench.studies.sweep import main as sweep_main

REPO = Path(__file__).resolve().parent.parent
# A small, fast model on a few hundred real faces: the sweep machinery is under test, not the model.
TINY = [
    "data.max_faces=280",
    "data.image_size=32",
    *SMALL_NET,
    "train.epochs=2",
]


def write_space(
    path: Path, heartbeat: dict | None = None, pruner: dict | None = None, **params
) -> Path:
    spec = yaml.safe_load((REPO / "experiments" / "sweep.yaml").read_text())
    spec["sampler"]["n_startup_trials"] = 2
    if heartbeat:
        spec["heartbeat"] = heartbeat
    if pruner:
        spec["pruner"] = pruner
    if params:
        spec["params"] = params
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_cmd(*args: str, sets=TINY) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workbench.sweep",
        *args,
        *(x for s in sets for x in ("--set", s)),
    ]


def run_sweep(
    cwd: Path, env: dict, *args: str, sets=TINY, timeout=300
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        sweep_cmd(*args, sets=sets),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture
def env(tmp_path):
    e = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
    )
    e["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return e


def trials_by_state(storage: str, study: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    out: dict[str, list] = {}
    for t in optuna.load_study(study_name=study, storage=storage).trials:
        out.setdefault(t.state.name, []).append(t)
    return out


def runs(uri: str, role: str, study: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("baseline")
    return client.search_runs(
        [exp.experiment_id], f"tags.`sweep.role` = '{role}' and tags.`optuna.study` = '{study}'"
    )


# --- the study's best on test: the trial's own weights ------------------------------------------------


def tiny_model_and_faces():
    from types import SimpleNamespace

    import keras
    import numpy as np

    from workbench.core.models.registry import make_model

    keras.utils.set_random_seed(0)
    model = make_model("reference", (32, 32, 1), 7, filters=[4, 4, 4, 4, 4], dense_units=8)
    rng = np.random.default_rng(0)
    val = SimpleNamespace(images=rng.random((20, 32, 32, 1), np.float32), labels=np.arange(20) % 7)
    return model, val


def test_a_trials_weights_are_tested_only_if_they_score_what_they_scored_as_the_trial():
    """The best trial's weights are checked against its validation value before the test split sees
    them: other faces or other weights must fail loudly, not report a test score of the wrong model."""
    from workbench.core.metrics import evaluate
    from workbench.core.tta import predict
    from workbench.errors import WorkbenchError
    from workbench.experiment import Trained, load_trained

    model, val = tiny_model_and_faces()
    weights = model.get_weights()
    scored = evaluate(val.labels, predict(model, val.images, "flip")[0], prefix="val_").metrics
    history = {"loss": [2.0, 1.5], "val_macro_f1": [0.1, 0.2], "epoch_seconds": [3.0, 2.0]}

    fresh, _ = tiny_model_and_faces()
    logged = []
    check = ("val_macro_f1", scored["val_macro_f1"])
    result = load_trained(
        fresh, Trained(weights, history, 1, check, "r1"), val, "flip", lambda e, m: logged.append(e)
    )
    assert result.history == history and result.best_epoch == 1 and logged == [0, 1]
    assert all((a == b).all() for a, b in zip(fresh.get_weights(), weights, strict=True))

    other = ("val_macro_f1", scored["val_macro_f1"] + 0.01)
    with pytest.raises(WorkbenchError, match="run r1: its model scores val_macro_f1"):
        load_trained(
            fresh, Trained(weights, history, 1, other, "r1"), val, "flip", lambda e, m: None
        )


def test_every_objective_a_sweep_offers_is_a_final_validation_score():
    """A trial's value is read from its final scores (the best epoch, flip-averaged): each objective
    must be one of them (val_loss was not: a study minimizing it failed every trial)."""
    import numpy as np
    from sklearn.metrics import log_loss

    from workbench.core.metrics import evaluate
    from workbench.studies.search_space import OBJECTIVE_METRICS

    probs = np.random.default_rng(1).dirichlet(np.ones(7), 30).astype(np.float32)
    labels = np.arange(30) % 7
    metrics = evaluate(labels, probs, prefix="val_").metrics
    assert set(OBJECTIVE_METRICS) <= set(metrics)
    exact = probs.astype(np.float64) / probs.astype(np.float64).sum(axis=1, keepdims=True)
    assert metrics["val_loss"] == pytest.approx(log_loss(labels, exact))


def bench_module():
    """benchmarks/sweep_pruning.py (a script, not a package)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import sweep_pruning
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return sweep_pruning


def test_the_pruning_replay_is_what_the_live_study_would_do_every_time():
    """benchmarks/sweep_pruning.py --replay chose the default pruner: Hyperband's brackets hash the study
    name, so an unnamed replay study gave another answer each time (60 or 72 epochs on one set of
    curves); named as the live study, it gives one answer, the one saved beside the table."""
    sweep_pruning = bench_module()
    saved = json.loads(
        (REPO / "benchmarks" / "results" / "sweep_pruning_10_epochs.json").read_text()
    )
    full = saved["results"][0]
    for pruner in (
        {"kind": "hyperband", "min_resource": 2, "reduction_factor": 3},
        {"kind": "successive_halving", "min_resource": 2, "reduction_factor": 4},
    ):
        runs = [sweep_pruning.replay(full, pruner, 10) for _ in range(3)]
        assert runs[0] == runs[1] == runs[2]
        (stored,) = [r for r in saved["replays"] if r["pruner"] == pruner]
        assert (runs[0]["epochs"], runs[0]["best"]) == (stored["epochs"], stored["best"])


def replayed_saved_benchmark(name: str) -> tuple[dict, dict, dict]:
    """A saved pruning benchmark (benchmarks/results/NAME): its unpruned and live pruned studies (the
    same trials), and sweep.yaml's pruner replayed on the unpruned curves."""
    saved = json.loads((REPO / "benchmarks" / "results" / name).read_text())
    full, live = saved["results"]
    assert live["params"] == full["params"]  # the same trials
    shipped = yaml.safe_load((REPO / "experiments" / "sweep.yaml").read_text())["pruner"]
    replayed = bench_module().replay(
        full, shipped | {"kind": live["pruner"]}, saved["settings"]["epochs"]
    )
    return full, live, replayed


def test_the_saved_pruning_benchmark_is_the_shipped_pruners_and_meets_its_goals():
    """The README's pruning table (benchmarks/results/sweep_pruning.json): the live pruned study
    trained what sweep.yaml's pruner does to the unpruned study's curves, within both goals. It fails
    when sweep.yaml's pruner settings change without the benchmark being run again."""
    full, live, replayed = replayed_saved_benchmark("sweep_pruning.json")
    assert (replayed["epochs"], replayed["best"]) == (live["epochs"], live["best_val_macro_f1"])
    assert live["epochs"] / full["epochs"] <= 0.40
    assert (full["best_val_macro_f1"] - live["best_val_macro_f1"]) * 100 <= 1


def test_the_second_seed_of_the_pruning_benchmark_is_the_shipped_pruner_and_its_miss():
    """Seed 7 (benchmarks/results/sweep_pruning_seed7.json, the README's second row pair): the live
    study is again the replay of sweep.yaml's pruner; within the epoch goal, 1.06 points off the best."""
    full, live, replayed = replayed_saved_benchmark("sweep_pruning_seed7.json")
    assert (replayed["epochs"], replayed["best"]) == (live["epochs"], live["best_val_macro_f1"])
    assert live["epochs"] / full["epochs"] <= 0.40
    assert round(replayed["gap_points"], 2) == 1.06


def test_the_benchmark_reuses_an_unpruned_study_only_of_the_same_settings():
    from argparse import Namespace

    saved_unpruned = bench_module().saved_unpruned
    saved = REPO / "benchmarks" / "results" / "sweep_pruning.json"
    args = Namespace(trials=12, epochs=10, max_faces=2000, seed=42)
    with pytest.raises(SystemExit, match=r"another setting: epochs 20 \(here 10\)"):
        saved_unpruned(saved, args)
    args.epochs = 20
    full = saved_unpruned(saved, args)
    assert (full["pruner"], full["epochs"]) == ("none", 240)


# --- the search space -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, message",
    [
        ({"model.dropout": {"low": 0.0, "high": 0.5}}, "params.model.dropout: not a config key"),
        (
            {"train.learning_rate": {"low": 0.01, "high": 0.001}},
            "low (0.01) must be below high (0.001)",
        ),
        ({"model.conv_dropout": {"low": 0.0, "high": 1.5}}, "(value 1.5 from the search space)"),
        ({"balance.smote": {"choices": []}}, "choices must not be empty"),
        (
            {"train.learning_rate": {"low": 0.0, "high": 0.01, "log": True}},
            "log scale needs low > 0",
        ),
        ({"augment.strength": {"low": 0.0}}, "needs low and high, or choices"),
        (
            {"data.image_size": {"low": 16, "high": 48}},
            "data.image_size 16 is too small for model reference",
        ),
    ],
)
def test_bad_space_entries_are_one_line_errors(tmp_path, capsys, params, message):
    space = write_space(tmp_path / "space.yaml", **params)
    with pytest.raises(SystemExit) as exit_:
        sweep_main(["--space", str(space), "--trials", "1"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert err.startswith("error: ") and "\n" not in err and message in err, err


def test_unknown_keys_and_test_metrics_are_refused(tmp_path, capsys):
    spec = yaml.safe_load((REPO / "experiments" / "sweep.yaml").read_text())
    spec["pruners"] = spec.pop("pruner")
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(spec))
    spec = yaml.safe_load((REPO / "experiments" / "sweep.yaml").read_text())
    spec["objective"]["metric"] = "test_macro_f1"  # choosing on test would leak it
    (tmp_path / "test_metric.yaml").write_text(yaml.safe_dump(spec))
    for name, message in (("typo", "unknown key 'pruners'"), ("test_metric", "objective.metric")):
        with pytest.raises(SystemExit):
            sweep_main(["--space", str(tmp_path / f"{name}.yaml")])
        assert message in capsys.readouterr().err


def test_default_space_draws_every_kind_of_value_and_holds_the_baseline():
    spec, _ = load_spec("sweep")
    # the design's parameters, and the recipe's (issue: optimizer, weight decay, schedule, ...)
    assert {
        "model.dense_dropout",
        "train.learning_rate",
        "augment.strength",
        "balance.smote",
        "train.optimizer",
        "train.weight_decay",
        "train.schedule",
        "train.label_smoothing",
        "train.batch_size",
        "model.name",
    } <= set(spec.params)
    # an int range
    spec.params["train.epochs"] = type(spec.params["augment.strength"])(low=1, high=3)
    base_tree, _ = load_tree("baseline")
    for seed in range(20):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        values = suggest(trial, spec)
        assert isinstance(values["train.epochs"], int) and isinstance(values["balance.smote"], bool)
        assert ("model.dense_dropout" in values) == (values["model.name"] == "reference")
        assert ("train.momentum" in values) == (values["train.optimizer"] == "sgd")
        trial_config(base_tree, values)  # every draw is a valid config
    # trial 0 replays the baseline: its values are points of the space
    base = base_values(load_spec("sweep")[0], base_tree)
    assert base["model.name"] == "reference" and "train.momentum" not in base
    for key, value in base.items():
        p = spec.params[key]
        assert value in p.choices if p.choices is not None else p.low <= value <= p.high, key


def test_the_contour_draws_only_parameters_that_varied_and_warns_nothing():
    """A default study completes few trials (the rest are pruned); a parameter they share cannot be
    drawn, and Optuna warned once per such pair (~80 lines under the progress bar)."""
    import logging

    from workbench.studies.study_report import study_figures

    study = optuna.create_study(direction="maximize")
    for i, (lr, batch) in enumerate([(1e-3, 32), (3e-3, 32), (2e-3, 32)]):
        study.enqueue_trial({"lr": lr, "batch": batch, "drop": 0.1 * i})
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.suggest_categorical("batch", [32, 64])
        trial.suggest_float("drop", 0.0, 0.5)
        study.tell(trial, 0.3 + 0.01 * i)
    warnings = []
    handler = logging.Handler()
    handler.emit = warnings.append
    logging.getLogger("optuna").addHandler(handler)
    try:
        figs, notes = study_figures(study)
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    assert "contour" in figs and not [w for w in warnings if "unique value" in w.getMessage()]
    titles = {a.text for a in figs["contour"].layout.annotations or ()} | {
        figs["contour"].layout.xaxis.title.text,
        figs["contour"].layout.yaxis.title.text,
    }
    assert "batch" not in titles and {"drop", "lr"} <= titles


# --- pruning ----------------------------------------------------------------------------------------


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_conditional_parameter_is_drawn_only_under_its_parent_choice(tmp_path):
    space = write_space(
        tmp_path / "space.yaml",
        **{
            "train.optimizer": {"choices": ["adamw", "sgd"]},
            "train.momentum": {"low": 0.8, "high": 0.99, "when": {"train.optimizer": "sgd"}},
            "train.weight_decay": {
                "low": 1e-5,
                "high": 1e-3,
                "log": True,
                "when": {"train.optimizer": ["adamw", "sgd"]},
            },
        },
    )
    spec, _ = load_spec(str(space))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(30):
        trial = study.ask()
        drawn.append(suggest(trial, spec))
        study.tell(trial, 0.0)
    sgd = [d for d in drawn if d["train.optimizer"] == "sgd"]
    assert sgd and len(sgd) < len(drawn)  # both branches were taken
    assert all(("train.momentum" in d) == (d["train.optimizer"] == "sgd") for d in drawn)
    assert all("train.weight_decay" in d for d in drawn)


@pytest.mark.parametrize(
    "when, message",
    [
        (
            {"train.optimizer": "sgd"},
            "when train.optimizer: must name a choices parameter that has no when",
        ),
        ({"balance.smote": "maybe"}, "when balance.smote: 'maybe' is not one of its choices"),
    ],
)
def test_conditions_must_name_an_earlier_choice(tmp_path, capsys, when, message):
    space = write_space(
        tmp_path / "space.yaml",
        **{
            "balance.smote": {"choices": [False, True]},
            "train.momentum": {"low": 0.8, "high": 0.99, "when": when},
        },
    )
    with pytest.raises(SystemExit):
        sweep_main(["--space", str(space), "--trials", "1"])
    assert message in capsys.readouterr().err


def run_trial_under_always_prune(tmp_path, epochs: int):
    """A tiny trial run whose pruner says "prune" at every report: (trial, reporter, result)."""
    from workbench.experiment import run_experiment
    from workbench.studies.pruning import OptunaReporter

    cfg = load_config(
        "baseline",
        TINY + [f"train.epochs={epochs}", f"data.cache_dir={tmp_path}", "purpose.role=trial"],
    )
    trial = optuna.create_study(direction="maximize", pruner=AlwaysPrune()).ask()
    reporter = OptunaReporter(trial, "val_macro_f1")
    return trial, reporter, run_experiment(cfg, callbacks=[reporter])


@pytest.mark.slow
def test_pruned_trial_stops_training_after_the_epoch_it_was_pruned(tmp_path, tracking_store):
    trial, reporter, result = run_trial_under_always_prune(tmp_path, epochs=4)
    assert reporter.pruned and result.metrics["epochs_run"] == 1
    assert list(trial.study.trials[0].intermediate_values) == [1]  # step = epochs trained
    # trials never look at the test split
    assert not any(k.startswith("test_") for k in result.metrics)
    assert trial.user_attrs["mlflow_run_id"] == result.run_id


@pytest.mark.slow
def test_a_trial_is_not_pruned_after_its_last_epoch(tmp_path, tracking_store):
    """Pruning then saves nothing and would throw away a finished trial's value."""
    trial, reporter, _ = run_trial_under_always_prune(tmp_path, epochs=1)
    assert not reporter.pruned and list(trial.study.trials[0].intermediate_values) == [1]


# --- a whole sweep: nested runs, resume, best config --------------------------------------------------


@pytest.mark.slow
def test_sweep_resumes_nests_runs_and_tests_the_best_trials_weights(tmp_path, env):
    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    space = write_space(tmp_path / "space.yaml")
    common = [
        "--space",
        str(space),
        "--study",
        "s1",
        "--storage",
        storage,
        "--best-dir",
        str(tmp_path / "best"),
    ]
    run_sweep(tmp_path, env, *common, "--trials", "2", "--no-final")
    assert sorted(t.number for t in optuna.load_study(study_name="s1", storage=storage).trials) == [
        0,
        1,
    ]
    out = run_sweep(
        tmp_path, env, *common, "--trials", "3"
    ).stdout  # resumes: one more trial, then the final run

    study = optuna.load_study(study_name="s1", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    uri = env["MLFLOW_TRACKING_URI"]
    parents = runs(uri, "study", "s1")
    children = runs(uri, "trial", "s1")
    assert len(parents) == 2 and len(children) == 3
    parent_ids = {p.info.run_id for p in parents}
    by_number = {t.number: t for t in study.trials}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] in parent_ids
        trial = by_number[int(child.data.tags["optuna.trial"])]
        assert child.data.tags["trial_state"] == trial.state.name
        assert float(child.data.params["train.learning_rate"]) == pytest.approx(
            trial.params["train.learning_rate"]
        )
        assert child.data.params["balance.smote"] == str(trial.params["balance.smote"])
        assert "val_macro_f1" in child.data.metrics and not any(
            k.startswith("test_") for k in child.data.metrics
        )
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == [0, 1, 2]

    client = MlflowClient(uri)
    latest = max(parents, key=lambda r: r.info.start_time)
    files = {a.path for a in client.list_artifacts(latest.info.run_id, "study")}
    for name in (
        "optimization_history",
        "parallel_coordinate",
        "slice",
        "contour",
        "intermediate_values",
    ):
        assert f"study/{name}.html" in files
    assert "study/trials.csv" in files
    table = client.download_artifacts(latest.info.run_id, "study/trials.csv", str(tmp_path))
    assert len(Path(table).read_text().strip().splitlines()) == 1 + 3

    best_runs = runs(uri, "best", "s1")
    assert len(best_runs) == 1 and "test_macro_f1" in best_runs[0].data.metrics
    # The best trial's own weights are tested, not its config trained again: the run names the trial's
    # run and carries that training's history, its epoch times included (a new training's would differ).
    best_trial_run = next(
        c for c in children if c.data.tags["optuna.trial"] == str(study.best_trial.number)
    )
    assert best_runs[0].data.tags["weights_from_run"] == best_trial_run.info.run_id
    assert "its weights tested" in best_runs[0].info.run_name

    def history(run, key):
        return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]

    for key in ("epoch_seconds", "loss", "accuracy", "learning_rate"):
        assert history(best_runs[0], key) == history(best_trial_run, key), key
    best = load_config(str(tmp_path / "best" / "s1-best.yaml"))
    assert best.train.learning_rate == pytest.approx(study.best_params["train.learning_rate"])
    assert best.data.max_faces == 280  # the --set values of the sweep are part of the best config
    assert "best trial on test: accuracy" in out
    base = next(t for t in study.trials if t.number == 0)  # sweep.yaml's baseline trial
    if base.state.name == "COMPLETE" and study.best_trial.number != 0:
        # the best trial and the baseline on the same test faces: a paired test and its verdict
        (base_run,) = runs(uri, "baseline", "s1")
        assert base_run.data.tags["optuna.trial"] == "0"
        assert "accuracy A - B" in out and "verdict" in out and "McNemar p = " in out
        assert "sweep.best_vs_baseline" in latest.data.tags
    # The study's own page: best trial, counts, epochs saved, the best trial on test beside chance.
    page = Path(
        client.download_artifacts(latest.info.run_id, "study/report.html", str(tmp_path))
    ).read_text()
    for text in (
        "Study s1",
        "3 finished",
        "without pruning",
        f"best trial</th><td>{study.best_trial.number}:",
        "best trial on test",
        best_runs[0].info.run_id,
        "chance 0.",
    ):
        assert text in page, text

    # Asking again for 3 trials: nothing left to do, nothing duplicated.
    again = run_sweep(tmp_path, env, *common, "--trials", "3").stdout
    assert len(optuna.load_study(study_name="s1", storage=storage).trials) == 3
    assert len(runs(uri, "trial", "s1")) == 3 and len(runs(uri, "best", "s1")) == 1
    assert len(runs(uri, "study", "s1")) == 2  # no empty parent run for a study with nothing to do
    assert "nothing to run: 3 trials are finished" in again

    # The same study with another base config is refused, not silently mixed.
    proc = subprocess.run(
        sweep_cmd(*common, "--trials", "4", sets=TINY + ["train.batch_size=16"]),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        proc.returncode == 2
        and "created with a different search space or base config" in proc.stderr
    )


@pytest.mark.slow
def test_a_trial_averages_its_score_over_seeds(tmp_path, env):
    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    space = write_space(tmp_path / "space.yaml")
    spec = yaml.safe_load(space.read_text())
    spec["fixed"] = (spec.get("fixed") or {}) | {"seeds": 2}
    space.write_text(yaml.safe_dump(spec))
    args = ["--space", str(space), "--study", "sd", "--storage", storage, "--trials", "1"]
    run_sweep(tmp_path, env, *args, "--no-final")
    (trial,) = optuna.load_study(study_name="sd", storage=storage).trials
    uri = env["MLFLOW_TRACKING_URI"]
    seed_runs = runs(uri, "trial", "sd")
    assert sorted(r.data.params["seed"] for r in seed_runs) == ["42", "43"]
    assert {r.data.params["split.seed"] for r in seed_runs} == {"42"}
    values = [r.data.metrics["val_macro_f1"] for r in seed_runs]
    assert trial.value == pytest.approx(np.mean(values))
    assert sorted(trial.user_attrs["seed_values"]) == pytest.approx(sorted(values))


# --- several workers on PostgreSQL --------------------------------------------------------------------


@pytest.fixture
def pg_env(postgres, env, tmp_path):
    """Optuna storage and MLflow backend both in the real PostgreSQL server, as on several machines."""
    name = tmp_path.name.lower().replace("-", "_")[-40:]
    storage = postgres.create_database(f"optuna_{name}")
    mlflow_uri = postgres.create_database(f"mlflow_{name}")
    MlflowClient(
        mlflow_uri
    ).search_experiments()  # create MLflow's schema once, before workers race for it
    return dict(env, MLFLOW_TRACKING_URI=mlflow_uri), storage


@pytest.mark.slow
def test_two_workers_share_one_study_on_postgres(tmp_path, pg_env):
    env, storage = pg_env
    space = write_space(tmp_path / "space.yaml")
    args = [
        "--space",
        str(space),
        "--study",
        "duo",
        "--storage",
        storage,
        "--trials",
        "4",
        "--no-final",
    ]
    workers = [
        subprocess.Popen(
            sweep_cmd(*args, "--worker-index", str(i)),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    for w in workers:
        _, err = w.communicate(timeout=400)
        assert w.returncode == 0, err[-3000:]
    by_state = trials_by_state(storage, "duo")
    finished = by_state.get("COMPLETE", []) + by_state.get("PRUNED", [])
    assert len(finished) == 4 and set(by_state) <= {"COMPLETE", "PRUNED"}
    numbers = [t.number for t in finished]
    assert len(set(numbers)) == len(numbers) == 4
    children = runs(env["MLFLOW_TRACKING_URI"], "trial", "duo")
    # one run per trial
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == sorted(numbers)
    parents = runs(env["MLFLOW_TRACKING_URI"], "study", "duo")
    assert len(parents) == 2 and {c.data.tags["mlflow.parentRunId"] for c in children} <= {
        p.info.run_id for p in parents
    }
    # Both workers really worked on it.
    assert len({c.data.tags["mlflow.parentRunId"] for c in children}) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "checkpoint_here", [True, False], ids=["same-machine", "checkpoint-elsewhere"]
)
def test_killed_worker_trial_is_failed_retried_and_the_study_completes(
    tmp_path, pg_env, checkpoint_here
):
    env, storage = pg_env
    space = write_space(
        tmp_path / "space.yaml", heartbeat={"interval": 1, "grace_period": 4, "max_retry": 1}
    )
    args = [
        "--space",
        str(space),
        "--study",
        "crash",
        "--storage",
        storage,
        "--trials",
        "3",
        "--no-final",
    ]
    slow = [s for s in TINY if not s.startswith("train.epochs")] + ["train.epochs=12"]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    victim = subprocess.Popen(
        sweep_cmd(*args, sets=slow),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    orphan = None
    # One storage for the polling: a new one each time opens a connection pool each time, and a slow
    # start (a busy machine) then ran PostgreSQL out of connections before the trial began.
    polled = optuna.storages.RDBStorage(storage)
    while orphan is None and time.monotonic() < deadline and victim.poll() is None:
        try:
            running = [
                t
                for t in optuna.load_study(study_name="crash", storage=polled).trials
                if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
            ]
        except KeyError:  # the study does not exist yet
            running = []
        if running and checkpoint_here:  # wait for an epoch trained and checkpointed
            trained = client.get_metric_history(running[0].user_attrs["mlflow_run_id"], "loss")
            running = running if trained else []
        orphan = running[0] if running else None
        time.sleep(0.3)
    polled.engine.dispose()
    assert orphan is not None, "the worker never started training a trial"
    victim.send_signal(signal.SIGKILL)  # mid-trial: no chance to clean up
    victim.wait()
    orphan_id = orphan.user_attrs["mlflow_run_id"]
    if not checkpoint_here:  # as if the worker had been another machine: the retry starts over
        for folder in (tmp_path / "cache").rglob(orphan_id):
            shutil.rmtree(folder)

    run_sweep(tmp_path, env, *args, "--worker-index", "1", sets=slow, timeout=400)
    by_state = trials_by_state(storage, "crash")
    finished = by_state.get("COMPLETE", []) + by_state.get("PRUNED", [])
    assert len(finished) == 3
    failed = by_state["FAIL"]
    assert [t.number for t in failed] == [orphan.number]
    retry = [t for t in finished if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retry) == 1 and retry[0].params == orphan.params  # the same point, run again
    orphan_run = client.get_run(orphan_id)
    if checkpoint_here:  # continued in its own run from its checkpoint, no epoch logged twice
        assert retry[0].user_attrs["mlflow_run_id"] == orphan_id
        assert orphan_run.info.status == "FINISHED" and orphan_run.data.tags["resumed"] == "true"
        steps = sorted(m.step for m in client.get_metric_history(orphan_id, "loss"))
        assert steps == list(range(len(steps))) and orphan_run.data.tags["trial_state"] != "FAIL"
    else:
        assert retry[0].user_attrs["mlflow_run_id"] != orphan_id
        assert orphan_run.info.status == "FAILED" and orphan_run.data.tags["trial_state"] == "FAIL"
    (victim_parent,) = [
        r
        for r in runs(env["MLFLOW_TRACKING_URI"], "study", "crash")
        if r.data.tags["sweep.worker"].endswith(f":{victim.pid}")
    ]
    # ended by the next worker on this host, not RUNNING forever
    assert victim_parent.info.status == "KILLED"


@pytest.mark.slow
def test_a_terminated_sweep_ends_its_runs_killed_and_the_next_start_continues_its_trial(
    tmp_path, env
):
    storage = f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    space = write_space(tmp_path / "space.yaml")
    slow = [s for s in TINY if not s.startswith("train.epochs")] + ["train.epochs=40"]
    args = ["--space", str(space), "--study", "term", "--storage", storage]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    proc = subprocess.Popen(
        sweep_cmd(*args, "--trials", "2", sets=slow),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if not (
                tmp_path / "mlruns" / "optuna.db"
            ).exists():  # the sweep creates it (and its folder)
                time.sleep(0.3)
                continue
            try:
                trials = optuna.load_study(study_name="term", storage=storage).trials
            except (KeyError, OperationalError):  # the study or its tables are not created yet
                trials = []
            run_id = next((t.user_attrs.get("mlflow_run_id") for t in trials), None)
            if run_id and len(client.get_metric_history(run_id, "loss")) >= 2:
                break  # two epochs trained and checkpointed
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]
    stopped, queued = optuna.load_study(study_name="term", storage=storage).trials
    assert stopped.state.name == "FAIL" and queued.state.name == "WAITING"
    run_id = stopped.user_attrs["mlflow_run_id"]
    trial_run = client.get_run(run_id)
    assert trial_run.info.status == "KILLED" and trial_run.data.tags["trial_state"] == "FAIL"
    (parent,) = runs(env["MLFLOW_TRACKING_URI"], "study", "term")
    assert parent.info.status == "KILLED"

    # The same command again continues the stopped trial (the baseline) in its own run, from its
    # last checkpointed epoch: no epoch trained twice, the pruner sees all 40.
    out = run_sweep(tmp_path, env, *args, "--trials", "1", "--no-final", sets=slow).stdout
    assert f"resuming MLflow run {run_id}" in out
    stopped, retry = optuna.load_study(study_name="term", storage=storage).trials
    assert retry.state.name == "COMPLETE" and retry.params == stopped.params
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["baseline"]
    assert retry.user_attrs["mlflow_run_id"] == run_id
    assert sorted(retry.intermediate_values) == list(range(1, 41))
    trial_run = client.get_run(run_id)
    assert trial_run.info.status == "FINISHED" and trial_run.data.tags["trial_state"] == "COMPLETE"
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == list(range(40))


@pytest.mark.slow
def test_make_dashboard_serves_a_real_study(tmp_path):
    from servers import free_port

    (tmp_path / "mlruns").mkdir()
    study = optuna.create_study(
        study_name="dash", storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    port = free_port()
    env = dict(os.environ, DASH_PORT=str(port))
    proc = subprocess.Popen(
        [
            "make",
            "-s",
            "-C",
            str(REPO),
            "dashboard",
            f"OPTUNA_STORAGE=sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, body = time.monotonic() + 120, None
        while body is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the dashboard did not answer"
        (summary,) = body["study_summaries"]
        assert summary["study_name"] == "dash"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
