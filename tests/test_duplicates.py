"""The duplicate audit on real faces: exact copies, near copies (re-encoded, shifted, brighter),
different faces apart, and a run that drops them from evaluation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workbench.config import ExperimentConfig
from workbench.core import duplicates
from workbench.data import load_faces
from workbench.dedupe import audit_duplicates, drop_duplicates
from workbench.experiment import prepare_faces


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    from workbench.config import DataConfig

    return load_faces(DataConfig(cache_dir=str(tmp_path_factory.mktemp("c"))), 0)


def jpeg_again(face: np.ndarray, quality: int = 60) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)[..., None]


def test_copies_are_found_exactly_or_nearly_and_other_faces_are_not(faces):
    train, others = faces.images[:400], faces.images[400:500]
    shifted = np.roll(train[10], 1, axis=1)
    brighter = np.clip(train[11].astype(int) + 12, 0, 255).astype(np.uint8)
    query = np.stack([train[5], jpeg_again(train[7]), shifted, brighter, *others[:20]])
    audit = duplicates.audit(train, {"test": query})
    test = audit.splits["test"]
    assert test.exact.tolist() == [True] + [False] * 23
    assert test.near[:4].all() and list(test.partner[:4]) == [5, 7, 10, 11]
    # different faces are far apart: none of 20 unrelated faces within the threshold
    assert not test.near[4:].any()
    assert audit.metrics() == {"dup_test_in_train": 1.0, "dup_test_in_train_near": 4.0}


def test_the_hash_is_64_bits_and_stable(faces):
    a = duplicates.phash(faces.images[:50])
    assert a.dtype == np.uint64 and np.array_equal(a, duplicates.phash(faces.images[:50].copy()))
    distance = np.bitwise_count(a[:25] ^ a[25:])
    assert distance.min() > duplicates.NEAR_DISTANCE  # 25 pairs of different faces


def test_drop_from_eval_removes_exactly_the_copies(faces):
    cfg = ExperimentConfig()
    prepared = prepare_faces(faces, cfg)
    prepared.test.images[:3] = prepared.train.images[:3]  # three planted copies
    dups = audit_duplicates(prepared)
    planted = dups.splits["test"].duplicated
    assert planted[:3].all()
    dropped = drop_duplicates(prepared, dups)
    assert len(dropped.test) == len(prepared.test) - planted.sum()
    assert len(dropped.synthetic["test"]) == len(dropped.test) and len(dropped.train) == len(
        prepared.train
    )
    assert not audit_duplicates(dropped).found("test")
