"""Piano-roll and stability figures for the drums evaluation, written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...io import atomic_path
from .encoding import BAR_LINES, COLUMNS, lines_to_grid


def piano_roll(panels: dict[str, list[str]], path: Path, title: str, prompt_lines: int = 32) -> Path:
    """One row of hits per drum column for each panel (e.g. human and generated), bars marked, prompt shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = max(len(v) for v in panels.values())
    fig, axes = plt.subplots(len(panels), 1, figsize=(min(22, 2 + steps / 14), 1.3 + 1.1 * len(panels)),
                             squeeze=False, sharex=True)
    for ax, (label, lines) in zip(axes[:, 0], panels.items()):
        g = lines_to_grid(lines)
        t, c = np.nonzero(g)
        ax.axvspan(-0.5, prompt_lines - 0.5, color="0.92", zorder=0)
        ax.scatter(t, c, marker="s", s=9, color="tab:blue", zorder=2)
        for b in range(0, steps + 1, BAR_LINES):
            ax.axvline(b - 0.5, color="0.75", lw=0.6, zorder=1)
        ax.set_yticks(range(len(COLUMNS)), COLUMNS, fontsize=7)
        ax.set_ylim(-0.7, len(COLUMNS) - 0.3)
        ax.set_ylabel(label, fontsize=8)
    axes[0, 0].set_title(f"{title} (grey: the 2-bar prompt; lines: 16-step bars)", fontsize=9)
    axes[-1, 0].set_xlim(-1, steps)
    axes[-1, 0].set_xlabel("16th-note step")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def stability_figure(curves: dict[str, list[list[int]]], path: Path) -> Path:
    """Mean stability per bar position (2..15) of each system, with the spread over grooves (25-75 %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for label, per_groove in curves.items():
        width = max((len(s) for s in per_groove), default=0)
        if not width:
            continue
        m = np.full((len(per_groove), width), np.nan)
        for i, s in enumerate(per_groove):
            m[i, : len(s)] = s
        x = np.arange(2, width + 2)
        ax.plot(x, np.nanmean(m, 0), "-o", ms=3, label=label)
        ax.fill_between(x, np.nanpercentile(m, 25, 0), np.nanpercentile(m, 75, 0), alpha=0.15)
    ax.set_xlabel("bar")
    ax.set_ylabel("stability (edit distance to nearer neighbour bar)")
    ax.set_ylim(0, 50)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
