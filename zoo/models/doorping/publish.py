"""Publish a distilled set into ``checkpoints/`` through `zoo.release` (the one writer of the manifest).

``python -m zoo.models.doorping.publish FILE --tag TAG --license L --recipe "CMD" --results JSON`` checks that FILE
is a distilled set, stages it as a release folder (``model.safetensors`` = the set's bytes, unchanged, and a
``config.json`` naming the pseudo-architecture ``doorping_distilled``), then calls `zoo.release.publish`, which copies
it to ``checkpoints/doorping_distilled.<TAG>-<sha256[:8]>.safetensors`` and writes the manifest entry. The key
prefix is not a model name, so `zoo.create_model` and ``zoo list --pretrained`` never take a set for weights;
`zoo.models.doorping.synset.load_distilled` fetches it by key (sha256-verified).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import yaml

from ...errors import ZooError
from ...release import publish as release
from . import KEY_PREFIX
from .synset import DistilledSet


def publish(path: str | Path, tag: str, *, license: str, recipe: str, results: list[dict],
            manifest: Path | None = None) -> dict:
    """Release the set at ``path`` as ``doorping_distilled.<tag>``; returns the manifest entry."""
    if not tag or "." in tag or "/" in tag:
        raise ZooError(f"tag {tag!r} must be non-empty without dots or slashes (e.g. fashion_mnist_dc_ipc10_doorping)")
    synset = DistilledSet.load(path)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copyfile(path, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps({"architecture": KEY_PREFIX, "model_args": {},
                                                        "distilled_set": synset.metadata()}))
        return release(folder, f"{KEY_PREFIX}.{tag}", license=license, recipe=recipe, results=results,
                       manifest=manifest)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m zoo.models.doorping.publish")
    p.add_argument("file", help="a distilled set (.safetensors)")
    p.add_argument("--tag", required=True, help="e.g. cifar10_dc_convnet_ipc10_doorping")
    p.add_argument("--license", required=True)
    p.add_argument("--recipe", required=True, help="the command that made the set")
    p.add_argument("--results", required=True, help="JSON list of {task, dataset, split, metric, paper_value, "
                                                     "zoo_value, command[, source]}")
    a = p.parse_args(argv)
    entry = publish(a.file, a.tag, license=a.license, recipe=a.recipe, results=json.loads(a.results))
    print(yaml.safe_dump({f"{KEY_PREFIX}.{a.tag}": entry}, sort_keys=False))


if __name__ == "__main__":
    main()
