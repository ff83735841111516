"""The order of split and resampling: the honest protocol, and the original one (kept to reproduce it).

honest (`split-then-resample`): split first, then SMOTE the training split only; validation and test
keep their natural class distribution.
original (`original-smote-before-split`): SMOTE on every face, then a random 70/15/15 split, so
synthetic neighbours of training faces land in validation and test (leakage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.core import balance
from workbench.core.settings import ORIGINAL_PROTOCOL, BalanceConfig, SplitConfig
from workbench.core.split import honest_split, original_split, split_method
from workbench.data.faces import SPLITS, Faces


@dataclass
class Prepared:
    train: Faces
    val: Faces
    test: Faces
    synthetic: dict[str, np.ndarray]  # split -> bool mask of SMOTE-made faces
    split_method: str
    # split -> (N, 2) indices into the loaded faces: a real face's own index twice, a synthetic face's
    # two SMOTE parents. Two items share an origin index exactly when SMOTE relates them (leakage.py).
    origins: dict[str, np.ndarray] | None = None
    smote_k_used: int | None = None  # logged beside balance.smote_k, which it may undercut

    def parts(self) -> dict[str, Faces]:
        return {"train": self.train, "val": self.val, "test": self.test}


def prepare(
    faces: Faces,
    protocol: str,
    split_cfg: SplitConfig,
    balance_cfg: BalanceConfig,
    seed: int,
    split_seed: int | None = None,
) -> Prepared:
    """Split and balance `faces` under `protocol`: SMOTE draws from `seed`, the split from
    `split_seed` (the same as `seed` when None)."""
    split_seed = seed if split_seed is None else split_seed
    smote, smote_k = balance_cfg.smote, balance_cfg.smote_k
    if protocol == ORIGINAL_PROTOCOL:
        pool = balance.smote(faces, smote_k, seed) if smote else balance.unchanged(faces)
        origins = _origins(pool, np.arange(len(faces)))
        split = original_split(len(pool.faces), split_seed)
        parts = {name: pool.faces.subset(split[name]) for name in SPLITS}
        synthetic = {name: pool.synthetic[split[name]] for name in SPLITS}
        return Prepared(
            **parts,
            synthetic=synthetic,
            split_method="random 70/15/15 after resampling",
            origins={name: origins[split[name]] for name in SPLITS},
            smote_k_used=pool.k_used,
        )

    use_official = split_cfg.use_official
    split = honest_split(
        faces, use_official, split_cfg.val_fraction, split_cfg.test_fraction, split_seed
    )
    train = faces.subset(split["train"])
    resampled = balance.smote(train, smote_k, seed) if smote else balance.unchanged(train)
    val, test = faces.subset(split["val"]), faces.subset(split["test"])
    return Prepared(
        train=resampled.faces,
        val=val,
        test=test,
        synthetic={
            "train": resampled.synthetic,
            "val": np.zeros(len(val), bool),
            "test": np.zeros(len(test), bool),
        },
        split_method=split_method(faces, use_official),
        origins={
            "train": _origins(resampled, split["train"]),
            "val": np.repeat(split["val"][:, None], 2, axis=1),
            "test": np.repeat(split["test"][:, None], 2, axis=1),
        },
        smote_k_used=resampled.k_used,
    )


def _origins(balanced: balance.Balanced, index: np.ndarray) -> np.ndarray:
    """Balanced faces -> (N, 2) indices into the loaded faces (`index` maps the balanced input to them)."""
    n_real = int((~balanced.synthetic).sum())
    real = np.repeat(index[:n_real, None], 2, axis=1)
    return (
        np.concatenate([real, index[balanced.parents[n_real:]]])
        if n_real < len(balanced.synthetic)
        else real
    )
