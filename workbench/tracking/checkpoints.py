"""Where a resumable run keeps its per-epoch checkpoints, which unfinished run can be
continued on this machine, and who owns a checkpoint folder while training into it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import mlflow

from workbench import processes
from workbench.data.cache import default_cache_dir
from workbench.files import write_json_atomic
from workbench.tracking.store import tracking_uri

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


def _resumable(runs) -> list[str]:
    """The ids of `runs` that are unfinished, checkpointed on this machine and trained by no one."""
    out = []
    for run in runs:
        folder = checkpoint_dir(run.info.run_id)
        if (
            run.info.status in UNFINISHED
            and (folder / "state.json").is_file()
            and not _owner_alive(folder)
        ):
            out.append(run.info.run_id)
    return out


def find_resumable_run(experiment_id: str, key: str, tag: str = "resume_key") -> str | None:
    """The newest unfinished run tagged `tag` = key (same config and data) whose checkpoint is on this
    machine and that no live process is training."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.{tag} = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    found = _resumable(runs)
    return found[0] if found else None


def can_resume(run_id: str) -> bool:
    """`run_id` is unfinished, checkpointed on this machine and trained by no one (a missing run: no)."""
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False
    return bool(_resumable([run]))


def resumable_with_other_config(experiment_id: str, name: str, key: str) -> list[str]:
    """Unfinished runs of the same name whose config differs (edited, or a key added since): not
    resumed by the same command, so the caller says how to continue them."""
    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.runName = '{name}' and tags.resume_key != '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    return _resumable(runs)


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
