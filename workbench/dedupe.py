"""The duplicate audit applied to a run: validation and test faces that copy a real training face,
dropped from evaluation on request, scored both ways, and logged (counts and a grid of the pairs)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from workbench.config import ExperimentConfig
from workbench.core import duplicates, stats
from workbench.core.metrics import Evaluation
from workbench.core.protocol import Prepared
from workbench.tracking import figures, store


def audit_duplicates(prepared: Prepared) -> duplicates.Audit:
    """Validation and test faces that copy a real (not SMOTE-made) training face."""
    evaluated = {"val": prepared.val.images, "test": prepared.test.images}
    return duplicates.audit(real_training_faces(prepared), evaluated)


def real_training_faces(prepared: Prepared) -> np.ndarray:
    """The training images SMOTE did not make: what the audit's partner indices point into."""
    return prepared.train.images[~prepared.synthetic["train"]]


def drop_duplicates(prepared: Prepared, dups: duplicates.Audit) -> Prepared:
    keep = {name: ~dups.splits[name].duplicated for name in ("val", "test")}
    return dataclasses.replace(
        prepared,
        val=prepared.val.subset(np.flatnonzero(keep["val"])),
        test=prepared.test.subset(np.flatnonzero(keep["test"])),
        synthetic=prepared.synthetic | {n: prepared.synthetic[n][keep[n]] for n in keep},
        origins=None
        if prepared.origins is None
        else prepared.origins | {n: prepared.origins[n][keep[n]] for n in keep},
    )


def without_duplicates(ev: Evaluation, duplicated: np.ndarray) -> dict[str, float]:
    """test_nodup_<score> and its interval: the scores on the test faces no training face copies."""
    keep = ~duplicated
    y_true, y_pred = ev.y_true[keep], ev.y_pred[keep]
    point = dict(zip(stats.SCORED, map(float, stats.scores(y_true, y_pred))))
    out = {f"test_nodup_{k}": v for k, v in point.items()}
    return (
        out
        | stats.intervals(y_true, y_pred, prefix="test_nodup_")
        | {"test_nodup_faces": float(keep.sum())}
    )


def log_duplicates(
    dups: duplicates.Audit, prepared: Prepared, cfg: ExperimentConfig, fresh: bool
) -> None:
    """The audit's counts, and (full runs) a grid of the copied faces beside their training face."""
    if not fresh:
        return
    found = dups.metrics()
    mlflow.log_metrics(found)
    mlflow.set_tags(
        {"dedupe": cfg.data.dedupe, "dup_hash": f"pHash 64-bit, Hamming <= {dups.threshold}"}
    )
    if found.get("dup_test_in_train_near") or found.get("dup_val_in_train_near"):
        n = int(found.get("dup_test_in_train_near", 0))
        print(
            f"{n} test face{'s copy' if n != 1 else ' copies'} a training face (exact or near; "
            "see figures/duplicates.html)"
        )
    if cfg.purpose.light or cfg.data.dedupe != "off" or not dups.found("test"):
        return  # dropped faces are not in the test split any more
    test = dups.splits["test"]
    index = np.flatnonzero(test.duplicated)[:8]
    pairs = [(int(i), int(test.partner[i]), "exact" if test.exact[i] else "near") for i in index]
    fig = figures.duplicate_pairs(
        prepared.test.images,
        real_training_faces(prepared),
        pairs,
        f"Test faces that copy a training face ({int(test.duplicated.sum())})",
    )
    with tempfile.TemporaryDirectory() as tmp:
        figures.write_figures(
            {"duplicates": fig}, Path(tmp), png=False, plotly_js=store.shared_plotly_js()
        )
        mlflow.log_artifacts(tmp, "figures")
