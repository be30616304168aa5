"""IQA correlation metrics, written with numpy (the tests check them against scipy.stats):

* SRCC: Spearman's rank correlation (Pearson correlation of average ranks, so ties count as scipy counts them);
* PLCC: Pearson's linear correlation, raw (the paper, pyiqa's benchmark) or after the VQEG 4-parameter logistic
  fit of predictions to scores (``logistic=True``; the fit uses scipy.optimize.curve_fit). The fit may come out
  increasing or decreasing; the PLCC of the fitted values with the scores is positive either way (the fit follows
  the scores), so it is given the sign of the fit's direction: negative when the scores fall as the predictions
  rise, as SRCC, KRCC and the raw PLCC are (pyiqa drops that sign);
* KRCC: Kendall's tau-b.

All take predictions and ground-truth scores of the same length: at least 3, finite and not all equal. A constant
input has no correlation (scipy gives NaN); here it is refused, naming which side is constant, so that no NaN
reaches a report (`check_values` makes the same check on one side, e.g. on a dataset's scores before any scoring).
"""

from __future__ import annotations

import numpy as np

from ..errors import ZooError

VALUE_FIXES = {"predictions": "the model gives every image the same score; check its weights and input",
              "scores": "score a set of images whose true scores differ (check the score column)"}


def check_values(values, what: str = "scores", fix: str | None = None) -> np.ndarray:
    """``values`` as float64 [N], refused unless a correlation with them is defined: at least 3, all finite, not
    all equal. ``what`` names them in the message (``predictions``, ``scores`` or a dataset's); ``fix`` is the
    advice (default: `VALUE_FIXES` of ``what``)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    fix = fix or VALUE_FIXES.get(what, "check them")
    if v.size < 3:
        raise ZooError(f"correlations need at least 3 images, got {v.size} {what}; score more images")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ZooError(f"{what} contain NaN or inf ({bad.size} of {v.size}, first at position {bad[0]}: "
                       f"{v[bad[0]]}); {fix}")
    if (v == v[0]).all():
        raise ZooError(f"all {v.size} {what} are {v[0]:g}, and a correlation with a constant is undefined; {fix}")
    return v


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    if p.size != t.size:
        raise ZooError(f"{p.size} predictions for {t.size} scores; pass one prediction per score")
    return check_values(p, "predictions"), check_values(t, "scores")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two finite, non-constant vectors; each is centred and scaled by its largest deviation first,
    so that the sums of squares neither overflow nor underflow to 0."""
    a, b = a - a.mean(), b - b.mean()
    a, b = a / np.abs(a).max(), b / np.abs(b).max()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


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
    """Pearson's r of predictions and scores; with ``logistic``, of the `logistic4` fit of the predictions and the
    scores, times the fit's direction (sign(b1 - b2): -1 where the fitted curve decreases), so that a decreasing
    relation gives a negative PLCC here too. That equals the PLCC of the increasing logistic map of the predictions
    (the fitted curve, negated where it decreases) with the scores."""
    p, t = _pair(pred, target)
    if not logistic:
        return _pearson(p, t)
    params = fit_logistic(p, t)
    fitted = check_values(logistic4(p, *params), "logistic-fitted predictions",
                          "the fit is degenerate; report PLCC without --logistic")
    return float(np.sign(params[0] - params[1])) * _pearson(fitted, t)


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
    return float(s / np.sqrt(n_p * n_t))  # both > 0: neither side is constant


def iqa_metrics(pred, target, logistic: bool = False) -> dict[str, float]:
    """{"srcc", "plcc", "krcc"} (and "plcc_logistic" with ``logistic``) of predictions against scores."""
    out = {"srcc": srcc(pred, target), "plcc": plcc(pred, target), "krcc": krcc(pred, target)}
    if logistic:
        out["plcc_logistic"] = plcc(pred, target, logistic=True)
    return out
