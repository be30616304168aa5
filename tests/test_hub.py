"""Downloads from a real HTTP server on 127.0.0.1: mirrors, cache hits, hash and size checks, offline mode."""

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
from functools import partial

import pytest
import yaml

from zoo.errors import ZooError
from zoo.hub import download

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.startswith("/slow/"):  # half the body, then a stall: the client is killed meanwhile
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            time.sleep(5)
            return
        if self.path.startswith("/chunked/"):  # a chunked body whose connection drops before its last chunk
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (1000, PAYLOAD[:1000]))
            self.wfile.write(b"%x\r\n" % 5000)  # a chunk announced, then nothing
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/truncated/"):
            body = PAYLOAD[: len(PAYLOAD) // 2]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "w.safetensors").write_bytes(PAYLOAD)
    (root / "other.bin").write_bytes(b"not the weights" * 100)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_then_cache_hit(server, tmp_path):
    httpd, url = server
    cache = tmp_path / "cache"
    path = download("w.safetensors", [f"{url}/w.safetensors"], SHA, len(PAYLOAD), dest_dir=cache)
    assert path.read_bytes() == PAYLOAD and len(httpd.requests) == 1
    again = download("w.safetensors", [f"{url}/w.safetensors"], SHA, len(PAYLOAD), dest_dir=cache)
    assert again == path and len(httpd.requests) == 1  # served from the cache after a hash check
    assert [p.name for p in cache.iterdir()] == ["w.safetensors"]  # no temporary files left


def test_wrong_hash_is_refused_and_nothing_is_kept(server, tmp_path):
    _, url = server
    with pytest.raises(ZooError, match="does not match"):
        download("w.safetensors", [f"{url}/other.bin"], SHA, None, dest_dir=tmp_path / "c")
    assert not any((tmp_path / "c").iterdir())


def test_truncated_file_is_refused(server, tmp_path):
    _, url = server
    with pytest.raises(ZooError, match="truncated"):
        download("w.safetensors", [f"{url}/truncated/w.safetensors"], SHA, len(PAYLOAD), dest_dir=tmp_path / "c")
    assert not any((tmp_path / "c").iterdir())


def test_dead_url_falls_through_to_next_mirror(server, tmp_path):
    httpd, url = server
    dead = "http://127.0.0.1:9/w.safetensors"  # discard port: connection refused
    missing = f"{url}/nope/w.safetensors"  # 404
    path = download("w.safetensors", [dead, missing, f"{url}/w.safetensors"], SHA, len(PAYLOAD),
                    dest_dir=tmp_path / "c")
    assert path.read_bytes() == PAYLOAD


def test_a_chunked_body_cut_short_falls_through_to_the_next_mirror(server, tmp_path):
    """http.client's IncompleteRead (an HTTPException, not an OSError) is one mirror failing, not a crash."""
    _, url = server
    path = download("w.safetensors", [f"{url}/chunked/w.safetensors", f"{url}/w.safetensors"], SHA, len(PAYLOAD),
                    dest_dir=tmp_path / "c")
    assert path.read_bytes() == PAYLOAD
    with pytest.raises(ZooError, match="IncompleteRead"):
        download("w.safetensors", [f"{url}/chunked/w.safetensors"], SHA, None, dest_dir=tmp_path / "d")
    assert not any((tmp_path / "d").iterdir())


def test_a_corrupt_cached_copy_is_named_when_no_mirror_serves(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "w.safetensors").write_bytes(b"tampered")
    with pytest.raises(ZooError, match=r"the cached copy at .*w\.safetensors had sha256 [0-9a-f]{64}, not the "
                                       r"manifest's \(removed\); http://127\.0\.0\.1:9/w\.safetensors: skipped"):
        download("w.safetensors", ["http://127.0.0.1:9/w.safetensors"], SHA, None, dest_dir=cache)


def test_stale_cache_copy_is_replaced(server, tmp_path):
    _, url = server
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "w.safetensors").write_bytes(b"tampered")
    path = download("w.safetensors", [f"{url}/w.safetensors"], SHA, len(PAYLOAD), dest_dir=cache)
    assert path.read_bytes() == PAYLOAD


def test_offline_names_the_file_and_urls(server, tmp_path, monkeypatch):
    httpd, url = server
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(ZooError) as exc:
        download("w.safetensors", [f"{url}/w.safetensors"], SHA, len(PAYLOAD), dest_dir=tmp_path / "c")
    msg = str(exc.value)
    assert "w.safetensors" in msg and f"{url}/w.safetensors" in msg and "ZOO_OFFLINE" in msg
    assert httpd.requests == []


def test_relative_file_url_works_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    (tmp_path / "w.safetensors").write_bytes(PAYLOAD)
    path = download("w.safetensors", ["file:w.safetensors"], SHA, len(PAYLOAD), dest_dir=tmp_path / "c",
                    base=tmp_path)
    assert path.read_bytes() == PAYLOAD


def test_manifest_entries_verify():
    from zoo.hub import verify_all

    assert all(status == "ok" for _, status in verify_all())


def test_a_missing_or_malformed_manifest_is_an_error(tmp_path, monkeypatch):
    from zoo.hub import load_manifest

    monkeypatch.setenv("ZOO_MANIFEST", str(tmp_path / "absent.yaml"))
    with pytest.raises(ZooError, match="absent.yaml not found: set ZOO_MANIFEST"):
        load_manifest()
    for text in ("a: [", "- 1\n- 2\n"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ZooError, match="bad.yaml"):
            load_manifest(bad)


def test_manifest_urls_and_hashes_are_checked_on_load(tmp_path):
    from zoo.hub import load_manifest

    good = {"file": "w.bin", "sha256": "a" * 64, "size": 1, "urls": ["file:w.bin"], "license": "x", "recipe": "x",
            "results": []}
    for field, value, needle in (("urls", "file:w.bin", "needs urls as a list"),
                                 ("urls", ["checkpoints/w.bin"], "needs urls as a list"),
                                 ("sha256", "A" * 64, "64 lowercase hex digits")):
        path = tmp_path / f"{field}-{len(str(value))}.yaml"
        path.write_text(yaml.safe_dump({"m.t": {**good, field: value}}))
        with pytest.raises(ZooError, match=needle):
            load_manifest(path)


def test_a_malformed_url_is_one_mirror_failing(tmp_path):
    with pytest.raises(ZooError, match="could not get w.safetensors: no-scheme/w.safetensors: unknown url type"):
        download("w.safetensors", ["no-scheme/w.safetensors"], SHA, None, dest_dir=tmp_path / "c")


def test_a_download_killed_midway_leaves_a_partial_the_next_one_removes(server, tmp_path):
    """SIGKILL skips every clean-up; the temporary file names its host and process, so the next writer of the same
    file sees that its writer is gone and removes it."""
    _, url = server
    cache = tmp_path / "cache"
    code = (f"from zoo.hub import download; download('w.safetensors', ['{url}/slow/w.safetensors'], '{SHA}', "
            f"{len(PAYLOAD)}, dest_dir=__import__('pathlib').Path('{cache}'))")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not list(cache.glob(".w.safetensors.*.partial")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # inside the stalled read
    proc.kill()
    proc.wait()
    assert [p.name.endswith(".partial") for p in cache.iterdir()] == [True]
    path = download("w.safetensors", [f"{url}/w.safetensors"], SHA, len(PAYLOAD), dest_dir=cache)
    assert [p.name for p in cache.iterdir()] == [path.name]


def test_only_dead_or_day_old_partials_are_swept(tmp_path):
    from zoo.io import atomic_path, partial_prefix

    dest = tmp_path / "r.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host_dead = tmp_path / partial_prefix(dest).replace(f"-{os.getpid()}.", f"-{int(dead.stdout)}.")
    mine = tmp_path / f"{partial_prefix(dest)}abc.partial"  # this process: alive
    young, old = tmp_path / ".r.json.x1y2.partial", tmp_path / ".r.json.z3w4.partial"  # no host: by age
    other = tmp_path / f".q.json.{partial_prefix(dest).split('.', 3)[-1]}k.partial"
    for p in (host_dead.with_name(host_dead.name + "d.partial"), mine, young, old, other):
        p.write_text("x")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    with atomic_path(dest) as tmp:
        tmp.write_text("{}")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([mine.name, young.name, other.name, "r.json"])


def test_verify_says_a_corrupt_cache_copy_was_replaced(tmp_path, monkeypatch, capsys):
    """`zoo verify` on corrupt cached copies it fetched again ended with "N manifest entries failed verification",
    as if they were still bad: it says they were replaced (exit status 2 still, so scripts notice), apart from the
    entries that did fail, each count with its own grammatical number."""
    from zoo.cli import main

    manifest = {}
    for name in ("a", "b", "gone"):
        data = name.encode() * 100
        (tmp_path / f"{name}.bin").write_bytes(data)
        manifest[f"knn_ood_resnet20.{name}"] = {"file": f"{name}.bin", "sha256": hashlib.sha256(data).hexdigest(),
                                                "size": len(data), "urls": [f"file:{name}.bin"], "license": "MIT",
                                                "recipe": "test", "results": []}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    monkeypatch.setenv("ZOO_MANIFEST", str(tmp_path / "manifest.yaml"))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    assert main(["verify"]) == 0
    capsys.readouterr()
    for name in ("a", "b", "gone"):
        (tmp_path / "home" / "weights" / f"{name}.bin").write_bytes(b"tampered")
    (tmp_path / "gone.bin").unlink()  # its copy cannot be fetched again
    assert main(["verify"]) == 2
    assert capsys.readouterr().err == ("zoo: error: 2 manifest entries were corrupt in the cache and have been "
                                       "replaced with verified copies; 1 manifest entry failed verification\n")
    (tmp_path / "home" / "weights" / "a.bin").write_bytes(b"tampered")
    assert main(["verify", "knn_ood_resnet20.a"]) == 2
    assert capsys.readouterr().err == ("zoo: error: 1 manifest entry was corrupt in the cache and has been replaced "
                                       "with a verified copy\n")
