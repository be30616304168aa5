"""A published number and the file it was read from.

A manifest result may name its ``source``: the result files its ``command`` wrote, in the repository, and where
the number is in them::

    source:
      files: [zoo/models/drums/results/X.seed0.json, zoo/models/drums/results/X.seed1.json]  # the mean over files
      key: generated.mean_stability   # a dotted path into a JSON file, or a column of a CSV file (its last value)
      # in a JSON list, a part is an index or selects the one item with those fields: average.scorer=knn.fpr95
      scale: 100                      # optional: the number is stated in per cent

`check_result` re-reads the number and compares it with ``zoo_value`` to the manifest's precision (`written_to`);
`zoo.release.publish` refuses a result that disagrees with its source, and the tests check every published one.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

from .errors import ZooError


def _read(file: Path, key: str) -> float:
    if not file.is_file():
        raise ZooError(f"result source {file} does not exist")
    if file.suffix == ".csv":
        with open(file, newline="") as f:
            values = [row[key] for row in csv.DictReader(f) if row.get(key) not in (None, "")]
        if not values:
            raise ZooError(f"result source {file} has no column {key!r} with a value")
        return float(values[-1])
    value = json.loads(file.read_text())
    for part in key.split("."):
        value = _step(value, part, file, key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ZooError(f"result source {file}: {key!r} is {value!r}, not a number")
    return float(value)


def _step(value, part: str, file: Path, key: str):
    """``value[part]``: a dict's key; in a list, an index (``0``) or the one item whose fields match
    (``ood=fashion_mnist,scorer=knn``)."""
    if isinstance(value, dict) and part in value:
        return value[part]
    if isinstance(value, list) and part.isdigit() and int(part) < len(value):
        return value[int(part)]
    pairs = [f.split("=", 1) for f in part.split(",")]
    if isinstance(value, list) and all(len(pair) == 2 for pair in pairs):
        fields = dict(pairs)
        found = [v for v in value if isinstance(v, dict) and all(str(v.get(k)) == w for k, w in fields.items())]
        if len(found) == 1:
            return found[0]
        raise ZooError(f"result source {file}: {len(found)} items of the list match {part!r} in key {key!r}, not 1")
    raise ZooError(f"result source {file} has no key {key!r} (missing {part!r})")


def source_value(source: dict, root: Path) -> float:
    """The number ``source`` points at (the mean over its files, times its scale); paths are relative to
    ``root``."""
    files, key = source.get("files"), source.get("key")
    if not files or not isinstance(files, list) or not key:
        raise ZooError(f"a result source needs 'files' (a list of paths) and 'key'; got {source!r}")
    values = [_read(root / f, key) for f in files]
    return sum(values) / len(values) * float(source.get("scale", 1))


def stated_tolerance(value: float) -> float:
    """Half a unit in the last decimal ``value`` is written with (0.8103 -> 5e-5; 27.24 -> 5e-3). A zero says
    nothing about its decimals (YAML writes 0.0000 as 0.0): it is taken as written to 4, the manifest's precision
    for fractions."""
    if value == 0:
        return 5e-5
    exponent = Decimal(repr(float(value))).as_tuple().exponent
    return 0.5 * 10.0 ** exponent + 1e-12


# The decimals a manifest number is written to: YAML drops trailing zeros (0.6300 reads back as 0.63), so the
# number read is taken to this precision, or a finer one where it is written finer (9.3075).
PERCENT_DECIMALS, DECIMALS = 2, 4


def written_to(value: float, scale: float = 1) -> float:
    """Half a unit in the last decimal of a manifest ``zoo_value`` (`stated_tolerance`), at most half a unit in
    the manifest's precision: the 2nd decimal for a number in per cent (``scale`` 100), the 4th otherwise."""
    decimals = PERCENT_DECIMALS if float(scale) == 100 else DECIMALS
    return min(stated_tolerance(value), 0.5 * 10.0 ** -decimals + 1e-12)


def check_result(result: dict, root: Path) -> float | None:
    """The measured number of ``result`` when it has a ``source`` (None when it has none); a ZooError when it does
    not round to ``zoo_value`` at the manifest's precision (`written_to`)."""
    if "source" not in result:
        return None
    measured = source_value(result["source"], root)
    stated = result["zoo_value"]
    if abs(measured - stated) > written_to(stated, result["source"].get("scale", 1)):
        raise ZooError(f"result {result.get('metric')!r}: zoo_value {stated} but its source reads {measured:.6g} "
                       f"({', '.join(result['source']['files'])}, key {result['source']['key']!r})")
    return measured
