"""A run's model: logged once (with signature and input example), registered on request."""

from __future__ import annotations

from importlib import metadata

import mlflow
import numpy as np

# What loading the model needs (FaceCrop is the workbench's own layer). Given, not inferred: MLflow's
# inference reimports the model in a subprocess (half a minute a run) and leaves Keras 3 out.
REQUIREMENTS = ("fer-workbench", "tensorflow", "keras", "numpy", "cloudpickle")


def requirements() -> list[str]:
    """The installed versions of REQUIREMENTS (one not installed, e.g. a source checkout, is left out)."""
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pinned


def log_model(model, example: np.ndarray) -> str:
    """The Keras model with signature and input example, through MLflow's TensorFlow flavour: in
    mlflow 3.17.2 `mlflow.keras.log_model` writes the input example before creating its folder and fails."""
    import keras
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example, verbose=0))
    # MLflow checks the input example with a predict of its own: no Keras progress bar in the output
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=requirements(),
        )
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
    return info.model_uri


def log_model_once(run_id: str, model, example: np.ndarray) -> str:
    """The run's model, logged once: a run resumed after logging it keeps that one, and one that a
    stop left half-logged (PENDING) is deleted before logging again."""
    from mlflow.entities import LoggedModelStatus

    client = mlflow.MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    for logged in client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'"
    ):
        if logged.status == LoggedModelStatus.READY:
            return logged.model_uri
        client.delete_logged_model(logged.model_id)
    return log_model(model, example)


def register_model(model_uri: str, name: str, run_id: str) -> str:
    """A new version of registered model `name` from a logged model; returns the version number."""
    version = mlflow.register_model(model_uri, name, tags={"run_id": run_id})
    return str(version.version)
