"""`python -m workbench.run baseline [--set key=value ...]`: train, evaluate and log one experiment."""

from __future__ import annotations

import argparse

from workbench.cli import add_config_arguments, positive_int, quiet_tensorflow, user_errors
from workbench.core.metrics import chance_verdict
from workbench.core.stats import with_interval


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workbench.run", description=__doc__)
    parser.add_argument(
        "experiment",
        nargs="?",
        default="baseline",
        help="a name in experiments/ (e.g. baseline) or a path to a YAML file",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        metavar="RUN_ID",
        default=None,
        help="continue this unfinished run (its own config.yaml; the same command resumes "
        "its last unfinished run by itself)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help="train this many seeds under one parent run (the config's `seeds`; faces and split fixed)",
    )
    parser.add_argument(
        "--register",
        metavar="NAME",
        default=None,
        help="put the trained model into the MLflow model registry as NAME (models:/NAME/latest)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow(args.verbose)
    with user_errors():
        from workbench.config import load_config

        cfg = (
            resumed_config(args.resume)
            if args.resume
            else load_config(args.experiment, args.overrides)
        )
        if args.seeds:
            cfg.seeds = args.seeds
        check_arguments(cfg, args)
        # TensorFlow loads only once the config is valid
        if cfg.seeds > 1:
            from workbench.studies.seeds import run_seeds

            print_seeds(cfg, run_seeds(cfg))
            return 0
        from workbench.experiment import run_experiment

        result = run_experiment(cfg, resume_run_id=args.resume)
        print_summary(cfg, result)
        if args.register:
            from workbench.tracking.logged_model import register_model

            version = register_model(result.model_uri, args.register, result.run_id)
            print(
                f"  registered model   models:/{args.register}/{version} (also models:/{args.register}/latest)"
            )
        from workbench.tracking.store import ui_command

        print(f"  see it in the UI:  {ui_command(result.tracking_uri)}")
    return 0


def check_arguments(cfg, args) -> None:
    from workbench.errors import WorkbenchError

    if args.register and not cfg.tracking.log_model:
        raise WorkbenchError(
            "--register needs the model logged; drop --set tracking.log_model=false"
        )
    if cfg.seeds > 1 and (args.register or args.resume):
        raise WorkbenchError(
            "--seeds trains several runs: drop --register and --resume (the same command resumes)"
        )


def print_summary(cfg, result) -> None:
    from workbench.tracking.store import display_uri

    if result.resumed_from:
        print(f"resumed run {result.run_id} after epoch {result.resumed_from}")
    m = result.metrics
    print()
    print(f"experiment {cfg.name} ({cfg.protocol}) on {result.lineage['path']}")
    print(
        f"  test accuracy      {with_interval(m, 'test_accuracy')}   (chance: "
        f"{m['test_chance_uniform']:.3f} uniform, {m['test_chance_majority']:.3f} always the "
        "commonest class; [95% interval])"
    )
    print(f"  test macro-F1      {with_interval(m, 'test_macro_f1')}")
    print(f"  balanced accuracy  {with_interval(m, 'test_balanced_accuracy')}")
    if "test_nodup_accuracy" in m:
        copies = len(result.prepared.test) - int(m["test_nodup_faces"])
        print(
            f"  without copies     accuracy {with_interval(m, 'test_nodup_accuracy')} on the "
            f"{int(m['test_nodup_faces'])} test faces left when the {copies} that copy a training "
            "face are set aside"
        )
    print(
        f"  epochs run         {int(m['epochs_run'])} (best validation epoch {int(m['best_epoch']) + 1})"
    )
    if "train_seconds" in m:
        print(
            f"  training time      {m['train_seconds'] / 60:.1f} min ({m['train_images_per_second']:.0f} images/s)"
        )
    verdict = chance_verdict(m)
    if not verdict.beats:
        print(
            f"  warning: the model does not beat chance ({verdict.chance:.3f}): train longer or check the data"
        )
    if verdict.zero_f1:
        print(f"  warning: F1 is 0 for {', '.join(verdict.zero_f1)} (never predicted right)")
    print(
        f"  MLflow run         {result.run_id} (experiment {cfg.experiment_name}, store {display_uri(result.tracking_uri)})"
    )


def print_seeds(cfg, result) -> None:
    from workbench.studies.seeds import VARIES
    from workbench.tracking.store import display_uri, tracking_uri, ui_command

    m = result.metrics
    print()
    print(
        f"experiment {cfg.name}: {cfg.seeds} seeds ({cfg.seed}..{cfg.seed + cfg.seeds - 1}); varies: {VARIES}"
    )
    for key, name in (("test_accuracy", "test accuracy"), ("test_macro_f1", "test macro-F1")):
        print(
            f"  {name:<17}  mean {with_interval(m, key)}  sd {m[f'{key}_std']:.4f}  "
            "[95% t-interval over seeds]"
        )
    print(
        f"  parent run         {result.run_id} (children {', '.join(c[:8] for c in result.children)})"
    )
    print(
        f"  store              {display_uri(tracking_uri())}; see it in the UI: {ui_command(tracking_uri())}"
    )


def resumed_config(run_id: str):
    """The config a run was started with (its config.yaml artifact)."""
    import mlflow

    from workbench.tracking.runs import check_resumable, logged_config
    from workbench.tracking.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    cfg = logged_config(run_id, f"--resume {run_id}")
    check_resumable(run_id)
    return cfg


if __name__ == "__main__":
    raise SystemExit(main())
