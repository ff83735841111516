"""A study's storage and settings: the Optuna RDB storage (SQLite here, PostgreSQL for many machines)
with its heartbeat, the sampler and pruner a sweep file asks for, and the state queries the rest uses."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from workbench.errors import WorkbenchError
from workbench.studies.search_space import SweepSpec, base_values, fingerprint

FINISHED = ("COMPLETE", "PRUNED")
# Trials that count towards --trials: finished, running, or queued for a retry.
COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")


def default_storage() -> str:
    """OPTUNA_STORAGE (as set for the docker-compose workers), else a SQLite file beside the MLflow store."""
    return os.environ.get("OPTUNA_STORAGE") or f"sqlite:///{Path.cwd() / 'mlruns' / 'optuna.db'}"


def masked(url: str) -> str:
    """The storage URL without its password, for logs and tags."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy knows: show it as given
        return url


def sampler(spec: SweepSpec, offset: int) -> optuna.samplers.BaseSampler:
    s = spec.sampler
    return optuna.samplers.TPESampler(seed=s.seed + offset, n_startup_trials=s.n_startup_trials)


def pruner(spec: SweepSpec, epochs: int) -> optuna.pruners.BasePruner:
    """`epochs`: what an unpruned trial trains (the resource Hyperband and successive halving divide)."""
    p = spec.pruner
    if p.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
        )
    if p.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource, max_resource=epochs, reduction_factor=p.reduction_factor
        )
    if p.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.NopPruner()


def pruner_text(spec: SweepSpec, epochs: int) -> str:
    p = spec.pruner
    if p.kind == "median":
        return f"MedianPruner(n_startup_trials={p.n_startup_trials}, n_warmup_steps={p.n_warmup_steps})"
    if p.kind == "hyperband":
        return (
            f"HyperbandPruner(min_resource={p.min_resource}, max_resource={epochs}, "
            f"reduction_factor={p.reduction_factor})"
        )
    if p.kind == "successive_halving":
        return (
            f"SuccessiveHalvingPruner(min_resource={p.min_resource}, "
            f"reduction_factor={p.reduction_factor})"
        )
    return "none"


def sampler_text(spec: SweepSpec) -> str:
    s = spec.sampler
    return f"TPESampler(seed={s.seed}, n_startup_trials={s.n_startup_trials})"


def open_study(
    spec: SweepSpec,
    base_tree: dict,
    name: str,
    url: str,
    epochs: int,
    worker: int,
    space_file: Path,
) -> optuna.Study:
    """Create or join the study. A study created with another space or base config is refused; a
    resumed or joined one gets a sampler seeded past the trials it already holds."""
    study = create_or_load(spec, name, url, epochs)
    mark = fingerprint(spec, base_tree)
    known = study.user_attrs.get("fingerprint")
    if known is None:
        study.set_user_attr("fingerprint", mark)
        study.set_user_attr("space_file", str(space_file))
        if spec.baseline_trial:  # first in the queue; a second worker starting now skips it
            study.enqueue_trial(
                base_values(spec, base_tree), user_attrs={"baseline": True}, skip_if_exists=True
            )
    elif known != mark:
        raise WorkbenchError(
            f"study {name!r} in {masked(url)} was created with a different search space or base "
            "config; resume it unchanged or pick a new --study name"
        )
    study.sampler = sampler(spec, len(study.trials) + 7919 * worker)
    return study


def engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        # SQLite serialises writers; a generous lock timeout keeps concurrent workers from failing.
        return {"connect_args": {"timeout": 120}}
    options: dict = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        options["connect_args"] = {"connect_timeout": 30}  # unreachable: fails, never hangs
    return options


def create_or_load(spec: SweepSpec, name: str, url: str, epochs: int) -> optuna.Study:
    """The study in `url`, created if new, with heartbeats; two workers creating the schema at the
    same moment: one retries."""
    # The heartbeat is what makes a dead worker's trial recoverable; Optuna still labels it experimental.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    hb = spec.heartbeat
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=hb.max_retry)
    last_error = None
    for attempt in range(3):
        try:
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_options(url),
                heartbeat_interval=hb.interval,
                grace_period=hb.grace_period,
                heartbeat_stale_trial_callback=retry,
            )
            return optuna.create_study(
                study_name=name,
                storage=storage,
                load_if_exists=True,
                direction=spec.objective.direction,
                sampler=sampler(spec, 0),
                pruner=pruner(spec, epochs),
            )
        except SQLAlchemyError as err:
            last_error = err
            time.sleep(1 + attempt)
    reason = str(getattr(last_error, "orig", None) or last_error).splitlines()[0]
    raise WorkbenchError(f"--storage {masked(url)}: cannot use it ({reason})")


def states(study: optuna.Study, names) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=tuple(optuna.trial.TrialState[n] for n in names))


def best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:
        return None


def baseline_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The complete trial that ran the base experiment as it is (sweep.yaml `baseline_trial`)."""
    found = [t for t in states(study, ("COMPLETE",)) if t.user_attrs.get("baseline")]
    return found[0] if found else None
