"""The GPU session runbook (benchmarks/gpu): every step names files that exist and flags its script accepts, and
the runner collects results; the full smoke run of every step is -m slow."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
import session  # noqa: E402


def _help(cmd: list[str]) -> str:
    return subprocess.run(cmd + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=300).stdout


@pytest.mark.parametrize("name, cmd, gpu_args, smoke_args, limit", session.STEPS, ids=[s[0] for s in session.STEPS])
def test_each_step_names_existing_files_and_accepted_flags(name, cmd, gpu_args, smoke_args, limit):
    args = cmd[1:] + gpu_args + smoke_args
    for a in args:
        if a.endswith((".py", ".yaml")):
            assert (ROOT / a).is_file(), f"{name}: {a} does not exist"
    accepted = _help(cmd)
    flags = {a for a in ["--device", *gpu_args, *smoke_args] if a.startswith("--")}
    missing = [f for f in flags if f not in accepted]
    assert not missing, f"{name}: {' '.join(cmd[1:])} does not accept {missing}"
    assert 0 < limit <= 300


@pytest.mark.slow
def test_smoke_session_runs_steps_and_packs_their_results(tmp_path):
    out = tmp_path / "out"
    subprocess.run([sys.executable, "benchmarks/gpu/session.py", "--out", str(out), "--device", "cpu", "--smoke",
                    "--only", "knn_ood", "cmt_parts"], cwd=ROOT, check=True, timeout=600)
    report = json.loads((out / "session.json").read_text())
    assert [s["rc"] for s in report["steps"]] == [0, 0]
    assert sorted(n.split("__")[0] for n in report["results"]) == ["compare_cmt", "compare_knn_ood"]
    with tarfile.open(out / "gpu_results.tar.gz") as tar:
        assert sorted(m.name for m in tar.getmembers()) == sorted(f"benchmarks/results/{n}"
                                                                   for n in report["results"])
