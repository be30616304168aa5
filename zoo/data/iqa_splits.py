"""Train / validation / test splits of an `IQATable`, and pyiqa's split files.

* `random_splits`: the paper's protocol, ``rounds`` random 80/20 train/test splits, each with a validation part
  carved out of the training side for model selection (the authors select on the test split instead). Datasets
  with reference images are split by reference, so no scene is in two parts.
* `official_split`: the dataset's own split (BIQ2021, KonIQ-10k), with a validation part carved from ``train``
  when the dataset has none.
* `load_split_file`: pyiqa's ``.pkl`` format, ``{1: {"train": [rows], "val": [...], "test": [...]}, 2: ...}``
  (1-based split numbers, 0-based rows of the table). pyiqa's random 80/20 splits (LIVE Challenge, CSIQ, LIVE,
  TID2013, ...) put the held-out 20 % under ``val`` and have no ``test`` or an empty one; there ``val`` is the test
  part and a validation part is carved from ``train`` as for official splits. Split files are read with an
  unpickler that refuses every class and function, so a file can only yield plain dicts, lists and numbers.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import ZooError
from .iqa import IQATable

PARTS = ("train", "val", "test")


def _groups(table: IQATable) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique split units, unit index of each row): reference images when known, else images."""
    keys = table.refs if table.refs is not None else [str(p) for p in table.paths]
    units, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    return units, inverse


def _take(inverse: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(inverse, chosen))


def random_splits(table: IQATable, rounds: int = 10, test_fraction: float = 0.2, val_fraction: float = 0.1,
                  seed: int = 123) -> list[dict[str, np.ndarray]]:
    """``rounds`` seeded splits; fractions count split units (references or images) of the whole table."""
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
        raise ZooError(f"test_fraction {test_fraction} and val_fraction {val_fraction} must be in [0, 1) and "
                       f"leave a training part")
    units, inverse = _groups(table)
    n_test, n_val = round(test_fraction * len(units)), round(val_fraction * len(units))
    if n_test < 1 or len(units) - n_test - n_val < 1:
        raise ZooError(f"{table.name}: {len(units)} split units are too few for test_fraction {test_fraction} "
                       f"and val_fraction {val_fraction}")
    out = []
    for r in range(rounds):
        perm = np.random.default_rng([seed, r]).permutation(len(units))
        test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
        out.append({"train": _take(inverse, train), "val": _take(inverse, val), "test": _take(inverse, test)})
    return out


def official_split(table: IQATable, val_fraction: float = 0.1, seed: int = 123) -> dict[str, np.ndarray]:
    """The dataset's own split; ``val`` is carved (by split unit, seeded) from ``train`` if the data has none."""
    if table.split is None:
        raise ZooError(f"{table.name} has no official split; use split: random (the 10-round protocol) or a "
                       f"pyiqa split file")
    labels = np.asarray(table.split)
    unknown = sorted(set(labels) - set(PARTS) - {"validation"})
    if unknown:
        raise ZooError(f"{table.name}: unknown split labels {unknown}; label rows train, val or test")
    labels = np.where(labels == "validation", "val", labels)
    out = {p: np.flatnonzero(labels == p) for p in PARTS}
    empty = [p for p in ("train", "test") if len(out[p]) == 0]
    if empty:
        raise ZooError(f"{table.name}: the official split has no {empty[0]!r} rows (its labels: "
                       f"{', '.join(sorted(set(table.split)))}); label some rows {empty[0]}, or use split: random")
    if len(out["val"]) == 0:
        out["train"], out["val"] = carve_val(table, out["train"], val_fraction, seed)
    return out


def carve_val(table: IQATable, train: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) rows: ``val_fraction`` of the split units of ``train`` rows (at least one unit; none when
    ``val_fraction`` is 0), drawn with ``seed``, become the validation part."""
    if val_fraction <= 0:
        return train, train[:0]
    units, inverse = _groups(table.subset(train))
    perm = np.random.default_rng(seed).permutation(len(units))
    is_val = np.isin(inverse, perm[: max(1, round(val_fraction * len(units)))])
    return train[~is_val], train[is_val]


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a split file")


def load_split_file(path: str | Path, table: IQATable, val_fraction: float = 0.1,
                    seed: int = 123) -> list[dict[str, np.ndarray]]:
    """Splits of a pyiqa ``.pkl`` split file over the rows of ``table``.

    A split whose ``test`` is missing or empty (pyiqa's random 80/20 splits) takes its ``val`` rows as the test
    part and carves the validation part from ``train`` (`carve_val` with ``val_fraction`` and ``seed``)."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"split file {path} does not exist; pass an existing pyiqa .pkl or split: random")
    try:
        data = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ZooError(f"cannot read split file {path}: {exc}; expected a pyiqa-style pickle of "
                       f"{{split_number: {{'train': [...], 'val': [...], 'test': [...]}}}}") from None
    if not isinstance(data, dict) or not data:
        raise ZooError(f"split file {path} is not a non-empty dict of splits; write "
                       f"{{split_number: {{'train': [...], 'test': [...]}}}}")
    return [_file_split(data[key], key, path, table, val_fraction, seed) for key in sorted(data)]


def _file_split(parts, key, path: Path, table: IQATable, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """One split of a split file as train / val / test rows, checked against ``table``."""
    if not isinstance(parts, dict) or "train" not in parts or not (parts.get("test") or parts.get("val")):
        raise ZooError(f"split {key} of {path} lacks 'train', or both 'test' and 'val' are missing or empty; give "
                       f"the training rows and the held-out rows")
    split = {p: np.asarray(parts.get(p, []), dtype=np.int64) for p in PARTS}
    bad = [int(i) for p in PARTS for i in split[p] if not 0 <= i < len(table)]
    if bad:
        raise ZooError(f"split {key} of {path} refers to row {bad[0]}, but the table has {len(table)} rows; "
                       f"the split file belongs to another meta CSV")
    if len(split["test"]) == 0:  # pyiqa's random splits: the held-out part is under 'val'
        split["test"] = split["val"]
        split["train"], split["val"] = carve_val(table, split["train"], val_fraction, seed)
    return split
