"""End to end: a short real training run, and everything it must leave in MLflow."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import SMALL_NET
from mlflow import MlflowClient

from workbench import CLASS_NAMES
from workbench.config import load_config
from workbench.tracking import lineage

pytestmark = pytest.mark.slow  # trains real models end to end

REPO = Path(__file__).resolve().parent.parent
QUICK = ["train.epochs=1", "data.max_faces=700"]
FIGURES = (
    "curves",
    "confusion_matrix",
    "confusion_matrix_normalized",
    "per_class_f1",
    "test_predictions",
    "confident_mistakes",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # module-scoped, so not the function-scoped monkeypatch fixture
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@pytest.fixture(scope="module")
def quick_run(store, tmp_path_factory):
    from workbench.experiment import run_experiment

    cfg = load_config("baseline", QUICK + [f"data.cache_dir={tmp_path_factory.mktemp('cache')}"])
    return cfg, run_experiment(cfg)


def artifact_paths(client, run_id, path=""):
    out = []
    for item in client.list_artifacts(run_id, path):
        out += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def test_run_logs_params_metrics_and_tags(quick_run, store):
    cfg, result = quick_run
    client = MlflowClient(store)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.epochs"] == "1" and params["model.dense_units"] == "1024"
    assert params["protocol"] == "split-then-resample" and params["data.max_faces"] == "700"
    metrics = run.data.metrics
    for name in ("test_accuracy", "test_macro_f1", "test_weighted_f1", "test_balanced_accuracy"):
        assert 0.0 <= metrics[name] <= 1.0
    for cls in CLASS_NAMES:
        assert f"test_f1_{cls}" in metrics
    for per_epoch in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(client.get_metric_history(result.run_id, per_epoch)) == 1
    tags = run.data.tags
    assert tags["protocol"] == "split-then-resample"
    assert tags["version.tensorflow"].startswith("2.21") and tags["version.mlflow"]
    assert "git_commit" in tags
    # The name leads with what this run changes (the UI cuts long names); the test scores are one value
    # each at step 0, beside the chance flags; data.path is the file read, not the config's null.
    assert run.info.run_name == "baseline epochs=1 max_faces=700"
    assert [
        (m.step, m.value) for m in client.get_metric_history(result.run_id, "test_accuracy")
    ] == [(0, metrics["test_accuracy"])]
    assert tags["beats_chance"] in ("yes", "no") and "zero_f1_classes" in tags
    assert params["data.path"].endswith("workbench/samples/fer2013_sample.csv.gz")


def test_run_logs_every_artifact(quick_run, store):
    _, result = quick_run
    paths = set(artifact_paths(MlflowClient(store), result.run_id))
    expected = {
        "config.yaml",
        "dataset/lineage.json",
        "dataset/manifest.csv.gz",
        "metrics/classification_report.json",
        "metrics/classification_report.txt",
        "figures/report.html",
    }
    expected |= {f"figures/{name}.html" for name in FIGURES}
    if shutil.which("chromium"):
        expected |= {f"figures/{name}.png" for name in FIGURES}
    assert expected <= paths, expected - paths


def test_report_has_a_header_stays_small_and_draws_offline(quick_run, store, tmp_path):
    from urllib.parse import urlparse

    _, result = quick_run
    # In place in the local store: the run's pages share the experiment's one copy of plotly.js.
    folder = Path(urlparse(MlflowClient(store).get_run(result.run_id).info.artifact_uri).path)
    folder = folder / "figures"
    report = (folder / "report.html").read_text()
    assert (
        folder / "report.html"
    ).stat().st_size < 300_000  # plotly.js is beside it, not inside (4.8 MB)
    m = result.metrics
    for text in (
        f"baseline epochs=1 max_faces=700 ({result.run_id})",
        result.lineage["path"],
        "split-then-resample",
        f"{m['test_accuracy']:.4f}",
        f"{m['test_chance_uniform']:.3f} uniform",
        "Confusion matrix on test",
    ):
        assert text in report, text
    assert not (folder / "plotly.min.js").exists()
    (shared,) = folder.parents[2].glob("plotly-*.min.js")
    assert shared.stat().st_size > 1_000_000 and f"src='../../../{shared.name}'" in report
    if not shutil.which("chromium"):
        from servers import missing

        missing("Debian's chromium", "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(offline=True)
        for page_name in ("report.html", "per_class_f1.html"):
            page = context.new_page()
            page.goto((folder / page_name).as_uri())
            # plotly drew: plotly.js loaded with no network
            page.wait_for_selector(".main-svg", timeout=30_000)
        browser.close()


def test_logged_config_is_the_whole_config(quick_run, store):
    cfg, result = quick_run
    text = mlflow.artifacts.load_text(f"runs:/{result.run_id}/config.yaml")
    assert text == cfg.to_yaml()


def test_dataset_lineage_is_logged(quick_run, store):
    _, result = quick_run
    run = MlflowClient(store).get_run(result.run_id)
    inputs = {
        next(t.value for t in i.tags if t.key == "mlflow.data.context"): i
        for i in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "validation", "testing"}
    assert all(i.dataset.digest for i in inputs.values())
    assert inputs["testing"].dataset.name.endswith(":test")
    lineage = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/dataset/lineage.json")
    assert lineage["format"] == "fer2013" and lineage["faces_loaded"] == 700
    assert sum(s["faces"] for s in lineage["splits"].values()) == 700
    assert lineage["skipped"]["count"] == 0 and lineage["split_method"] == "dataset's own split"


def test_model_reloads_and_predicts(quick_run, store):
    _, result = quick_run
    from workbench.data import DEFAULT_DATASET
    from workbench.data.decode import FaceShape
    from workbench.data.fer2013 import load_fer2013

    faces = load_fer2013(DEFAULT_DATASET, FaceShape(48, 1), 1, select=lambda n: np.arange(5))
    x = faces.images.astype(np.float32)
    keras_model = mlflow.tensorflow.load_model(f"runs:/{result.run_id}/model")
    probs = keras_model.predict(x, verbose=0)
    assert probs.shape == (5, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    pyfunc = mlflow.pyfunc.load_model(result.model_uri)
    assert np.allclose(np.asarray(pyfunc.predict(x)), probs, atol=1e-5)
    assert pyfunc.metadata.get_input_schema() is not None  # signature
    # what a fresh environment installs to load it: Keras 3 and the workbench's own layers included
    wanted = mlflow.pyfunc.get_model_dependencies(result.model_uri)
    pins = set(Path(wanted).read_text().split())
    for name in ("keras", "tensorflow", "fer-workbench"):
        assert f"{name}=={metadata.version(name)}" in pins, (name, pins)


def test_same_config_twice_gives_the_same_numbers(quick_run, store):
    from workbench.experiment import run_experiment

    cfg, first = quick_run
    second = run_experiment(cfg)
    assert second.run_id != first.run_id
    for name in ("test_accuracy", "test_macro_f1"):
        assert abs(second.metrics[name] - first.metrics[name]) <= 0.005
    assert np.array_equal(first.evaluation.y_true, second.evaluation.y_true)  # same split


def test_a_crash_ends_the_run_failed(store):
    import keras

    from workbench.experiment import run_experiment

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    cfg = load_config("baseline", QUICK + ["tracking.experiment=crash"])
    with pytest.raises(RuntimeError, match="boom"):
        run_experiment(cfg, callbacks=[Boom()])
    runs = MlflowClient(store).search_runs([mlflow.get_experiment_by_name("crash").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def _run_cli(args, env, **kw):
    return subprocess.run(
        [sys.executable, "-m", "workbench.run", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        **kw,
    )


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_ends_the_run_killed_quietly(tmp_path, signum, code):
    db = tmp_path / "mlflow.db"
    # TensorFlow's own log level left unset: the command must keep its C++ lines out by itself.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{db}"
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workbench.run",
            "baseline",
            "--set",
            "train.epochs=200",
            "--set",
            "data.max_faces=700",
            "--set",
            f"data.cache_dir={tmp_path / 'c'}",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait until an epoch has been logged: training is under way
            if db.exists():
                with sqlite3.connect(db) as con:
                    try:
                        if con.execute("select count(*) from metrics where key='loss'").fetchone()[
                            0
                        ]:
                            break
                    except sqlite3.OperationalError:
                        pass
            time.sleep(1)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert err.strip().splitlines()[-1] == (
        "interrupted" if signum == signal.SIGINT else "terminated"
    )
    assert "Traceback" not in err
    # TensorFlow's C++ log lines
    assert "E0000" not in err and "cuInit" not in err and "oneDNN" not in err
    with sqlite3.connect(db) as con:
        assert [r[0] for r in con.execute("select status from runs")] == ["KILLED"]


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    bad_key = _run_cli(["baseline", "--set", "train.epoch=1"], env, timeout=60)
    assert bad_key.returncode == 2
    assert bad_key.stderr.strip().count("\n") == 0 and "unknown key 'train.epoch'" in bad_key.stderr
    bad_path = _run_cli(["baseline", "--set", "data.path=/no/such/fer.csv"], env, timeout=120)
    assert bad_path.returncode == 2 and "Traceback" not in bad_path.stderr
    assert (
        bad_path.stderr.strip()
        .splitlines()[-1]
        .startswith("error: data.path: /no/such/fer.csv does not exist")
    )
    assert not (tmp_path / "m.db").exists() or "RUNNING" not in bad_path.stdout
    sweep_file = _run_cli(["sweep"], env, timeout=60)
    assert sweep_file.returncode == 2 and sweep_file.stderr.strip().count("\n") == 0
    assert (
        "a sweep file, not an experiment; run it with python -m workbench.sweep --space sweep"
        in sweep_file.stderr
    )
    zero = subprocess.run(
        [sys.executable, "-m", "workbench.reproduce", "--epochs", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert zero.returncode == 2 and "argument --epochs: 0 is not at least 1" in zero.stderr


# Small enough to be quick, big enough (1,400 faces) that an epoch lasts long enough to kill it mid-run.
RESUMABLE = [
    "train.epochs=4",
    "data.max_faces=1400",
    "data.image_size=32",
    *SMALL_NET,
    "train.warmup_epochs=0",
    "tracking.log_model=false",
]


def test_a_killed_run_resumes_in_the_same_mlflow_run(tmp_path):
    """SIGKILL after epoch 2 of 4, then the same command: one FINISHED run, steps 0-3 once each,
    and epoch 3 continues from epoch 2's weights instead of starting over."""
    store = tmp_path / "mlruns"
    env = os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "BROWSER_PATH": "/nonexistent",
    }
    args = [
        "baseline",
        *[a for s in RESUMABLE + [f"data.cache_dir={tmp_path / 'c'}"] for a in ("--set", s)],
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.run", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline, state = time.time() + 300, None
    try:
        while time.time() < deadline and proc.poll() is None:
            states = list((store / "checkpoints").glob("*/state.json"))
            if states and json.loads(states[0].read_text())["epochs_done"] >= 2:
                proc.send_signal(signal.SIGKILL)
                state = json.loads(states[0].read_text())
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert state is not None and state["epochs_done"] == 2, (
        "the run was not caught between epochs 2 and 4"
    )
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("baseline").experiment_id])
    assert run.info.status == "RUNNING"  # SIGKILL: nobody could end it
    first_losses = [
        m.value
        for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    ]

    again = _run_cli(args, env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming MLflow run {run.info.run_id}" in again.stdout
    (after,) = client.search_runs([run.info.experiment_id])
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    for key in ("loss", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == [0, 1, 2, 3], (key, steps)
    # The training time is every epoch's, those before the kill included.
    timed = [m.value for m in client.get_metric_history(run.info.run_id, "epoch_seconds")]
    assert after.data.metrics["train_seconds"] == pytest.approx(sum(timed))
    losses = [
        m.value
        for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    ]
    # the epochs before the kill are kept as they were
    assert losses[: len(first_losses)] == first_losses
    # Continued, not restarted: epoch 3 is nearer epoch 2's loss than a fresh first epoch's.
    assert abs(losses[2] - losses[1]) < abs(losses[2] - losses[0])
    assert after.data.metrics["epochs_run"] == 4 and after.data.tags["resumed"] == "true"
    assert not (store / "checkpoints" / run.info.run_id).exists()  # finished: checkpoint dropped


# Each instant of a run's end, in order: after the last epoch, during the test, the figures, the model.
END_PHASES = [
    ("workbench.experiment:predict", "before"),
    ("workbench.experiment:report_header", "before"),
    ("workbench.tracking.figures:write_report", "before"),
    ("mlflow.tensorflow:save_model", "before"),
]


def test_a_run_killed_at_each_instant_of_its_end_finishes_as_one_run(tmp_path):
    """SIGKILL after the last epoch, then during the test, the figures and the model logging, each
    time rerunning the same command: one FINISHED run, each epoch once, the test scores once and one
    model (the half-logged one deleted)."""
    store = tmp_path / "mlruns"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "BROWSER_PATH": "/nonexistent"}
    settings = [s for s in RESUMABLE if s != "tracking.log_model=false"]
    settings = [s.replace("epochs=4", "epochs=2") for s in settings]
    args = [
        "baseline",
        *[a for s in settings + [f"data.cache_dir={tmp_path / 'c'}"] for a in ("--set", s)],
    ]
    for target, when in END_PHASES:
        killed = subprocess.run(
            [sys.executable, str(REPO / "tests" / "kill_at.py"), target, when, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert killed.returncode == -signal.SIGKILL, (target, killed.stderr[-2000:])
    done = _run_cli(args, env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("baseline").experiment_id])
    assert run.info.status == "FINISHED" and f"resuming MLflow run {run.info.run_id}" in done.stdout
    for key in ("loss", "val_accuracy", "epoch_seconds"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [0, 1]
    for key in ("test_accuracy", "test_macro_f1", "epochs_run", "train_seconds"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
    models = client.search_logged_models([run.info.experiment_id])
    assert [m.status.value for m in models] == ["READY"]
    assert "figures/report.html" in artifact_paths(client, run.info.run_id)
    assert not (store / "checkpoints" / run.info.run_id).exists()


def test_resume_of_a_finished_run_is_refused(quick_run, store):
    _, result = quick_run
    env = os.environ | {"MLFLOW_TRACKING_URI": store}
    again = _run_cli(["--resume", result.run_id], env, timeout=120)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert f"--resume {result.run_id}: that run is FINISHED" in again.stderr
    after = MlflowClient(store).get_run(result.run_id)
    assert len(MlflowClient(store).get_metric_history(result.run_id, "test_accuracy")) == 1
    assert after.info.status == "FINISHED"


def test_a_run_that_skipped_faces_says_so_on_its_console(tmp_path):
    import gzip

    lines = gzip.open(REPO / "workbench" / "samples" / "fer2013_sample.csv.gz", "rt").read()
    lines = lines.splitlines()
    lines[5] = "3,1 2 3,Training"  # not a square image
    (tmp_path / "faces.csv").write_text("\n".join(lines) + "\n")
    settings = [s for s in RESUMABLE if not s.startswith(("train.epochs", "data.max_faces"))]
    settings += ["train.epochs=1", f"data.path={tmp_path / 'faces.csv'}"]
    settings += [f"data.cache_dir={tmp_path / 'c'}"]
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = _run_cli(["baseline", *[a for s in settings for a in ("--set", s)]], env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 face skipped at load (see dataset/lineage.json)" in done.stdout


def test_a_full_store_disk_is_one_line_and_the_run_ends_failed(store_disk, tmp_path):
    uri = f"sqlite:///{store_disk / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "BROWSER_PATH": "/nonexistent"}
    sets = QUICK + [f"data.cache_dir={tmp_path / 'c'}"]
    done = _run_cli(["baseline", *[a for s in sets for a in ("--set", s)]], env, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: checkpoints in ") and "(No space left on device)" in last
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("baseline").experiment_id])
    assert run.info.status == "FAILED"
    assert not list(store_disk.rglob("*.h5"))  # nothing half-written


def test_every_test_score_has_its_interval_and_each_face_its_prediction(quick_run, store):
    _, result = quick_run
    m = MlflowClient(store).get_run(result.run_id).data.metrics
    for score in ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy"):
        assert m[f"test_{score}_ci_low"] < m[f"test_{score}"] < m[f"test_{score}_ci_high"], score
    frame = lineage.load_predictions(result.run_id)
    assert list(frame.columns[:3]) == ["id", "label", "predicted"] and len(frame) == len(
        result.prepared.test
    )
    assert (frame["predicted"] == frame["label"]).mean() == pytest.approx(m["test_accuracy"])
    probs = frame[[f"p_{c}" for c in CLASS_NAMES]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_compare_two_runs_face_by_face_and_refuses_different_faces(quick_run, store, tmp_path):
    _, result = quick_run
    env = os.environ | {"MLFLOW_TRACKING_URI": store}
    cache = f"data.cache_dir={tmp_path / 'c'}"
    ids = {}
    # a small net: the comparison needs the same test faces, not the same model
    for name, extra in (("lr", "train.learning_rate=0.0002"), ("seed", "seed=7")):
        sets = [a for s in QUICK + SMALL_NET + [cache, extra] for a in ("--set", s)]
        done = _run_cli(["baseline", *sets], env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "test accuracy      0." in done.stdout and "] " in done.stdout  # with its interval
        ids[name] = done.stdout.split("MLflow run         ")[1].split()[0]
    cmd = [sys.executable, "-m", "workbench.compare", "--out", str(tmp_path / "c.html"), "--runs"]

    def compare(a, b):
        return subprocess.run(
            [*cmd, a, b], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )

    same = compare(result.run_id, ids["lr"])
    assert same.returncode == 0, same.stderr[-2000:]
    assert "accuracy A - B" in same.stdout and "McNemar p = " in same.stdout
    verdict = [line for line in same.stdout.splitlines() if "verdict" in line]
    assert len(verdict) == 1 and (
        "better at the 5% level" in verdict[0] or "no difference" in verdict[0]
    )
    other = compare(result.run_id, ids["seed"])
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "were tested on different faces (" in other.stderr


def test_seeds_make_one_parent_whose_mean_is_the_childrens(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "BROWSER_PATH": "/nonexistent"}
    sets = [s for s in RESUMABLE if not s.startswith("train.epochs")] + ["train.epochs=1"]
    sets += [f"data.cache_dir={tmp_path / 'c'}"]
    done = _run_cli(
        ["baseline", "--seeds", "2", *[a for s in sets for a in ("--set", s)]], env, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[95% t-interval over seeds]" in done.stdout
    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name("baseline").experiment_id])
    (parent,) = [r for r in found if r.data.tags.get("seeds.role") == "parent"]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(found) == 3
    assert sorted(c.data.params["seed"] for c in children) == ["42", "43"]
    assert {c.data.params["split.seed"] for c in children} == {"42"}  # the split fixed
    assert "training seed" in parent.data.tags["seeds.varies"]
    for score in ("accuracy", "macro_f1"):
        values = [c.data.metrics[f"test_{score}"] for c in children]
        assert parent.data.metrics[f"test_{score}"] == pytest.approx(np.mean(values))
        assert parent.data.metrics[f"test_{score}_std"] == pytest.approx(np.std(values, ddof=1))
    again = _run_cli(
        ["baseline", "--seeds", "2", *[a for s in sets for a in ("--set", s)]], env, timeout=900
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(client.search_runs([parent.info.experiment_id])) == 6  # a new study of 2 seeds


def test_without_a_browser_the_run_finishes_with_html_figures_and_its_model(tmp_path):
    """kaleido needs Chrome/Chromium; BROWSER_PATH=/nonexistent makes it look for one that is not there.
    The run must not wait for it: FINISHED, HTML figures, the model, one note."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": store, "BROWSER_PATH": "/nonexistent"}
    # A learning rate too small to learn anything: the run must also say it does not beat chance.
    done = _run_cli(
        [
            "baseline",
            "--set",
            "train.epochs=1",
            "--set",
            "data.max_faces=350",
            "--set",
            "train.learning_rate=1e-9",
            "--set",
            f"data.cache_dir={tmp_path / 'c'}",
        ],
        env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("note: PNG figures skipped") == 1 and "Traceback" not in done.stderr
    assert "chance: 0.143 uniform" in done.stdout
    assert "warning: the model does not beat chance (0." in done.stdout
    assert "warning: F1 is 0 for " in done.stdout
    # no Keras progress bar from MLflow's check of the model's input example
    assert "━" not in done.stdout
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("baseline").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["beats_chance"] == "no" and run.data.tags["zero_f1_classes"] != "none"
    paths = set(artifact_paths(client, run.info.run_id))
    assert {f"figures/{name}.html" for name in FIGURES} | {"figures/report.html"} <= paths
    assert not any(p.endswith(".png") for p in paths)
    assert any(p.startswith("model/") for p in paths) or run.outputs.model_outputs


def test_an_unfinished_run_of_another_config_is_named_not_resumed(tracking_store, capsys):
    """Same command after the config changed (a key added by an upgrade): a new run, and a note
    saying which unfinished run `--resume` continues."""
    from workbench.experiment import resume_target
    from workbench.tracking import checkpoints, store

    cfg = load_config("baseline", [])
    experiment_id = store.configure("baseline")
    with mlflow.start_run(run_name="baseline", tags={"resume_key": "before"}) as run:
        pass
    MlflowClient().set_terminated(run.info.run_id, "KILLED")
    folder = checkpoints.checkpoint_dir(run.info.run_id)
    folder.mkdir(parents=True)
    (folder / "state.json").write_text("{}")

    assert resume_target(cfg, experiment_id, "before", None, None) == run.info.run_id
    assert capsys.readouterr().out == ""
    assert resume_target(cfg, experiment_id, "after", None, None) is None
    out = capsys.readouterr().out
    assert f"unfinished run {run.info.run_id} of 'baseline'" in out
    assert f"--resume {run.info.run_id}" in out


def test_test_faces_that_copy_training_faces_are_counted_shown_and_scored_without(
    quick_run, store, tmp_path
):
    """The audit on a run: counts logged, a grid of the pairs, the scores without the copies beside
    the headline; `data.dedupe: drop-from-eval` tests on the other faces only."""
    from workbench.experiment import run_experiment

    cfg, result = quick_run
    client = MlflowClient(store)
    m = client.get_run(result.run_id).data.metrics
    copies, tested = int(m["dup_test_in_train_near"]), len(result.evaluation.y_true)
    assert copies > 0 and m["dup_test_in_train"] <= copies  # exact ones are near ones too
    assert m["test_nodup_faces"] == tested - copies
    assert (
        m["test_nodup_accuracy_ci_low"]
        <= m["test_nodup_accuracy"]
        <= m["test_nodup_accuracy_ci_high"]
    )
    assert "figures/duplicates.html" in artifact_paths(client, result.run_id)

    dropped = run_experiment(
        cfg.model_copy(update={"data": cfg.data.model_copy(update={"dedupe": "drop-from-eval"})})
    )
    assert len(dropped.evaluation.y_true) == tested - copies
    assert "test_nodup_accuracy" not in dropped.metrics
    assert "figures/duplicates.html" not in artifact_paths(client, dropped.run_id)
