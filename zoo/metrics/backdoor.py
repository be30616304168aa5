"""Backdoor metrics: clean test accuracy (CTA) and attack success rate (ASR).

ASR is the share of triggered test images classified as the target class. The usual definition leaves out test
images whose true class *is* the target (they would count as successes without any backdoor); DOORPING's code
keeps them. Both are reported: `attack_success_rate(..., include_target=False)` is the usual one.
"""

from __future__ import annotations

import numpy as np

from ..errors import ZooError


def clean_accuracy(pred, labels) -> float:
    """Share of ``pred`` [N] equal to ``labels`` [N]."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape or pred.size == 0:
        raise ZooError(f"predictions {pred.shape} and labels {labels.shape} must be non-empty and the same shape")
    return float((pred == labels).mean())


def attack_success_rate(pred_triggered, labels, target: int, include_target: bool = False) -> float:
    """Share of triggered images predicted as ``target``.

    Args:
        pred_triggered: [N] predictions on triggered test images.
        labels: [N] their true classes.
        target: the backdoor's target class.
        include_target: also count images whose true class is ``target`` (DOORPING's code does).
    """
    pred, labels = np.asarray(pred_triggered), np.asarray(labels)
    if pred.shape != labels.shape or pred.size == 0:
        raise ZooError(f"predictions {pred.shape} and labels {labels.shape} must be non-empty and the same shape")
    keep = np.ones_like(labels, dtype=bool) if include_target else labels != target
    if not keep.any():
        raise ZooError(f"every test image is of the target class {target}; ASR without them is undefined")
    return float((pred[keep] == target).mean())
