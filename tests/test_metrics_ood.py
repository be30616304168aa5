"""OOD metrics against scikit-learn, including tied scores."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from zoo.errors import ZooError
from zoo.metrics.ood import (aupr_in, aupr_out, auroc, average_precision, fpr_at_tpr, ood_metrics,
                             trapezoid_precision_recall_area)


def _sets(seed, ties):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(1.0, 1.0, 1500), rng.normal(0.0, 1.0, 900)
    return (np.round(a, 1), np.round(b, 1)) if ties else (a, b)


@pytest.mark.parametrize("seed, ties", [(0, False), (1, False), (2, True), (3, True)])
def test_against_sklearn(seed, ties):
    a, b = _sets(seed, ties)
    y, s = np.r_[np.ones(a.size), np.zeros(b.size)], np.r_[a, b]
    assert auroc(a, b) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr_in(a, b) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert aupr_out(a, b) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)  # ID positive: FPR at the first threshold reaching 95 % TPR
    assert fpr_at_tpr(a, b) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)], abs=1e-12)
    fpr, tpr, _ = roc_curve(1 - y, -s)  # OpenOOD v1.5: OOD positive
    assert fpr_at_tpr(a, b, positive="ood") == pytest.approx(fpr[np.searchsorted(tpr, 0.95)], abs=1e-12)


def test_paper_threshold_rule():
    """The knn-ood repo: threshold = ID scores sorted ascending at index round(0.05 n); FPR = share of OOD above."""
    a, b = _sets(4, False)
    threshold = np.sort(a)[round(0.05 * a.size)]
    assert fpr_at_tpr(a, b) == pytest.approx(np.mean(b > threshold), abs=1 / b.size)


def test_threshold_rule_where_ceil_and_the_authors_round_differ():
    """n = 11 ID scores: ceil(0.95 n) - 1 = 10 (descending), i.e. the lowest ID score, keeps 11/11 >= 95 %; the
    authors' known[round(0.05 n)] = known[1] (ascending) with OOD > t would keep 9/11 and give 1/5 here."""
    a, b = np.arange(1.0, 12.0), np.array([0.5, 1.0, 1.5, 2.0, 3.0])
    assert fpr_at_tpr(a, b) == 4 / 5  # OOD >= 1
    assert np.mean(b > np.sort(a)[round(0.05 * a.size)]) == 1 / 5


def test_perfect_and_bad_inputs():
    m = ood_metrics([2, 3, 4], [0, 1])
    assert m == {"fpr95": 0.0, "auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0}
    with pytest.raises(ZooError, match="NaN"):
        auroc([1, np.nan], [0])
    with pytest.raises(ZooError, match="at least one ID and one OOD score, got 0 ID and 1 OOD"):
        auroc([], [0])


def test_trapezoid_area_by_hand():
    """Positives [3, 1], negative [2]: points (recall, precision) (0, 0) start, (1/2, 1), (1/2, 1/2), (1, 2/3);
    trapezoids 1/4 + 0 + 7/24 = 13/24, where the step-wise sum is 1/2 * 1 + 1/2 * 2/3 = 5/6."""
    assert trapezoid_precision_recall_area([3, 1], [2]) == pytest.approx(13 / 24, abs=1e-15)
    assert average_precision([3, 1], [2]) == pytest.approx(5 / 6, abs=1e-15)


def test_trapezoid_area_perfect_separation_and_ties():
    """n positives all above the negatives: the first point is (1/n, 1), so the (0, 0) start costs 1 / (2n). All
    scores tied: one segment from (0, 0) to (1, share of positives), half of the step-wise area."""
    for n in (1, 4, 50):
        assert trapezoid_precision_recall_area(np.arange(n) + 10.0, [0.0, 1.0]) == pytest.approx(1 - 1 / (2 * n))
    assert trapezoid_precision_recall_area([1, 1, 1], [1]) == pytest.approx(3 / 8)
    assert average_precision([1, 1, 1], [1]) == pytest.approx(3 / 4)


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_is_the_trapezoid_area_under_the_roc_points(ties):
    """The knn-ood authors' AUROC integrates the ROC's points at distinct thresholds (tied scores enter together)
    with the trapezoid rule; that area gives a tied (ID, OOD) pair half credit, as the Mann-Whitney count does."""
    a, b = _sets(5, ties)
    thresholds = np.unique(np.r_[a, b])[::-1]
    tpr = np.r_[0.0, [(a >= t).mean() for t in thresholds]]
    fpr = np.r_[0.0, [(b >= t).mean() for t in thresholds]]
    assert auroc(a, b) == pytest.approx(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2), abs=1e-12)
