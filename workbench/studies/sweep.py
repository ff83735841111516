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
import zlib
from pathlib import Path

from workbench.cli import add_config_arguments, positive_int, quiet_tensorflow, user_errors
from workbench.errors import WorkbenchError

DEFAULT_TRIALS = 40


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
        help="skip testing the best trial on the test split when the study is done",
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


class Sweep:
    """One worker's part of a study: the set-up (spec, base config, storage, study) in the constructor;
    run() trains trials until the study is full, then tests the best trial and writes the report."""

    def __init__(self, args: argparse.Namespace):
        from workbench.config import apply_overrides, config_from_dict, load_tree, set_dotted
        from workbench.studies.search_space import check_space, load_spec
        from workbench.studies.storage import default_storage, masked, open_study

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
        self.target, self.timeout, self.final = args.trials, args.timeout, not args.no_final
        self.best_dir = Path(args.best_dir) if args.best_dir else None
        url = args.storage or default_storage()
        self.storage = masked(url)
        self.study = open_study(
            self.spec,
            self.base_tree,
            args.study or f"{self.base.name}-sweep",
            url,
            self.base.train.epochs,
            worker_index(args.worker_index),
            self.spec_path,
        )

    def parent_tags(self) -> dict[str, str]:
        from workbench.studies.storage import pruner_text, sampler_text
        from workbench.tracking import provenance

        objective = self.spec.objective
        return {
            "optuna.study": self.study.study_name,
            "optuna.storage": self.storage,
            "optuna.sampler": sampler_text(self.spec),
            "optuna.pruner": pruner_text(self.spec, self.base.train.epochs),
            "optuna.objective": f"{objective.direction} {objective.metric}",
            "sweep.role": "study",
            "sweep.worker": f"{socket.gethostname()}:{os.getpid()}",
            **provenance.provenance_tags(),
        }

    def run(self) -> int:
        import optuna

        from workbench.studies import study_report
        from workbench.studies.storage import FINISHED, states
        from workbench.tracking import store

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        for handler in logging.getLogger("optuna").handlers:  # Optuna's own, set up just above
            handler.addFilter(_no_interrupt_traceback)
        experiment_id = store.configure(self.base.experiment_name)
        metric = self.spec.objective.metric
        maximize = self.spec.objective.direction == "maximize"
        if len(states(self.study, FINISHED)) >= self.target:  # a rerun of a finished study
            study_report.print_summary(self.study, self.storage, metric, maximize, 0, None)
            print(f"nothing to run: {self.target} trials are finished (--trials N for more)")
            return 0
        parent_id, epochs = self.work(experiment_id)
        final = self.finish(parent_id) if len(states(self.study, FINISHED)) >= self.target else None
        study_report.print_summary(self.study, self.storage, metric, maximize, epochs, final)
        print(
            f"MLflow experiment {self.base.experiment_name} (id {experiment_id}): "
            f"{store.ui_command(store.tracking_uri())}"
        )
        return 0

    def work(self, experiment_id: str) -> tuple[str, int]:
        """This worker's trials under its parent run; (the parent's id, epochs it trained)."""
        import mlflow

        from workbench.studies import study_report
        from workbench.studies.objective import Objective
        from workbench.studies.worker import Worker
        from workbench.tracking import lineage, runs

        name = f"{self.study.study_name} · study · worker {socket.gethostname()}:{os.getpid()}"
        with runs.tracked_run(name, tags=self.parent_tags()) as parent:
            lineage.log_config(self.base)
            mlflow.log_text(self.spec_path.read_text(), "sweep.yaml")
            mlflow.log_params({"sweep.trials": self.target, "sweep.space": str(self.spec_path)})
            objective = Objective(
                self.spec, self.base_tree, self.study.study_name, self.target, parent.info.run_id
            )
            interval = self.spec.heartbeat.interval
            Worker(self.study, objective, self.target, experiment_id, interval, self.timeout).run()
            study_report.log_study(self.study, self.spec.objective.metric, objective.epochs_trained)
        return parent.info.run_id, objective.epochs_trained

    def finish(self, parent_id: str):
        """A complete study: its best trial (and baseline) on test, and its report page."""
        from workbench.studies import study_report
        from workbench.studies.best import best_on_test

        final = None
        if self.final:
            final = best_on_test(self.study, self.spec, self.base_tree, parent_id, self.best_dir)
        metric, epochs = self.spec.objective.metric, self.base.train.epochs
        study_report.log_report(self.study, self.storage, metric, epochs, parent_id, final)
        return final


def _no_interrupt_traceback(record: logging.LogRecord) -> bool:
    """Ctrl-C or SIGTERM during a trial: Optuna logs the failed trial with a traceback; the command
    already says `interrupted`/`terminated` on one line."""
    from workbench.errors import is_stop

    return not (record.exc_info and is_stop(record.exc_info[1]))
