"""Test-set metrics from scikit-learn: accuracy, macro/weighted F1, balanced accuracy, per-class F1,
cross-entropy."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
)

from workbench import CLASS_NAMES

LABELS = list(range(len(CLASS_NAMES)))


@dataclass
class Evaluation:
    metrics: dict[str, float]  # flat, ready for mlflow.log_metrics
    report: dict  # classification_report(output_dict=True)
    report_text: str
    confusion: np.ndarray  # counts, rows = true class
    confusion_normalized: np.ndarray  # each row sums to 1 (0 for classes absent from the test set)
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray


def evaluate(y_true: np.ndarray, probs: np.ndarray, prefix: str = "test_") -> Evaluation:
    with warnings.catch_warnings():
        # A small split may lack a class the model predicts; the per-class report shows it as 0 support.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return _evaluate(y_true, probs, prefix)


def _evaluate(y_true: np.ndarray, probs: np.ndarray, prefix: str) -> Evaluation:
    y_pred = probs.argmax(axis=1)
    per_class = f1_score(y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    metrics = {
        f"{prefix}accuracy": accuracy_score(y_true, y_pred),
        f"{prefix}macro_f1": f1_score(
            y_true, y_pred, labels=LABELS, average="macro", zero_division=0
        ),
        f"{prefix}weighted_f1": f1_score(
            y_true, y_pred, labels=LABELS, average="weighted", zero_division=0
        ),
        f"{prefix}balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        # cross-entropy of the predicted probabilities (no label smoothing): a sweep may minimize it
        f"{prefix}loss": log_loss(y_true, _normalized(probs), labels=LABELS),
    } | {f"{prefix}f1_{name}": f for name, f in zip(CLASS_NAMES, per_class)}
    cm = confusion_matrix(y_true, y_pred, labels=LABELS)
    row_sums = cm.sum(axis=1, keepdims=True)
    kwargs = dict(labels=LABELS, target_names=list(CLASS_NAMES), zero_division=0)
    return Evaluation(
        metrics={k: float(v) for k, v in metrics.items()},
        report=classification_report(y_true, y_pred, output_dict=True, **kwargs),
        report_text=classification_report(y_true, y_pred, digits=4, **kwargs),
        confusion=cm,
        confusion_normalized=np.divide(cm, row_sums, out=np.zeros(cm.shape), where=row_sums > 0),
        y_true=y_true,
        y_pred=y_pred,
        probs=probs,
    )


def _normalized(probs: np.ndarray) -> np.ndarray:
    """float64 rows summing to 1 (a float32 or bfloat16 softmax misses by a rounding error)."""
    p = np.clip(probs.astype(np.float64), 1e-12, None)
    return p / p.sum(axis=1, keepdims=True)


def chance_levels(y_true: np.ndarray) -> dict[str, float]:
    """The accuracy of guessing: uniformly at random (1/7), and always the split's most common class."""
    counts = np.bincount(y_true, minlength=len(CLASS_NAMES))
    return {
        "chance_uniform": 1.0 / len(CLASS_NAMES),
        "chance_majority": float(counts.max() / max(1, counts.sum())),
    }


# A score this close to guessing is not evidence of learning (a 350-face split's accuracy moves by
# about 2.5 points from one seed to the next).
CHANCE_MARGIN = 0.02


@dataclass
class ChanceVerdict:
    chance: float  # the better of uniform and majority guessing
    beats: bool
    zero_f1: list[str]  # classes never predicted right

    def tags(self) -> dict[str, str]:
        return {
            "beats_chance": "yes" if self.beats else "no",
            "zero_f1_classes": ",".join(self.zero_f1) or "none",
        }


def chance_verdict(metrics: dict[str, float], split: str = "test") -> ChanceVerdict:
    """From a run's logged metrics (`{split}_accuracy`, `{split}_chance_*`, `{split}_f1_<class>`)."""
    chance = max(metrics[f"{split}_chance_uniform"], metrics[f"{split}_chance_majority"])
    zero = [c for c in CLASS_NAMES if metrics.get(f"{split}_f1_{c}", 1.0) == 0]
    return ChanceVerdict(chance, metrics[f"{split}_accuracy"] > chance + CHANCE_MARGIN, zero)
