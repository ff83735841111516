"""The MLflow store: opened by several processes at once, unwritable, and never printed with its password."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest
from conftest import REPO
from mlflow import MlflowClient

from workbench.errors import WorkbenchError
from workbench.tracking import lineage, store

OPEN_STORE = "from workbench.tracking.store import configure; configure('race')"


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    for attempt in range(3):  # unlocked, MLflow's schema migration raced in 3 of 3 tries
        uri = f"sqlite:///{tmp_path / f'store{attempt}' / 'mlflow.db'}"
        env = {"MLFLOW_TRACKING_URI": uri, "PATH": "/usr/bin:/bin"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_STORE],
                cwd=REPO,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
        assert all(code == 0 for code, _ in results), [err[-800:] for _, err in results]
        assert MlflowClient(uri).get_experiment_by_name("race") is not None


def test_a_read_only_store_is_a_one_line_error(read_only_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{read_only_dir / 'mlruns' / 'mlflow.db'}")
    with pytest.raises(
        WorkbenchError,
        match=rf"MLflow store {read_only_dir / 'mlruns'}: cannot write there "
        r"\(Read-only file system\); run from a writable folder",
    ):
        store.configure("baseline")


def test_store_addresses_are_shown_without_their_password():
    uri = "postgresql+psycopg://fer:s3cret@db.example:5432/mlflow"
    assert store.display_uri(uri) == "postgresql+psycopg://fer:***@db.example:5432/mlflow"
    assert "s3cret" not in store.ui_command(uri)
    assert store.display_uri("sqlite:///mlruns/mlflow.db") == "sqlite:///mlruns/mlflow.db"


def test_new_experiments_open_in_the_model_training_view(tracking_store):
    experiment_id = store.configure("kind-check")
    assert (
        mlflow.get_experiment(experiment_id).tags["mlflow.experimentKind"]
        == "custom_model_development"
    )


def _log_at_once(dataset, run_ids: list[str]) -> list[str]:
    """Log `dataset` to each run from its own thread, all released together; returns the errors."""
    import threading

    start, errors = threading.Barrier(len(run_ids)), []

    def log(run_id):
        start.wait(timeout=60)
        try:
            with mlflow.start_run(run_id=run_id):  # the active run is per thread
                lineage.log_input(dataset, "training", {})
        except Exception as e:  # noqa: BLE001 - collected and asserted by the caller
            errors.append(f"{type(e).__name__}: {str(e)[:300]}")

    threads = [threading.Thread(target=log, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


@pytest.mark.slow
def test_workers_logging_the_same_new_dataset_at_once_all_succeed(postgres, tmp_path):
    """Sweep workers on one PostgreSQL store log the same split at the same moment: MLflow looks the
    dataset up, then inserts it, so without a retry all but one hit its unique key (CI saw it)."""
    import pandas as pd

    uri = postgres.create_database(f"mlflow_{tmp_path.name.lower().replace('-', '_')[-40:]}")
    client = MlflowClient(uri)
    experiment = client.create_experiment("race", artifact_location=str(tmp_path / "artifacts"))
    mlflow.set_tracking_uri(uri)
    try:
        for attempt in range(3):  # without the retry, 5 of 6 threads failed on the first attempt
            frame = pd.DataFrame({"id": [f"{attempt}-{i}" for i in range(5)], "label": range(5)})
            dataset = mlflow.data.from_pandas(frame, name=f"faces{attempt}", digest=f"d{attempt}")
            run_ids = [client.create_run(experiment).info.run_id for _ in range(6)]
            assert _log_at_once(dataset, run_ids) == []
            for run_id in run_ids:
                inputs = client.get_run(run_id).inputs.dataset_inputs
                assert [i.dataset.name for i in inputs] == [f"faces{attempt}"]
    finally:
        mlflow.set_tracking_uri(None)


def _configure_in_a_process(uri: str) -> tuple[subprocess.CompletedProcess, float]:
    import os
    import time

    code = (
        "from workbench.cli import user_errors\n"
        "with user_errors():\n"
        "    from workbench.tracking.store import configure; configure('x')"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=os.environ | {"MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - started


def _free_port() -> int:
    from servers import free_port

    return free_port()


@pytest.mark.parametrize("scheme", ["http", "postgresql"])
def test_an_unreachable_store_is_one_line_without_its_password_in_bounded_time(scheme):
    uri = f"{scheme}://u:S3cret@127.0.0.1:{_free_port()}" + ("/db" if scheme != "http" else "")
    done, seconds = _configure_in_a_process(uri)
    assert done.returncode == 2 and seconds < 60, (seconds, done.stderr[-1500:])
    assert "S3cret" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: MLflow store {scheme}://u:***@127.0.0.1:")
    assert "no answer within 10 s" in line


@pytest.mark.slow
@pytest.mark.parametrize("what", ["database", "role"])
def test_a_missing_postgres_database_or_role_is_one_line(postgres, what):
    uri = postgres.url("no_such_db") if what == "database" else postgres.url("postgres")
    if what == "role":
        uri = uri.replace(f"{postgres.user}@", "ghost:S3cret@")
    done, seconds = _configure_in_a_process(uri)
    assert done.returncode == 2 and seconds < 60, (seconds, done.stderr[-1500:])
    assert "S3cret" not in done.stderr and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert ("no_such_db" if what == "database" else '"ghost"') in line
