"""The learning itself, on plain values: protocol (split, then balance), augmentation, the models, the
training recipe, the fit loop and the metrics. Nothing here knows about MLflow, Optuna or the CLI."""
