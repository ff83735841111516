"""Where runs go: the tracking URI (local SQLite by default, or MLFLOW_TRACKING_URI), its
address without password, a reachability check, the lock that serialises creating a SQLite store,
the UI command, and the experiment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow

from workbench.errors import WorkbenchError


def default_store_dir() -> Path:
    return Path.cwd() / "mlruns"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default_store_dir() / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Artifacts next to a local SQLite file; a tracking server decides for itself (None)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def display_uri(uri: str) -> str:
    """The store's address without its password, for anything printed or logged."""
    parts = urlparse(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def without_password(text: str, uri: str) -> str:
    """`text` (an error message that may quote the URI) with the URI's password masked."""
    password = urlparse(uri).password
    return text.replace(password, "***") if password else text


STORE_TIMEOUT_S = 10


def check_reachable(uri: str, timeout_s: float = STORE_TIMEOUT_S) -> None:
    """A tracking server or database that answers within `timeout_s`, or a one-line error: MLflow
    itself retries for minutes before a traceback that may quote the password."""
    scheme = urlparse(uri).scheme
    try:
        if scheme in ("http", "https"):
            import requests

            answer = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
            if answer.status_code in (401, 403):
                raise WorkbenchError(f"MLflow server {display_uri(uri)}: credentials refused")
        elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
            import sqlalchemy

            engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": int(timeout_s)})
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
    except WorkbenchError:
        raise
    except Exception as err:  # noqa: BLE001 - drivers raise their own kinds; each is one line here
        lines = str(err).strip().splitlines() or [type(err).__name__]
        reason = without_password(lines[0], uri)[:300]
        raise WorkbenchError(
            f"MLflow store {display_uri(uri)}: no answer within {timeout_s:.0f} s ({reason}); "
            "start it, check the address and credentials, or set MLFLOW_TRACKING_URI"
        ) from None


# MLflow 3's UI opens on its GenAI view; this query picks the model-training one (runs, metrics, charts).
UI_VIEW = "#/experiments?workflowType=machine_learning"


def ui_command(uri: str) -> str:
    if urlparse(uri).scheme in ("http", "https"):
        return f"open {display_uri(uri).rstrip('/')}/{UI_VIEW}"
    if uri == f"sqlite:///{default_store_dir() / 'mlflow.db'}":
        uri = "sqlite:///mlruns/mlflow.db"  # the default store, from the folder the run ran in
    return (
        f"mlflow ui --backend-store-uri {display_uri(uri)} --host 127.0.0.1 --port 5000   "
        f"(then open http://127.0.0.1:5000/{UI_VIEW})"
    )


STORE_LOCK_TIMEOUT_S = 300


@contextlib.contextmanager
def sqlite_store_lock(uri: str, timeout_s: float = STORE_LOCK_TIMEOUT_S):
    """Serialise opening a local SQLite store between processes: MLflow creates and migrates the
    schema on first open, and two processes doing it at once break it (`_alembic_tmp_experiments
    already exists`). Other stores (PostgreSQL, a server) need no lock here."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        handle = open(db.with_name(db.name + ".lock"), "a")
    except OSError as err:
        raise WorkbenchError(
            f"MLflow store {db.parent}: cannot write there ({err.strerror}); "
            "run from a writable folder or set MLFLOW_TRACKING_URI"
        ) from None
    with handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WorkbenchError(
                        f"MLflow store {db}: another process held its lock for {timeout_s:.0f} s; "
                        "is one stuck? stop it and retry"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def configure(experiment_name: str) -> str:
    """Point MLflow at the store and return the experiment id (creating the experiment if needed)."""
    uri = tracking_uri()
    # MLflow's own defaults retry a lost server for minutes (7 tries, 120 s each): bounded here.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    with sqlite_store_lock(uri):
        try:
            experiment = mlflow.get_experiment_by_name(experiment_name)
            if experiment is None:
                try:
                    # The kind tag opens the experiment in the UI's model-training view, not its GenAI one.
                    experiment_id = mlflow.create_experiment(
                        experiment_name,
                        artifact_location=artifact_location(uri),
                        tags={"mlflow.experimentKind": "custom_model_development"},
                    )
                except mlflow.exceptions.MlflowException:
                    # another worker created it
                    experiment = mlflow.get_experiment_by_name(experiment_name)
                    if experiment is None:
                        raise
                    experiment_id = experiment.experiment_id
            else:
                experiment_id = experiment.experiment_id
        except mlflow.exceptions.MlflowException as err:
            raise WorkbenchError(
                f"MLflow store {display_uri(uri)}: "
                f"{without_password(str(err).strip().splitlines()[0], uri)}; "
                "check that it is writable and reachable, or set MLFLOW_TRACKING_URI"
            ) from None
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def shared_plotly_js() -> str | None:
    """plotly.js written once per experiment beside its runs' folders (a local store), as the path
    the active run's figures/ pages load it from; None for a remote store (plotly's CDN)."""
    from workbench.tracking.figures import ensure_plotly_js, shared_plotly_name

    uri = mlflow.get_artifact_uri("figures")
    if urlparse(uri).scheme != "file":
        return None
    figures_dir = Path(urlparse(uri).path)  # <experiment>/<run>/artifacts/figures
    shared = ensure_plotly_js(figures_dir.parents[2], shared_plotly_name())
    return os.path.relpath(shared, figures_dir)
