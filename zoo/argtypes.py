"""argparse types for counts, rates and fractions, so that a bad value is one usage error naming the option, not a
traceback later (or a run that silently trains nothing)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, counts, subsets)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (worker processes, warm-up iterations)."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """A number > 0 (learning rates)."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not greater than 0")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (score thresholds)."""
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} is less than {low}")
    return value
