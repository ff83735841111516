"""`python -m workbench.sweep --trials 40`: an Optuna study over an experiment, every trial a nested MLflow run.

Resumable (same --study and --storage: it runs until the study holds --trials finished trials), shared
by any number of worker processes and machines through an RDB storage (PostgreSQL for real
parallelism), fault-tolerant through Optuna's heartbeat (a dead worker's trial is failed and retried).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

from workbench import processes
from workbench.cli import add_config_arguments, positive_int, quiet_tensorflow, user_errors
from workbench.errors import WorkbenchError

DEFAULT_TRIALS = 40
FINISHED = ("COMPLETE", "PRUNED")
# Trials that count towards --trials: finished, running, or queued for a retry.
COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")


def default_storage() -> str:
    """OPTUNA_STORAGE (as set for the docker-compose workers), else a SQLite file beside the MLflow store."""
    return os.environ.get("OPTUNA_STORAGE") or f"sqlite:///{Path.cwd() / 'mlruns' / 'optuna.db'}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.sweep", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=DEFAULT_TRIALS,
        help="finished trials (complete or pruned) the study should hold (default 40)",
    )
    parser.add_argument(
        "--space",
        default="sweep",
        help="sweep file: a name in experiments/ or a path (default sweep)",
    )
    parser.add_argument(
        "--experiment",
        default=None,
        help="base experiment (default: the sweep file's `experiment`)",
    )
    parser.add_argument(
        "--study", default=None, help="study name (default: <experiment>-sweep); reuse it to resume"
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default $OPTUNA_STORAGE, else sqlite:///mlruns/optuna.db; postgresql://... for many machines)",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds after which this worker starts no new trial",
    )
    parser.add_argument(
        "--n-jobs", type=positive_int, default=1, help="worker processes to run on this machine"
    )
    parser.add_argument(
        "--worker-index",
        default="0",
        help="distinct per hand-started worker (seeds its sampler); 'auto' derives one from host and pid",
    )
    parser.add_argument(
        "--no-final",
        action="store_true",
        help="skip retraining the best trial when the study is done",
    )
    parser.add_argument(
        "--best-dir",
        default=None,
        help="where <study>-best.yaml is written (default ./experiments)",
    )
    args = parser.parse_args(argv)
    if args.trials < 1 or args.n_jobs < 1:
        parser.error("--trials and --n-jobs must be at least 1")
    return args


def worker_index(value: str) -> int:
    if value == "auto":
        return zlib.crc32(f"{socket.gethostname()}-{os.getpid()}".encode()) % 100_000
    try:
        return int(value)
    except ValueError:
        raise WorkbenchError(f"--worker-index {value!r}: expected a number or 'auto'") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow(args.verbose)
    with user_errors():
        if args.n_jobs > 1:
            return run_local_workers(args, argv if argv is not None else sys.argv[1:])
        return Sweep(args).run()


def run_local_workers(args: argparse.Namespace, argv: list[str]) -> int:
    """--n-jobs N: N-1 extra worker processes (TensorFlow does not share a process well), this one the last."""
    rest = _without_option(argv, "--n-jobs")
    rest = _without_option(rest, "--worker-index")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workbench.sweep",
                *rest,
                "--n-jobs",
                "1",
                "--worker-index",
                str(i),
                "--no-final",
            ]
        )
        for i in range(1, args.n_jobs)
    ]
    args.n_jobs, args.worker_index = 1, "0"
    try:
        code = Sweep(args).run()
    finally:
        for proc in procs:
            proc.wait()
    return code or max((p.returncode for p in procs), default=0)


def _without_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == name:
            skip = True
        elif not item.startswith(name + "="):
            out.append(item)
    return out


class SurplusTrial(Exception):
    """Another worker filled the study while this trial was being created: it is failed, not run."""


class Sweep:
    def __init__(self, args: argparse.Namespace):
        from workbench.config import apply_overrides, config_from_dict, load_tree, set_dotted
        from workbench.search_space import check_space, load_spec

        self.args = args
        self.spec, self.spec_path = load_spec(args.space)
        tree, source = load_tree(args.experiment or self.spec.experiment)
        for (
            key,
            value,
        ) in self.spec.fixed.items():  # the sweep file's fixed values, then --set on top
            set_dotted(tree, key, value)
        self.base_tree = apply_overrides(tree, args.overrides)
        self.base = config_from_dict(
            copy.deepcopy(self.base_tree), f"{source} + {self.spec_path} fixed/--set"
        )
        check_space(self.spec, self.base_tree, self.spec_path)
        self.study_name = args.study or f"{self.base.name}-sweep"
        self.storage_url = args.storage or default_storage()
        self.target = args.trials
        self.worker = worker_index(args.worker_index)
        self.best_dir = Path(args.best_dir) if args.best_dir else None
        if self.storage_url.startswith("sqlite:///"):
            Path(self.storage_url.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )

    # --- Optuna -------------------------------------------------------------------------------
    def make_study(self):
        import optuna
        from sqlalchemy.exc import SQLAlchemyError

        from workbench.search_space import fingerprint

        # The heartbeat is what makes a dead worker's trial recoverable; Optuna still labels it experimental.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        hb = self.spec.heartbeat
        engine_kwargs = {"pool_pre_ping": True}
        if self.storage_url.startswith("postgresql"):
            engine_kwargs["connect_args"] = {
                "connect_timeout": 30
            }  # an unreachable host fails, never hangs
        if self.storage_url.startswith("sqlite"):
            # SQLite serialises writers; a generous lock timeout keeps concurrent workers from failing.
            engine_kwargs = {"connect_args": {"timeout": 120}}
        last_error = None
        for attempt in range(3):  # two workers creating the schema at the same moment: one retries
            try:
                storage = optuna.storages.RDBStorage(
                    self.storage_url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=hb.interval,
                    grace_period=hb.grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryFailedTrialCallback(
                        max_retry=hb.max_retry
                    ),
                )
                study = optuna.create_study(
                    study_name=self.study_name,
                    storage=storage,
                    load_if_exists=True,
                    direction=self.spec.objective.direction,
                    sampler=self._sampler(0),
                    pruner=self._pruner(),
                )
                break
            except SQLAlchemyError as err:
                last_error = err
                time.sleep(1 + attempt)
        else:
            raise WorkbenchError(
                f"--storage {self.masked_storage()}: cannot use it "
                f"({str(last_error.orig if hasattr(last_error, 'orig') else last_error).splitlines()[0]})"
            )
        mark = fingerprint(self.spec, self.base_tree)
        known = study.user_attrs.get("fingerprint")
        if known is None:
            study.set_user_attr("fingerprint", mark)
            study.set_user_attr("space_file", str(self.spec_path))
        elif known != mark:
            raise WorkbenchError(
                f"study {self.study_name!r} in {self.masked_storage()} was created with a different "
                f"search space or base config; resume it unchanged or pick a new --study name"
            )
        # Resumed or joined: draw new random start-up points, not the first session's again.
        study.sampler = self._sampler(len(study.trials) + 7919 * self.worker)
        return study

    def _sampler(self, offset: int):
        import optuna

        s = self.spec.sampler
        return optuna.samplers.TPESampler(seed=s.seed + offset, n_startup_trials=s.n_startup_trials)

    def _pruner(self):
        import optuna

        p = self.spec.pruner
        if p.kind == "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps
            )
        if p.kind == "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=p.min_resource,
                max_resource=self.base.train.epochs,
                reduction_factor=p.reduction_factor,
            )
        return optuna.pruners.NopPruner()

    def masked_storage(self) -> str:
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.storage_url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - not a URL SQLAlchemy knows: show it as given
            return self.storage_url

    @staticmethod
    def states(study, names) -> list:
        import optuna

        return study.get_trials(
            deepcopy=False, states=tuple(optuna.trial.TrialState[n] for n in names)
        )

    # --- one trial -------------------------------------------------------------------------------
    def objective(self, trial) -> float:
        import keras
        import optuna

        from workbench.experiment import run_experiment
        from workbench.protocol import prepare
        from workbench.pruning import OptunaReporter
        from workbench.search_space import suggest, trial_config

        ahead = [t for t in self.states(trial.study, COUNTED) if t.number < trial.number]
        if len(ahead) >= self.target:
            raise SurplusTrial(
                f"trial {trial.number}: the study already holds {self.target} trials"
            )
        values = suggest(trial, self.spec)
        cfg = trial_config(self.base_tree, values)
        cfg.tracking.run_name = (
            f"trial {trial.number} · {_describe(values)}"  # the study is its parent and a tag
        )
        keras.backend.clear_session()  # one process trains many models: free the previous graphs
        reporter = OptunaReporter(trial, self.spec.objective.metric)
        tags = {
            "optuna.study": self.study_name,
            "optuna.trial": str(trial.number),
            "trial_state": "RUNNING",
            "sweep.role": "trial",
        }
        try:
            result = run_experiment(
                cfg,
                callbacks=[reporter],
                nested=True,
                light=True,
                tags=tags,
                data=(self.faces, prepare(self.faces, cfg)),
                evaluate_on="val",
                verbose=False,
            )
        except BaseException:
            # Optuna fails the trial (an error, Ctrl-C, SIGTERM): its run says so, not RUNNING.
            if run_id := trial.user_attrs.get("mlflow_run_id"):
                self.client.set_tag(run_id, "trial_state", "FAIL")
            raise
        self.epochs_here += int(result.metrics["epochs_run"])
        self.client.set_tag(
            result.run_id, "trial_state", "PRUNED" if reporter.pruned else "COMPLETE"
        )
        if reporter.pruned:
            raise optuna.TrialPruned(f"pruned at epoch {reporter.last_step + 1}")
        return float(result.metrics[self.spec.objective.metric])

    # --- the worker loop ---------------------------------------------------------------------------
    def run(self) -> int:
        import mlflow
        import optuna
        from tqdm import tqdm

        from workbench import tracking
        from workbench.data import load_faces

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        for handler in logging.getLogger(
            "optuna"
        ).handlers:  # Optuna's own handler, set up by the line above
            handler.addFilter(_no_interrupt_traceback)
        study = self.make_study()
        self.faces = load_faces(
            self.base.data, self.base.seed
        )  # decoded once per worker, reused by every trial
        experiment_id = tracking.configure(self.base.experiment_name)
        self.client = mlflow.MlflowClient()
        self.epochs_here = 0
        started = time.monotonic()
        tags = {
            "optuna.study": self.study_name,
            "optuna.storage": self.masked_storage(),
            "optuna.sampler": f"TPESampler(seed={self.spec.sampler.seed}, n_startup_trials={self.spec.sampler.n_startup_trials})",
            "optuna.pruner": self._pruner_text(),
            "optuna.objective": f"{self.spec.objective.direction} {self.spec.objective.metric}",
            "sweep.role": "study",
            "sweep.worker": f"{socket.gethostname()}:{os.getpid()}",
            **tracking.git_state(),
            **tracking.package_versions(),
        }
        name = f"{self.study_name} · study · worker {socket.gethostname()}:{os.getpid()}"
        bar = tqdm(
            total=self.target,
            initial=min(len(self.states(study, FINISHED)), self.target),
            desc=f"study {self.study_name}",
            unit="trial",
        )
        with tracking.tracked_run(name, tags=tags) as parent:
            tracking.log_config(self.base)
            mlflow.log_text(self.spec_path.read_text(), "sweep.yaml")
            mlflow.log_params({"sweep.trials": self.target, "sweep.space": str(self.spec_path)})
            while True:
                optuna.storages.fail_stale_trials(
                    study
                )  # a dead worker's trial: FAIL, then a WAITING retry
                self.close_orphaned_runs(study)
                self.close_dead_workers_runs(experiment_id)
                if self.args.timeout and time.monotonic() - started > self.args.timeout:
                    break
                if len(self.states(study, COUNTED)) >= self.target and not self.states(
                    study, ("WAITING",)
                ):
                    if not self.states(study, ("RUNNING",)):
                        break
                    # Other workers' trials are still running: wait, so that if one of them died its trial
                    # is failed by the heartbeat and retried here instead of being left behind.
                    time.sleep(max(1.0, self.spec.heartbeat.interval / 2))
                    continue
                study.optimize(self.objective, n_trials=1, catch=(SurplusTrial,))
                bar.n = min(len(self.states(study, FINISHED)), self.target)
                best = self.best_value(study)
                bar.set_postfix_str(
                    f"best {self.spec.objective.metric}={best:.4f}" if best is not None else ""
                )
                bar.refresh()
            bar.close()
            self.close_orphaned_runs(study)
            self.log_study(study)
        done = len(self.states(study, FINISHED)) >= self.target
        final = None
        if done and not self.args.no_final:
            final = self.retrain_best(study, parent.info.run_id)
        if done:
            self.log_report(study, parent.info.run_id, final)
        self.print_summary(study, final, experiment_id)
        return 0

    def _pruner_text(self) -> str:
        p = self.spec.pruner
        if p.kind == "median":
            return f"MedianPruner(n_startup_trials={p.n_startup_trials}, n_warmup_steps={p.n_warmup_steps})"
        if p.kind == "hyperband":
            return f"HyperbandPruner(min_resource={p.min_resource}, max_resource={self.base.train.epochs}, reduction_factor={p.reduction_factor})"
        return "none"

    @staticmethod
    def best_value(study) -> float | None:
        try:
            return study.best_value
        except ValueError:
            return None

    def close_orphaned_runs(self, study) -> None:
        """The MLflow run of a trial whose worker died stays RUNNING: end it FAILED once Optuna failed the trial."""
        for trial in self.states(study, ("FAIL",)):
            run_id = trial.user_attrs.get("mlflow_run_id")
            if not run_id:
                continue
            run = self.client.get_run(run_id)
            if run.info.status == "RUNNING":
                self.client.set_tag(run_id, "trial_state", "FAIL")
                self.client.set_terminated(run_id, "FAILED")

    def close_dead_workers_runs(self, experiment_id: str) -> None:
        """A worker killed outright (SIGKILL, OOM) leaves its study run RUNNING: a worker on the same
        host ends it KILLED once that process is gone. (Another host's process cannot be checked.)"""
        host = socket.gethostname()
        query = (
            f"tags.`sweep.role` = 'study' and tags.`optuna.study` = '{self.study_name}' "
            "and attributes.status = 'RUNNING'"
        )
        for run in self.client.search_runs([experiment_id], query):
            worker_host, _, pid = run.data.tags.get("sweep.worker", "").rpartition(":")
            if (
                worker_host == host
                and pid.isdigit()
                and int(pid) != os.getpid()
                and not processes.alive(int(pid))
            ):
                self.client.set_terminated(run.info.run_id, "KILLED")

    def log_study(self, study) -> None:
        """Optuna's own plotly figures and the trials table, on this worker's parent run."""
        import mlflow

        from workbench.figures import write_figures
        from workbench.study_report import study_figures

        finished = self.states(study, FINISHED)
        complete = self.states(study, ("COMPLETE",))
        mlflow.log_metrics(
            {
                "trials_complete": len(complete),
                "trials_pruned": len(finished) - len(complete),
                "trials_failed": len(self.states(study, ("FAIL",))),
                "epochs_trained_all_workers": sum(len(t.intermediate_values) for t in study.trials),
                "epochs_trained_this_worker": self.epochs_here,
            }
        )
        best = self.best_value(study)
        if best is not None:
            mlflow.log_metric(f"best_{self.spec.objective.metric}", best)
            mlflow.set_tag("optuna.best_trial", str(study.best_trial.number))
        figs, notes = study_figures(study)
        with tempfile.TemporaryDirectory() as tmp:
            write_figures(figs, Path(tmp), png=False)
            study.trials_dataframe().to_csv(Path(tmp) / "trials.csv", index=False)
            if notes:
                (Path(tmp) / "figures_skipped.txt").write_text("\n".join(notes) + "\n")
            mlflow.log_artifacts(tmp, "study")

    def log_report(self, study, parent_run_id: str, final) -> None:
        """study/report.html on the parent run: the best trial, the trial counts, the epochs pruning
        saved, how the retrained best did on test (beside chance), and Optuna's figures."""
        from workbench.figures import header_table, write_report
        from workbench.metrics import chance_verdict
        from workbench.study_report import study_figures

        metric = self.spec.objective.metric
        finished = self.states(study, FINISHED)
        pruned = self.states(study, ("PRUNED",))
        trained = sum(len(t.intermediate_values) for t in finished)
        full = sum(int(t.params.get("train.epochs", self.base.train.epochs)) for t in finished)
        rows = [
            ("study", f"{self.study_name} ({self.masked_storage()})"),
            (
                "trials",
                f"{len(finished)} finished: {len(finished) - len(pruned)} complete, {len(pruned)} pruned, "
                f"{len(self.states(study, ('FAIL',)))} failed",
            ),
            (
                "epochs",
                f"{trained} trained of {full} without pruning ({1 - trained / max(full, 1):.0%} saved)",
            ),
        ]
        warnings = []
        if self.best_value(study) is not None:
            best = study.best_trial
            rows += [
                ("best trial", f"{best.number}: {metric} {best.value:.4f} (validation)"),
                ("its parameters", _describe(best.params)),
            ]
        if final:
            result, _ = final
            m = result.metrics
            verdict = chance_verdict(m)
            rows.append(
                (
                    "retrained best on test",
                    f"accuracy {m['test_accuracy']:.4f}, macro-F1 {m['test_macro_f1']:.4f} "
                    f"(chance {verdict.chance:.3f}; run {result.run_id})",
                )
            )
            if not verdict.beats:
                warnings.append(
                    f"The retrained best config does not beat chance ({verdict.chance:.3f})."
                )
        figs, _ = study_figures(study)
        with tempfile.TemporaryDirectory() as tmp:
            write_report(
                figs,
                Path(tmp) / "report.html",
                f"Study {self.study_name}",
                header_table(rows, warnings),
            )
            self.client.log_artifacts(parent_run_id, tmp, "study")

    def retrain_best(self, study, parent_run_id: str):
        """Once per study: the best trial's config trained again and evaluated once on test, as its own run."""
        from workbench.experiment import run_experiment
        from workbench.search_space import trial_config

        if len(self.states(study, ("COMPLETE",))) == 0:
            return None
        best = study.best_trial
        if study.user_attrs.get("final_trial") == best.number:
            return None  # another worker (or an earlier session) already did it
        study.set_user_attr("final_trial", best.number)
        # best.params holds only what its trial drew (a conditional parameter may be absent)
        cfg = trial_config(
            self.base_tree, {k: v for k, v in best.params.items() if k in self.spec.params}
        )
        cfg.tracking.run_name = f"best of {self.study_name} (trial {best.number}) retrained"
        result = run_experiment(
            cfg,
            tags={
                "optuna.study": self.study_name,
                "optuna.trial": str(best.number),
                "sweep.role": "best-retrained",
                "sweep.parent_run_id": parent_run_id,
            },
        )
        self.client.set_tag(parent_run_id, "sweep.best_run_id", result.run_id)
        path = write_best_config(
            cfg,
            self.best_dir,
            self.study_name,
            best.number,
            best.value,
            self.spec.objective.metric,
            result.run_id,
        )
        study.set_user_attr("final_run_id", result.run_id)
        return result, path

    def print_summary(self, study, final, experiment_id: str) -> None:
        metric = self.spec.objective.metric
        finished = self.states(study, FINISHED)
        print()
        print(
            f"study {self.study_name} ({self.masked_storage()}): {len(finished)} finished trials "
            f"({len(self.states(study, ('PRUNED',)))} pruned, {len(self.states(study, ('FAIL',)))} failed), "
            f"{self.epochs_here} epochs trained by this worker"
        )
        complete = sorted(
            self.states(study, ("COMPLETE",)),
            key=lambda t: t.value,
            reverse=self.spec.objective.direction == "maximize",
        )
        for t in complete[:5]:
            print(f"  trial {t.number:>3}  {metric}={t.value:.4f}  {_describe(t.params)}")
        if final:
            result, path = final
            m = result.metrics
            print(
                f"best config retrained: test accuracy {m['test_accuracy']:.4f}, macro-F1 {m['test_macro_f1']:.4f} "
                f"(run {result.run_id}); written {path}"
            )
        from workbench.tracking import tracking_uri, ui_command

        print(
            f"MLflow experiment {self.base.experiment_name} (id {experiment_id}): {ui_command(tracking_uri())}"
        )


def _no_interrupt_traceback(record: logging.LogRecord) -> bool:
    """Ctrl-C or SIGTERM during a trial: Optuna logs the failed trial with a traceback; the command
    already says `interrupted`/`terminated` on one line."""
    return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))


def _describe(params: dict[str, Any]) -> str:
    """`conv_dropout=0.15 learning_rate=0.001 ...`: the swept values, short, for run names and summaries."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_best_config(
    cfg, directory: Path | None, study: str, trial: int, value: float, metric: str, run_id: str
) -> Path:
    from workbench.config import user_experiments_dir

    directory = directory or user_experiments_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{study}-best.yaml"
    cfg = cfg.model_copy(deep=True)
    cfg.name = f"{study}-best"
    cfg.tracking.run_name = None
    header = (
        f"# Best trial {trial} of study {study}: {metric} = {value:.4f} (validation).\n"
        f"# Retrained and tested in MLflow run {run_id}. Run it again: python -m workbench.run {path}\n"
    )
    from workbench.files import write_text_atomic

    return write_text_atomic(path, header + cfg.to_yaml())


if __name__ == "__main__":
    raise SystemExit(main())
