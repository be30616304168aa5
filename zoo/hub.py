"""Weights manifest, download cache and sha256 verification.

The manifest (``checkpoints/manifest.yaml``, or the file named by ``ZOO_MANIFEST``) has one entry per
``name.tag``: file name, sha256, size, ordered mirror URLs, provenance, licence, recipe and results.

`fetch` returns a verified local path. A cached file is trusted only after its sha256 matches (that hash is the
only I/O on a cache hit). A download streams into a temporary file beside the target, is checked for size and
hash, then renamed into place, so an interrupted or corrupt transfer never leaves a file behind. Mirrors are
tried in order; ``ZOO_OFFLINE=1`` forbids network URLs and turns a missing file into an error that names the
file and where to get it. ``file:`` URLs (absolute, or relative to the manifest's folder) are always allowed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

from .errors import ZooError
from .io import make_partial, publish_file

REQUIRED_FIELDS = ("file", "sha256", "size", "urls", "license", "recipe", "results")
URL_SCHEMES = ("https://", "http://", "file:")
_CHUNK = 1 << 20


def repo_root() -> Path:
    """The source checkout that holds ``zoo/`` (and ``checkpoints/``, ``configs/``)."""
    return Path(__file__).resolve().parents[1]


def manifest_path() -> Path:
    return Path(os.environ.get("ZOO_MANIFEST", repo_root() / "checkpoints" / "manifest.yaml"))


def cache_dir() -> Path:
    """``ZOO_HOME``, else the user's cache folder (``~/.cache/zoo`` on Linux)."""
    if os.environ.get("ZOO_HOME"):
        return Path(os.environ["ZOO_HOME"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("zoo"))


def offline() -> bool:
    return os.environ.get("ZOO_OFFLINE", "0").lower() not in ("", "0", "false", "no")


@lru_cache(maxsize=8)
def _load_manifest(path: str, mtime: float) -> dict:
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ZooError(f"manifest {path} is not valid YAML ({exc}); fix it or point ZOO_MANIFEST at a good "
                       f"one") from None
    if not isinstance(data, dict) or not all(isinstance(e, dict) for e in data.values()):
        raise ZooError(f"manifest {path} must map each name.tag to an entry (a YAML mapping of mappings)")
    for key, entry in data.items():
        missing = [f for f in REQUIRED_FIELDS if f not in entry]
        if missing:
            raise ZooError(f"manifest {path}: entry {key!r} lacks {', '.join(missing)}")
        if not re.fullmatch(r"[0-9a-f]{64}", str(entry["sha256"])):
            raise ZooError(f"manifest {path}: entry {key!r} has a sha256 that is not 64 lowercase hex digits")
        urls = entry["urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(URL_SCHEMES) for u in urls):
            raise ZooError(f"manifest {path}: entry {key!r} needs urls as a list of {', '.join(URL_SCHEMES)} "
                           f"addresses, got {urls!r}")
    return data


def load_manifest(path: str | Path | None = None) -> dict:
    """The manifest as ``{name.tag: entry}``.

    Raises:
        ZooError: the manifest file is absent (named by ``path``, ``ZOO_MANIFEST`` or the checkout's
            ``checkpoints/manifest.yaml``: an install without the checkout has no weights), or malformed.
    """
    path = Path(path) if path else manifest_path()
    if not path.is_file():
        how = "ZOO_MANIFEST" if os.environ.get("ZOO_MANIFEST") else "the source checkout (pip install -e .)"
        raise ZooError(f"weights manifest {path} not found: set ZOO_MANIFEST to a manifest file, or install the "
                       f"zoo from {how}")
    return _load_manifest(str(path), path.stat().st_mtime)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _resolve_url(url: str, base: Path) -> str:
    if url.startswith("file:") and not url.startswith("file://"):
        return (base / url[len("file:"):]).resolve().as_uri()
    return url


def _copy_verified(url: str, dest: Path, sha256: str, size: int | None, timeout: float) -> None:
    """Stream ``url`` into a temporary file beside ``dest``; rename it into place only if size and hash match."""
    tmp = make_partial(dest)
    try:
        h = hashlib.sha256()
        n = 0
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                n += len(chunk)
        if size is not None and n != size:
            raise ZooError(f"{url}: got {n} bytes, expected {size} (truncated or wrong file)")
        if h.hexdigest() != sha256:
            raise ZooError(f"{url}: sha256 {h.hexdigest()[:16]}... does not match the manifest's {sha256[:16]}...")
        publish_file(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download(filename: str, urls: list[str], sha256: str, size: int | None = None, *,
             dest_dir: Path | None = None, base: Path | None = None, timeout: float = 60.0) -> Path:
    """Return a verified local copy of ``filename``, downloading it from the first mirror that works.

    Args:
        filename: name of the file in the cache.
        urls: ordered mirrors (``http(s)://``, ``file:///abs`` or ``file:relative`` to ``base``).
        sha256: expected hex digest; size: expected byte count (optional).
        dest_dir: cache folder (default ``<ZOO_HOME>/weights``).
    """
    dest_dir = dest_dir or cache_dir() / "weights"
    base = base or manifest_path().parent
    dest = dest_dir / filename
    errors = []
    if dest.exists():
        found = sha256_file(dest)
        if found == sha256:
            return dest
        dest.unlink()  # a stale or tampered copy: fetch again
        errors.append(f"the cached copy at {dest} had sha256 {found}, not the manifest's (removed)")
    for raw in urls:
        url = _resolve_url(raw, base)
        if offline() and not url.startswith("file:"):
            errors.append(f"{url}: skipped (ZOO_OFFLINE=1)")
            continue
        try:
            _copy_verified(url, dest, sha256, size, timeout)
            return dest
        except ZooError as exc:
            errors.append(str(exc))
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError, ValueError) as exc:
            # HTTPException: a chunked body cut short (IncompleteRead), a bad status line; ValueError: a malformed URL
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    hint = (f"place the file at {dest} by hand (sha256 {sha256})" if offline()
            else f"check the network, or place the file at {dest} (sha256 {sha256})")
    raise ZooError(f"could not get {filename}: " + "; ".join(errors or ["no URLs"]) + f"; {hint}")


def fetch(key: str) -> Path:
    """Verified local path of the weights of manifest entry ``key`` (``name.tag``)."""
    manifest = load_manifest()
    if key not in manifest:
        raise ZooError(f"{key!r} is not in the manifest {manifest_path()}")
    e = manifest[key]
    return download(e["file"], e["urls"], e["sha256"], e.get("size"), base=manifest_path().parent)


REPLACED = "fetched again, now verified"  # how `verify_all`'s status for a corrupt cached copy it replaced ends


def verify_all(keys: list[str] | None = None) -> list[tuple[str, str]]:
    """Hash the cached copy of every (or the given) manifest entries, fetching the ones not cached yet; returns
    ``[(key, "ok" | problem)]``. A cached copy that does not match its sha256 is a problem even though it is then
    fetched again (a corrupt disk or a tampered cache should be seen, not silently repaired); its status ends with
    `REPLACED`."""
    manifest = load_manifest()
    out = []
    for key in keys or list(manifest):
        cached = cache_dir() / "weights" / manifest[key]["file"] if key in manifest else None
        if cached is not None and cached.exists() and sha256_file(cached) == manifest[key]["sha256"]:
            out.append((key, "ok"))
            continue
        bad = cached is not None and cached.exists()
        try:
            fetch(key)  # a stale copy is replaced
            out.append((key, f"the cached copy {cached} did not match its sha256 (corrupt or tampered); {REPLACED}"
                        if bad else "ok"))
        except ZooError as exc:
            out.append((key, str(exc)))
    return out

