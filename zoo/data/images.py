"""Image sources: folder-per-class trees, flat folders of images, the CIFAR-10 JPEG tarball, IDX files.

`open_split(spec, split)` turns what a user points at into a dataset of ``(PIL image, label)`` pairs:

* a catalogue name (``cifar10_jpeg``, ``fashion_mnist``), resolved under the data root;
* a folder with ``train/<class>/`` and ``test/<class>/`` trees (split chosen by ``split``);
* a folder of ``<class>/`` sub-folders (one split);
* a ``.tar.gz`` archive of either layout (unpacked once into the cache);
* a folder of IDX files (``train-images-idx3-ubyte[.gz]`` ...), as Fashion-MNIST and MNIST ship;
* with ``labelled=False``, any folder of images, searched recursively (label -1), e.g. an OOD set.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ZooError
from .catalog import catalog, locate, unpack_user_archive

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_IDX_NAMES = {"train": "train", "test": "t10k"}


def load_image(path: Path) -> Image.Image:
    """Decode one image fully, turning any decoder failure into an error that names the file."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ZooError(f"cannot read image {path}: {exc}") from None


class FileImageDataset:
    """Images on disk with integer labels (-1 when unlabelled). Items: ``(PIL.Image, int)``."""

    def __init__(self, paths: list[Path], labels: list[int], classes: list[str], name: str):
        self.paths, self.labels, self.classes, self.name = paths, labels, classes, name

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return load_image(self.paths[i]), self.labels[i]


class ArrayImageDataset:
    """Images held in memory as uint8 ``[N, H, W]`` (grey) or ``[N, H, W, 3]``. Items: ``(PIL.Image, int)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], name: str):
        self.images, self.labels, self.classes, self.name = images, labels, classes, name

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return Image.fromarray(self.images[i]), int(self.labels[i])


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


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


def is_idx_folder(folder: Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and any(_idx_file(folder, p, "images") for p in _IDX_NAMES.values())


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


def open_split(spec: str | Path, split: str = "test", *, labelled: bool = True):
    """A dataset for ``split`` of whatever ``spec`` names (see the module docstring)."""
    spec_s = str(spec)
    if spec_s in catalog():
        folder = locate(spec_s)
        name = spec_s
    else:
        folder = Path(spec_s).expanduser()
        if not folder.exists():
            raise ZooError(f"data path {folder} does not exist (nor is {spec_s!r} a catalogue dataset: "
                           f"{', '.join(catalog())})")
        name = folder.name.split(".")[0]
        if folder.is_file():
            if not folder.name.endswith((".tar.gz", ".tgz", ".tar")):
                raise ZooError(f"{folder}: expected a folder or a .tar.gz archive of images")
            folder = unpack_user_archive(folder)
    if is_idx_folder(folder):
        return idx_folder(folder, split, name=name)
    if (folder / split).is_dir():
        return image_folder(folder / split, labelled=labelled, name=name)
    if labelled and any((folder / s).is_dir() for s in ("train", "test")):
        raise ZooError(f"{folder} has no {split}/ folder")
    return image_folder(folder, labelled=labelled, name=name)
