"""MLflow: where runs go, and what each run logs (config, tags, dataset lineage, figures, model).

Default store: `./mlruns/mlflow.db` (SQLite, what MLflow 3 recommends over the old file store) with
artifacts in `./mlruns/artifacts`; `MLFLOW_TRACKING_URI` overrides it, so a remote server works unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import RunStatus

from workbench import CLASS_NAMES, NUM_CLASSES, processes
from workbench.config import ExperimentConfig
from workbench.data.cache import default_cache_dir
from workbench.data.faces import Faces
from workbench.errors import WorkbenchError
from workbench.files import write_json_atomic

PACKAGES = (
    "tensorflow",
    "keras",
    "mlflow",
    "optuna",
    "imbalanced-learn",
    "scikit-learn",
    "opencv-python-headless",
    "numpy",
    "pandas",
    "plotly",
)
REPO_ROOT = Path(__file__).resolve().parents[2]


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
        return f"make ui   (then open http://127.0.0.1:5000/{UI_VIEW})"
    return f"mlflow ui --backend-store-uri {display_uri(uri)} --host 127.0.0.1 --port 5000   (then open http://127.0.0.1:5000/{UI_VIEW})"


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
                    experiment = mlflow.get_experiment_by_name(
                        experiment_name
                    )  # another worker created it
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


@contextlib.contextmanager
def tracked_run(
    run_name: str,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
):
    """An MLflow run that always ends: FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM
    (which `cli.user_errors` raises as `Terminated`, a KeyboardInterrupt). Nested under
    `parent_run_id` when given. With `run_id`, that (unfinished) run is reopened instead."""
    nested = parent_run_id is not None
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, nested=nested)
        mlflow.set_tags({**(tags or {}), "resumed": "true"})
    else:
        run = mlflow.start_run(
            run_name=run_name, nested=nested, parent_run_id=parent_run_id, tags=tags
        )
    try:
        yield run
    except KeyboardInterrupt:
        _end_run(RunStatus.KILLED)
        raise
    except BaseException:
        _end_run(RunStatus.FAILED)
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def _end_run(status: int) -> None:
    """End the active run as `status` while an error propagates; a store that cannot take even that
    (a full disk) leaves the run as it was, said on one line, rather than a second traceback."""
    try:
        mlflow.end_run(RunStatus.to_string(status))
    except Exception as err:  # noqa: BLE001 - the error already on its way matters more
        reason = str(err).strip().splitlines()[-1][:200] if str(err).strip() else type(err).__name__
        print(
            f"note: the run could not be marked {RunStatus.to_string(status)} ({reason})",
            file=sys.stderr,
        )


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if not commit:
        return {"git_commit": "unknown"}
    return {
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower(),
    }


def provenance_tags() -> dict[str, str]:
    """Which code and library versions made a run: the same tags on every kind of run."""
    return {**git_state(), **package_versions()}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def log_config(cfg: ExperimentConfig, data_path: str | None = None) -> None:
    """Every key as a param (lists as JSON) and the whole YAML; `data_path` (the file really read)
    stands for `data.path` when the config left it to the default (null)."""
    # purpose.tags are logged as the run's tags, not twice
    params = {k: v for k, v in cfg.flat().items() if not k.startswith("purpose.tags.")}
    if params.get("data.path") is None and data_path is not None:
        params["data.path"] = data_path
    mlflow.log_params(
        {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()}
    )
    mlflow.log_text(cfg.to_yaml(), "config.yaml")


def _manifest(faces: Faces, synthetic: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": faces.ids,
            "group": faces.groups,
            "label": faces.labels,
            "expression": np.asarray(CLASS_NAMES)[faces.labels],
            "synthetic": synthetic,
        }
    )


def log_dataset(
    parts: dict[str, Faces],
    synthetic: dict[str, np.ndarray],
    source: Faces,
    protocol: str,
    split_method: str,
    manifest: bool = True,
    inputs: bool = True,
) -> dict:
    """mlflow.log_input per split (name, digest, counts) plus dataset/lineage.json; returns the lineage.
    `inputs=False` (a resumed run, which has them) only computes the lineage."""
    if not inputs:
        manifest = False
    contexts = {"train": "training", "val": "validation", "test": "testing"}
    lineage = {
        "format": source.format,
        "path": source.path,
        "digest": source.digest,
        "faces_loaded": len(source),
        "protocol": protocol,
        "split_method": split_method,
        "splits": {},
        "skipped": {
            "count": len(source.skipped),
            "items": [{"item": s.item, "reason": s.reason} for s in source.skipped[:1000]],
        },
    }
    frames = {}
    for name, faces in parts.items():
        df = _manifest(faces, synthetic[name])
        frames[name] = df
        counts = np.bincount(faces.labels, minlength=NUM_CLASSES)
        n_synth = int(synthetic[name].sum())
        split_digest = _digest(source.digest, name, faces.ids)
        lineage["splits"][name] = {
            "faces": len(faces),
            "synthetic": n_synth,
            "digest": split_digest,
            "per_class": {c: int(n) for c, n in zip(CLASS_NAMES, counts)},
        }
        dataset = mlflow.data.from_pandas(
            df,
            source=source.path,
            targets="label",
            name=f"{Path(source.path).name}:{name}",
            digest=split_digest[:16],
        )
        tags = {
            "faces": str(len(faces)),
            "synthetic": str(n_synth),
            "skipped_at_load": str(len(source.skipped)),
            "per_class": json.dumps(lineage["splits"][name]["per_class"]),
        }
        if inputs:
            log_input(dataset, contexts[name], tags)
    if inputs:
        mlflow.log_dict(lineage, "dataset/lineage.json")
    if manifest:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "manifest.csv.gz"
            pd.concat([df.assign(split=name) for name, df in frames.items()]).to_csv(
                path, index=False
            )
            mlflow.log_artifact(str(path), "dataset")
    return lineage


def predictions_frame(ev, ids: np.ndarray) -> pd.DataFrame:
    """One row per face: its id, true and predicted label, and the 7 probabilities."""
    frame = pd.DataFrame({"id": ids, "label": ev.y_true, "predicted": ev.y_pred})
    probs = np.asarray(ev.probs, dtype=np.float64)
    return frame.assign(**{f"p_{c}": probs[:, i].round(6) for i, c in enumerate(CLASS_NAMES)})


def log_predictions(ev, ids: np.ndarray, split: str) -> None:
    """predictions/<split>.csv.gz: what compare --runs A B matches face by face."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{split}.csv.gz"
        predictions_frame(ev, ids).to_csv(path, index=False)
        mlflow.log_artifact(str(path), "predictions")


def load_predictions(run_id: str, split: str = "test") -> pd.DataFrame:
    """A run's per-face predictions, or a one-line error for a run that has none."""
    try:
        path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/predictions/{split}.csv.gz")
    except Exception:  # noqa: BLE001 - MLflow raises several kinds for a missing artifact
        raise WorkbenchError(
            f"run {run_id}: no predictions/{split}.csv.gz (runs tested before per-face predictions "
            "were logged have none); run its config again"
        ) from None
    return pd.read_csv(path, dtype={"id": str})


def log_input(dataset, context: str, tags: dict[str, str], attempts: int = 4) -> None:
    """mlflow.log_input, safe when several workers log the same new dataset at once.

    MLflow's SQL store looks the dataset up, then inserts it: of two workers racing there, one hits the
    datasets' unique key. The failed transaction is rolled back whole, so trying again finds the
    dataset the other worker stored and only links it to this run."""
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context, tags=tags)
            return
        except mlflow.exceptions.MlflowException as e:
            if "unique" not in str(e).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(
            ("\n".join(map(str, part)) if isinstance(part, np.ndarray) else str(part)).encode()
        )
        h.update(b"\0")
    return h.hexdigest()


def log_model(model, example: np.ndarray) -> str:
    """The Keras model with signature and input example, through MLflow's TensorFlow flavour: in
    mlflow 3.17.2 `mlflow.keras.log_model` writes the input example before creating its folder and fails."""
    import keras
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example, verbose=0))
    # MLflow checks the input example with a predict of its own: no Keras progress bar in the output
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        info = mlflow.tensorflow.log_model(
            model, name="model", signature=signature, input_example=example
        )
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
    return info.model_uri


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


def log_model_once(run_id: str, model, example: np.ndarray) -> str:
    """The run's model, logged once: a run resumed after logging it keeps that one, and one that a
    stop left half-logged (PENDING) is deleted before logging again."""
    from mlflow.entities import LoggedModelStatus

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    for logged in client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'"
    ):
        if logged.status == LoggedModelStatus.READY:
            return logged.model_uri
        client.delete_logged_model(logged.model_id)
    return log_model(model, example)


def register_model(model_uri: str, name: str, run_id: str) -> str:
    """A new version of registered model `name` from a logged model; returns the version number."""
    version = mlflow.register_model(model_uri, name, tags={"run_id": run_id})
    return str(version.version)


# --- resumable runs ------------------------------------------------------------------------------
UNFINISHED = ("RUNNING", "KILLED", "FAILED")


def checkpoint_root() -> Path:
    """Beside a local SQLite store (mlruns/checkpoints); for a remote store, in the user's cache."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "checkpoints"
    return default_cache_dir() / "checkpoints"


def checkpoint_dir(run_id: str) -> Path:
    return checkpoint_root() / run_id


def _owner_alive(folder: Path) -> bool:
    """True while another live process on this machine trains into `folder`."""
    try:
        owner = json.loads((folder / "owner.json").read_text())
    except (OSError, ValueError):
        return False
    if owner.get("host") != os.uname().nodename or owner.get("pid") == os.getpid():
        return False
    return isinstance(owner.get("pid"), int) and processes.alive(owner["pid"])


def find_resumable_run(experiment_id: str, key: str, tag: str = "resume_key") -> str | None:
    """The newest unfinished run tagged `tag` = key (same config and data) whose checkpoint is on this
    machine and that no live process is training."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.{tag} = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for run in runs:
        folder = checkpoint_dir(run.info.run_id)
        if (
            run.info.status in UNFINISHED
            and (folder / "state.json").is_file()
            and not _owner_alive(folder)
        ):
            return run.info.run_id
    return None


def run_key(*parts: str) -> str:
    """What identifies a run to be continued (its config, its data's digest, ...): 32 hex digits."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def find_unfinished_run(experiment_id: str, key: str, tag: str) -> str | None:
    """The newest unfinished run tagged `tag` = key: an orchestrator's parent to reopen."""
    found = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.{tag} = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    return next((r.info.run_id for r in found if r.info.status in UNFINISHED), None)


def finished_children(experiment_id: str, parent_run_id: str, index_tag: str) -> dict:
    """{index tag value: run} of the FINISHED runs nested under `parent_run_id`."""
    found = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    return {r.data.tags[index_tag]: r for r in found if index_tag in r.data.tags}


@contextlib.contextmanager
def owned(folder: Path | None):
    """Marks `folder` as being trained into by this process (so a second process won't resume it)."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "owner.json", {"pid": os.getpid(), "host": os.uname().nodename})
    try:
        yield
    finally:
        (folder / "owner.json").unlink(missing_ok=True)


def drop_checkpoints(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def check_resumable(run_id: str) -> None:
    """A FINISHED run is complete: training into it again would log every score twice."""
    run = mlflow.MlflowClient().get_run(run_id)
    if run.info.status == "FINISHED":
        raise WorkbenchError(
            f"--resume {run_id}: that run is FINISHED; start a new run (drop --resume) to train again"
        )


def logged_metrics(run_id: str) -> dict[str, float]:
    return dict(mlflow.MlflowClient().get_run(run_id).data.metrics)


def epoch_logger(run_id: str):
    """log(epoch, metrics) at step = epoch, once per epoch: steps the run already has are skipped
    (a resumed run replays the epochs it had checkpointed)."""
    client = mlflow.MlflowClient()
    logged = {m.step for m in client.get_metric_history(run_id, "loss")}

    def log(epoch: int, metrics: dict[str, float]) -> None:
        if epoch in logged:
            return
        mlflow.log_metrics(metrics, step=epoch)
        logged.add(epoch)

    return log
