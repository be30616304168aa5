"""Image-quality datasets as one table: image paths, scores, the score scale, reference images and official splits.

`read_table(spec)` reads what a user points at, following pyiqa's conventions (one row per distorted image, the
score in the dataset's own scale, the reference image where there is one). Layouts, detected from marker files
(or named with ``layout=``):

=============  ==================================================================  ============  =========
layout         marker files                                                        score scale   split by
=============  ==================================================================  ============  =========
``biq2021``    ``Train.csv`` + ``Test.csv`` (``Image Name, MOS``), ``Images/``     MOS [0, 1]    image
``koniq10k``   ``koniq10k_scores_and_distributions.csv`` (``MOS_zscore``),         MOS [0, 100]  image
               ``1024x768/`` or ``512x384/``; ``koniq10k_distributions_sets.csv``
               (official split) when present
``livec``      ``Data/AllImages_release.mat``, ``Data/AllMOS_release.mat``,        MOS [0, 100]  image
               ``Images/``; the first 7 (training) images are dropped
``live``       ``dmos_realigned.mat``, ``refnames_all.mat``, ``jp2k/ jpeg/ wn/       DMOS [0, 100] reference
               gblur/ fastfading/``; reference copies (``orgs``) are dropped
``csiq``       ``csiq_label.txt`` (``name dmos``), ``dst_imgs_all/``               DMOS [0, 1]   reference
``tid2013``    ``mos_with_names.txt`` (``mos name``), ``distorted_images/``        MOS [0, 9]    reference
``kadid10k``   ``dmos.csv`` (``dist_img, ref_img, dmos``), ``images/``             DMOS [1, 5]   reference
``csv``        any CSV: image column ``image`` / ``img_name`` / ``dis_img_path`` / observed or  reference
               ``dist_name`` / ``dist_img``; score ``mos`` / ``mos_0_1`` /          given         if a
               ``score`` / ``dmos``; optional ``ref_name`` / ``ref_img`` and        ([0, 1] for   ref column
               ``split`` columns. pyiqa meta CSVs and the BIQ2021 subset here.     mos_0_1)
=============  ==================================================================  ============  =========

CSV files (every layout's) are read as UTF-8 (a file in another encoding is refused, naming the line, with the fix:
save it as UTF-8), comma-, semicolon- or tab-separated (whichever the header line holds most of); column names are
matched without regard to case or surrounding spaces. Every layout's table is checked as it is read: scores must be
finite numbers, and each image may appear in one row only (a distorted image is listed once in each of the datasets
above; only reference images repeat, as references). Errors name the file and row (``scores.csv, row 9``: the line
number, header = row 1).

LIVE and CSIQ give DMOS (lower is better); as the paper does, the score is regressed as given, and
``higher_better`` records the direction (``zoo eval --task iqa`` correlates quality predictions with -DMOS there).
In the ``csv`` layout the direction comes from the score column's name (``dmos``: lower is better), except in the
two pyiqa meta CSVs whose column names mislead (`PYIQA_DIRECTIONS`, recognised by file name): LIVE's
(``meta_info_LIVEIQADataset.csv``) keeps LIVE's DMOS in a column named ``mos`` (lower is better) and KADID-10k's
(``meta_info_KADID10kDataset.csv``) keeps its 1-5 rating in a column named ``dmos`` (higher is better).

A CSV file or column given (``csv_path``, ``image_col``, ``score_col``; ``--csv`` ...) selects the ``csv`` layout
when the layout is ``auto``, whatever marker files the folder holds.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ZooError
from ..io import read_utf8

IMAGE_COLUMNS = ("image", "img_name", "dis_img_path", "dist_name", "dist_img")
SCORE_COLUMNS = ("mos", "mos_0_1", "score", "dmos")
REF_COLUMNS = ("ref_name", "ref_img", "ref_img_path")
LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
DELIMITERS = (",", ";", "\t")  # comma first: it wins a tie
# pyiqa meta CSVs whose score column's name says the wrong direction: file name (lower case) -> (column, higher_better)
PYIQA_DIRECTIONS = {"meta_info_liveiqadataset.csv": ("mos", False), "meta_info_kadid10kdataset.csv": ("dmos", True)}
SCALE_SLACK = 1e-3  # scores this fraction of the scale's width outside it are rounding, clamped to its ends


@dataclass
class IQATable:
    """Rows of one IQA dataset.

    Attributes:
        name: dataset name; paths: image files; scores: float64 [N] in the dataset's scale.
        score_range: (low, high) of the scale (quality levels are equal-width bins of it).
        higher_better: False for DMOS datasets.
        refs: reference image of each row (the unit of splitting), or None.
        split: official split label of each row (``train`` / ``val`` / ``test``), or None.
        origins: where each row was read (``scores.csv, row 9``), for messages, or None.
    """

    name: str
    paths: list[Path]
    scores: np.ndarray
    score_range: tuple[float, float]
    higher_better: bool = True
    refs: list[str] | None = None
    split: list[str] | None = None
    origins: list[str] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, rows) -> IQATable:
        rows = [int(r) for r in rows]
        return replace(self, paths=[self.paths[r] for r in rows], scores=self.scores[rows],
                       refs=[self.refs[r] for r in rows] if self.refs else None,
                       split=[self.split[r] for r in rows] if self.split else None,
                       origins=[self.origins[r] for r in rows] if self.origins else None)

    def where(self, row: int) -> str:
        """Where row ``row`` came from: its origin (``file, row N``) when known, else its image."""
        return self.origins[row] if self.origins else f"{self.name}, image {self.paths[row]}"

    def levels(self, num_levels: int) -> np.ndarray:
        """Quality level of each row [N] (int64): equal-width bins of ``score_range``, clamped to
        ``[0, num_levels - 1]``. The PMT-IQA authors bin per dataset (``int(DMOS / 10)`` for LIVE, ``round(MOS / 10)``
        for LIVE Challenge and KonIQ, ``int(MOS / 0.5)`` for BID); their ``round`` and a score at the top of the
        scale give level 10 for a 10-way head. Clamping fixes that, and only that: a score more than
        `SCALE_SLACK` of the scale's width outside it is refused (`check_scale`)."""
        lo, hi = self.score_range
        if not hi > lo:
            raise ZooError(f"{self.name}: score range {self.score_range} is empty; give (low, high) with high > low")
        self.check_scale()
        return np.clip(np.floor((self.scores - lo) / (hi - lo) * num_levels), 0, num_levels - 1).astype(np.int64)

    def check_scale(self) -> None:
        """Raise one error naming the first row whose score lies outside ``score_range`` (beyond rounding)."""
        lo, hi = self.score_range
        slack = SCALE_SLACK * (hi - lo)
        out = np.flatnonzero((self.scores < lo - slack) | (self.scores > hi + slack))
        if out.size:
            r = int(out[0])
            raise ZooError(f"{self.where(r)}: score {self.scores[r]:g} is outside the score scale [{lo:g}, {hi:g}] of "
                           f"dataset {self.name!r} ({out.size} of {len(self)} scores are); fix those scores, or give "
                           f"the scale they are on with score_range: [low, high]")

    def check_files(self) -> None:
        """Raise one error naming the first missing image, its row (and how many are missing)."""
        missing = [r for r, p in enumerate(self.paths) if not p.is_file()]
        if missing:
            r = missing[0]
            what = "is a folder, not an image file" if self.paths[r].is_dir() else "does not exist"
            notes = ([self.origins[r]] if self.origins else []) + ([f"and {len(missing) - 1} more"]
                                                                    if len(missing) > 1 else [])
            at = f" ({'; '.join(notes)})" if notes else ""
            raise ZooError(f"image {self.paths[r]} listed by dataset {self.name!r} {what}{at}; "
                           f"fix the path or the CSV row")

    def check_rows(self) -> None:
        """Raise one error naming the first image listed in more than one row, and those rows."""
        seen: set[Path] = set()
        for p in self.paths:
            if p in seen:
                rows = [i for i, q in enumerate(self.paths) if q == p]
                where = "; ".join(self.where(i) for i in rows[:4]) + ("; ..." if len(rows) > 4 else "")
                raise ZooError(f"image {p} is listed {len(rows)} times by dataset {self.name!r} ({where}); each "
                               f"image takes one row (one score): remove the repeated rows")
            seen.add(p)


def _delimiter(text: str) -> str:
    """Comma, semicolon or tab: whichever the first non-blank line holds most of (comma on a tie)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    return max(DELIMITERS, key=header.count)


def _csv_rows(path: Path) -> list[tuple[str, dict]]:
    """``(where, row)`` for each row of CSV file ``path``: ``where`` is ``"path, row N"`` (N: the line number, as a
    spreadsheet shows it), ``row`` a dict keyed by the names of the header (the first non-blank line), stripped of
    surrounding spaces. Rows whose every cell is empty are skipped; a row that lacks a cell of a named column, or
    has non-empty cells beyond the header's columns, is refused."""
    if not path.is_file():
        raise ZooError(f"{path} does not exist; point --data at the dataset folder as distributed, --csv at an "
                       f"existing CSV, or --layout at the layout this folder has (auto detects it)")
    text = read_utf8(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), skipinitialspace=True)
    header = [name.strip() for name in next((cells for cells in reader if any(c.strip() for c in cells)), [])]
    rows = []
    for cells in reader:
        where = f"{path}, row {reader.line_num}"
        if not any(c.strip() for c in cells):
            continue
        if any(header[len(cells):]) or any(c.strip() for c in cells[len(header):]):
            fix = "fill in its missing cells" if len(cells) < len(header) else "quote a cell that holds the separator"
            raise ZooError(f"{where} has {len(cells)} cell(s) for the {len(header)} columns of the header "
                           f"({', '.join(map(repr, header))}); {fix}")
        rows.append((where, dict(zip(header, cells))))
    if not rows:
        raise ZooError(f"{path} has no rows; add a header line and one row per image")
    return rows


def _need(rows: list[tuple[str, dict]], path: Path, columns) -> None:
    """Refuse a layout's CSV that lacks one of its ``columns``, listing those it has."""
    have = list(rows[0][1])
    missing = [c for c in columns if c not in have]
    if missing:
        raise ZooError(f"{path} has no column {missing[0]!r} (columns: {', '.join(map(repr, have))}); use the file "
                       f"as distributed, or read your own CSV with --layout csv --csv {path}")


def _pick(columns, candidates, given, path, what) -> str | None:
    """The column of ``columns`` named ``given``, else the first of ``candidates``; None for an optional column
    (``what`` not image or score) that is absent. Names match regardless of case and surrounding spaces, as the
    header's do (an exact match wins over one that differs in case)."""
    names = ", ".join(map(repr, columns))
    by_lower = {c.lower(): c for c in reversed(columns)}
    if given:
        found = given.strip() if given.strip() in columns else by_lower.get(given.strip().lower())
        if found is None:
            raise ZooError(f"{path} has no column {given!r} (columns: {names}); pass one of these")
        return found
    found = next((by_lower[c] for c in candidates if c in by_lower), None)
    if found is None and what in ("image", "score"):
        raise ZooError(f"{path}: no {what} column found (looked for {', '.join(candidates)}; columns: {names}); "
                       f"name it with --{what}-col ({what}_col in a config)")
    return found


def _resolve(root: Path, name: str) -> Path:
    for folder in (root, root / "images", root / "Images"):
        if (folder / name).is_file():
            return folder / name
    return root / name


def _float(value: str, where: str) -> float:
    """Score ``value`` (text) as a finite float; ``where`` names its row in the error."""
    try:
        score = float(value)
    except ValueError:
        hint = f" (write the decimal with a point: {value.replace(',', '.')})" if value.count(",") == 1 else ""
        raise ZooError(f"{where}: score {value!r} is not a number{hint}; fix that row or pick the score "
                       f"column") from None
    if not np.isfinite(score):
        raise ZooError(f"{where}: score {value!r} is not a finite number; give that image its score or remove the row")
    return score


def _image_name(value: str, where: str) -> str:
    """Image name ``value`` of a row, refused when empty."""
    if not value.strip():
        raise ZooError(f"{where}: the image name is empty; fill it in or remove the row")
    return value


def read_csv_table(root: Path, csv_path: Path | None = None, image_col: str | None = None,
                   score_col: str | None = None, score_range=None) -> IQATable:
    """The generic layout: a CSV (``csv_path``, or the single ``*.csv`` in ``root``) of images and scores."""
    if csv_path is None:
        csv_path = _only_csv(root)
    rows = _csv_rows(csv_path)
    cols = list(rows[0][1])
    img = _pick(cols, IMAGE_COLUMNS, image_col, csv_path, "image")
    score = _pick(cols, SCORE_COLUMNS, score_col, csv_path, "score")
    ref = _pick(cols, REF_COLUMNS, None, csv_path, "reference")
    split = _pick(cols, ("split",), None, csv_path, "split")
    scores = np.array([_float(r[score], where) for where, r in rows])
    if score_range is None:
        score_range = (0.0, 1.0) if score.lower() == "mos_0_1" else (float(scores.min()), float(scores.max()))
    return IQATable(name=root.name, paths=[_resolve(root, _image_name(r[img], where)) for where, r in rows],
                    scores=scores, score_range=tuple(score_range), higher_better=_higher_better(csv_path, score),
                    refs=[r[ref] for _, r in rows] if ref else None,
                    split=[r[split] for _, r in rows] if split else None, origins=[where for where, _ in rows])


def _higher_better(csv_path: Path, score: str) -> bool:
    """Whether a higher score in column ``score`` of ``csv_path`` means better quality: lower only for ``dmos``,
    except in the pyiqa meta CSVs of `PYIQA_DIRECTIONS`."""
    column, higher = PYIQA_DIRECTIONS.get(csv_path.name.lower(), (None, None))
    if score.lower() == column:
        return higher
    return score.lower() != "dmos"


def _only_csv(root: Path) -> Path:
    """The single ``*.csv`` in folder ``root``; none or several is an error listing what is there."""
    found = sorted(root.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    others = sorted(p.name for p in root.iterdir() if p.suffix.lower() in (".tsv", ".txt")) if not found else []
    listing = f": {', '.join(p.name for p in found)}" if found else (f" (the folder has {', '.join(others)})"
                                                                      if others else "")
    raise ZooError(f"{root}: expected one CSV of image names and scores, found {len(found) or 'none'}{listing}; "
                   f"name it with the csv option (--csv FILE)")


def read_biq2021(root: Path) -> IQATable:
    """BIQ2021 as distributed (github.com/nisarahmedrana/BIQ2021): 10 000 train + 2 000 test images."""
    paths, scores, split, origins = [], [], [], []
    for name, label in (("Train", "train"), ("Test", "test")):
        f = next((root / n for n in (f"{name}.csv", f"{name} (Images and MOS).csv") if (root / n).exists()), None)
        if f is None:
            raise ZooError(f"{root}: BIQ2021 needs {name}.csv; point at the folder holding Train.csv, Test.csv "
                           f"and Images/, or read a CSV of your own with --layout csv (--csv FILE)")
        rows = _csv_rows(f)
        _need(rows, f, ("Image Name", "MOS"))
        for where, r in rows:
            paths.append(_resolve(root, _image_name(r["Image Name"], where)))
            scores.append(_float(r["MOS"], where))
            split.append(label)
            origins.append(where)
    return IQATable("biq2021", paths, np.array(scores), (0.0, 1.0), split=split, origins=origins)


def read_koniq10k(root: Path) -> IQATable:
    """KonIQ-10k: MOS_zscore (0-100) as the authors use; the official split from the sets file when present."""
    f = root / "koniq10k_scores_and_distributions.csv"
    folder = next((root / d for d in ("1024x768", "512x384") if (root / d).is_dir()), root / "1024x768")
    rows = _csv_rows(f)
    _need(rows, f, ("image_name", "MOS_zscore"))
    split = None
    sets = root / "koniq10k_distributions_sets.csv"
    if sets.exists():
        set_rows = _csv_rows(sets)
        _need(set_rows, sets, ("image_name", "set"))
        by_name = {r["image_name"]: r["set"] for _, r in set_rows}
        label = {"training": "train", "validation": "val", "test": "test"}
        unknown = [r["image_name"] for _, r in rows if by_name.get(r["image_name"]) not in label]
        if unknown:
            raise ZooError(f"{sets}: no training/validation/test set for {unknown[0]} ({len(unknown)} images); use the "
                           f"sets file that came with the scores file, or remove it to use random splits")
        split = [label[by_name[r["image_name"]]] for _, r in rows]
    scores = np.array([_float(r["MOS_zscore"], where) for where, r in rows])
    return IQATable("koniq10k", [folder / _image_name(r["image_name"], where) for where, r in rows], scores,
                    (0.0, 100.0), split=split, origins=[where for where, _ in rows])


def _loadmat(path: Path) -> dict:
    from ..errors import require

    require("scipy", "iqa")
    import scipy.io

    if not path.exists():
        raise ZooError(f"{path} does not exist; point at the dataset folder as distributed")
    return scipy.io.loadmat(str(path))


def _mat_strings(cells) -> list[str]:
    return [str(np.asarray(c).ravel()[0]) for c in np.asarray(cells, dtype=object).ravel()]


def _mat_scores(mat: dict, key: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """(scores, ``"path, entry N"`` of each) of variable ``key`` of ``mat`` (read from ``path``); a non-finite
    score is refused."""
    scores = np.asarray(mat[key], dtype=np.float64).ravel()
    origins = [f"{path}, entry {i + 1}" for i in range(scores.size)]
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ZooError(f"{origins[bad[0]]}: score {scores[bad[0]]} is not a finite number; use the .mat files as "
                       f"distributed")
    return scores, origins


def read_livec(root: Path) -> IQATable:
    """LIVE In the Wild Image Quality Challenge: 1 162 images after dropping the first 7, as the authors do."""
    names = _mat_strings(_loadmat(root / "Data" / "AllImages_release.mat")["AllImages_release"])[7:]
    f = root / "Data" / "AllMOS_release.mat"
    mos, origins = _mat_scores(_loadmat(f), "AllMOS_release", f)
    if len(names) != len(mos) - 7:
        raise ZooError(f"{root / 'Data'}: {len(names) + 7} image names for {len(mos)} MOS values; use the .mat files "
                       f"as distributed")
    return IQATable("livec", [root / "Images" / n for n in names], mos[7:], (0.0, 100.0), origins=origins[7:])


def read_live(root: Path) -> IQATable:
    """LIVE Release 2: 779 distorted images of 29 references, DMOS (realigned), reference copies dropped."""
    paths = [root / d / f"img{i}.bmp" for d, n in LIVE_FOLDERS for i in range(1, n + 1)]
    f = root / "dmos_realigned.mat"
    mat = _loadmat(f)
    dmos, origins = _mat_scores(mat, "dmos_new", f)
    orgs = np.asarray(mat["orgs"]).ravel().astype(bool)
    refs = _mat_strings(_loadmat(root / "refnames_all.mat")["refnames_all"])
    if not len(dmos) == len(orgs) == len(refs) == len(paths):
        raise ZooError(f"{root}: expected {len(paths)} DMOS, orgs and reference names, got {len(dmos)}, "
                       f"{len(orgs)}, {len(refs)}; use the .mat files that came with these images")
    keep = np.flatnonzero(~orgs)
    return IQATable("live", [paths[i] for i in keep], dmos[keep], (0.0, 100.0), higher_better=False,
                    refs=[refs[i] for i in keep], origins=[origins[i] for i in keep])


def _name_score_lines(path: Path, name_first: bool) -> list[tuple[str, str, float]]:
    """``(where, name, score)`` of each non-blank line ``name score`` (or ``score name``) of text file ``path``."""
    if not path.exists():
        raise ZooError(f"{path} does not exist; point at the dataset folder as distributed")
    out = []
    for i, line in enumerate(read_utf8(path).splitlines()):
        words, where = line.split(), f"{path}, line {i + 1}"
        if not words:
            continue
        if len(words) < 2:
            raise ZooError(f"{where}: expected a name and a score, got {line!r}; fix or remove that line")
        name, score = (words[0], words[1]) if name_first else (words[1], words[0])
        out.append((where, name, _float(score, where)))
    return out


def _lines_table(name: str, rows, folder: Path, score_range, refs, higher_better: bool = True) -> IQATable:
    """The table of `_name_score_lines` ``rows`` of images in ``folder``; ``refs`` maps an image name to its
    reference."""
    return IQATable(name, [folder / n for _, n, _ in rows], np.array([s for _, _, s in rows]), score_range,
                    higher_better=higher_better, refs=[refs(n) for _, n, _ in rows],
                    origins=[where for where, _, _ in rows])


def read_csiq(root: Path) -> IQATable:
    """CSIQ in the HyperIQA/PMT-IQA packaging: ``csiq_label.txt`` lines ``1600.AWGN.1.png 0.062``."""
    rows = _name_score_lines(root / "csiq_label.txt", name_first=True)
    return _lines_table("csiq", rows, root / "dst_imgs_all", (0.0, 1.0), lambda n: n.split(".")[0],
                        higher_better=False)


def read_tid2013(root: Path) -> IQATable:
    """TID2013: ``mos_with_names.txt`` lines ``5.51429 i01_01_1.bmp``; reference = the ``iNN`` prefix."""
    rows = _name_score_lines(root / "mos_with_names.txt", name_first=False)
    return _lines_table("tid2013", rows, root / "distorted_images", (0.0, 9.0), lambda n: n[1:3])


def read_kadid10k(root: Path) -> IQATable:
    """KADID-10k: ``dmos.csv`` (dist_img, ref_img, dmos, var); its "DMOS" is a 1-5 rating, higher is better."""
    f = root / "dmos.csv"
    rows = _csv_rows(f)
    _need(rows, f, ("dist_img", "ref_img", "dmos"))
    return IQATable("kadid10k", [root / "images" / _image_name(r["dist_img"], where) for where, r in rows],
                    np.array([_float(r["dmos"], where) for where, r in rows]), (1.0, 5.0),
                    refs=[r["ref_img"] for _, r in rows], origins=[where for where, _ in rows])


READERS = {"biq2021": read_biq2021, "koniq10k": read_koniq10k, "livec": read_livec, "live": read_live,
           "csiq": read_csiq, "tid2013": read_tid2013, "kadid10k": read_kadid10k}
MARKERS = (("koniq10k", "koniq10k_scores_and_distributions.csv"), ("livec", "Data/AllMOS_release.mat"),
           ("live", "dmos_realigned.mat"), ("csiq", "csiq_label.txt"), ("tid2013", "mos_with_names.txt"),
           ("kadid10k", "dmos.csv"), ("biq2021", "Test.csv"), ("biq2021", "Test (Images and MOS).csv"))


def detect_layout(root: Path) -> str:
    """The layout of folder ``root`` from its marker files; ``csv`` when none matches."""
    return next((layout for layout, marker in MARKERS if (root / marker).exists()), "csv")


def read_table(spec: str | Path, layout: str = "auto", csv_path: str | Path | None = None,
               image_col: str | None = None, score_col: str | None = None, score_range=None) -> IQATable:
    """The IQA table of ``spec``: a catalogue name (``biq2021_subset``) or a folder in one of the layouts above.

    Args:
        layout: ``auto`` (detect from the marker files) or a layout name; csv_path, image_col, score_col: for the
            ``csv`` layout, which ``auto`` takes when any of them is given (a user CSV named ``dmos.csv`` or
            ``Test.csv`` is then read as a CSV, not as KADID-10k or BIQ2021).
        score_range: (low, high) override of the score scale.
    """
    from .catalog import catalog, locate

    name = str(spec)
    root = locate(name) if name in catalog() else Path(name).expanduser()
    if not root.is_dir():
        raise ZooError(f"IQA data {spec} is neither a folder nor a catalogue dataset; pass a folder of images with a "
                       f"CSV of scores, or one of {', '.join(catalog())}")
    score_range = _scale(score_range) if score_range is not None else None
    if layout == "auto":  # a CSV or a column given means the csv layout, whatever marker files the folder holds
        layout = "csv" if (csv_path or image_col or score_col) else detect_layout(root)
    if layout == "csv":
        table = read_csv_table(root, Path(csv_path) if csv_path else None, image_col, score_col, score_range)
    elif layout in READERS:
        table = READERS[layout](root)
    else:
        raise ZooError(f"unknown IQA layout {layout!r}; choose auto, csv, {', '.join(READERS)}")
    if name in catalog():
        table = replace(table, name=name)
    if score_range is not None:
        table = replace(table, score_range=score_range)
    if len(table) == 0:
        raise ZooError(f"IQA data {spec} has no rows; check the CSV or the layout (--layout)")
    table.check_rows()
    return table


def _scale(score_range) -> tuple[float, float]:
    """A given score scale as (low, high): two finite numbers, high > low."""
    try:
        lo, hi = (float(v) for v in score_range)
    except (TypeError, ValueError):
        raise ZooError(f"score_range {score_range!r} is not two numbers; give [low, high]") from None
    if not (np.isfinite([lo, hi]).all() and hi > lo):
        raise ZooError(f"score_range {score_range!r} is empty or not finite; give [low, high] with high > low")
    return lo, hi
