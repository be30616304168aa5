"""The structural evaluation of "Language Models are Drummers" (the authors' ``analysis.py`` and
``duplication_analysis.py``), on grooves given as lists of drum-text lines.

* **Stability** of bar i (i = 2..15 of the first 16 bars; bars are 16 lines): the smaller Levenshtein distance
  between its text and the text of the bar before or after it. A bar's text is built as the authors build it:
  its lines, each with its newline, joined by newlines. 0 means the bar repeats a neighbour exactly.
* **Mean stability**: the mean over all interior bars of all grooves (pooled, as the paper).
* **Two-cluster statistics** per groove, then averaged over grooves: the gap between the two centres of a
  2-means clustering of its stabilities, and the mean absolute distance of each value to its own centre. The
  authors call these ``intra`` and ``inter``; the names here say what they are. The 1-D 2-means is solved
  exactly (best split of the sorted values), where the authors ran scikit-learn's Lloyd iterations.
* **Baselines**: ``random`` (each cell ``o`` or ``-`` with probability 1/2, 256 lines, seed 29) and ``repeat``
  (bar 1, then bar 2 fifteen times).
* **Duplication** (`copied_bar_fractions`): the share of the non-empty bars after the 2-bar prompt that occur
  verbatim among the training set's bars (the authors' script built its inventory from the test split, which its
  own axis label contradicts).
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np

BAR_LINES = 16
MAX_BARS = 16
PROMPT_BARS = 2


def levenshtein(a: str, b: str) -> int:
    """Edit distance (unit-cost insertions, deletions, substitutions), one numpy row at a time.

    A row of the dynamic programme is ``min(deletion, substitution)`` followed by the insertion chain
    ``d[j] = min(d[j], d[j-1] + 1)``, which is ``j + cummin(d[k] - k)``.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    codes = np.array([ord(c) for c in b])
    ramp = np.arange(len(b) + 1)
    prev = ramp.copy()
    for i, ca in enumerate(a, 1):
        cost = (codes != ord(ca)).astype(np.int64)
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[1:] + 1, prev[:-1] + cost)
        prev = np.minimum.accumulate(cur - ramp) + ramp
    return int(prev[-1])


def bar_texts(lines: list[str], max_bars: int = MAX_BARS) -> list[str]:
    """The first ``max_bars`` 16-line bars, each as the authors' string (lines with newlines, newline-joined)."""
    return ["\n".join(f"{line}\n" for line in lines[i:i + BAR_LINES])
            for i in range(0, len(lines), BAR_LINES)][:max_bars]


def stabilities(lines: list[str]) -> list[int]:
    """Stability of every interior bar of the first 16 (14 values for a 16-bar groove)."""
    bars = bar_texts(lines)
    return [min(levenshtein(bars[i], bars[i - 1]), levenshtein(bars[i], bars[i + 1]))
            for i in range(1, len(bars) - 1)]


def two_means(values) -> tuple[float, float]:
    """Exact 2-means of 1-D values: (|centre gap|, mean absolute distance to the own centre).

    The optimal 1-D clustering splits the sorted values in two; every split is tried and the one with the least
    within-cluster sum of squares wins. Values that are all equal give (0, 0).
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size < 2:
        raise ValueError("two_means needs at least two values")
    best = None
    for k in range(1, x.size):
        lo, hi = x[:k], x[k:]
        sse = ((lo - lo.mean()) ** 2).sum() + ((hi - hi.mean()) ** 2).sum()
        if best is None or sse < best[0] - 1e-12:
            best = (sse, lo, hi)
    _, lo, hi = best
    gap = abs(hi.mean() - lo.mean())
    dev = (np.abs(lo - lo.mean()).sum() + np.abs(hi - hi.mean()).sum()) / x.size
    return float(gap), float(dev)


def structure_stats(grooves: list[list[str]]) -> dict:
    """``{"mean_stability", "centre_gap", "within_dev", "n_grooves", "n_short"}`` of a set of grooves.

    Grooves with fewer than two interior bars (under 4 bars of text) add their stabilities to the mean but
    cannot be clustered; they are counted in ``n_short`` and left out of the two-cluster averages.
    """
    pooled, gaps, devs, short = [], [], [], 0
    for lines in grooves:
        s = stabilities(lines)
        pooled += s
        if len(s) < 2:
            short += 1
            continue
        gap, dev = two_means(s)
        gaps.append(gap)
        devs.append(dev)
    nan = float("nan")
    return {"mean_stability": float(np.mean(pooled)) if pooled else nan,
            "centre_gap": float(np.mean(gaps)) if gaps else nan,
            "within_dev": float(np.mean(devs)) if devs else nan,
            "n_grooves": len(grooves), "n_short": short}


def random_grooves(n: int, seed: int = 29, lines: int = 256, columns: int = 6) -> list[list[str]]:
    """The paper's random baseline: ``n`` grooves of uniformly random cells, drawn in sequence from one seeded
    Python ``random.Random`` (as the authors' ``random.seed(29)`` and ``random.choice``)."""
    rng = random.Random(seed)
    return [["".join(rng.choice("-o") for _ in range(columns)) for _ in range(lines)] for _ in range(n)]


def repeat_groove(lines: list[str]) -> list[str]:
    """The paper's repeat baseline: bar 1, then bar 2 fifteen times."""
    return lines[:BAR_LINES] + lines[BAR_LINES:2 * BAR_LINES] * (MAX_BARS - 1)


def bar_inventory(grooves: list[list[str]]) -> Counter:
    """How often each 16-line bar (as newline-joined text) occurs in ``grooves``."""
    return Counter("\n".join(g[i:i + BAR_LINES]) for g in grooves for i in range(0, len(g), BAR_LINES))


def copied_bar_fraction(grooves: list[list[str]], inventory: Counter, skip_bars: int = 0) -> float:
    """Share of the non-empty bars of ``grooves`` (after the first ``skip_bars``, e.g. the prompt) that occur
    verbatim in ``inventory``. Empty bars (no ``o``) are left out, as the authors do."""
    bars = ["\n".join(g[i:i + BAR_LINES]) for g in grooves
            for i in range(skip_bars * BAR_LINES, len(g), BAR_LINES)]
    bars = [b for b in bars if "o" in b]
    return float(np.mean([b in inventory for b in bars])) if bars else float("nan")


def copied_bar_fractions(train: list[list[str]], continued: dict[str, list[list[str]]]) -> dict[str, float]:
    """The duplication analysis: per system, `copied_bar_fraction` of its grooves after the 2-bar prompt against
    the bars of the training grooves.

    Args:
        train: the training examples as the model was trained on them, prompt + completion (``Example.lines``:
            after leading-empty-bar stripping). Not the unstripped 16-bar windows: the leading bars that stripping
            drops are in no prompt or completion, so a bar found only there was not copied from the training text
            (the question the paper's analysis asks, "occurrences in training").
        continued: system -> grooves that begin with the 2-bar prompt: prompt + generated lines, and for the human
            drummers prompt + completion (``Example.lines``), not the unstripped window the stability reads, whose
            first two bars are not the prompt when a leading bar was stripped.
    """
    inventory = bar_inventory(train)
    return {system: copied_bar_fraction(g, inventory, skip_bars=PROMPT_BARS) for system, g in continued.items()}
