"""Reading the model cards' tables and the committed result files they cite, for `test_card_results.py` (the
results tables) and `test_card_benchmarks.py` (the benchmark and comparison tables).

A table is found by a unique piece of text in its header row or the paragraph above it (never by line number), and
each of its rows is mapped to its result file from the row's own labels; a number is checked to half a unit of the
last digit the card prints. Paper columns ("[unverified]", "not retrieved", quotes) are not zoo values and are not
read. A row whose labels map to no result file fails, naming the row; a "-" cell in a zoo column is a run the card
says was not made. Per cent cells are compared with the file's fraction x 100."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "zoo" / "models"
DOORPING, KNN, PMT = MODELS / "doorping", MODELS / "knn_ood", MODELS / "pmt_iqa"
TINYMIM, DRUMS, CMT = MODELS / "tinymim", MODELS / "drums", MODELS / "cmt"
BENCHMARKS = ROOT / "benchmarks" / "results"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
DIGIT_GROUP = re.compile(r"(?<=\d) (?=\d{3}(?!\d))")


def table_lines(card: Path, anchor: str) -> list[list[str]]:
    """The cells of each line of the first markdown table whose header row holds ``anchor`` or that follows the only
    line of ``card`` holding it, the header first, without the |---| line; the table ends at its first line that
    does not start with "|"."""
    lines = card.read_text().splitlines()
    hits = [i for i, line in enumerate(lines) if anchor in line]
    assert len(hits) == 1, f"{card.relative_to(ROOT)}: {len(hits)} lines hold {anchor!r}, the test needs exactly one"
    start = next((i for i in range(hits[0], len(lines)) if lines[i].startswith("|")), None)
    assert start is not None, f"{card.relative_to(ROOT)}: no table under {anchor!r}"
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    header, *rows = [cells_of(line) for line in lines[start:end]]
    rows = [row for row in rows if not all(set(cell) <= set("-: ") for cell in row)]  # the |---| line
    assert rows, f"{card.relative_to(ROOT)}: the table under {anchor!r} has no rows"
    return [header, *rows]


def table_under(card: Path, anchor: str) -> list[dict[str, str]]:
    """The rows, as {header: cell}, of the table ``table_lines`` finds."""
    header, *rows = table_lines(card, anchor)
    return [dict(zip(header, row)) for row in rows]


def cells_of(line: str) -> list[str]:
    """A markdown table line's cells, stripped; an escaped "\\|" stays inside its cell."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def numbers_in(cell: str) -> list[str]:
    """The numbers of a cell as printed ("**13.6 ± 1.1**" -> ["13.6", "1.1"], "9.11 / 98.08" -> two)."""
    return NUMBER.findall(cell.replace("*", ""))


def mean_and_std(cell: str) -> tuple[str, str | None]:
    """The printed "a ± b" of a cell, or (a, None) where it prints one number."""
    parts = [numbers_in(part) for part in cell.split("±")]
    return parts[0][0], (parts[1][0] if len(parts) > 1 else None)


def half_unit(printed: str) -> float:
    """Half a unit of the last digit printed: "19.5" -> 0.05, "0.5055" -> 5e-5, "50" -> 0.5, "2.1e-6" -> 5e-8."""
    mantissa, _, exponent = printed.partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def compare(printed: str, value: float, where: str, mismatches: list[str]) -> None:
    """Add ``where`` to ``mismatches`` unless ``value`` rounds to the ``printed`` number."""
    if abs(float(printed) - value) > half_unit(printed) + 1e-9:
        mismatches.append(f"{where}: card {printed}, file {value:.6g}")


def load(path: Path, row: str) -> dict:
    """The JSON result file of a card row, failing with the row's name where the file is missing."""
    assert path.is_file(), f"row {row!r}: its result file {path.relative_to(ROOT)} does not exist"
    return json.loads(path.read_text())


def label(row: dict[str, str], *columns: str) -> str:
    """A row's name for messages: its label ``columns`` joined."""
    return " / ".join(row[c] for c in columns)


def number(cell: str) -> str:
    """A cell's first number as printed, digit groups joined ("**3 897**" -> "3897", "62x" -> "62", "2.1e-6")."""
    printed = numbers_in(DIGIT_GROUP.sub("", cell))
    assert printed, f"no number in the cell {cell!r}"
    return printed[0]


def compare_cells(row: dict[str, str], result: dict, columns: dict[str, tuple[str, float]], where: str,
                  mismatches: list[str]) -> None:
    """Each of ``columns`` ({column: (key, scale)}) of a card row against ``scale * result[key]``; a "-" cell is
    not read."""
    for column, (key, scale) in columns.items():
        if row[column] != "-":
            compare(number(row[column]), scale * result[key], f"{where}, {column} ({key})", mismatches)


def bench_result(name: str, model: str, mode: str, precision: str = "32") -> dict:
    """The one row of the `zoo bench` file `benchmarks/results/{name}` for ``model``, ``mode`` and ``precision``,
    with its median latency as `p50_ms`."""
    results = load(BENCHMARKS / name, f"{model} {mode}")["results"]
    rows = [r for r in results if (r["model"], r["mode"], r["precision"]) == (model, mode, precision)]
    assert len(rows) == 1, f"{model} {mode} {precision}: {len(rows)} rows in {name}, the card needs one"
    return rows[0] | {"p50_ms": rows[0]["latency_ms"]["p50"]}


def model_of(cell: str) -> str:
    """The first `name` in backticks of a cell."""
    name = re.search(r"`([^`]+)`", cell)
    assert name, f"no `model` named in {cell!r}"
    return name[1]

