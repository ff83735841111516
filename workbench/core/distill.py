"""Training targets for knowledge distillation: each face's label blended with a teacher's
probabilities for it (Hinton et al. 2015), softened by a temperature."""

from __future__ import annotations

import numpy as np

from workbench import NUM_CLASSES
from workbench.core.settings import DistillConfig


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T), renormalised: softmax(logits / T) for the logits behind `probs`."""
    logp = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def soft_targets(labels: np.ndarray, teacher: np.ndarray, distill: DistillConfig) -> np.ndarray:
    """(N, 7) float32 rows summing to 1: `weight` of the softened teacher, the rest the label."""
    onehot = np.eye(NUM_CLASSES)[labels]
    blend = distill.weight * soften(teacher, distill.temperature) + (1 - distill.weight) * onehot
    return blend.astype(np.float32)
