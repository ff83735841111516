"""`python -m workbench.run baseline [--set key=value ...]`: train, evaluate and log one experiment."""
from __future__ import annotations

import argparse

from workbench.cli import add_config_arguments, quiet_tensorflow, user_errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.run", description=__doc__)
    parser.add_argument("experiment", nargs="?", default="baseline",
                        help="a name in experiments/ (e.g. baseline) or a path to a YAML file")
    add_config_arguments(parser)
    parser.add_argument("--register", metavar="NAME", default=None,
                        help="put the trained model into the MLflow model registry as NAME (models:/NAME/latest)")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    with user_errors():
        from workbench.config import load_config

        cfg = load_config(args.experiment, args.overrides)
        from workbench.experiment import run_experiment  # TensorFlow loads only once the config is valid

        if args.register and not cfg.tracking.log_model:
            from workbench.errors import WorkbenchError
            raise WorkbenchError("--register needs the model logged; drop --set tracking.log_model=false")
        result = run_experiment(cfg)
        m = result.metrics
        print()
        print(f"experiment {cfg.name} ({cfg.protocol}) on {result.lineage['path']}")
        print(f"  test accuracy      {m['test_accuracy']:.4f}")
        print(f"  test macro-F1      {m['test_macro_f1']:.4f}")
        print(f"  balanced accuracy  {m['test_balanced_accuracy']:.4f}")
        print(f"  epochs run         {int(m['epochs_run'])}")
        print(f"  MLflow run         {result.run_id} (experiment {cfg.experiment_name}, store {result.tracking_uri})")
        from workbench.tracking import register_model, ui_command

        if args.register:
            version = register_model(result.model_uri, args.register, result.run_id)
            print(f"  registered model   models:/{args.register}/{version} (also models:/{args.register}/latest)")
        print(f"  see it in the UI:  {ui_command(result.tracking_uri)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
