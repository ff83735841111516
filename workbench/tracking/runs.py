"""A run's lifecycle: a tracked run that always ends (FINISHED, FAILED or KILLED), which runs
can be resumed or reused, and per-epoch logging that never logs an epoch twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys

import mlflow
from mlflow.entities import RunStatus

from workbench.errors import WorkbenchError, stopped_by
from workbench.tracking.checkpoints import UNFINISHED


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
        _end_run(RunStatus.KILLED if stopped_by() is not None else RunStatus.FAILED)
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


def logged_config(run_id: str, where: str):
    """The config a run was started with (its config.yaml artifact), or a one-line error: `where`
    names what asked for the run (`--resume ID`)."""
    import yaml

    from workbench.config import config_from_dict
    from workbench.tracking.store import display_uri, tracking_uri

    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    except Exception as err:  # noqa: BLE001 - MLflow raises several kinds for a missing run or artifact
        raise WorkbenchError(
            f"{where}: no such run with a config.yaml in {display_uri(tracking_uri())} "
            f"({type(err).__name__})"
        ) from None
    return config_from_dict(yaml.safe_load(text), f"run {run_id} config.yaml")


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
