"""The embedded datasets a command can name: data built on first use from what the zoo installs (`zoo.data.synthetic`),
so a documented command that uses one gives the same data on any machine, with no download and no path.

``EMBEDDED`` maps each name to the function that builds its folder (in the cache) and what it holds; every data
option that reads images (``--data``, ``--id-data``, ``--ood``) accepts these names beside catalogue names and paths
(`zoo.data.images.open_split`, `open_train_test` and `open_ood` resolve them), and ``tests/test_docs.py`` reads the
names from here. A new embedded set is one entry here and its builder in `zoo.data.synthetic`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from . import synthetic


class Embedded(NamedTuple):
    build: Callable[[], Path]
    about: str


EMBEDDED = {
    "shapes": Embedded(synthetic.shapes, "generated shapes: 10 classes, train/ and test/ splits, 32x32 (an ID set)"),
    "skimage_textures": Embedded(synthetic.textures, "random 64x64 crops of scikit-image's brick, grass and gravel "
                                                     "photographs, one folder each (an OOD set)"),
}


def embedded_folder(name: str) -> Path:
    """The folder of embedded dataset ``name`` (one of `EMBEDDED`), built into the cache on first use."""
    return EMBEDDED[name].build()
