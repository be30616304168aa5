"""Get a checkout ready for one GPU session through the device tool (see ``benchmarks/README.md``).

The device machine has torch, transformers, timm, Lightning and scipy but no network, none of the zoo's other
dependencies and no ``../shared/data``; the working tree it receives, with what is carried, must stay under 64 MiB.
Run here, on the development machine (which reaches PyPI):

    .venv/bin/python benchmarks/gpu/prepare.py            # wheels, data, stash, size check; prints the run call
    .venv/bin/python benchmarks/gpu/prepare.py --restore  # afterwards: put the stashed weights back

It writes (both git-ignored):

* ``.whl/``: wheels for the device's Python 3.12 of what it lacks (jsonargparse with its signature helpers,
  platformdirs, mido, faiss-cpu), installed there by `session.py` with ``pip --no-index --no-deps``;
* ``.gpu/``: ``data/`` (the Groove MIDI archive; ``biq2021_test/``, the first ``--iqa-images`` (default: all 250)
  test images of the BIQ2021 subset with their rows of ``mos.csv``), ``smollm2-135m/`` (SmolLM2-135M's config and
  tokenizer, no weights: the drum-LM benchmarks build the full-size architecture with random weights, since the
  90 MB GGUF cannot travel), and ``COMMIT`` (this checkout's commit, recorded in the results).

``--stash`` (the default) moves the manifest's weight files that no GPU step reads out of the tree, to
``../zoo-gpu-stash/``, so that the tree fits; ``--restore`` moves them back (``git status`` is clean again).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STASH = ROOT.parent / "zoo-gpu-stash"
LIMIT = 64 * 2**20
CARRY = [".whl", ".gpu"]
# What the device lacks, pinned as requirements.txt (faiss-cpu's abi3 wheel serves Python 3.12).
WHEELS = ["jsonargparse==4.53.0", "docstring-parser", "typeshed-client", "platformdirs==4.14.8", "mido",
          "faiss-cpu==1.15.1", "pytest==9.2.0", "pluggy", "iniconfig"]
# Weight files a GPU step reads (benchmarks/compare_pmt_iqa.py scores with the published PMT-IQA weights).
KEEP = ("pmt_iqa_efficientnet_lite0.biq2021-",)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout


def download_wheels(dest: Path) -> None:
    dest.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                    "--dest", str(dest), *WHEELS], check=True)


def copy_data(gpu: Path, iqa_images: int) -> None:
    """Write ``.gpu/`` afresh: a smoke run leaves installed wheels and results there (about 90 MiB)."""
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
    for path in sorted(STASH.glob("*.safetensors")):
        shutil.move(path, ROOT / "checkpoints" / path.name)
    STASH.rmdir()
    print("restored; git status:", git("status", "--short") or "clean")


def travelling_bytes() -> int:
    """What the device tool sends: tracked files present, untracked files git does not ignore, carried paths."""
    files = git("ls-files", "--cached", "--others", "--exclude-standard").split("\n")
    total = sum((ROOT / f).stat().st_size for f in files if f and (ROOT / f).is_file())
    for c in CARRY:
        total += sum(p.stat().st_size for p in (ROOT / c).rglob("*") if p.is_file())
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--restore", action="store_true", help="move the stashed weights back and stop")
    p.add_argument("--no-stash", action="store_true", help="leave the weights in the tree")
    p.add_argument("--iqa-images", type=int, default=250, help="BIQ2021 test images to carry (250: all of them)")
    a = p.parse_args()
    if a.restore:
        restore()
        return
    download_wheels(ROOT / ".whl")
    copy_data(ROOT / ".gpu", a.iqa_images)
    moved = [] if a.no_stash else stash()
    size = travelling_bytes()
    if moved:
        print(f"stashed {len(moved)} weight files in {STASH} (put back with --restore)")
    print(f"the device tool would send {size / 2**20:.1f} MiB (limit 64 MiB)")
    if size > LIMIT:
        raise SystemExit("too large for the device tool: stash more, or carry less")
    print("\nthen call the device tool's run with:\n"
          '  command: "python3 benchmarks/gpu/session.py --out $OUT"\n'
          f"  carry: {CARRY}\n  timeout_s: 560\n"
          "and unpack its gpu_results.tar.gz here: tar xzf FILES_AT/gpu_results.tar.gz")


if __name__ == "__main__":
    main()
