"""The paper's drum text ("drumroll"): one line per 16th note, six columns, ``o`` for a hit, ``-`` for silence.

MIDI -> text (`performance_to_grid`, `grid_to_lines`):

* Columns, in this order: crash, ride, snare, kick, hi-hat, tom. Pitches merge into them as in the authors'
  ``midi_to_text.py``: snare <- 38, 40 (rim), 37 (cross-stick); ride <- 51, 53 (bell), 59 (edge); crash <- 49, 57,
  55, 52; hi-hat <- 42, 46 (open), 22, 26 (open and closed merged); tom <- 50, 48, 47, 45, 43, 58; kick <- 36.
  Every other pitch (44 pedal hi-hat, 39, 54, 56, ...) is dropped.
* Each onset goes to the nearest 16th (a +-1/32-note window, ties rounding up); the window is 16 bars of the
  file's x/4 metre (``16 * numerator * 4`` lines: 256 for 4/4) and onsets past it are ignored (the authors stop
  parsing there, which is the same thing because onsets come in time order). Velocity and micro-timing are lost.

Text -> training example (`make_example`), as the authors' ``text_to_data.py``:

* While the first quarter note (4 lines) is empty, drop a 16-line bar (leading-empty-bar stripping).
* Keep the example only if more than 128 lines (8 bars) remain.
* prompt = the first 2 bars (32 lines) with a ``SEP`` line after each bar; completion = the remaining lines with
  ``SEP`` between bars and ``END`` after the last line.

The paper's "bar" is always 16 lines, also for 3/4 and 5/4 grooves (5 of the 456 examples); `BAR_LINES` keeps
that so the text, the counts and the structural numbers match the paper.

Text -> MIDI (`lines_to_onsets`): every hit at velocity 100, 120 ticks per 16th (480 per beat), 120 bpm, drum
channel, the column's first pitch (49, 51, 38, 36, 42, 50).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...errors import ZooError
from .midi import Onset, Performance

ENCODINGS = ("paper", "events")  # this module's text, and `zoo.models.drums.events`' velocity/timing text
COLUMNS = ("crash", "ride", "snare", "kick", "hihat", "tom")
COLUMN_PITCHES = {
    "crash": (49, 57, 55, 52),
    "ride": (51, 53, 59),
    "snare": (38, 40, 37),
    "kick": (36,),
    "hihat": (42, 46, 22, 26),
    "tom": (50, 48, 47, 45, 43, 58),
}
PITCH_TO_COLUMN = {p: COLUMNS.index(c) for c, pitches in COLUMN_PITCHES.items() for p in pitches}
HIT, REST = "o", "-"
SEP, END = "SEP", "END"
STEPS_PER_BEAT = 4
WINDOW_BARS = 16
BAR_LINES = 16
PROMPT_BARS = 2
MIN_LINES = 128  # an example needs more than this many lines (8 bars) after stripping
VELOCITY = 100
TICKS_PER_STEP = 120  # at 480 ticks per beat


def window_lines(numerator: int) -> int:
    """Lines of the 16-bar window for an x/4 metre: 256 for 4/4, 192 for 3/4."""
    return WINDOW_BARS * numerator * STEPS_PER_BEAT


def quantised_onsets(perf: Performance) -> tuple[int, list[tuple[int, float, Onset]]]:
    """The onsets of a performance on the paper's grid: (T, [(16th index, position in 16ths, onset), ...]).

    T = `window_lines` of the metre; each onset goes to the nearest 16th (ties round up) and the onsets from the
    first one past the window on are left out (they come in time order). The position keeps the micro-timing.

    Raises:
        ZooError: the metre is not x/4 (the paper keeps only x/4 grooves).
    """
    num, den = perf.time_signature
    if den != 4:
        raise ZooError(f"{perf.source}: time signature {num}/{den} is not x/4; the drum text encodes x/4 metres only")
    steps = window_lines(num)
    step_ticks = perf.ticks_per_beat / STEPS_PER_BEAT
    out = []
    for o in perf.onsets:
        position = o.tick / step_ticks
        index = int(np.floor(position + 0.5))
        if index >= steps:
            break
        out.append((index, position, o))
    return steps, out


def performance_to_grid(perf: Performance) -> np.ndarray:
    """The paper's quantised window of a performance.

    Returns:
        bool array [window_lines(numerator), 6]: True where a column has a hit on that 16th.

    Raises:
        ZooError: the metre is not x/4 (the paper keeps only x/4 grooves).
    """
    steps, onsets = quantised_onsets(perf)
    grid = np.zeros((steps, len(COLUMNS)), dtype=bool)
    for index, _, o in onsets:
        column = PITCH_TO_COLUMN.get(o.pitch)
        if column is not None:
            grid[index, column] = True
    return grid


def grid_to_lines(grid: np.ndarray) -> list[str]:
    """bool [T, 6] -> T lines of six ``o``/``-`` characters."""
    return ["".join(HIT if hit else REST for hit in row) for row in grid]


def lines_to_grid(lines: list[str]) -> np.ndarray:
    """T drum lines -> bool [T, 6]. A malformed line (not six ``o``/``-`` characters) is a silent step, as in
    `lines_to_onsets`."""
    return np.array([[c == HIT for c in line] if is_drum_line(line) else [False] * len(COLUMNS) for line in lines],
                    dtype=bool).reshape(len(lines), len(COLUMNS))


def is_drum_line(line: str) -> bool:
    return len(line) == len(COLUMNS) and set(line) <= {HIT, REST}


def is_silent(line: str) -> bool:
    """A paper line without a hit (``------``)."""
    return line == REST * len(COLUMNS)


def strip_leading_empty_bars(lines: list[str], silent: Callable[[str], bool] = is_silent) -> list[str]:
    """Drop 16-line bars from the front while the first quarter note (4 lines) has no hit (``silent`` lines)."""
    while len(lines) >= STEPS_PER_BEAT and all(silent(line) for line in lines[:STEPS_PER_BEAT]):
        lines = lines[BAR_LINES:]
    return lines


def with_separators(lines: list[str]) -> list[str]:
    """Insert a ``SEP`` line after every complete 16-line bar."""
    out = []
    for i, line in enumerate(lines, 1):
        out.append(line)
        if i % BAR_LINES == 0:
            out.append(SEP)
    return out


@dataclass(frozen=True)
class Example:
    """One prompt-completion pair.

    Attributes:
        name: the groove's name (``<drummer>_<file stem>`` for Groove MIDI files, as the authors name them).
        prompt: the first two bars, each line ending in a newline, a ``SEP`` line after each bar.
        completion: the remaining bars, ``SEP`` lines between bars, ``END`` last (no trailing newline).
        numerator: beats per bar of the source (the 16-line bars are the paper's, whatever the metre).
        window: the 16-bar window before leading-empty-bar stripping, newline-joined ("" when unknown, e.g. for
            examples read from prompt-completion files).
    """

    name: str
    prompt: str
    completion: str
    numerator: int = 4
    window: str = ""

    @property
    def lines(self) -> list[str]:
        """The whole groove as drum lines: prompt then completion, without ``SEP`` and ``END``."""
        return groove_lines(self.prompt + self.completion)

    @property
    def human_lines(self) -> list[str]:
        """The human groove as the paper's analysis reads it: the unstripped 16-bar window when known (10 of the
        37 test grooves start with empty bars), else `lines`."""
        return self.window.split("\n") if self.window else self.lines


def make_example(name: str, lines: list[str], numerator: int = 4,
                 silent: Callable[[str], bool] = is_silent) -> Example | None:
    """The paper's example from the window's lines, or None when 8 bars or fewer remain after stripping.
    ``silent`` tells a line without a hit (the event encoding's: `paper_silent`)."""
    window, lines = lines, strip_leading_empty_bars(lines, silent)
    if len(lines) <= MIN_LINES:
        return None
    prompt_lines = PROMPT_BARS * BAR_LINES
    prompt = "".join(f"{line}\n" for line in with_separators(lines[:prompt_lines]))
    rest = with_separators(lines[prompt_lines:])
    if rest and rest[-1] == SEP:
        rest = rest[:-1]
    completion = "".join(f"{line}\n" for line in rest) + END
    return Example(name, prompt, completion, numerator, "\n".join(window))


def groove_lines(text: str) -> list[str]:
    """The drum lines of a generated or stored groove text: ``SEP`` lines removed, everything from ``END`` on
    dropped, blank lines skipped. Malformed lines are kept as they are (the structural metrics see the raw
    text, as the paper's); `lines_to_onsets` treats them as silent steps."""
    text = text.split(END, 1)[0]
    return [line for line in text.split("\n") if line and line != SEP]


def lines_to_onsets(lines: list[str]) -> list[Onset]:
    """Drum lines -> onsets at velocity 100, one 16th (120 ticks at 480 per beat) per line. A malformed line
    (not six ``o``/``-`` characters) is a silent step, so the timing of what follows is kept."""
    pitches = [COLUMN_PITCHES[c][0] for c in COLUMNS]
    onsets = []
    for step, line in enumerate(lines):
        if not is_drum_line(line):
            continue
        onsets.extend(Onset(step * TICKS_PER_STEP, pitches[i], VELOCITY) for i, c in enumerate(line) if c == HIT)
    return onsets
