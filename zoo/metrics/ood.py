"""OOD detection metrics. Scores follow one convention everywhere: higher means more in-distribution (ID).

FPR at 95 % TPR uses the kNN-OOD paper's convention by default: ID is the positive class, the threshold keeps
at least 95 % of ID test samples (`fpr_at_tpr` gives the exact rule and how the authors' code differs), and FPR
is the share of OOD samples that pass it. OpenOOD v1.5 instead treats OOD as positive (threshold at 95 % OOD
recall, FPR = share of ID flagged); ``positive="ood"`` gives that number. AUROC does not depend on the convention.
"""

from __future__ import annotations

import numpy as np

from ..errors import ZooError


def _as_arrays(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(id_scores, dtype=np.float64).ravel()
    b = np.asarray(ood_scores, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ZooError(f"OOD metrics need at least one ID and one OOD score, got {a.size} ID and {b.size} OOD; "
                       f"score a non-empty ID test set and OOD set")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ZooError("OOD scores contain NaN or inf; check the model's features and logits (rerun with "
                       "--precision 32 if it ran in reduced precision)")
    return a, b


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95, positive: str = "id") -> float:
    """False-positive rate at the threshold where the positive class reaches ``tpr`` recall.

    ``positive="id"`` (paper): threshold t = largest value with share(ID >= t) >= tpr, i.e. the ID scores sorted
    in descending order at index ceil(tpr n) - 1 (ascending: index floor((1 - tpr) n)); returns share(OOD >= t).
    ``positive="ood"`` (OpenOOD v1.5): the same with the roles and the score sign swapped.

    This keeps at least ``tpr`` of the ID scores. The kNN-OOD authors' ``util/metrics.py`` takes t = the ID scores
    sorted ascending at index ``round(0.05 n)`` (Python's round) and counts OOD > t. Both agree where 0.05 n rounds
    down (n = 10 000, CIFAR's test set) and no OOD score equals t; for n = 11 the authors' t is the second-lowest
    ID score (TPR 9/11), this one the lowest (TPR 11/11).
    """
    a, b = _as_arrays(id_scores, ood_scores)
    if positive == "ood":
        a, b = -b, -a
    elif positive != "id":
        raise ZooError(f"positive must be 'id' or 'ood', got {positive!r}")
    t = np.sort(a)[::-1][int(np.ceil(tpr * a.size)) - 1]
    return float(np.mean(b >= t))


def auroc(id_scores, ood_scores) -> float:
    """Area under the ROC curve, ID positive: P(score_ID > score_OOD) + 0.5 P(tie) (Mann-Whitney U)."""
    a, b = _as_arrays(id_scores, ood_scores)
    _, inverse, counts = np.unique(np.concatenate([a, b]), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based ranks, ties averaged
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * b.size))


def _precision_recall(pos_scores, neg_scores) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall [T] at each of the T distinct thresholds t of the scores [N_pos] and [N_neg] together,
    highest first (predicted positive = score >= t)."""
    a, b = _as_arrays(pos_scores, neg_scores)
    scores = np.concatenate([a, b])
    labels = np.concatenate([np.ones(a.size), np.zeros(b.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # tied scores enter together
    tp = np.cumsum(labels)[last_of_run]
    return tp / (last_of_run + 1), tp / a.size


def average_precision(pos_scores, neg_scores) -> float:
    """Area under the precision-recall curve of positives' scores [N_pos] against negatives' [N_neg] (higher =
    positive), as the step-wise sum over distinct thresholds (scikit-learn's average precision)."""
    precision, recall = _precision_recall(pos_scores, neg_scores)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def trapezoid_precision_recall_area(pos_scores, neg_scores) -> float:
    """Area under the precision-recall curve of positives' scores [N_pos] against negatives' [N_neg] (higher =
    positive) by the trapezoid rule, the kNN-OOD authors' AUIN / AUOUT rule.

    The curve has one point per distinct threshold (as `average_precision`'s) and starts at (recall 0,
    precision 0); consecutive points are joined by straight lines. The authors' ``util/metrics.py`` builds the
    same curve (its other pinned end, precision 0.5 at recall 1, adds no area) and integrates it with
    ``np.trapz``. Where the highest-scored samples are positive, the segment from the (0, 0) start gives less
    area than `average_precision`'s step-wise sum, which holds precision flat down to recall 0; a run of tied
    scores is one straight segment instead of one step.
    """
    precision, recall = _precision_recall(pos_scores, neg_scores)
    precision, recall = np.r_[0.0, precision], np.r_[0.0, recall]
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2.0))


def aupr_in(id_scores, ood_scores) -> float:
    """Average precision with ID as the positive class (higher score = ID)."""
    return average_precision(id_scores, ood_scores)


def aupr_out(id_scores, ood_scores) -> float:
    """Average precision with OOD as the positive class (negated scores)."""
    a, b = _as_arrays(id_scores, ood_scores)
    return average_precision(-b, -a)


def ood_metrics(id_scores, ood_scores) -> dict[str, float]:
    """``{"fpr95", "auroc", "aupr_in", "aupr_out"}`` as fractions in [0, 1] (paper convention for FPR)."""
    return {
        "fpr95": fpr_at_tpr(id_scores, ood_scores),
        "auroc": auroc(id_scores, ood_scores),
        "aupr_in": aupr_in(id_scores, ood_scores),
        "aupr_out": aupr_out(id_scores, ood_scores),
    }
