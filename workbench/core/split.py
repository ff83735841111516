"""Faces -> train/val/test index sets.

The honest split uses the dataset's own split where it has one (FER-2013 Usage, train/test folders),
else a stratified split grouped by source image, so no photo contributes faces to two splits.
`original_split` is the original project's plain 70/15/15 random split, used only by its protocol.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from workbench.data.faces import SPLITS, Faces
from workbench.errors import WorkbenchError

Split = dict[str, np.ndarray]  # "train"/"val"/"test" -> indices into the faces


def grouped_holdout(
    labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held): about `fraction` of the faces held out, stratified by label, whole groups only."""
    n_splits = max(2, round(1 / fraction))
    if len(np.unique(groups)) < n_splits:
        raise WorkbenchError(
            f"only {len(np.unique(groups))} source images: too few for a {fraction:.0%} grouped split"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Small classes (fewer members than folds) are fine here: we take one fold, not a CV estimate.
        warnings.simplefilter("ignore", UserWarning)
        rest, held = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return rest, held


def uses_official_split(faces: Faces, use_official: bool) -> bool:
    """The dataset's own split (FER-2013's Usage, train/val/test folders) is used when asked for and present."""
    return use_official and faces.has_official_split


def split_method(faces: Faces, use_official: bool) -> str:
    return (
        "dataset's own split"
        if uses_official_split(faces, use_official)
        else "stratified, grouped by source image"
    )


def honest_split(
    faces: Faces, use_official: bool, val_fraction: float, test_fraction: float, seed: int
) -> Split:
    if uses_official_split(faces, use_official):
        split = {name: np.flatnonzero(faces.splits == name) for name in SPLITS}
        if len(split["val"]) == 0 and len(split["train"]):
            # e.g. train/ and test/ folders only: carve validation out of training, grouped.
            train = split["train"]
            frac = val_fraction / (1 - test_fraction)
            rest, held = grouped_holdout(faces.labels[train], faces.groups[train], frac, seed)
            split["train"], split["val"] = train[rest], train[held]
    else:
        everything = np.arange(len(faces))
        rest, test = grouped_holdout(faces.labels, faces.groups, test_fraction, seed)
        frac = val_fraction / (1 - test_fraction)
        train, val = grouped_holdout(faces.labels[rest], faces.groups[rest], frac, seed + 1)
        split = {
            "train": everything[rest][train],
            "val": everything[rest][val],
            "test": everything[test],
        }
    for name in SPLITS:
        if len(split[name]) == 0:
            raise WorkbenchError(
                f"{faces.path}: the {name} split is empty; check the dataset's split or split.* fractions"
            )
    return split


def original_split(n: int, seed: int) -> Split:
    """The original project's split: train_test_split(test_size=0.3) then halve the rest (not stratified)."""
    index = np.arange(n)
    train, temp = train_test_split(index, test_size=0.3, random_state=seed)
    val, test = train_test_split(temp, test_size=0.5, random_state=seed)
    return {"train": train, "val": val, "test": test}
