"""Faces of the evaluation splits that are also in training: exact copies (the same pixels) and near
copies (a perceptual hash within a Hamming distance), counted per split and optionally dropped from
evaluation. FER-2013 holds both across its Usage splits.

The perceptual hash is the DCT hash (pHash): the face in grey at 32x32, its 8x8 lowest-frequency DCT
coefficients, one bit each for "above their median". Resizing, re-encoding, small shifts and
brightness changes move few of its 64 bits; two different faces differ in about half.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import cv2
import numpy as np

# Hamming distance on the 64-bit pHash at or below which two faces count as near copies.
NEAR_DISTANCE = 4
EVALUATED = ("val", "test")


def exact_hashes(images: np.ndarray) -> np.ndarray:
    """One SHA-1 of the pixels per face."""
    return np.array([hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images])


def phash(images: np.ndarray) -> np.ndarray:
    """The 64-bit DCT hash of every face (N, S, S, C) uint8, as uint64."""
    bits = np.empty((len(images), 64), dtype=bool)
    for i, image in enumerate(images):
        grey = image[..., 0] if image.shape[-1] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
        low = cv2.dct(small)[:8, :8].ravel()
        # the DC term (overall brightness) left out of the median
        bits[i] = low > np.median(low[1:])
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def nearest(
    query: np.ndarray, reference: np.ndarray, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """For each query hash: the Hamming distance to its nearest reference hash, and that one's index."""
    dist = np.empty(len(query), dtype=np.int64)
    index = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), chunk):
        block = np.bitwise_count(query[start : start + chunk, None] ^ reference[None, :])
        index[start : start + chunk] = block.argmin(axis=1)
        dist[start : start + chunk] = block.min(axis=1)
    return dist, index


@dataclass
class SplitAudit:
    exact: np.ndarray  # bool per face: the same pixels as a training face
    near: np.ndarray  # bool per face: within NEAR_DISTANCE of a training face (exact included)
    partner: np.ndarray  # index into the training split of its nearest training face

    @property
    def duplicated(self) -> np.ndarray:
        return self.exact | self.near


@dataclass
class Audit:
    splits: dict[str, SplitAudit] = field(default_factory=dict)
    threshold: int = NEAR_DISTANCE

    def metrics(self) -> dict[str, float]:
        out = {}
        for name, a in self.splits.items():
            out[f"dup_{name}_in_train"] = float(a.exact.sum())
            out[f"dup_{name}_in_train_near"] = float(a.near.sum())
        return out

    def found(self, split: str = "test") -> bool:
        return split in self.splits and bool(self.splits[split].duplicated.any())


def audit(
    train: np.ndarray, evaluated: dict[str, np.ndarray], threshold: int = NEAR_DISTANCE
) -> Audit:
    """Which faces of each evaluated split (name -> images) copy a training face, exactly or nearly."""
    train_exact = {h: i for i, h in enumerate(exact_hashes(train))}
    train_phash = phash(train)
    result = Audit(threshold=threshold)
    for name, images in evaluated.items():
        if len(images) == 0 or len(train) == 0:
            empty = np.zeros(len(images), bool)
            result.splits[name] = SplitAudit(empty, empty, np.zeros(len(images), np.int64))
            continue
        hashes = exact_hashes(images)
        exact = np.array([h in train_exact for h in hashes])
        dist, partner = nearest(phash(images), train_phash)
        partner = np.where(exact, [train_exact.get(h, -1) for h in hashes], partner)
        result.splits[name] = SplitAudit(exact, dist <= threshold, partner)
    return result
