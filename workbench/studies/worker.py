"""The worker loop: run trials until the study holds its target, and close the MLflow runs of workers
that died (their trials are failed and retried by Optuna's heartbeat)."""

from __future__ import annotations

import os
import socket
import time

import mlflow
import optuna
from tqdm import tqdm

from workbench import processes
from workbench.studies.objective import Objective, SurplusTrial
from workbench.studies.storage import COUNTED, FINISHED, best_value, states


class Worker:
    def __init__(
        self,
        study: optuna.Study,
        objective: Objective,
        target: int,
        experiment_id: str,
        heartbeat_interval: float,
        timeout: float | None,
    ):
        self.study, self.objective, self.target = study, objective, target
        self.experiment_id, self.timeout = experiment_id, timeout
        self.poll_s = max(1.0, heartbeat_interval / 2)
        self.client = mlflow.MlflowClient()
        self.metric = objective.spec.objective.metric

    def run(self) -> None:
        started = time.monotonic()
        bar = tqdm(
            total=self.target,
            initial=min(len(states(self.study, FINISHED)), self.target),
            desc=f"study {self.study.study_name}",
            unit="trial",
        )
        while True:
            # a dead worker's trial: FAIL, then a retry
            optuna.storages.fail_stale_trials(self.study)
            self.close_orphaned_runs()
            self.close_dead_workers_runs()
            if self.timeout and time.monotonic() - started > self.timeout:
                break
            if len(states(self.study, COUNTED)) >= self.target and not states(
                self.study, ("WAITING",)
            ):
                if not states(self.study, ("RUNNING",)):
                    break
                # Other workers' trials are still running: wait, so that if one of them died its trial
                # is failed by the heartbeat and retried here instead of being left behind.
                time.sleep(self.poll_s)
                continue
            self.study.optimize(self.objective, n_trials=1, catch=(SurplusTrial,))
            bar.n = min(len(states(self.study, FINISHED)), self.target)
            best = best_value(self.study)
            bar.set_postfix_str(f"best {self.metric}={best:.4f}" if best is not None else "")
            bar.refresh()
        bar.close()
        self.close_orphaned_runs()

    def close_orphaned_runs(self) -> None:
        """The MLflow run of a trial whose worker died stays RUNNING: end it FAILED once Optuna failed the trial."""
        for trial in states(self.study, ("FAIL",)):
            run_id = trial.user_attrs.get("mlflow_run_id")
            if run_id and self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_tag(run_id, "trial_state", "FAIL")
                self.client.set_terminated(run_id, "FAILED")

    def close_dead_workers_runs(self) -> None:
        """A worker killed outright (SIGKILL, OOM) leaves its study run RUNNING: a worker on the same
        host ends it KILLED once that process is gone. (Another host's process cannot be checked.)"""
        host = socket.gethostname()
        query = (
            f"tags.`sweep.role` = 'study' and tags.`optuna.study` = '{self.study.study_name}' "
            "and attributes.status = 'RUNNING'"
        )
        for run in self.client.search_runs([self.experiment_id], query):
            worker_host, _, pid = run.data.tags.get("sweep.worker", "").rpartition(":")
            if (
                worker_host == host
                and pid.isdigit()
                and int(pid) != os.getpid()
                and not processes.alive(int(pid))
            ):
                self.client.set_terminated(run.info.run_id, "KILLED")
