"""A richer drum text that keeps velocity and micro-timing, after GrooVAE (Gillick et al. 2019), as an option.

The grid is the paper's (one line per 16th, the same 16-bar window), but each line lists the hits of ten drum
classes with a velocity level and a timing offset instead of six ``o``/``-`` cells::

    K6+0 H3-1      kick at velocity level 6, on the grid; closed hi-hat at level 3, 1/8 of a 16th early
    -              no hit on this 16th

Classes: Magenta's nine ROLAND_DRUM_PITCH_CLASSES (K kick, S snare, H closed hi-hat, O open hi-hat, L low tom,
M mid tom, T high tom, C crash, R ride) with one change: the pedal hi-hat (44), which GrooVAE puts in the closed
hi-hat class, is a class of its own, P. The paper drops 44 while it keeps the closed hi-hat, so only with 44 apart
can `event_lines_to_paper_lines` give exactly the paper's six columns (tested on the Groove MIDI splits). Velocity:
8 levels (level v covers MIDI velocities 16v+1 .. 16v+16, decoded to 16v+8; GrooVAE keeps the loudest onset of a
class on a step). Offset: the onset's distance to its 16th in eighths of a 16th, -4..+4 (15 ticks at 480 per
beat). Bars, ``SEP`` and ``END`` work as in the paper's text, so the same prompt/completion examples, LMs and
decoding apply. A leading bar is stripped when its first quarter note has no hit in the paper's columns
(`paper_silent`: a pedal-only beat counts as empty, as in the paper's text), so an event example has the same
bars, prompt and selection as the paper's example of the same file.
"""

from __future__ import annotations

import re

import numpy as np

from ...errors import ZooError
from .encoding import COLUMNS, HIT, REST, STEPS_PER_BEAT, is_silent, quantised_onsets
from .midi import Onset, Performance

CLASSES = "KSHOLMTCRP"
CLASS_PITCHES = {"K": (36,), "S": (38, 37, 40), "H": (42, 22), "O": (46, 26), "L": (43, 58), "M": (47, 45),
                 "T": (50, 48), "C": (49, 52, 55, 57), "R": (51, 53, 59), "P": (44,)}
PITCH_TO_CLASS = {p: CLASSES.index(c) for c, pitches in CLASS_PITCHES.items() for p in pitches}
# the paper's column of each class; the pedal hi-hat has none (the paper drops pitch 44)
TO_PAPER_COLUMN = {"K": "kick", "S": "snare", "H": "hihat", "O": "hihat", "L": "tom", "M": "tom", "T": "tom",
                   "C": "crash", "R": "ride", "P": None}
VELOCITY_LEVELS = 8
OFFSET_STEPS = 8  # offset resolution: eighths of a 16th
EMPTY = "-"
_HIT = re.compile(rf"([{CLASSES}])([0-7])([+-][0-4])")


def performance_to_events(perf: Performance) -> np.ndarray:
    """[T, 10, 2] int: per 16th and class, the velocity level + 1 (0: no hit) and the offset in eighths of a 16th.

    T is the paper's 16-bar window for the file's x/4 metre; onsets past it are ignored (`quantised_onsets`).
    """
    steps, onsets = quantised_onsets(perf)
    events = np.zeros((steps, len(CLASSES), 2), dtype=np.int64)
    loudest = np.zeros((steps, len(CLASSES)), dtype=np.int64)
    for index, position, o in onsets:
        cls = PITCH_TO_CLASS.get(o.pitch)
        if cls is None or o.velocity <= loudest[index, cls]:
            continue
        loudest[index, cls] = o.velocity
        offset = int(np.clip(np.round((position - index) * OFFSET_STEPS), -OFFSET_STEPS // 2, OFFSET_STEPS // 2))
        events[index, cls] = (min(VELOCITY_LEVELS - 1, (o.velocity - 1) // 16) + 1, offset)
    return events


def events_to_lines(events: np.ndarray) -> list[str]:
    """[T, 10, 2] -> T lines such as ``K6+0 H3-1`` (``-`` for an empty step)."""
    lines = []
    for step in events:
        hits = [f"{CLASSES[c]}{level - 1}{offset:+d}" for c, (level, offset) in enumerate(step) if level]
        lines.append(" ".join(hits) if hits else EMPTY)
    return lines


def is_event_line(line: str) -> bool:
    """Whether a line is ``-`` or space-separated hits such as ``K6+0`` (class, velocity level, offset)."""
    return line == EMPTY or all(_HIT.fullmatch(token) for token in line.split(" "))


def lines_to_events(lines: list[str], strict: bool = True) -> np.ndarray:
    """T event lines -> [T, 10, 2]. A line that is neither ``-`` nor space-separated hits is a `ZooError`, or with
    ``strict=False`` (generated text) a silent step."""
    events = np.zeros((len(lines), len(CLASSES), 2), dtype=np.int64)
    for i, line in enumerate(lines):
        if line == EMPTY:
            continue
        if not is_event_line(line):
            if strict:
                raise ZooError(f"line {i + 1} {line!r} is not '-' or hits like 'K6+0' (class {CLASSES}, velocity "
                               f"level 0-7, offset -4..+4)")
            continue
        for m in map(_HIT.fullmatch, line.split(" ")):
            events[i, CLASSES.index(m[1])] = (int(m[2]) + 1, int(m[3]))
    return events


def events_to_onsets(events: np.ndarray, ticks_per_beat: int = 480) -> list[Onset]:
    """[T, 10, 2] -> onsets at the decoded velocity and micro-timing, each class on its first pitch."""
    step_ticks = ticks_per_beat // STEPS_PER_BEAT
    onsets = []
    for t, c in zip(*np.nonzero(events[:, :, 0])):
        level, offset = events[t, c]
        tick = max(0, round((t + offset / OFFSET_STEPS) * step_ticks))
        onsets.append(Onset(tick, CLASS_PITCHES[CLASSES[c]][0], 16 * int(level - 1) + 8))
    return sorted(onsets, key=lambda o: o.tick)


def event_lines_to_paper_lines(lines: list[str]) -> list[str]:
    """Event lines -> the paper's six-column lines (hits only; pedal hi-hat hits are dropped, as the paper drops
    pitch 44); malformed lines pass through unchanged, as the structural metrics read raw text."""
    out = []
    for line in lines:
        step = lines_to_events([line], strict=False)[0]
        if line != EMPTY and not step[:, 0].any():
            out.append(line)
            continue
        cells = [REST] * len(COLUMNS)
        for c in np.nonzero(step[:, 0])[0]:
            if (column := TO_PAPER_COLUMN[CLASSES[c]]) is not None:
                cells[COLUMNS.index(column)] = HIT
        out.append("".join(cells))
    return out


def paper_silent(line: str) -> bool:
    """Whether an event line has no hit in the paper's six columns (``-``, or pedal hi-hat only): the emptiness
    test of leading-empty-bar stripping, so event examples keep the paper's bars."""
    return is_silent(event_lines_to_paper_lines([line])[0])
