"""The GPU session runbook (benchmarks/gpu): every step names files that exist and flags its script accepts, the
plan of calls covers every step, the runner keeps going past failures and returns results after each step, the
unpacking merges suites, the CUDA-test step reports outcomes; the full smoke run of every step is -m slow."""

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
import cuda_tests  # noqa: E402
import prepare  # noqa: E402
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
                    "--budget", "600", "--only", "knn_ood", "cmt_parts"], cwd=ROOT, check=True, timeout=600)
    report = json.loads((out / "session.json").read_text())
    assert [(s["step"], s["rc"]) for s in report["steps"]] == [("knn_ood", 0), ("cmt_parts", 0)]
    assert sorted(n.split("__")[0] for n in report["results"]) == ["compare_cmt", "compare_knn_ood"]
    with tarfile.open(out / "gpu_results.tar.gz") as tar:
        assert sorted(m.name for m in tar.getmembers()) == sorted(f"benchmarks/results/{n}"
                                                                   for n in report["results"])


def test_the_plan_runs_every_step_once_and_help_prints_it(capsys):
    """`PLAN` is the one place the calls are written: ``--help`` prints them (and the docstring and
    benchmarks/README.md refer to it)."""
    planned = [step for steps, _, _ in session.PLAN for step in steps]
    unplanned = [s[0] for s in session.STEPS if s[0] not in planned]
    assert not unplanned, f"steps {unplanned} are in no call: add each to one call of PLAN in benchmarks/gpu/session.py"
    assert sorted(planned) == sorted(s[0] for s in session.STEPS), "a step is planned twice, or is not in STEPS"
    assert planned == [s[0] for s in session.STEPS], "STEPS must list the steps in the plan's order (the order " \
                                                     "without --only)"
    with pytest.raises(SystemExit):
        session.parse_args(["--help"])
    printed = capsys.readouterr().out
    for steps, budget, carry in session.PLAN:
        assert f"--budget {budget or 'B'} --only {' '.join(steps)}\n     (carry {json.dumps(carry)}" in printed


def test_the_cmt_fps_step_leaves_each_row_its_own_iterations():
    from zoo.bench.suite import expand, load_suite

    cmd, gpu_args = next(s[1:3] for s in session.STEPS if s[0] == "cmt_fps")
    assert "--iters" not in cmd + gpu_args
    assert "--suite" not in cmd  # the smoke run times cmt_tiny alone, not the paper-size suite on a CPU
    jobs = expand(load_suite(ROOT / "configs/cmt/bench_gpu.yaml"), "cuda")
    assert {(j["mode"], j["warmup"], j["iters"]) for j in jobs} == {("infer", 10, 30), ("train", 3, 10)}


def test_the_session_suite_measures_no_row_of_the_cmt_suite():
    from zoo.bench.suite import expand, load_suite, row_key

    def keys(path):
        return {row_key(job) for job in expand(load_suite(ROOT / path), "cuda")}

    assert not keys("configs/bench/gpu-session.yaml") & keys("configs/cmt/bench_gpu.yaml")


def _step(code: str, limit: float) -> tuple:
    return [sys.executable, "-c", code], [], [], limit


@pytest.fixture
def fake_session(tmp_path, monkeypatch):
    """session.py with its folders in ``tmp_path`` and no wheels; returns the $OUT folder."""
    monkeypatch.setattr(session, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(session, "WHEELS", tmp_path / "whl")
    monkeypatch.setattr(session, "SITE", tmp_path / "site")
    monkeypatch.setattr(session, "HOME", tmp_path / "home")
    return tmp_path / "out"


def test_steps_run_in_the_order_of_only_past_failures_and_results_come_back_after_each(fake_session, monkeypatch):
    out = fake_session
    # `checks` runs third: the archive and session.json in $OUT must already hold what `writes` wrote
    checks = (f"import json, sys, tarfile; names = tarfile.open({str(out / 'gpu_results.tar.gz')!r}).getnames(); "
              f"report = json.load(open({str(out / 'session.json')!r})); "
              "sys.exit(0 if names == ['benchmarks/results/a.json'] and [(s['step'], s['rc']) for s in "
              "report['steps']] == [('fails', 3), ('writes', 0), ('checks', None)] else 1)")
    monkeypatch.setattr(session, "STEPS", [
        ("writes", *_step("import os, pathlib; pathlib.Path(os.environ['ZOO_RESULTS_DIR'], 'a.json').write_text('{}')",
                          10)),
        ("late", *_step("pass", 100)),  # needs half its limit: 50 s of the 20
        ("hangs", *_step("import time; time.sleep(60)", 1)),
        ("fails", *_step("raise SystemExit(3)", 10)),
        ("checks", *_step(checks, 30)),  # 15 s of the 20 left: it runs
        ("unused", *_step("raise SystemExit(1)", 10)),
    ])
    session.main(["--out", str(out), "--budget", "20", "--device", "cpu",
                  "--only", "fails", "writes", "checks", "hangs", "late"])
    report = json.loads((out / "session.json").read_text())
    assert [(s["step"], s["rc"]) for s in report["steps"]] == [("fails", 3), ("writes", 0), ("checks", 0),
                                                                ("hangs", "timeout")]
    assert report["left_out"] == ["late"] and report["results"] == ["a.json"]
    assert report["install"] == {"wheels": 0, "pip_exit": None}
    with tarfile.open(out / "gpu_results.tar.gz") as tar:
        assert tar.getnames() == ["benchmarks/results/a.json"]
    assert "=== hangs: rc timeout" in (out / "session.log").read_text()


def test_smoke_runs_give_every_step_twice_its_limit_and_leave_nothing_to_carry(fake_session, monkeypatch):
    out = fake_session
    writes = "import os, pathlib; pathlib.Path(os.environ['ZOO_HOME']).mkdir(); import time; time.sleep(1.5)"
    monkeypatch.setattr(session, "STEPS", [("slow", *_step(writes, 1))])
    session.main(["--out", str(out), "--budget", "20", "--device", "cpu"])
    assert json.loads((out / "session.json").read_text())["steps"][0]["rc"] == "timeout"
    assert session.HOME.exists() and session.RESULTS.exists()  # on the device they stay
    shutil.rmtree(session.HOME)
    session.main(["--out", str(out), "--budget", "20", "--device", "cpu", "--smoke"])
    assert json.loads((out / "session.json").read_text())["steps"][0]["rc"] == 0
    assert not session.HOME.exists() and not session.RESULTS.exists()  # here they would travel


def test_a_failed_wheel_install_is_logged_and_the_steps_still_run(fake_session, monkeypatch):
    out = fake_session
    session.WHEELS.mkdir()
    (session.WHEELS / "broken-1.0-py3-none-any.whl").write_text("not a wheel")
    monkeypatch.setattr(session, "STEPS", [("ok", *_step("pass", 10))])
    session.main(["--out", str(out), "--budget", "20", "--device", "cpu"])
    report = json.loads((out / "session.json").read_text())
    assert report["install"]["wheels"] == 1 and report["install"]["pip_exit"] not in (0, None)
    assert [(s["step"], s["rc"]) for s in report["steps"]] == [("ok", 0)]
    assert "the steps run without them" in (out / "session.log").read_text()


@pytest.mark.parametrize("argv, message", [(["--budget", "9", "--only", "drums", "drums"], "drums more than once"),
                                           (["--only", "drums"], "--budget"),
                                           (["--budget", "9", "--only", "nope"], "invalid choice")])
def test_bad_session_arguments_give_one_error(argv, message, capsys):
    with pytest.raises(SystemExit):
        session.main(["--out", "unused", *argv])
    assert message in capsys.readouterr().err


def _suite_file(rows: list[dict], commit: str) -> dict:
    return {"suite": "s", "suite_file": "s.yaml", "command": f"zoo bench ({commit})",
            "env": {"git_commit": commit}, "results": rows, "failed": []}


def test_unpack_merges_suites_and_replaces_comparisons(tmp_path):
    def row(model, p50):
        return {"model": model, "mode": "infer", "precision": "32", "batch_size": 1, "p50": p50}

    dest = tmp_path / "results"
    dest.mkdir()
    (dest / "s__gpu.json").write_text(json.dumps(_suite_file([row("a", 1), row("b", 2)], "old")))
    (dest / "compare_x__gpu.json").write_text(json.dumps({"comparison": "x", "rows": [{"n": 1}, {"n": 2}]}))
    new = tmp_path / "new"
    (new / "benchmarks" / "results").mkdir(parents=True)
    (new / "benchmarks" / "results" / "s__gpu.json").write_text(json.dumps(_suite_file([row("b", 3)], "new")))
    (new / "benchmarks" / "results" / "compare_x__gpu.json").write_text(json.dumps({"comparison": "x",
                                                                                    "rows": [{"n": 3}]}))
    (new / "models" / "m.t").mkdir(parents=True)
    (new / "models" / "m.t" / "config.json").write_text("{}")
    (new / "models" / "m.t" / "model.safetensors").write_bytes(b"weights")
    archive = tmp_path / "gpu_results.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(new / "benchmarks", arcname="benchmarks")  # folders too: only the JSON files count
        tar.add(new / "models", arcname="models")  # a trained model's files go to a run folder
    models = tmp_path / "runs"
    assert sorted(prepare.unpack(archive, dest, models)) == sorted(
        [str(dest / "compare_x__gpu.json"), str(dest / "s__gpu.json"), str(models / "m.t" / "config.json"),
         str(models / "m.t" / "model.safetensors")])
    assert (models / "m.t" / "model.safetensors").read_bytes() == b"weights"
    merged = json.loads((dest / "s__gpu.json").read_text())
    assert [(r["model"], r["p50"], r["env"]["git_commit"]) for r in merged["results"]] == [("a", 1, "old"),
                                                                                         ("b", 3, "new")]
    assert json.loads((dest / "compare_x__gpu.json").read_text())["rows"] == [{"n": 3}]
    with pytest.raises(SystemExit, match="does not exist"):
        prepare.unpack(tmp_path / "missing.tar.gz", dest)


def test_restore_without_a_stash_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare, "STASH", tmp_path / "no-stash")
    prepare.main(["--restore"])
    assert "nothing to restore" in capsys.readouterr().out


def test_wheels_are_pinned_and_downloaded_into_an_emptied_folder(tmp_path, monkeypatch):
    assert all("==" in w for w in prepare.WHEELS)
    dest = tmp_path / ".whl"
    dest.mkdir()
    (dest / "mido-1.2.0-py3-none-any.whl").write_text("an older version")
    calls = []
    monkeypatch.setattr(prepare.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    prepare.download_wheels(dest)
    assert list(dest.iterdir()) == [] and calls[0][-len(prepare.WHEELS):] == prepare.WHEELS


def test_cuda_test_outcomes_are_saved_as_rows_the_report_renders(tmp_path, monkeypatch):
    from zoo.bench.report import render

    tests = tmp_path / "test_fake.py"
    tests.write_text("import os\n\ndef test_on_cuda():\n    assert os.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] == '1'"
                     "\n\ndef test_on_cuda_broken():\n    assert False\n\ndef test_other():\n    pass\n")
    monkeypatch.setattr(cuda_tests, "TESTS", [str(tests)])
    monkeypatch.setenv("ZOO_RESULTS_DIR", str(tmp_path / "results"))
    assert cuda_tests.main(["--device", "cpu"]) == 1
    (path,) = (tmp_path / "results").glob("compare_cuda_tests__*.json")
    data = json.loads(path.read_text())
    assert [(r["test"].split("::")[-1], r["outcome"]) for r in data["rows"]] == [("test_on_cuda", "passed"),
                                                                                ("test_on_cuda_broken", "failure")]
    text = render(tmp_path / "results")
    assert "| test | outcome | seconds |" in text and "test_on_cuda_broken | failure" in text
    assert "pytest exit status 1: 1 failure, 1 passed." in text


def test_cuda_tests_without_a_junit_report_save_the_exit_status(tmp_path, monkeypatch):
    monkeypatch.setattr(cuda_tests, "run_tests", lambda tests, junit: 4)  # pytest stopped: no JUnit file
    monkeypatch.setenv("ZOO_RESULTS_DIR", str(tmp_path))
    assert cuda_tests.main(["--device", "cpu"]) == 1
    (path,) = tmp_path.glob("compare_cuda_tests__*.json")
    data = json.loads(path.read_text())
    assert data["rows"] == [] and data["pytest_exit"] == 4 and data["summary"] == "pytest exit status 4: no test ran."
    from zoo.bench.report import render

    assert "pytest exit status 4: no test ran." in render(tmp_path)  # the report says why nothing was measured


def test_compare_drums_keeps_a_failing_decoders_error_and_saves_after_each_setting(tmp_path, monkeypatch):
    import importlib
    from types import SimpleNamespace

    import torch

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    compare_drums = importlib.import_module("compare_drums")

    class FakeLM(torch.nn.Module):
        tokenizer = SimpleNamespace(encode=lambda text: [1, 2])

    def zoo_generate(model, prompts, n, stop, greedy=False, decoder="auto"):
        if decoder == "graph":
            raise RuntimeError("capture failed")
        return [[1] * n for _ in prompts]

    def hf_generate(model, prompts, n, stop, greedy=False):
        if stop and not greedy:
            raise RuntimeError("cut off")  # the second setting never finishes
        return [[1] * n for _ in prompts]

    monkeypatch.setattr(compare_drums, "zoo_generate", zoo_generate)
    monkeypatch.setattr(compare_drums, "hf_generate", hf_generate)
    monkeypatch.setattr(compare_drums, "open_examples", lambda name, split: [SimpleNamespace(prompt="x")] * 3)
    monkeypatch.setattr(compare_drums.zoo, "from_pretrained", lambda name: FakeLM())
    monkeypatch.setenv("ZOO_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["compare_drums.py", "--models", "fake", "--decoders", "dynamic,graph",
                                      "--batch", "2", "--new-tokens", "4", "--iters", "1"])
    with pytest.raises(RuntimeError, match="cut off"):
        compare_drums.main()
    (path,) = tmp_path.glob("compare_drums__*.json")
    data = json.loads(path.read_text())
    dynamic, graph = data["rows"]
    assert (dynamic["setting"], dynamic["decoder"], dynamic["error"], dynamic["zoo_tokens"]) == ("fixed", "dynamic",
                                                                                                "", 8)
    assert (graph["decoder"], graph["error"], graph["speedup"]) == ("graph", "RuntimeError: capture failed", None)
    assert data["summary"]["graph"] == {"min_speedup": None, "all_agree": False}


def test_each_call_carries_one_part_of_the_weights_wheel_and_only_ignored_paths():
    parts = [c for _, _, carry in session.PLAN for c in carry if c.startswith(prepare.PARTS)]
    assert parts == [f"{prepare.PARTS}.{i}" for i in range(1, len(session.PLAN) + 1)]
    carried = [c for _, _, carry in session.PLAN for c in carry]
    inside = [f"{c}/file" for c in carried]  # the paths need not exist (a fresh clone)
    ignored = subprocess.run(["git", "check-ignore", *inside], cwd=ROOT, capture_output=True, text=True).stdout
    assert ignored.split() == inside, "a carried path that git does not ignore would travel in every call"


def test_the_weights_wheel_splits_into_the_calls_room_and_joins_only_whole(tmp_path):
    """`prepare.split_wheel` fills each call's room in turn; `drums_full.join_wheel` gives back the same bytes,
    and names a missing part or a wrong sum."""
    import drums_full

    wheel = tmp_path / "w-0.1-py3-none-any.whl"
    wheel.write_bytes(bytes(range(256)) * 40)  # 10 240 bytes
    with pytest.raises(SystemExit, match="does not fit the calls' room"):
        prepare.split_wheel(wheel, [4000, 4000], tmp_path)
    assert prepare.split_wheel(wheel, [1000, 8000, 4000], tmp_path) == [1000, 8000, 1240]
    assert [(tmp_path / f".smollm2.{i}" / "part").stat().st_size for i in (1, 2, 3)] == [1000, 8000, 1240]
    out = tmp_path / "out"
    out.mkdir()
    joined = drums_full.join_wheel(out, tmp_path)
    assert joined.name == wheel.name and joined.read_bytes() == wheel.read_bytes()
    (tmp_path / ".smollm2.2" / "part").write_bytes(b"x" * 8000)
    with pytest.raises(SystemExit, match="has sha256 .*carry every part"):
        drums_full.join_wheel(out, tmp_path)
    assert not list(out.glob("*.partial"))
    (tmp_path / ".smollm2.3" / "part").unlink()
    with pytest.raises(SystemExit, match=r"\.smollm2\.3/part is missing"):
        drums_full.join_wheel(out, tmp_path)
