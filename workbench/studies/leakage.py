"""How much an evaluation split leaks from training through SMOTE.

Two measures per evaluation split (validation, test):
- synthetic fraction: items that are SMOTE interpolations rather than real faces;
- nearest-related fraction: items whose nearest training item (pixel L2) is SMOTE-related to them
  (one is a parent of the other, or they share a parent) and closer than every unrelated real
  training face. A real test face whose synthetic child sits in training counts, as does a synthetic
  test face whose parent is in training: the model has, in effect, seen that face.
Under the honest protocol both are 0 by construction; under SMOTE-before-split they are not.

With a trained model's predictions, `accuracy_by_leak` splits the test accuracy into the synthetic
items and the clean ones (real faces whose nearest training item is unrelated), and gives the lift:
the points of test accuracy the synthetic items add over clean faces of their own class. The plain gap
between the two groups is no measure of the leak, because SMOTE makes synthetics of the rare classes
only: on FER-2013 every happy test face is real and clean, and happy is the easiest class.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score

from workbench.core.protocol import Prepared


def _related(eval_origins: np.ndarray, train_origins: np.ndarray) -> np.ndarray:
    """(E, T) bool: the items share an origin face."""
    e, t = eval_origins[:, None, :], train_origins[None, :, :]
    return ((e[..., 0:1] == t) | (e[..., 1:2] == t)).any(axis=-1)


def nearest_related(
    eval_images: np.ndarray,
    eval_origins: np.ndarray,
    train_images: np.ndarray,
    train_origins: np.ndarray,
    train_synthetic: np.ndarray,
    chunk: int = 256,
) -> np.ndarray:
    """(E,) bool: the closest SMOTE-related training item is closer than any unrelated real training face."""
    train = train_images.reshape(len(train_images), -1).astype(np.float32)
    train_sq = np.einsum("ij,ij->i", train, train)
    out = np.zeros(len(eval_images), dtype=bool)
    for start in range(0, len(eval_images), chunk):
        block = eval_images[start : start + chunk].reshape(-1, train.shape[1]).astype(np.float32)
        # Squared distances: |e|^2 + |t|^2 - 2 e.t (float32 is plenty to rank pixel distances).
        d = np.einsum("ij,ij->i", block, block)[:, None] + train_sq[None, :] - 2.0 * block @ train.T
        related = _related(eval_origins[start : start + chunk], train_origins)
        d_related = np.where(related, d, np.inf).min(axis=1)
        d_unrelated_real = np.where(~related & ~train_synthetic[None, :], d, np.inf).min(axis=1)
        out[start : start + chunk] = d_related < d_unrelated_real
    return out


def leaked_items(prepared: Prepared) -> dict[str, dict[str, np.ndarray]]:
    """split (val, test) -> {"synthetic": bool mask, "nearest_related": bool mask} over its items."""
    train, origins = prepared.train, prepared.origins
    if origins is None:
        raise ValueError("prepared splits carry no origins")
    masks = {}
    for name in ("val", "test"):
        part = getattr(prepared, name)
        if len(part) == 0:
            continue
        masks[name] = {
            "synthetic": prepared.synthetic[name],
            "nearest_related": nearest_related(
                part.images,
                origins[name],
                train.images,
                origins["train"],
                prepared.synthetic["train"],
            ),
        }
    return masks


def fractions(masks: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    return {
        f"leak_{name}_{kind}_fraction": float(mask.mean())
        for name, kinds in masks.items()
        for kind, mask in kinds.items()
    }


def measure(prepared: Prepared) -> dict[str, float]:
    return fractions(leaked_items(prepared))


def accuracy_by_leak(
    y_true: np.ndarray, y_pred: np.ndarray, masks: dict[str, np.ndarray]
) -> dict[str, float]:
    """Test accuracy on the synthetic items and on the clean ones (real, nearest training item
    unrelated), and the class-matched lift (`lift`). A group with no items is left out rather than
    reported as 0."""
    synthetic = masks["synthetic"]
    clean = ~synthetic & ~masks["nearest_related"]
    scores = {
        f"leak_test_accuracy_{group}": float(accuracy_score(y_true[mask], y_pred[mask]))
        for group, mask in (("synthetic", synthetic), ("clean", clean))
        if mask.any()
    }
    if synthetic.any():
        scores["leak_test_accuracy_lift"] = lift(y_true, y_true == y_pred, synthetic, clean)
    return scores


def lift(
    y_true: np.ndarray, correct: np.ndarray, synthetic: np.ndarray, clean: np.ndarray
) -> float:
    """Points of accuracy (as a fraction of all items) that the synthetic items add over clean faces
    of their own class: sum over classes of n_synthetic * (accuracy on its synthetic items - on its
    clean ones), divided by the number of items. Classes with no clean item are left out."""
    total = 0.0
    for c in np.unique(y_true[synthetic]):
        syn, ref = synthetic & (y_true == c), clean & (y_true == c)
        if ref.any():
            total += syn.sum() * (correct[syn].mean() - correct[ref].mean())
    return float(total / len(y_true))
