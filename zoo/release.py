"""Publish a zoo folder into ``checkpoints/``: the weights under a content-addressed name and a manifest entry.

``python -m zoo.release DIR --key NAME.TAG --license L --recipe "CMD" --results JSON [--origin JSON] [--fp16]
[--default]`` copies ``DIR/model.safetensors`` to ``checkpoints/<key>-<sha256[:8]>.safetensors`` and writes the entry
(file, sha256, size, ``file:`` URL, model_args and classes from ``DIR/config.json``, provenance, results) into the manifest,
replacing an entry of the same key. A result with a ``source`` (see `zoo.results`) must agree with the file it names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

import yaml

from .checkpoint import read_config, save_safetensors
from .errors import ZooError
from .hub import manifest_path, repo_root, sha256_file
from .io import atomic_path, write_text
from .registry import split_name
from .results import check_result

HEADER = ("# Weights the zoo serves: one entry per name.tag. Written by `python -m zoo.release`; see README.md.\n"
          "# results: paper_value beside zoo_value, with dataset, split and the command that measured zoo_value.\n")


@contextlib.contextmanager
def _locked(manifest: Path):
    import fcntl

    with open(manifest.parent / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fp16_copy(src: Path, dest: Path) -> None:
    """The safetensors file ``src`` written to ``dest`` with its floating tensors as float16."""
    from safetensors.torch import load_file

    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(str(src)).items()}
    save_safetensors(tensors, dest, metadata={"format": "pt", "dtype": "float16"})


def publish(folder: str | Path, key: str, *, license: str, recipe: str, results: list[dict],
            origin: dict | None = None, fp16: bool = False, manifest: Path | None = None,
            default: bool = False) -> dict:
    folder = Path(folder)
    cfg = read_config(folder)
    arch, tag = split_name(key)
    if not tag:
        raise ZooError(f"key {key!r} needs a tag: NAME.TAG")
    for result in results:
        check_result(result, repo_root())
    manifest = manifest or manifest_path()
    out_dir = manifest.parent
    staging = out_dir / f"{key}.staging.safetensors"
    with atomic_path(staging) as tmp:
        if fp16:
            fp16_copy(folder / "model.safetensors", tmp)
        else:
            tmp.write_bytes((folder / "model.safetensors").read_bytes())
    sha = sha256_file(staging)
    dest = out_dir / f"{key}-{sha[:8]}.safetensors"
    os.replace(staging, dest)
    model_args = cfg.get("model_args", {})
    if cfg["architecture"] != arch and "depth" in model_args and arch.endswith(str(model_args["depth"])):
        model_args = {k: v for k, v in model_args.items() if k != "depth"}  # e.g. cifar_resnet(depth=20) -> resnet20
    entry = {
        "file": dest.name, "sha256": sha, "size": dest.stat().st_size, "urls": [f"file:{dest.name}"],
        "model_args": model_args, **({"classes": cfg["classes"]} if cfg.get("classes") else {}),
        "license": license, "recipe": recipe, "results": results,
    }
    if origin:
        entry["origin"] = origin
    if default:
        entry["default"] = True
    with _locked(manifest):  # several writers (parallel trainings) may publish at once
        data = yaml.safe_load(manifest.read_text()) if manifest.exists() else {}
        old = (data or {}).get(key)
        data = {**(data or {}), key: entry}
        write_text(manifest, HEADER + yaml.safe_dump(data, sort_keys=False, width=120))
    if old and old["file"] != dest.name and (out_dir / old["file"]).exists():
        (out_dir / old["file"]).unlink()
    return entry


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m zoo.release")
    p.add_argument("folder")
    p.add_argument("--key", required=True)
    p.add_argument("--license", required=True)
    p.add_argument("--recipe", required=True, help="the command that made the weights")
    p.add_argument("--results", required=True, help="JSON list of {task, dataset, split, metric, paper_value, "
                                                     "zoo_value, command[, source]}")
    p.add_argument("--origin", default=None, help="JSON object: repo, file, sha256 of the authors' checkpoint")
    p.add_argument("--fp16", action="store_true", help="store floating tensors as float16")
    p.add_argument("--default", action="store_true", help="make this the default tag of its architecture")
    a = p.parse_args(argv)
    try:
        results, origin = _json_arg("--results", a.results), _json_arg("--origin", a.origin) if a.origin else None
        entry = publish(a.folder, a.key, license=a.license, recipe=a.recipe, results=results, origin=origin,
                        fp16=a.fp16, default=a.default)
    except ZooError as exc:
        p.error(str(exc))
    print(yaml.safe_dump({a.key: entry}, sort_keys=False))


def _json_arg(option: str, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ZooError(f"{option} is not valid JSON ({exc})") from None


if __name__ == "__main__":
    main()
