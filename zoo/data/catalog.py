"""The dataset catalogue: where each known dataset lives, its checksums, licence and citation.

One setting points at the data: ``ZOO_DATA_DIR``, defaulting to ``../shared/data`` beside the checkout when that
folder exists. `locate` returns a dataset's folder, unpacking an archive once into the cache
(``<ZOO_HOME>/data/<name>-<sha8>``) through a temporary folder and an atomic rename, and checking every file's
sha256 the first time it is used. A missing dataset is one `ZooError` naming the file and the setting.
"""

from __future__ import annotations

import os
import tarfile
from functools import lru_cache
from pathlib import Path

from ..errors import ZooError
from ..hub import cache_dir, repo_root, sha256_file
from ..io import write_dir_once


@lru_cache(maxsize=1)
def catalog() -> dict:
    import yaml

    return yaml.safe_load((Path(__file__).parent / "catalog.yaml").read_text())


def data_root() -> Path | None:
    """``ZOO_DATA_DIR`` if set, else ``../shared/data`` beside the repository if it exists, else None."""
    if os.environ.get("ZOO_DATA_DIR"):
        return Path(os.environ["ZOO_DATA_DIR"])
    shared = repo_root().parent / "shared" / "data"
    return shared if shared.is_dir() else None


def entry(name: str) -> dict:
    cat = catalog()
    if name not in cat:
        raise ZooError(f"unknown dataset {name!r}; the catalogue knows: {', '.join(cat)}")
    return cat[name]


def available(name: str) -> bool:
    """Whether every file of catalogue dataset ``name`` is present under the data root."""
    root = data_root()
    return root is not None and all((root / f["path"]).exists() for f in entry(name)["files"])


def missing_reason(name: str) -> str:
    root = data_root()
    where = f"{root}" if root else "no data root (ZOO_DATA_DIR unset and ../shared/data absent)"
    return (f"dataset {name!r} not found in {where}: expected {', '.join(f['path'] for f in entry(name)['files'])}; "
            f"set ZOO_DATA_DIR to the folder that holds it")


def _verify(path: Path, sha256: str) -> None:
    stamp = cache_dir() / "verified" / sha256
    if stamp.exists() and stamp.read_text() == f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}":
        return
    got = sha256_file(path)
    if got != sha256:
        raise ZooError(f"{path} is corrupt or a different version: sha256 {got[:16]}... expected {sha256[:16]}...")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}")


def locate(name: str) -> Path:
    """The folder holding dataset ``name``: the unpacked archive in the cache, or the folder of its files."""
    e = entry(name)
    if not available(name):
        raise ZooError(missing_reason(name))
    root = data_root()
    for f in e["files"]:
        _verify(root / f["path"], f["sha256"])
    if not e.get("archive"):
        return (root / e["files"][0]["path"]).parent
    sha = next(f["sha256"] for f in e["files"] if f["path"] == e["archive"])
    return unpack(root / e["archive"], cache_dir() / "data" / f"{name}-{sha[:8]}")


def unpack(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` once; concurrent or interrupted runs never expose a partial tree. An
    archive that is not a readable tar file is a `ZooError` naming it."""

    def fill(tmp: Path) -> None:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError) as exc:  # not an archive, or a truncated one (disk errors stay)
            raise ZooError(f"{archive} could not be unpacked ({type(exc).__name__}: not a readable .tar, .tar.gz or "
                           f".tgz archive): download it again or give the unpacked folder") from None

    return write_dir_once(dest, fill)


def unpack_user_archive(archive: Path) -> Path:
    """A user's archive unpacked once into the cache, as ``<ZOO_HOME>/data/<stem>-<sha8>`` of its content (hashed
    once per process while its size and modification time stay: a fit opens its data several times)."""
    st = archive.stat()
    sha = _archive_sha256(str(Path(archive).resolve()), st.st_size, st.st_mtime_ns)
    return unpack(archive, cache_dir() / "data" / f"{archive.name.split('.')[0]}-{sha[:8]}")


@lru_cache(maxsize=64)
def _archive_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))
