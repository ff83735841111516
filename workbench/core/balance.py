"""Class balance for a training split: SMOTE (imbalanced-learn) and/or class weights.

SMOTE here works in float32 (never float64: a full FER-2013 training split is 28,709 x 12,288
features) and records each synthetic face's two real parents, so leakage can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from imblearn.over_sampling import SMOTE
from sklearn.utils.class_weight import compute_class_weight

from workbench.data.faces import Faces
from workbench.errors import WorkbenchError


class _ParentTrackingSMOTE(SMOTE):
    """imbalanced-learn's SMOTE, with float32 interpolation steps and a record of parent pairs."""

    def _generate_samples(self, X, nn_data, nn_num, rows, cols, steps, y_type=None, y=None):
        self.pairs_.append((rows.copy(), nn_num[rows, cols].copy()))
        return super()._generate_samples(
            X, nn_data, nn_num, rows, cols, steps.astype(X.dtype), y_type, y
        )


@dataclass
class Balanced:
    faces: Faces  # the real faces first, then the synthetic ones
    synthetic: np.ndarray  # (N,) bool
    # (N, 2) indices into the input faces of each synthetic face's parents; -1 for real ones
    parents: np.ndarray
    k_used: int | None = None  # SMOTE's k as used: at most the smallest class's size - 1


def smote(faces: Faces, k: int, seed: int) -> Balanced:
    counts = np.bincount(faces.labels)
    present = counts[counts > 0]
    if len(present) < 2:
        raise WorkbenchError(
            "balance.smote: the training split holds a single class; nothing to balance"
        )
    smallest = int(present.min())
    if smallest < 2:
        raise WorkbenchError(
            f"balance.smote: a class has {smallest} training face; SMOTE needs at least 2 per class"
        )
    k = min(k, smallest - 1)  # SMOTE needs k neighbours inside the smallest class
    n, shape = len(faces), faces.images.shape[1:]
    X = faces.images.reshape(n, -1).astype(np.float32)
    sampler = _ParentTrackingSMOTE(k_neighbors=k, random_state=seed)
    sampler.pairs_ = []
    X_res, y_res = sampler.fit_resample(X, faces.labels)
    del X
    n_new = len(y_res) - n
    parents = np.full((len(y_res), 2), -1, dtype=np.int64)
    # imbalanced-learn appends the synthetic faces class by class in sampling_strategy_ order.
    start = n
    classes = [c for c, m in sampler.sampling_strategy_.items() if m > 0]
    for cls, (rows, neighbours) in zip(classes, sampler.pairs_):
        members = np.flatnonzero(faces.labels == cls)
        parents[start : start + len(rows)] = np.stack([members[rows], members[neighbours]], axis=1)
        start += len(rows)
    assert start == len(y_res), "SMOTE output does not match its recorded parents"
    new_images = np.clip(np.rint(X_res[n:]), 0, 255).astype(np.uint8).reshape(n_new, *shape)
    del X_res
    p = parents[n:]
    synth = Faces(
        images=new_images,
        labels=y_res[n:].astype(np.int64),
        groups=np.array([f"smote:{faces.groups[a]}" for a in p[:, 0]], dtype=str),
        splits=np.full(n_new, "", dtype=str),
        ids=np.array([f"smote({faces.ids[a]},{faces.ids[b]})" for a, b in p], dtype=str),
    )
    combined = Faces(
        images=np.concatenate([faces.images, synth.images]),
        labels=np.concatenate([faces.labels, synth.labels]),
        groups=np.concatenate([faces.groups, synth.groups]),
        splits=np.concatenate([faces.splits, synth.splits]),
        ids=np.concatenate([faces.ids, synth.ids]),
        format=faces.format,
        path=faces.path,
        digest=faces.digest,
        skipped=faces.skipped,
    )
    synthetic = np.zeros(len(y_res), dtype=bool)
    synthetic[n:] = True
    return Balanced(combined, synthetic, parents, k_used=k)


def unchanged(faces: Faces) -> Balanced:
    return Balanced(
        faces, np.zeros(len(faces), dtype=bool), np.full((len(faces), 2), -1, dtype=np.int64)
    )


def class_weights(labels: np.ndarray) -> dict[int, float]:
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}
