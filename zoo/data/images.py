"""Image sources: folder-per-class trees, flat folders of images, the CIFAR-10 JPEG tarball, IDX files.

`open_split(spec, split)` turns what a user points at into a dataset of ``(PIL image, label)`` pairs:

* a catalogue name (``cifar10_jpeg``, ``fashion_mnist``), resolved under the data root;
* an embedded name (``shapes``, ``skimage_textures``: `zoo.data.embedded.EMBEDDED`), built into the cache;
* a folder with ``train/<class>/`` and ``test/<class>/`` trees (split chosen by ``split``);
* a folder of ``<class>/`` sub-folders: one split, read whatever ``split`` asks for (unless ``whole`` names the
  one split it stands for: classification evaluation scores such a folder whole as split ``test``, and refuses
  another split of it, except one the folder is named after, ``val/<class>/``);
* a ``.tar.gz`` archive of either layout (unpacked once into the cache);
* a folder of IDX files (``train-images-idx3-ubyte[.gz]`` ...), as Fashion-MNIST and MNIST ship;
* with ``labelled=False``, any folder of images, searched recursively (label -1), e.g. an OOD set.

A folder or archive that holds nothing but one folder (``name/train/...``) is read from inside that folder.
`open_train_test(spec)` gives both splits of a source that has them, with the same class names: training, and
the OOD task's ID data (whose test images must not be its kNN bank), need them. `open_ood(spec)` gives an
unlabelled OOD set. Labels index the sorted class-folder names (IDX files: the label values); `relabel` re-indexes
them into a model's class names.
Symbolic links to folders are followed. Images are decoded to 8 bits a channel (`to_eight_bit`).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ZooError
from .catalog import catalog, locate, unpack_user_archive
from .embedded import EMBEDDED, embedded_folder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_IDX_NAMES = {"train": "train", "test": "t10k"}
_WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}  # Pillow's convert("RGB"/"L") clips these at 255
_SPLITS = ("train", "test")


def to_eight_bit(im: Image.Image, source: str | Path = "an image") -> Image.Image:
    """``im`` with 16-bit, 32-bit integer or float pixels scaled to 8-bit grey ("L"); other modes unchanged.

    Integer pixels in 0-65535 are read as 16-bit (Pillow opens 16-bit PNG, TIFF and PGM files as modes ``I;16``
    and ``I``), float pixels in [0, 1] as fractions; any other range has no defined scale and is a `ZooError`
    naming ``source``."""
    if im.mode not in _WIDE_MODES:
        return im
    a = np.asarray(im, dtype=np.float64)
    top = 1.0 if im.mode == "F" else 65535.0
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if not (lo >= 0 and hi <= top):  # also refuses NaN
        raise ZooError(f"cannot read image {source}: its {im.mode} pixels range from {lo:g} to {hi:g}, which has no "
                       f"8-bit scale (integer pixels are read as 16-bit, 0-65535; float pixels as 0-1): save it "
                       f"as an 8- or 16-bit image")
    return Image.fromarray(np.rint(a * (255.0 / top)).astype(np.uint8))


def load_image(path: Path) -> Image.Image:
    """Decode one image fully to 8 bits a channel, turning any decoder failure into an error that names the file."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_eight_bit(im.copy(), path)
    except Image.DecompressionBombError as exc:
        raise ZooError(f"cannot read image {path}: {exc} Pillow refuses images this large as a guard against "
                       f"decompression bombs; if the image is genuine, downscale it or raise that limit "
                       f"(PIL.Image.MAX_IMAGE_PIXELS) in Python") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ZooError(f"cannot read image {path}: {exc}") from None


class FileImageDataset:
    """Images on disk with integer labels (-1 when unlabelled). Items: ``(PIL.Image, int)``."""

    def __init__(self, paths: list[Path], labels: list[int], classes: list[str], name: str):
        self.paths, self.labels, self.classes, self.name = paths, labels, classes, name

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return load_image(self.paths[i]), int(self.labels[i])


class ArrayImageDataset:
    """Images held in memory as uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]``. Items: ``(PIL.Image, int)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], name: str):
        self.images, self.labels, self.classes, self.name = images, labels, classes, name

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return Image.fromarray(self.images[i]), int(self.labels[i])


def relabel(ds, classes: list[str]):
    """Re-index the labels of the labelled dataset ``ds`` into ``classes`` (which holds every name of
    ``ds.classes``), in place, and make ``classes`` its class list; returns ``ds``."""
    index = np.array([classes.index(c) for c in ds.classes], dtype=np.int64)
    ds.labels, ds.classes = index[np.asarray(ds.labels, dtype=np.int64)], list(classes)
    return ds


def _images_under(folder: Path) -> list[Path]:
    """The image files under ``folder``, recursively, following symbolic links to folders (each real folder once, so
    a link loop ends); a broken link with an image suffix is a `ZooError` naming it."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for f in files:
            p = Path(root) / f
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if p.is_file():
                found.append(p)
            elif not p.exists():
                raise ZooError(f"{p} is a broken symbolic link (to {os.readlink(p)}): fix or remove it")
    return sorted(found)


def image_folder(folder: Path, *, labelled: bool = True, name: str | None = None) -> FileImageDataset:
    """Folder-per-class tree (``labelled``) or any folder of images searched recursively (labels -1)."""
    folder = Path(folder)
    name = name or folder.name
    if not folder.is_dir():
        raise ZooError(f"{folder} is not a folder")
    if labelled:
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        paths, labels = [], []
        for c, cls in enumerate(classes):
            files = _images_under(folder / cls)
            paths += files
            labels += [c] * len(files)
    else:
        classes, paths = [], _images_under(folder)
        labels = [-1] * len(paths)
    if not paths:
        raise ZooError(f"no images found in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
                       f"{' in class sub-folders' if labelled else ', recursively'})")
    return FileImageDataset(paths, labels, classes, name)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise ZooError(f"cannot read IDX file {path}: {exc}") from None


def _idx_file(folder: Path, prefix: str, kind: str) -> Path | None:
    for suffix in (".gz", ""):
        p = folder / f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte{suffix}"
        if p.exists():
            return p
    return None


def _idx_image_files(folder: Path) -> list[Path]:
    """Every IDX image file (``*idx3-ubyte[.gz]``) in ``folder``, sorted."""
    return sorted(p for pattern in ("*idx3-ubyte", "*idx3-ubyte.gz") for p in folder.glob(pattern))


def is_idx_folder(folder: Path) -> bool:
    """Whether ``folder`` holds IDX image files (``*idx3-ubyte[.gz]``, e.g. MNIST's ``t10k-images-idx3-ubyte.gz``)."""
    folder = Path(folder)
    return folder.is_dir() and bool(_idx_image_files(folder))


def idx_folder(folder: Path, split: str, name: str | None = None) -> ArrayImageDataset:
    """MNIST-style IDX files (``train-*`` / ``t10k-*``, optionally gzipped) as a dataset."""
    prefix = _IDX_NAMES.get(split)
    images = _idx_file(folder, prefix, "images") if prefix else None
    labels = _idx_file(folder, prefix, "labels") if prefix else None
    if images is None or labels is None:
        raise ZooError(f"{folder}: no IDX files for split {split!r} (expected {prefix}-images-idx3-ubyte[.gz] "
                       f"and {prefix}-labels-idx1-ubyte[.gz])")
    x, y = _read_idx(images), _read_idx(labels)
    if len(x) != len(y):
        raise ZooError(f"{folder}: {len(x)} images but {len(y)} labels for split {split!r}")
    classes = [str(i) for i in range(int(y.max()) + 1)]
    return ArrayImageDataset(x, y.astype(np.int64), classes, name or Path(folder).name)


def idx_images(folder: Path, name: str | None = None) -> ArrayImageDataset:
    """The images of an IDX folder without labels (label -1), as an OOD set takes them: the test split's
    ``t10k-images-idx3-ubyte[.gz]`` when present, else the folder's one ``*idx3-ubyte[.gz]`` file."""
    folder = Path(folder)
    test = _idx_file(folder, "t10k", "images")
    files = [test] if test else _idx_image_files(folder)
    if len(files) != 1:
        raise ZooError(f"{folder} holds {len(files)} IDX image files ({', '.join(p.name for p in files)}) and no "
                       f"t10k-images-idx3-ubyte[.gz]: keep only the one to use, or name it that")
    x = _read_idx(files[0])
    if x.ndim != 3:
        raise ZooError(f"{files[0]}: IDX images must have shape [N, H, W], got {list(x.shape)}")
    return ArrayImageDataset(x, np.full(len(x), -1, dtype=np.int64), [], name or folder.name)


def _lone_folder(folder: Path) -> Path:
    """``folder``, or, while it holds nothing but one sub-folder that has no images of its own and is not a split
    (an archive of ``name/train/...``), that sub-folder."""
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].name in _SPLITS:
            return folder
        inner = entries[0]
        if any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in inner.iterdir()):
            return folder  # a one-class tree: inner is the class
        folder = inner


def _resolve(spec: str | Path) -> tuple[Path, str]:
    """The folder that ``spec`` names (a catalogue dataset's, a folder, or an archive unpacked into the cache; see
    `_lone_folder`) and the dataset's name."""
    spec_s = str(spec)
    if spec_s in catalog():
        return locate(spec_s), spec_s
    if spec_s in EMBEDDED:
        return embedded_folder(spec_s), spec_s
    folder = Path(spec_s).expanduser()
    if not folder.exists():
        raise ZooError(f"data path {folder} does not exist (nor is {spec_s!r} a catalogue dataset: "
                       f"{', '.join(catalog())}; or an embedded one: {', '.join(EMBEDDED)})")
    name = folder.name.split(".")[0]
    if folder.is_file():
        if not folder.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise ZooError(f"{folder}: expected a folder or a .tar.gz archive of images")
        folder = unpack_user_archive(folder)
    return (_lone_folder(folder) if folder.is_dir() else folder), name


def _split_of(folder: Path, split: str, labelled: bool, name: str, whole: str | None = None):
    """Split ``split`` of the resolved ``folder`` (see the module docstring; ``whole``: see `open_split`)."""
    if is_idx_folder(folder):
        return idx_folder(folder, split, name=name)
    if (folder / split).is_dir():
        return image_folder(folder / split, labelled=labelled, name=name)
    if labelled and any((folder / s).is_dir() for s in _SPLITS):
        there = ", ".join(s for s in _SPLITS if (folder / s).is_dir())
        raise ZooError(f"{folder} has no {split}/ folder; its splits: {there}")
    if whole is not None and split not in (whole, folder.name):
        raise ZooError(f"split {split}: {folder} has no split folders ({'/, '.join(_SPLITS)}/), so it is scored "
                       f"whole, as split {whole}: leave the split out, or give a folder holding {split}/<class>/")
    return image_folder(folder, labelled=labelled, name=name)


def open_split(spec: str | Path, split: str = "test", *, labelled: bool = True, whole: str | None = None):
    """A dataset for ``split`` of whatever ``spec`` names (see the module docstring). ``whole``: the one split a
    folder without split folders stands for (another is a `ZooError` rather than the whole folder under its name);
    None: any."""
    folder, name = _resolve(spec)
    return _split_of(folder, split, labelled, name, whole)


def open_train_test(spec: str | Path):
    """``(train, test)`` datasets of a source with both splits: a folder or archive holding ``train/<class>/`` and
    ``test/<class>/``, a catalogue dataset, or an IDX folder (``train-*`` and ``t10k-*`` files). A source without
    them, or whose splits name different classes (one label would mean two classes), is a `ZooError`."""
    folder, name = _resolve(spec)
    if not is_idx_folder(folder) and not all((folder / s).is_dir() for s in _SPLITS):
        found = " and ".join(f"{s}/" for s in _SPLITS if (folder / s).is_dir()) or "neither"
        raise ZooError(f"{spec} needs separate train and test splits (found {found}): give a folder or .tar.gz "
                       f"holding train/<class>/ and test/<class>/, or IDX files train-* and t10k-*")
    train, test = (_split_of(folder, s, True, name) for s in _SPLITS)
    if train.classes != test.classes:
        only = {s: sorted(set(a.classes) - set(b.classes)) for s, a, b in (("train", train, test),
                                                                            ("test", test, train))}
        raise ZooError(f"{spec}: the train and test splits must have the same classes (folder names), so that a "
                       f"label means one class in both; only in train: {', '.join(only['train']) or 'none'}; only "
                       f"in test: {', '.join(only['test']) or 'none'}")
    return train, test


def _unlabelled(folder: Path, name: str | None = None):
    """The images of ``folder`` without labels: an IDX folder's (`idx_images`), else all images under it."""
    return idx_images(folder, name) if is_idx_folder(folder) else image_folder(folder, labelled=False, name=name)


def open_ood(spec: str):
    """An OOD set (labels -1) named ``spec``: a catalogue dataset (``fashion_mnist`` -> its IDX test images,
    ``biq2021_subset`` -> its photos), an embedded set (``skimage_textures``; see `zoo.data.embedded`), or a path:
    an IDX folder (`idx_images`), a folder of images, searched recursively, or a .tar.gz of one (named after it;
    resolved as every data option is, `_resolve`)."""
    folder, name = _resolve(spec)
    return _unlabelled(folder, name)
