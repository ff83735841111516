"""Orchestrators over the one run path (workbench.experiment.run_experiment): Optuna sweeps, the
reproduce-65 protocol comparison and its leak measures, and the comparison of logged runs. Each builds
configs and calls the run path; none trains a model itself."""
