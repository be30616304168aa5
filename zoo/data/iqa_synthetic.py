"""An embedded IQA set that needs no download: scikit-image's CC0 photographs, degraded by Gaussian blur or
noise of a random strength, scored ``mos_0_1 = 1 - strength``. The `zoo demo` falls back to it when the real
BIQ2021 subset is absent. Written once into the cache as ``images/*.png`` + ``mos.csv`` (image, mos_0_1, split).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..hub import cache_dir
from ..io import write_dir_once

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def distorted_photos(n: int = 96, size: int = 256, test_fraction: float = 0.25, seed: int = 0) -> Path:
    """A folder of ``n`` degraded ``size`` x ``size`` crops of the photographs, with ``mos.csv``."""
    import skimage.data

    dest = cache_dir() / "data" / f"iqa-synthetic-{n}-{size}-{seed}"

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        (tmp / "images").mkdir()
        photos = [np.asarray(Image.fromarray(getattr(skimage.data, p)()).convert("RGB")) for p in PHOTOS]
        rows = []
        for i in range(n):
            img = photos[i % len(photos)]
            y, x = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
            im = Image.fromarray(img[y:y + size, x:x + size])
            strength = float(rng.uniform(0, 1))
            if i % 2:
                im = im.filter(ImageFilter.GaussianBlur(radius=4 * strength))
            else:
                noisy = np.asarray(im, dtype=np.float64) + rng.normal(0, 60 * strength, (size, size, 3))
                im = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
            name = f"{i:04d}.png"
            im.save(tmp / "images" / name)
            rows.append({"image": name, "mos_0_1": f"{1 - strength:.4f}",
                         "split": "test" if rng.uniform() < test_fraction else "train"})
        with open(tmp / "mos.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["image", "mos_0_1", "split"])
            w.writeheader()
            w.writerows(rows)

    return write_dir_once(dest, fill)
