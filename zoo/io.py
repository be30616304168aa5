"""Atomic file output: a reader never sees a half-written file, and a failure leaves no partial output."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .errors import ZooError

_UMASK = os.umask(0)
os.umask(_UMASK)
_HOST = socket.gethostname()
_STALE_AFTER_S = 86400.0  # a temporary file of another host (a shared cache) is removed after a day untouched


def partial_prefix(dest: Path) -> str:
    """The name prefix of ``dest``'s temporary siblings (``.<name>.<host>-<pid>.``), then ``<random>.partial``:
    the host and process say whether the writer is still alive."""
    return f".{dest.name}.{_HOST}-{os.getpid()}."


def sweep_partials(dest: Path) -> None:
    """Remove temporary siblings of ``dest`` that a killed writer left: those of a process of this host that is no
    longer running, and any not touched for a day (another host's, or one named before hosts were recorded)."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(?:(.+)-(\d+)\.)?[^.]+\.partial")
    with contextlib.suppress(OSError):
        for tmp in dest.parent.iterdir():
            m = pattern.fullmatch(tmp.name)
            if not m:
                continue
            if m.group(1) == _HOST:
                stale = not _alive(int(m.group(2)))
            else:
                try:
                    stale = time.time() - tmp.lstat().st_mtime > _STALE_AFTER_S
                except OSError:
                    continue
            if stale:
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_partial(dest: Path, *, folder: bool = False) -> Path:
    """Create (after sweeping stale ones) an empty temporary file, or folder, beside ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(dest)
    if folder:
        return Path(tempfile.mkdtemp(prefix=partial_prefix(dest), suffix=".partial", dir=dest.parent))
    fd, tmp = tempfile.mkstemp(prefix=partial_prefix(dest), suffix=".partial", dir=dest.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it."""
    path = Path(path)
    tmp = make_partial(path)
    try:
        yield tmp
        publish_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def publish_file(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file onto ``path`` with the permissions ``open()`` would give it (mkstemp
    makes 0600, and writers such as safetensors' ``save_file`` replace the file, so the mode is set last)."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def write_dir_once(dest: str | Path, fill) -> Path:
    """Fill a folder once: ``fill(tmp)`` writes into a temporary folder beside ``dest``, renamed onto it when done.

    An existing ``dest`` is returned as it is; a failed ``fill`` leaves nothing behind; two writers racing
    each finish, and the first rename wins.
    """
    dest = Path(dest)
    if dest.is_dir():
        return dest
    tmp = make_partial(dest, folder=True)
    try:
        fill(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def read_utf8(path: str | Path) -> str:
    """The text of file ``path`` as UTF-8 (a byte-order mark is dropped); another encoding is one error naming the
    line and the byte."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ZooError(f"{path}, line {line}: byte {data[exc.start]:#04x} is not UTF-8 (is the file in Latin-1 or "
                       f"a Windows code page?); save the file as UTF-8") from None


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json_text(obj))


def json_text(obj) -> str:
    """``obj`` as the JSON text `write_json` writes (arrays and tensors as lists, paths as strings); TypeError for
    anything else that JSON has no form for."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_outputs(files: dict | None = None, folders: dict | None = None) -> None:
    """Refuse output paths that cannot be written, before any work runs rather than after it.

    ``files`` and ``folders`` map an option name (``--json``) to the path given for it (None: not given). A file
    must not be empty or an existing folder; a folder must not be an existing file; no other output may be a file's
    path or lie inside it (two outputs would overwrite each other, or the file would have to be a folder); and the
    folder of each (the file's parent) must be makeable and writable: no file among its ancestors, and a probe file
    can be created in the nearest one that exists (so ``/proc/nope/r.json`` or a read-only mount fails here).
    Nothing is created.
    """
    given = {o: p for o, p in {**(files or {}), **(folders or {})}.items() if p is not None and str(p)}
    for option, path in (files or {}).items():
        if path is None:
            continue
        if not str(path):
            raise ZooError(f"{option} needs a file path, e.g. {option} out/result.json")
        if Path(path).is_dir():
            raise ZooError(f"{option} {path} is a folder: give a file path, e.g. {Path(path) / 'result.json'}")
        _check_folder(option, Path(path).parent)
        for other, there in given.items():
            if other != option and Path(there).resolve().is_relative_to(Path(path).resolve()):
                where = "the same path as" if Path(there).resolve() == Path(path).resolve() else "a path inside"
                raise ZooError(f"{other} {there} is {where} {option} {path} (a file): give each output its own path")
    for option, folder in (folders or {}).items():
        if folder is None or not str(folder):
            continue
        if Path(folder).exists() and not Path(folder).is_dir():
            raise ZooError(f"{option} {folder} is a file: give a folder path")
        _check_folder(option, Path(folder))


def _check_folder(option: str, folder: Path) -> None:
    """`check_outputs` for one output folder: its nearest existing ancestor is a folder that takes a new file."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise ZooError(f"{option}: {existing} is a file, so the folder {folder} cannot be made there; "
                       f"choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".zoo-write-check.", dir=existing)
    except OSError as exc:
        raise ZooError(f"{option}: the folder {folder} cannot be written: creating a file in {existing} failed "
                       f"({exc.strerror}); choose another path") from None
    os.close(fd)
    os.unlink(probe)
