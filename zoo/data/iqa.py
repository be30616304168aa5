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

LIVE and CSIQ give DMOS (lower is better); as the paper does, the score is regressed as given, and
``higher_better`` records the direction (``zoo eval --task iqa`` correlates quality predictions with -DMOS there).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ZooError

IMAGE_COLUMNS = ("image", "img_name", "dis_img_path", "dist_name", "dist_img")
SCORE_COLUMNS = ("mos", "mos_0_1", "score", "dmos")
REF_COLUMNS = ("ref_name", "ref_img", "ref_img_path")
LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))


@dataclass
class IQATable:
    """Rows of one IQA dataset.

    Attributes:
        name: dataset name; paths: image files; scores: float64 [N] in the dataset's scale.
        score_range: (low, high) of the scale (quality levels are equal-width bins of it).
        higher_better: False for DMOS datasets.
        refs: reference image of each row (the unit of splitting), or None.
        split: official split label of each row (``train`` / ``val`` / ``test``), or None.
    """

    name: str
    paths: list[Path]
    scores: np.ndarray
    score_range: tuple[float, float]
    higher_better: bool = True
    refs: list[str] | None = None
    split: list[str] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, rows) -> IQATable:
        rows = [int(r) for r in rows]
        return replace(self, paths=[self.paths[r] for r in rows], scores=self.scores[rows],
                       refs=[self.refs[r] for r in rows] if self.refs else None,
                       split=[self.split[r] for r in rows] if self.split else None)

    def levels(self, num_levels: int) -> np.ndarray:
        """Quality level of each row [N] (int64): equal-width bins of ``score_range``, clamped to
        ``[0, num_levels - 1]``. The PMT-IQA authors bin per dataset (``int(DMOS / 10)`` for LIVE, ``round(MOS / 10)``
        for LIVE Challenge and KonIQ, ``int(MOS / 0.5)`` for BID); their ``round`` and a score at the top of the
        scale give level 10 for a 10-way head. Clamping fixes that."""
        lo, hi = self.score_range
        if not hi > lo:
            raise ZooError(f"{self.name}: score range {self.score_range} is empty; give (low, high) with high > low")
        return np.clip(np.floor((self.scores - lo) / (hi - lo) * num_levels), 0, num_levels - 1).astype(np.int64)

    def check_files(self) -> None:
        """Raise one error naming the first missing image (and how many are missing)."""
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ZooError(f"image {missing[0]} listed by dataset {self.name!r} does not exist{more}; "
                           f"fix the path or the CSV row")


def _csv_rows(path: Path) -> list[dict]:
    """The rows of CSV file ``path`` as dicts keyed by its header."""
    if not path.is_file():
        raise ZooError(f"{path} does not exist; point --data at the dataset folder as distributed, --csv at an "
                       f"existing CSV, or --layout at the layout this folder has (auto detects it)")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ZooError(f"{path} has no rows; add a header line and one row per image")
    return rows


def _pick(columns, candidates, given, path, what) -> str | None:
    if given:
        if given not in columns:
            raise ZooError(f"{path} has no column {given!r} (columns: {', '.join(columns)}); pass one of these")
        return given
    found = next((c for c in candidates if c in columns), None)
    if found is None and what in ("image", "score"):
        raise ZooError(f"{path}: no {what} column found (looked for {', '.join(candidates)}; columns: "
                       f"{', '.join(columns)}); name it with --{what}-col ({what}_col in a config)")
    return found


def _resolve(root: Path, name: str) -> Path:
    for folder in (root, root / "images", root / "Images"):
        if (folder / name).is_file():
            return folder / name
    return root / name


def _float(value, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ZooError(f"{where}: score {value!r} is not a number; fix that row or pick the score column") from None


def read_csv_table(root: Path, csv_path: Path | None = None, image_col: str | None = None,
                   score_col: str | None = None, score_range=None) -> IQATable:
    """The generic layout: a CSV (``csv_path``, or the single ``*.csv`` in ``root``) of images and scores."""
    if csv_path is None:
        found = sorted(root.glob("*.csv"))
        if len(found) != 1:
            raise ZooError(f"{root}: expected one CSV of image names and scores, found "
                           f"{len(found) or 'none'}{': ' + ', '.join(p.name for p in found) if found else ''}; "
                           f"name it with the csv option")
        csv_path = found[0]
    rows = _csv_rows(csv_path)
    cols = list(rows[0])
    img = _pick(cols, IMAGE_COLUMNS, image_col, csv_path, "image")
    score = _pick(cols, SCORE_COLUMNS, score_col, csv_path, "score")
    ref = _pick(cols, REF_COLUMNS, None, csv_path, "reference")
    scores = np.array([_float(r[score], f"{csv_path}, row {i + 2}") for i, r in enumerate(rows)])
    if score_range is None:
        score_range = (0.0, 1.0) if score == "mos_0_1" else (float(scores.min()), float(scores.max()))
    return IQATable(name=root.name, paths=[_resolve(root, r[img]) for r in rows], scores=scores,
                    score_range=tuple(score_range), higher_better=score != "dmos",
                    refs=[r[ref] for r in rows] if ref else None,
                    split=[r["split"] for r in rows] if "split" in cols else None)


def read_biq2021(root: Path) -> IQATable:
    """BIQ2021 as distributed (github.com/nisarahmedrana/BIQ2021): 10 000 train + 2 000 test images."""
    paths, scores, split = [], [], []
    for name, label in (("Train", "train"), ("Test", "test")):
        f = next((root / n for n in (f"{name}.csv", f"{name} (Images and MOS).csv") if (root / n).exists()), None)
        if f is None:
            raise ZooError(f"{root}: BIQ2021 needs {name}.csv; point at the folder holding Train.csv, Test.csv "
                           f"and Images/")
        for i, r in enumerate(_csv_rows(f)):
            paths.append(_resolve(root, r["Image Name"]))
            scores.append(_float(r["MOS"], f"{f}, row {i + 2}"))
            split.append(label)
    return IQATable("biq2021", paths, np.array(scores), (0.0, 1.0), split=split)


def read_koniq10k(root: Path) -> IQATable:
    """KonIQ-10k: MOS_zscore (0-100) as the authors use; the official split from the sets file when present."""
    f = root / "koniq10k_scores_and_distributions.csv"
    folder = next((root / d for d in ("1024x768", "512x384") if (root / d).is_dir()), root / "1024x768")
    rows = _csv_rows(f)
    split = None
    sets = root / "koniq10k_distributions_sets.csv"
    if sets.exists():
        by_name = {r["image_name"]: r["set"] for r in _csv_rows(sets)}
        label = {"training": "train", "validation": "val", "test": "test"}
        unknown = [r["image_name"] for r in rows if by_name.get(r["image_name"]) not in label]
        if unknown:
            raise ZooError(f"{sets}: no training/validation/test set for {unknown[0]} ({len(unknown)} images); use the "
                           f"sets file that came with the scores file, or remove it to use random splits")
        split = [label[by_name[r["image_name"]]] for r in rows]
    scores = np.array([_float(r["MOS_zscore"], f"{f}, row {i + 2}") for i, r in enumerate(rows)])
    return IQATable("koniq10k", [folder / r["image_name"] for r in rows], scores, (0.0, 100.0), split=split)


def _loadmat(path: Path) -> dict:
    from ..errors import require

    require("scipy", "iqa")
    import scipy.io

    if not path.exists():
        raise ZooError(f"{path} does not exist; point at the dataset folder as distributed")
    return scipy.io.loadmat(str(path))


def _mat_strings(cells) -> list[str]:
    return [str(np.asarray(c).ravel()[0]) for c in np.asarray(cells, dtype=object).ravel()]


def read_livec(root: Path) -> IQATable:
    """LIVE In the Wild Image Quality Challenge: 1 162 images after dropping the first 7, as the authors do."""
    names = _mat_strings(_loadmat(root / "Data" / "AllImages_release.mat")["AllImages_release"])[7:]
    mos = np.asarray(_loadmat(root / "Data" / "AllMOS_release.mat")["AllMOS_release"], dtype=np.float64).ravel()[7:]
    return IQATable("livec", [root / "Images" / n for n in names], mos, (0.0, 100.0))


def read_live(root: Path) -> IQATable:
    """LIVE Release 2: 779 distorted images of 29 references, DMOS (realigned), reference copies dropped."""
    paths = [root / d / f"img{i}.bmp" for d, n in LIVE_FOLDERS for i in range(1, n + 1)]
    mat = _loadmat(root / "dmos_realigned.mat")
    dmos = np.asarray(mat["dmos_new"], dtype=np.float64).ravel()
    orgs = np.asarray(mat["orgs"]).ravel().astype(bool)
    refs = _mat_strings(_loadmat(root / "refnames_all.mat")["refnames_all"])
    if not len(dmos) == len(orgs) == len(refs) == len(paths):
        raise ZooError(f"{root}: expected {len(paths)} DMOS, orgs and reference names, got {len(dmos)}, "
                       f"{len(orgs)}, {len(refs)}; use the .mat files that came with these images")
    keep = np.flatnonzero(~orgs)
    return IQATable("live", [paths[i] for i in keep], dmos[keep], (0.0, 100.0), higher_better=False,
                    refs=[refs[i] for i in keep])


def _name_score_lines(path: Path, name_first: bool) -> list[tuple[str, float]]:
    if not path.exists():
        raise ZooError(f"{path} does not exist; point at the dataset folder as distributed")
    out = []
    for i, line in enumerate(path.read_text().splitlines()):
        words = line.split()
        if not words:
            continue
        if len(words) < 2:
            raise ZooError(f"{path}, line {i + 1}: expected a name and a score, got {line!r}; fix or remove that line")
        name, score = (words[0], words[1]) if name_first else (words[1], words[0])
        out.append((name, _float(score, f"{path}, line {i + 1}")))
    return out


def read_csiq(root: Path) -> IQATable:
    """CSIQ in the HyperIQA/PMT-IQA packaging: ``csiq_label.txt`` lines ``1600.AWGN.1.png 0.062``."""
    rows = _name_score_lines(root / "csiq_label.txt", name_first=True)
    return IQATable("csiq", [root / "dst_imgs_all" / n for n, _ in rows], np.array([s for _, s in rows]),
                    (0.0, 1.0), higher_better=False, refs=[n.split(".")[0] for n, _ in rows])


def read_tid2013(root: Path) -> IQATable:
    """TID2013: ``mos_with_names.txt`` lines ``5.51429 i01_01_1.bmp``; reference = the ``iNN`` prefix."""
    rows = _name_score_lines(root / "mos_with_names.txt", name_first=False)
    return IQATable("tid2013", [root / "distorted_images" / n for n, _ in rows], np.array([s for _, s in rows]),
                    (0.0, 9.0), refs=[n[1:3] for n, _ in rows])


def read_kadid10k(root: Path) -> IQATable:
    """KADID-10k: ``dmos.csv`` (dist_img, ref_img, dmos, var); its "DMOS" is a 1-5 rating, higher is better."""
    f = root / "dmos.csv"
    rows = _csv_rows(f)
    return IQATable("kadid10k", [root / "images" / r["dist_img"] for r in rows],
                    np.array([_float(r["dmos"], f"{f}, row {i + 2}") for i, r in enumerate(rows)]), (1.0, 5.0),
                    refs=[r["ref_img"] for r in rows])


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
        layout: ``auto`` (detect) or a layout name; csv_path, image_col, score_col: for the ``csv`` layout.
        score_range: (low, high) override of the score scale.
    """
    from .catalog import catalog, locate

    name = str(spec)
    root = locate(name) if name in catalog() else Path(name).expanduser()
    if not root.is_dir():
        raise ZooError(f"IQA data {spec} is neither a folder nor a catalogue dataset; pass a folder of images with a "
                       f"CSV of scores, or one of {', '.join(catalog())}")
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "csv":
        table = read_csv_table(root, Path(csv_path) if csv_path else None, image_col, score_col, score_range)
    elif layout in READERS:
        table = READERS[layout](root)
    else:
        raise ZooError(f"unknown IQA layout {layout!r}; choose auto, csv, {', '.join(READERS)}")
    if name in catalog():
        table = replace(table, name=name)
    if score_range is not None:
        table = replace(table, score_range=tuple(float(v) for v in score_range))
    if len(table) == 0:
        raise ZooError(f"IQA data {spec} has no rows; check the CSV or the layout (--layout)")
    return table
