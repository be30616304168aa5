"""Real images for distillation and evaluation, held in memory as normalised tensors (Lightning-free; the
DataModule is `zoo.models.doorping.data`).

Distillation samples class pools at random every step, so the whole training split is loaded once into a tensor
([N, C, H, W] float32, the dataset's normalisation). Sources are anything `zoo.data.images.open_split`
understands: catalogue names (``fashion_mnist``, ``cifar10_jpeg``), IDX folders (MNIST, Fashion-MNIST),
``train/<class>/`` + ``test/<class>/`` image trees or archives (CIFAR-10/100, SVHN, STL-10 exported as images).
Decoded uint8 arrays of image folders are cached under ``<ZOO_HOME>/data/doorping-arrays`` (written atomically):
one file per folder, split and size, used while the folder's listing (every image's path, class, size and
modification time) is the one it was decoded from, and rewritten when it is not.

Normalisation: the DOORPING code's constants for the datasets it knows (`STATS`, by dataset name), otherwise the
per-channel mean and std of the training split.

Image size: the DOORPING code trains and distils every dataset at 32 px (``get_dataset``: ``im_size`` (32, 32)); it
resizes MNIST and Fashion-MNIST (28 px) and STL-10 (96 px) with torchvision's resize of the PIL image, i.e. PIL's
bilinear resize of the uint8 image, before a trigger is stamped. `load_real` does the same by default for those
datasets (`AUTHORS_SIZE`); ``image_size`` chooses another side (``image_size=28`` keeps Fashion-MNIST native).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import ZooError

STATS = {
    "mnist": ([0.1307], [0.3081]),
    "fashion_mnist": ([0.2861], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
    "cifar100": ([0.5071, 0.4866, 0.4409], [0.2673, 0.2564, 0.2762]),
    "svhn": ([0.4377, 0.4438, 0.4728], [0.1980, 0.2010, 0.1970]),
    "stl10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),  # the authors reuse CIFAR-10's
}

# The side the DOORPING code resizes a dataset to, where that is not its native size (default of `load_real`).
AUTHORS_SIZE = {"mnist": 32, "fashion_mnist": 32, "stl10": 32}


def dataset_name(name: str) -> str:
    """``cifar10_jpeg`` / ``CIFAR-10`` / ``fashion-mnist`` -> ``cifar10`` / ``cifar10`` / ``fashion_mnist``."""
    n, before = name.lower().replace("-", "_"), None
    while n != before:  # idempotent: ``pets_jpeg_images`` -> ``pets`` (a set records the name, and is checked by it)
        before, n = n, n.removesuffix("_jpeg").removesuffix("_images")
    return {"cifar_10": "cifar10", "cifar_100": "cifar100", "stl_10": "stl10", "fashionmnist": "fashion_mnist"}.get(n, n)


@dataclass
class RealImages:
    """One split in memory: ``images`` [N, C, H, W] float32 (normalised), ``labels`` [N] long."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    mean: list[float]
    std: list[float]
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])


def _listing_digest(ds) -> tuple[Path, str]:
    """(the folder the images lie under, sha256 of what the decoded arrays depend on): the classes, and every
    image's path relative to that folder with its label, size and modification time, so that a file added,
    removed, moved to another class or rewritten gives another digest (a stat per file, cheap beside decoding)."""
    paths = [os.fspath(p) for p in ds.paths]
    root = os.path.commonpath(paths)
    h = hashlib.sha256("\0".join(ds.classes).encode())
    for path, label in zip(paths, ds.labels):
        st = os.stat(path)
        h.update(f"\n{path[len(root):]}\0{label}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return Path(root).resolve(), h.hexdigest()


def _cache_file(root: Path, split: str, image_size: int | None) -> Path:
    """The cache of one folder's split at one size: one file per source, rewritten when the listing changes."""
    from ...hub import cache_dir

    key = f"{root}|{split}|{image_size}"
    return cache_dir() / "data" / "doorping-arrays" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _cached(cache: Path, digest: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(images, labels) from ``cache`` if it was written for the listing ``digest``, else None (also when the file
    cannot be read)."""
    if not cache.exists():
        return None
    try:
        with np.load(cache) as z:
            if "listing" not in z.files or str(z["listing"]) != digest:
                return None
            return z["images"], z["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # unreadable: decode again and rewrite it
        return None


def _decode(ds, image_size: int | None) -> np.ndarray:
    """Every image of ``ds`` as uint8 [N, H, W] (all grey) or [N, H, W, 3] (grey images among colour ones are
    repeated over the three channels); images of different sizes need ``image_size``."""
    from PIL import Image

    out = []
    for i in range(len(ds)):
        im, _ = ds[i]
        if image_size and im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), Image.BILINEAR)
        out.append(np.asarray(im.convert("L") if im.mode in ("L", "I", "F", "1") else im.convert("RGB")))
        if out[-1].shape[:2] != out[0].shape[:2]:
            raise ZooError(f"{ds.paths[i]} is {out[-1].shape[1]}x{out[-1].shape[0]} but {ds.paths[0]} is "
                           f"{out[0].shape[1]}x{out[0].shape[0]}: images of different sizes need image_size (the "
                           f"side to resize every image to)")
    if any(x.ndim == 3 for x in out):
        out = [x if x.ndim == 3 else np.repeat(x[..., None], 3, axis=-1) for x in out]
    return np.stack(out)


def _uint8_arrays(ds, split: str, image_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, H, W] or [N, H, W, 3] uint8, labels [N] int64) of a dataset from `open_split`."""
    if hasattr(ds, "images"):  # IDX files: already an array
        x = ds.images
        if image_size and x.shape[1] != image_size:
            x = _decode(ds, image_size)
        return x, np.asarray(ds.labels, dtype=np.int64)
    from ...io import atomic_path

    root, digest = _listing_digest(ds)
    cache = _cache_file(root, split, image_size)
    if (hit := _cached(cache, digest)) is not None:
        return hit
    x, y = _decode(ds, image_size), np.asarray(ds.labels, dtype=np.int64)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=x, labels=y, listing=np.array(digest))
    return x, y


def load_real(data: str, split: str, *, image_size: int | None = None, mean=None, std=None,
              name: str | None = None) -> RealImages:
    """Load ``split`` of ``data`` into memory, normalised.

    Args:
        data: catalogue name, folder or archive (see `zoo.data.images.open_split`).
        image_size: resize to this side (PIL bilinear on the uint8 image); default: the authors' side for MNIST,
            Fashion-MNIST and STL-10 (`AUTHORS_SIZE`: 32), else the native size.
        mean, std: normalisation; default: `STATS` for a known dataset name, else computed from this split.
        name: dataset name (default: derived from ``data``).
    """
    from ...data.images import open_split

    ds = open_split(data, split)
    if len(ds) == 0:
        raise ZooError(f"{data}: split {split!r} has no images")
    name = dataset_name(name or ds.name)
    if image_size is None:
        image_size = AUTHORS_SIZE.get(name)
    x, y = _uint8_arrays(ds, split, image_size)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1] != x.shape[2]:
        raise ZooError(f"{data}: images are {x.shape[1]}x{x.shape[2]}; DOORPING's networks need square images "
                       f"(pass image_size to resize)")
    if y.min() < 0:
        raise ZooError(f"{data}: split {split!r} has unlabelled images; distillation needs class labels")
    images = torch.from_numpy(np.array(x, copy=True)).permute(0, 3, 1, 2).float().div_(255)
    if mean is None or std is None:
        mean, std = STATS.get(name) or (images.mean(dim=(0, 2, 3)).tolist(), images.std(dim=(0, 2, 3)).tolist())
    if len(mean) != images.shape[1] or len(std) != images.shape[1]:
        raise ZooError(f"{data}: {images.shape[1]}-channel images but mean/std {list(mean)}/{list(std)} have "
                       f"{len(mean)} values")
    if not all(v > 0 for v in std):
        raise ZooError(f"{data}: std {list(std)} has a value that is not > 0 (a channel that is constant over split "
                       f"{split!r}?); give std values > 0")
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    images.sub_(m).div_(s)
    classes = list(getattr(ds, "classes", [])) or [str(c) for c in range(int(y.max()) + 1)]
    return RealImages(images, torch.from_numpy(y), name, [float(v) for v in mean], [float(v) for v in std], classes)


def renormalise(images: torch.Tensor, mean, std, new_mean, new_std) -> torch.Tensor:
    """[N, C, H, W] normalised with (mean, std) -> the same pixels normalised with (new_mean, new_std)."""
    if list(mean) == list(new_mean) and list(std) == list(new_std):
        return images
    col = lambda v: torch.tensor(v, dtype=images.dtype)[:, None, None]
    return (images * col(std) + col(mean) - col(new_mean)) / col(new_std)
