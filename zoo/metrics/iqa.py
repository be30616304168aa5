"""IQA correlation metrics, written with numpy (the tests check them against scipy.stats):

* SRCC: Spearman's rank correlation (Pearson correlation of average ranks, so ties count as scipy counts them);
* PLCC: Pearson's linear correlation, raw (the paper, pyiqa's benchmark) or after the VQEG 4-parameter logistic
  fit of predictions to scores (``logistic=True``; the fit uses scipy.optimize.curve_fit);
* KRCC: Kendall's tau-b.

All take predictions and ground-truth scores of the same length (at least 3, finite). A constant input has no
correlation and gives NaN, as scipy does.
"""

from __future__ import annotations

import numpy as np

from ..errors import ZooError


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    if p.size != t.size:
        raise ZooError(f"{p.size} predictions for {t.size} scores; pass one prediction per score")
    if p.size < 3:
        raise ZooError(f"correlations need at least 3 images, got {p.size}; score more images")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ZooError("predictions or scores contain NaN or inf; check the model output and the score column")
    return p, t


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of ``x``; tied values share the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def srcc(pred, target) -> float:
    p, t = _pair(pred, target)
    return _pearson(rankdata(p), rankdata(t))


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def fit_logistic(pred, target) -> np.ndarray:
    """Parameters (b1, b2, b3, b4) of `logistic4` mapping predictions to scores (least squares)."""
    from ..errors import require

    optimize = require("scipy.optimize", "iqa", package="scipy")
    p, t = _pair(pred, target)
    init = [t.max(), t.min(), p.mean(), max(p.std(), 1e-6)]
    try:
        params, _ = optimize.curve_fit(logistic4, p, t, p0=init, maxfev=20000)
    except RuntimeError as exc:
        raise ZooError(f"the logistic fit did not converge ({exc}); report PLCC without --logistic") from None
    return params


def plcc(pred, target, logistic: bool = False) -> float:
    p, t = _pair(pred, target)
    if logistic:
        p = logistic4(p, *fit_logistic(p, t))
    return _pearson(p, t)


def krcc(pred, target) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_pred) (n0 - ties_target)), O(n^2) in chunks."""
    p, t = _pair(pred, target)
    n = p.size
    s = n_p = n_t = 0.0
    for start in range(0, n, 1024):
        i = np.arange(start, min(start + 1024, n))[:, None]
        upper = np.arange(n)[None, :] > i  # each unordered pair once
        dp, dt = np.sign(p[i] - p[None, :]), np.sign(t[i] - t[None, :])
        s += float((dp * dt * upper).sum())
        n_p += float(((dp != 0) & upper).sum())
        n_t += float(((dt != 0) & upper).sum())
    denom = np.sqrt(n_p * n_t)
    return float(s / denom) if denom > 0 else float("nan")


def iqa_metrics(pred, target, logistic: bool = False) -> dict[str, float]:
    """{"srcc", "plcc", "krcc"} (and "plcc_logistic" with ``logistic``) of predictions against scores."""
    out = {"srcc": srcc(pred, target), "plcc": plcc(pred, target), "krcc": krcc(pred, target)}
    if logistic:
        out["plcc_logistic"] = plcc(pred, target, logistic=True)
    return out
