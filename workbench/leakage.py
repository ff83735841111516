"""How much an evaluation split leaks from training through SMOTE.

Two measures per evaluation split (validation, test):
- synthetic fraction: items that are SMOTE interpolations rather than real faces;
- nearest-related fraction: items whose nearest training item (pixel L2) is SMOTE-related to them
  (one is a parent of the other, or they share a parent) and closer than every unrelated real
  training face. A real test face whose synthetic child sits in training counts, as does a synthetic
  test face whose parent is in training: the model has, in effect, seen that face.
Under the honest protocol both are 0 by construction; under SMOTE-before-split they are not.
"""
from __future__ import annotations

import numpy as np

from workbench.protocol import Prepared


def _related(eval_origins: np.ndarray, train_origins: np.ndarray) -> np.ndarray:
    """(E, T) bool: the items share an origin face."""
    e, t = eval_origins[:, None, :], train_origins[None, :, :]
    return ((e[..., 0:1] == t) | (e[..., 1:2] == t)).any(axis=-1)


def nearest_related(eval_images: np.ndarray, eval_origins: np.ndarray, train_images: np.ndarray,
                    train_origins: np.ndarray, train_synthetic: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(E,) bool: the closest SMOTE-related training item is closer than any unrelated real training face."""
    train = train_images.reshape(len(train_images), -1).astype(np.float32)
    train_sq = np.einsum("ij,ij->i", train, train)
    out = np.zeros(len(eval_images), dtype=bool)
    for start in range(0, len(eval_images), chunk):
        block = eval_images[start:start + chunk].reshape(-1, train.shape[1]).astype(np.float32)
        # Squared distances: |e|^2 + |t|^2 - 2 e.t (float32 is plenty to rank pixel distances).
        d = np.einsum("ij,ij->i", block, block)[:, None] + train_sq[None, :] - 2.0 * block @ train.T
        related = _related(eval_origins[start:start + chunk], train_origins)
        d_related = np.where(related, d, np.inf).min(axis=1)
        d_unrelated_real = np.where(~related & ~train_synthetic[None, :], d, np.inf).min(axis=1)
        out[start:start + chunk] = d_related < d_unrelated_real
    return out


def measure(prepared: Prepared) -> dict[str, float]:
    train, origins = prepared.train, prepared.origins
    if origins is None:
        raise ValueError("prepared splits carry no origins")
    metrics = {}
    for name in ("val", "test"):
        part = getattr(prepared, name)
        if len(part) == 0:
            continue
        leaked = nearest_related(part.images, origins[name], train.images, origins["train"], prepared.synthetic["train"])
        metrics[f"leak_{name}_synthetic_fraction"] = float(prepared.synthetic[name].mean())
        metrics[f"leak_{name}_nearest_related_fraction"] = float(leaked.mean())
    return metrics
