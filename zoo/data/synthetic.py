"""Embedded datasets that need no download: generated shapes (an ID classification set) and texture crops from
scikit-image's bundled CC0 photographs (an OOD set). The demo falls back to them when the real data is absent.

Both are written once into the cache through a temporary folder and an atomic rename.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..hub import cache_dir
from ..io import write_dir_once

SHAPES = ("circle", "square", "triangle", "cross", "ring")
TEXTURES = ("brick", "grass", "gravel")


def _draw(shape: str, warm: bool, size: int, rng: np.random.Generator) -> Image.Image:
    bg = tuple(int(v) for v in rng.integers(0, 90, 3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    base = np.array([220, 90, 40]) if warm else np.array([40, 110, 220])
    color = tuple(int(v) for v in np.clip(base + rng.integers(-35, 36, 3), 0, 255))
    r = rng.uniform(0.22, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    box = [cx - r, cy - r, cx + r, cy + r]
    w = max(2, int(r / 3))
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    elif shape == "cross":
        d.rectangle([cx - r, cy - w / 2, cx + r, cy + w / 2], fill=color)
        d.rectangle([cx - w / 2, cy - r, cx + w / 2, cy + r], fill=color)
    else:
        d.ellipse(box, outline=color, width=w)
    noise = rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def shapes(n_train: int = 300, n_test: int = 60, size: int = 32, seed: int = 0) -> Path:
    """Ten classes (5 shapes x warm/cool colour) as ``train/<class>/*.png`` and ``test/<class>/*.png``."""
    dest = cache_dir() / "data" / f"synthetic-{n_train}-{n_test}-{size}-{seed}" / "shapes"

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        for split, n in (("train", n_train), ("test", n_test)):
            for shape in SHAPES:
                for warm in (True, False):
                    folder = tmp / split / f"{'warm' if warm else 'cool'}_{shape}"
                    folder.mkdir(parents=True)
                    for i in range(n):
                        _draw(shape, warm, size, rng).save(folder / f"{i:04d}.png")

    return write_dir_once(dest, fill)


def textures(n_per_texture: int = 200, size: int = 64, seed: int = 0) -> Path:
    """Random crops of scikit-image's brick, grass and gravel photographs (CC0): ``<texture>/*.png``."""
    import skimage.data

    dest = cache_dir() / "data" / f"skimage-{n_per_texture}-{size}-{seed}" / "textures"

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        for name in TEXTURES:
            img = getattr(skimage.data, name)()
            folder = tmp / name
            folder.mkdir(parents=True)
            for i in range(n_per_texture):
                y, x = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
                crop = np.rot90(img[y:y + size, x:x + size], k=int(rng.integers(0, 4)))
                Image.fromarray(np.ascontiguousarray(crop)).convert("RGB").save(folder / f"{i:04d}.png")

    return write_dir_once(dest, fill)
