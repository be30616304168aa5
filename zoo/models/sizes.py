"""Checks of the size arguments of the zoo's model constructors (depth, widths, head counts, classes, image sizes),
and of their on/off flags and input normalisation.

A degenerate size (no blocks, a classifier with no outputs, a width its heads do not divide) would build a model
that is useless, or one that fails later, deep inside a layer, with a message about tensors. The constructors call
these checks first; each raises one ``ValueError`` naming the argument, its value and what is accepted, which
`zoo.create_model` reports as a `ZooError` naming the model and the arguments given::

    bad arguments for model 'tinymim_vit' (depth=0): ValueError: depth must be at least 1, got 0
"""

from __future__ import annotations

import numbers


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _items(values) -> tuple | None:
    """``values`` as a tuple when it is a list or tuple, else None (a string or a number is not a sequence here)."""
    return tuple(values) if isinstance(values, (list, tuple)) else None


def check_ints(minimum: int = 1, **sizes) -> None:
    """Every ``name=value`` of ``sizes`` must be an integer of at least ``minimum``; a None value (an optional size
    left to its default) is not checked. ``check_ints(depth=depth, num_heads=num_heads)``."""
    for name, value in sizes.items():
        if value is None:
            continue
        if not _is_int(value):
            raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")


def check_positive(**values) -> None:
    """Every ``name=value`` of ``values`` must be a number above 0 (a ratio, such as ``mlp_ratio``)."""
    for name, value in values.items():
        if not (_is_number(value) and value > 0):
            raise ValueError(f"{name} must be a number above 0, got {value!r}")


def check_divisible(name: str, value: int, by_name: str, by: int) -> None:
    """``value`` (argument ``name``) must be a multiple of ``by`` (argument ``by_name``): a width split into heads."""
    if value % by:
        raise ValueError(f"{name} {value} must be divisible by {by_name} {by}")


def check_int_sequence(name: str, values, length: int | None = None, minimum: int = 1) -> None:
    """``values`` must be a non-empty sequence (of ``length`` entries, when given) of integers of at least
    ``minimum``: per-stage widths, an (H, W) size."""
    items = _items(values)
    if not items or (length is not None and len(items) != length) or not all(
            _is_int(v) and v >= minimum for v in items):
        count = f"{length} integers" if length is not None else "a list of integers"
        raise ValueError(f"{name} must be {count} of at least {minimum}, got {values!r}")


def check_positive_sequence(name: str, values, length: int) -> None:
    """``values`` must be a sequence of ``length`` numbers above 0 (a voxel size in metres)."""
    items = _items(values)
    if items is None or len(items) != length or not all(_is_number(v) and v > 0 for v in items):
        raise ValueError(f"{name} must be {length} numbers above 0, got {values!r}")


def check_bools(**flags) -> None:
    """Every ``name=value`` of ``flags`` must be True or False: a string such as ``"false"`` would switch it on."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")


def check_mean_std(mean, std, channels: int) -> None:
    """``mean`` and ``std``, the input normalisation recorded in ``input_spec``: ``channels`` numbers each, std above
    0 (a None is left to the caller's default)."""
    for name, values in (("mean", mean), ("std", std)):
        items = _items(values)
        if values is not None and (items is None or len(items) != channels or not all(
                _is_number(v) and (name == "mean" or v > 0) for v in items)):
            rule = ("number" if channels == 1 else "numbers") + ("" if name == "mean" else " above 0")
            raise ValueError(f"{name} must be {channels} {rule} (one per input channel), got {values!r}")
