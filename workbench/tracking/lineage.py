"""What a run was trained and tested on: its config, the dataset's lineage per split
(mlflow.log_input, dataset/lineage.json, the per-face manifest) and its per-face test predictions.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from workbench import CLASS_NAMES, NUM_CLASSES
from workbench.config import ExperimentConfig
from workbench.data.faces import Faces
from workbench.errors import WorkbenchError


def log_config(cfg: ExperimentConfig, data_path: str | None = None) -> None:
    """Every key as a param (lists as JSON) and the whole YAML; `data_path` (the file really read)
    stands for `data.path` when the config left it to the default (null)."""
    # purpose.tags are logged as the run's tags, not twice
    params = {k: v for k, v in cfg.flat().items() if not k.startswith("purpose.tags.")}
    if params.get("data.path") is None and data_path is not None:
        params["data.path"] = data_path
    mlflow.log_params(
        {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()}
    )
    mlflow.log_text(cfg.to_yaml(), "config.yaml")


def _manifest(faces: Faces, synthetic: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": faces.ids,
            "group": faces.groups,
            "label": faces.labels,
            "expression": np.asarray(CLASS_NAMES)[faces.labels],
            "synthetic": synthetic,
        }
    )


CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


def log_dataset(
    parts: dict[str, Faces],
    synthetic: dict[str, np.ndarray],
    source: Faces,
    protocol: str,
    split_method: str,
    manifest: bool = True,
    inputs: bool = True,
) -> dict:
    """mlflow.log_input per split (name, digest, counts) plus dataset/lineage.json; returns the lineage.
    `inputs=False` (a resumed run, which has them) only computes the lineage."""
    lineage = lineage_record(source, protocol, split_method)
    frames = {name: _manifest(faces, synthetic[name]) for name, faces in parts.items()}
    for name, faces in parts.items():
        entry = split_entry(source, name, faces, synthetic[name])
        lineage["splits"][name] = entry
        if inputs:
            log_split_input(source, name, frames[name], entry)
    if inputs:
        mlflow.log_dict(lineage, "dataset/lineage.json")
    if inputs and manifest:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "manifest.csv.gz"
            table = pd.concat([df.assign(split=name) for name, df in frames.items()])
            table.to_csv(path, index=False)
            mlflow.log_artifact(str(path), "dataset")
    return lineage


def lineage_record(source: Faces, protocol: str, split_method: str) -> dict:
    return {
        "format": source.format,
        "path": source.path,
        "digest": source.digest,
        "faces_loaded": len(source),
        "protocol": protocol,
        "split_method": split_method,
        "splits": {},
        "skipped": {
            "count": len(source.skipped),
            "items": [{"item": s.item, "reason": s.reason} for s in source.skipped[:1000]],
        },
    }


def split_entry(source: Faces, name: str, faces: Faces, synthetic: np.ndarray) -> dict:
    counts = np.bincount(faces.labels, minlength=NUM_CLASSES)
    return {
        "faces": len(faces),
        "synthetic": int(synthetic.sum()),
        "digest": _digest(source.digest, name, faces.ids),
        "per_class": {c: int(n) for c, n in zip(CLASS_NAMES, counts)},
    }


def log_split_input(source: Faces, name: str, frame: pd.DataFrame, entry: dict) -> None:
    dataset = mlflow.data.from_pandas(
        frame,
        source=source.path,
        targets="label",
        name=f"{Path(source.path).name}:{name}",
        digest=entry["digest"][:16],
    )
    tags = {
        "faces": str(entry["faces"]),
        "synthetic": str(entry["synthetic"]),
        "skipped_at_load": str(len(source.skipped)),
        "per_class": json.dumps(entry["per_class"]),
    }
    log_input(dataset, CONTEXTS[name], tags)


def split_input(run, name: str = "train"):
    """The run's logged dataset input for split `name` (its digest, its tags: faces, per_class), or
    None for a run that logged none."""
    for entry in run.inputs.dataset_inputs:
        if any(t.key == "mlflow.data.context" and t.value == CONTEXTS[name] for t in entry.tags):
            return entry
    return None


def predictions_frame(ev, ids: np.ndarray) -> pd.DataFrame:
    """One row per face: its id, true and predicted label, and the 7 probabilities."""
    frame = pd.DataFrame({"id": ids, "label": ev.y_true, "predicted": ev.y_pred})
    probs = np.asarray(ev.probs, dtype=np.float64)
    return frame.assign(**{f"p_{c}": probs[:, i].round(6) for i, c in enumerate(CLASS_NAMES)})


def log_predictions(ev, ids: np.ndarray, split: str) -> None:
    """predictions/<split>.csv.gz: what compare --runs A B matches face by face."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{split}.csv.gz"
        predictions_frame(ev, ids).to_csv(path, index=False)
        mlflow.log_artifact(str(path), "predictions")


def load_predictions(run_id: str, split: str = "test") -> pd.DataFrame:
    """A run's per-face predictions, or a one-line error for a run that has none."""
    try:
        path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/predictions/{split}.csv.gz")
    except Exception:  # noqa: BLE001 - MLflow raises several kinds for a missing artifact
        raise WorkbenchError(
            f"run {run_id}: no predictions/{split}.csv.gz (runs tested before per-face predictions "
            "were logged have none); run its config again"
        ) from None
    return pd.read_csv(path, dtype={"id": str})


def log_input(dataset, context: str, tags: dict[str, str], attempts: int = 4) -> None:
    """mlflow.log_input, safe when several workers log the same new dataset at once.

    MLflow's SQL store looks the dataset up, then inserts it: of two workers racing there, one hits the
    datasets' unique key. The failed transaction is rolled back whole, so trying again finds the
    dataset the other worker stored and only links it to this run."""
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context, tags=tags)
            return
        except mlflow.exceptions.MlflowException as e:
            if "unique" not in str(e).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(
            ("\n".join(map(str, part)) if isinstance(part, np.ndarray) else str(part)).encode()
        )
        h.update(b"\0")
    return h.hexdigest()
