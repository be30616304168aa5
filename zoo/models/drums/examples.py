"""Groove MIDI examples with the paper's selection (Lightning-free; the DataModule that feeds them to a causal LM is
`zoo.models.drums.data`).

The selection (the authors' ``compile_midi.py``, ``split_data.py``, ``midi_to_text.py``, ``text_to_data.py``):
``beat`` performances (fills excluded) from ``drummerN/session1..3`` (``eval_session`` excluded), in the official
``info.csv`` split, in an x/4 metre, with more than 8 bars left after leading-empty-bar stripping. On Groove MIDI
v1.0.0 that gives 378 / 48 / 37 files, 373 / 47 / 37 in x/4 and 372 / 47 / 37 examples (train / validation / test).

`open_examples` also reads the paper's own prompt-completion files (``gpt3_train.jsonl`` style: one JSON object
per line with ``prompt``, ``completion`` and ``name``), so a user with the authors' text can train on it as is: a
folder of them, or one file for its own split (the split is read from the file's name). Their text must be in the
encoding asked for (it is recognised from the prompts).
"""

from __future__ import annotations

import csv
import io
import json
import re
from functools import lru_cache
from pathlib import Path

from ...errors import ZooError
from ...io import read_utf8
from .encoding import (
    ENCODINGS,
    Example,
    grid_to_lines,
    groove_lines,
    is_drum_line,
    make_example,
    performance_to_grid,
)
from .events import events_to_lines, is_event_line, paper_silent, performance_to_events
from .midi import read_performance

SPLITS = {"train": "train", "validation": "validation", "val": "validation", "dev": "validation", "test": "test"}
JSONL_NAMES = {"train": ("train.jsonl", "gpt3_train.jsonl"), "validation": ("validation.jsonl", "dev.jsonl",
                                                                               "gpt3_dev.jsonl"),
               "test": ("test.jsonl", "gpt3_test.jsonl")}
INFO_COLUMNS = ("session", "split", "beat_type", "midi_filename")  # the columns of info.csv the selection reads
INFO_SPLITS = ("train", "validation", "test")
BEAT_TYPES = ("beat", "fill")


def canonical_split(split: str) -> str:
    if split not in SPLITS:
        raise ZooError(f"unknown split {split!r}; choose train, validation (or dev) or test")
    return SPLITS[split]


def groove_root(data: str | Path) -> Path:
    """The folder holding ``info.csv``: from the catalogue name ``groove_midi``, the dataset's folder, or a folder
    or archive that contains ``groove/info.csv``."""
    from ...data.catalog import catalog, locate, unpack_user_archive

    if str(data) in catalog():
        path = locate(str(data))
    else:
        path = Path(data)
        if not path.exists():
            raise ZooError(f"Groove MIDI data {data} does not exist; give the catalogue name groove_midi, the "
                           f"dataset folder (with info.csv) or its .tar.gz")
        if path.is_file():
            path = unpack_user_archive(path)
    for candidate in (path, path / "groove"):
        if (candidate / "info.csv").is_file():
            return candidate
    raise ZooError(f"{path} has no info.csv (nor groove/info.csv): point at the Groove MIDI Dataset folder, or a "
                   f"folder of <split>.jsonl prompt-completion files")


def _info_rows(path: Path) -> list[dict[str, str]]:
    """The rows of ``info.csv`` (line number under ``"line"``), after checking that it has the columns the
    selection reads, every row has a cell for each, and the split and beat type are values Groove MIDI uses."""
    reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
    try:
        missing = [c for c in INFO_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ZooError(f"{path} has no {', '.join(missing)} column{'s' * (len(missing) > 1)} (found "
                           f"{', '.join(reader.fieldnames or []) or 'no header line'}): the Groove MIDI "
                           f"selection reads the columns {', '.join(INFO_COLUMNS)}; add "
                           f"{'them' if len(missing) > 1 else 'it'}")
        rows = [{**row, "line": reader.line_num} for row in reader]
    except csv.Error as exc:
        raise ZooError(f"{path} is not a readable CSV file ({exc}); save it as UTF-8 CSV") from None
    for row in rows:
        empty = [c for c in INFO_COLUMNS if not row[c]]
        if empty:
            raise ZooError(f"{path} line {row['line']} has no {', '.join(empty)}; give every row all of "
                           f"{', '.join(INFO_COLUMNS)}")
        for column, allowed in (("split", INFO_SPLITS), ("beat_type", BEAT_TYPES)):
            if row[column] not in allowed:
                raise ZooError(f"{path} line {row['line']}: {column} {row[column]!r} is not one of "
                               f"{', '.join(allowed)} (Groove MIDI's values, lower case)")
    return rows


def select_files(root: Path, split: str) -> list[tuple[str, Path]]:
    """(name, MIDI path) of the paper's files of one split, in ``info.csv`` order, before the metre filter."""
    out = []
    for row in _selection_funnel(root, split)[-1]:
        drummer = row["session"].partition("/")[0]
        stem = Path(row["midi_filename"]).stem
        out.append((f"{drummer.removeprefix('drummer')}_{stem}", root / row["midi_filename"]))
    return out


def _selection_funnel(root: Path, split: str) -> tuple[list[dict], list[dict], list[dict]]:
    """The ``info.csv`` rows of ``split``; those of them that are beats; those of these from session1-3."""
    rows = [r for r in _info_rows(root / "info.csv") if r["split"] == canonical_split(split)]
    beats = [r for r in rows if r["beat_type"] == "beat"]
    return rows, beats, [r for r in beats if re.fullmatch(r"session[123]", r["session"].partition("/")[2])]


def why_no_examples(data: str | Path, split: str) -> str:
    """Why `open_examples` found no example of ``split`` in ``data``, for the error that says so: for Groove MIDI,
    how many ``info.csv`` rows each step of the paper's selection kept."""
    path = Path(data)
    if path.suffix == ".jsonl" or (path.is_dir() and _jsonl_file(path, canonical_split(split))):
        return "its prompt-completion file holds no lines"
    root = groove_root(data)
    rows, beats, sessions = _selection_funnel(root, split)
    steps = [f"{root / 'info.csv'} has {len(rows)} row{'s' * (len(rows) != 1)} of the {canonical_split(split)} split",
             f"{len(beats)} of them beats (beat_type beat; fills are left out)",
             f"{len(sessions)} of those from session1, 2 or 3 (eval_session is left out)"]
    reason = ", ".join(steps[:1 + min(len(rows), 1) + min(len(beats), 1)])
    if sessions:
        reason += f", and none of those {len(sessions)} MIDI files is in x/4 time with more than 8 bars"
    return reason + " (the paper's selection)"


def encode_file(name: str, path: Path, encoding: str = "paper") -> Example | None:
    """The example of one MIDI file in the paper's text (``paper``) or the velocity/timing text (``events``);
    None if the metre is not x/4 or the groove is too short."""
    perf = read_performance(path)
    if perf.time_signature[1] != 4:
        return None
    if encoding == "events":
        return make_example(name, events_to_lines(performance_to_events(perf)), perf.time_signature[0],
                            paper_silent)
    return make_example(name, grid_to_lines(performance_to_grid(perf)), perf.time_signature[0])


def _groove_examples(root: Path, split: str, encoding: str) -> list[Example]:
    """The examples of the selected files, encoded once per process while ``info.csv`` selects the same files and
    none of them has changed (size and modification time)."""
    files = tuple((name, path, _stamp(path)) for name, path in select_files(root, split))
    return _unique_names(list(_encoded(files, encoding)), root / "info.csv")


def _stamp(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file; None when it is missing (`encode_file` says so)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@lru_cache(maxsize=8)
def _encoded(files: tuple[tuple[str, Path, tuple[int, int] | None], ...], encoding: str) -> tuple[Example, ...]:
    """The examples of ``files`` ((name, path, `_stamp`) each; the stamps only key the cache)."""
    return tuple(e for name, path, _ in files if (e := encode_file(name, path, encoding)) is not None)


def _jsonl_file(folder: Path, split: str) -> Path | None:
    return next((folder / n for n in JSONL_NAMES[split] if (folder / n).is_file()), None)


def _jsonl_split(path: Path) -> str | None:
    """The split a prompt-completion file holds, from its name (``test.jsonl``, ``gpt3_dev.jsonl``, ...)."""
    return next((split for split, names in JSONL_NAMES.items() if path.name in names), None)


def text_encoding(text: str) -> str | None:
    """``paper`` or ``events``: the encoding whose lines make up the drum lines of ``text`` (``SEP``/``END``
    aside); None when neither does."""
    lines = groove_lines(text)
    for name, is_line in (("paper", is_drum_line), ("events", is_event_line)):
        if lines and all(map(is_line, lines)):
            return name
    return None


def _jsonl_examples(path: Path, encoding: str) -> list[Example]:
    """`read_jsonl`, after checking that the prompts are drum text of ``encoding``."""
    examples = read_jsonl(path)
    for e in examples:
        found = text_encoding(e.prompt)
        if found != encoding:
            what = f"{found} drum text" if found else "no drum text of either encoding"
            raise ZooError(f"{path}: the prompt of {e.name} is {what}, not {encoding} text; give the encoding of "
                           f"the file (encoding={found or 'paper or events'}) or a file of {encoding} text")
    return examples


def read_jsonl(path: Path) -> list[Example]:
    """Examples from a prompt-completion JSON-lines file (the authors' ``gpt3_<split>.jsonl``)."""
    text = read_utf8(path)
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(_example(json.loads(line), f"{path.stem}_{i}"))
        except KeyError as exc:
            raise ZooError(f"{path} line {i} is not a prompt-completion JSON object (it has no {exc} field)") from None
        except (ValueError, TypeError) as exc:
            raise ZooError(f"{path} line {i} is not a prompt-completion JSON object ({exc})") from None
    return _unique_names(out, path)


def _example(d, default_name: str) -> Example:
    """One JSON object of a prompt-completion file as an `Example`; a ValueError or TypeError says what is wrong."""
    if not isinstance(d, dict):
        raise TypeError(f"it is a JSON {type(d).__name__}")
    text = {"name": d.get("name", default_name), "prompt": d["prompt"], "completion": d["completion"],
            "window": d.get("window", "")}
    for key, value in text.items():
        if not isinstance(value, str):
            raise TypeError(f"its {key} is {type(value).__name__}, not a string")
    if text["name"] in ("", ".", "..") or Path(text["name"]).name != text["name"]:
        raise ValueError(f"its name {text['name']!r} is not a file name, which the files eval writes are named by")
    numerator = d.get("numerator", 4)
    if type(numerator) is not int or numerator < 1:
        raise ValueError(f"its numerator {numerator!r} is not a whole number of beats >= 1")
    return Example(text["name"], text["prompt"], text["completion"], numerator, text["window"])


def _unique_names(examples: list[Example], source: Path) -> list[Example]:
    """``examples`` after checking that no two share a name (results and written files are keyed by it)."""
    seen = set()
    for e in examples:
        if e.name in seen:
            raise ZooError(f"{source} has two examples named {e.name!r}; give each its own name (results and the "
                           f"files eval writes are keyed by it)")
        seen.add(e.name)
    return examples


def open_examples(data: str | Path, split: str, encoding: str = "paper") -> list[Example]:
    """The examples of ``split`` from Groove MIDI (catalogue name, folder or archive; ``encoding`` ``paper`` or
    ``events``), a folder of ``<split>.jsonl`` / ``gpt3_<split>.jsonl`` files, or one such file (for its own split
    only). Prompt-completion files must hold ``encoding`` text."""
    split = canonical_split(split)
    if encoding not in ENCODINGS:
        raise ZooError(f"unknown encoding {encoding!r}; choose {' or '.join(ENCODINGS)}")
    path = Path(data)
    wanted = " or ".join(JSONL_NAMES[split])
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise ZooError(f"{path} does not exist")
        if (own := _jsonl_split(path)) != split:
            holds = f"holds the {own} split" if own else "is named for no split"
            raise ZooError(f"{path} {holds}, not {split}: the {split} split is read from {wanted}; give the folder "
                           f"that holds it (one file stands only for the split its name gives)")
        return _jsonl_examples(path, encoding)
    if path.is_dir() and (jsonl := _jsonl_file(path, split)) is not None:
        return _jsonl_examples(jsonl, encoding)
    if path.is_dir() and (others := sorted(p.name for s in JSONL_NAMES if (p := _jsonl_file(path, s)))):
        raise ZooError(f"{path} has prompt-completion files ({', '.join(others)}) but none for the {split} split: "
                       f"add {wanted}")
    return _groove_examples(groove_root(data), split, encoding)
