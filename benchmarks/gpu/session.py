"""One GPU session's benchmarks, run on the device machine by the device tool (prepared by `prepare.py`).

    python3 benchmarks/gpu/session.py --out $OUT [--budget 480] [--only STEP ...] [--device cuda]

Installs the carried wheels (``.whl/``, offline) into ``.gpu/site``, points the zoo at the carried data
(``ZOO_DATA_DIR=.gpu/data``), then runs the steps below in order, each under its own time limit and all within
``--budget`` seconds, so that a 15-minute device allowance (machine start included) covers one call. A step that
fails or times out does not stop the others. ``$OUT`` receives ``gpu_results.tar.gz`` (every result file the steps
wrote, as ``benchmarks/results/*.json``: unpack it in the checkout), ``session.log`` (all output) and
``session.json`` (per step: command, exit status, seconds; the steps left out for lack of time).
``--smoke`` runs every command at tiny sizes: the check to make on a CPU before spending device time.

The order follows the open goals: CMT's frames/s (issue 9), then the side-by-side comparison of PMT-IQA, the
CUDA-only tests (the graph captures the drum-LM and DOORPING comparisons time next), the comparisons of the drum
LM, DOORPING, TinyMIM, kNN-OOD and CMT's parts, then every paper's main model in ``zoo bench``.
Standard library only: it runs before the zoo's dependencies are installed.
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
RESULTS = ROOT / ".gpu" / "results"
# name, command, its sizes on the GPU, its sizes for --smoke (a CPU check of every command), seconds at most.
# Seconds seen on an H200 on 2026-12-04 (benchmarks/results/logs/): cmt_fps > 150 (8 of 11 rows: the fusion
# variants take 0.4-0.5 s a frame on the plain-torch sparse convolutions), pmt_iqa 33, drums > 90 (its `fixed`
# setting alone about 60), doorping 39, tinymim 89 (at batch 256; now 1024, for MFU), knn_ood > 90 (4 of 5
# sizes), cmt_parts 6, suite: ViT-B and ResNet-50 35, the drum LM 160 (generate 3.5 s a call). All of them need
# about 900 s: two calls (`--only`).
STEPS = [
    ("cmt_fps", [PY, "-m", "zoo", "bench"], ["--suite", "configs/cmt/bench_gpu.yaml", "--iters", "30"],
     ["cmt_tiny", "--warmup", "1", "--iters", "1"], 200),
    ("pmt_iqa", [PY, "benchmarks/compare_pmt_iqa.py", "--data", ".gpu/data/biq2021_test"],
     ["--images", "250", "--batch-images", "64", "--iters", "5", "--precisions", "fp32,bf16,fp16", "--fp32-stages",
      "4"], ["--images", "3", "--batch-images", "3", "--iters", "1", "--fp32-stages", "4"], 90),
    ("cuda_tests", [PY, "benchmarks/gpu/cuda_tests.py"], [], [], 90),
    ("drums", [PY, "benchmarks/compare_drums.py", "--base-folder", LM],
     ["--batch", "37", "--new-tokens", "256", "--iters", "2", "--decoders", "dynamic,graph"],
     ["--batch", "2", "--new-tokens", "4", "--iters", "1", "--decoders", "static"], 150),
    ("doorping", [PY, "benchmarks/compare_doorping.py"], ["--iters", "3"],
     ["--batch-real", "2", "--inner-loop", "1", "--iters", "1"], 60),
    ("tinymim", [PY, "benchmarks/compare_tinymim.py"], ["--batch-size", "1024", "--compile"],
     ["--batch-size", "2", "--img-size", "32", "--warmup", "1", "--iters", "1"], 200),
    ("knn_ood", [PY, "benchmarks/compare_knn_ood.py"], [], ["--max-n", "10000", "--queries", "64", "--iters", "1"],
     120),
    ("cmt_parts", [PY, "benchmarks/compare_cmt.py"], ["--iters", "5"], ["--iters", "1"], 60),
    ("suite", [PY, "-m", "zoo", "bench", "--suite", "configs/bench/gpu-session.yaml"], [],
     ["--iters", "1", "--batch-size", "1"], 240),
]


def install_wheels(log) -> None:
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if wheels:
        subprocess.run([PY, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target",
                        str(ROOT / ".gpu" / "site"), *map(str, wheels)], check=True, stdout=log, stderr=log)


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / ".gpu" / "site"), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(ZOO_DATA_DIR=str(ROOT / ".gpu" / "data"), ZOO_HOME=str(ROOT / ".gpu" / "home"),
               ZOO_RESULTS_DIR=str(RESULTS), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    commit = ROOT / ".gpu" / "COMMIT"
    if commit.exists():
        env["ZOO_GIT_COMMIT"] = commit.read_text().strip()
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the device tool's $OUT")
    p.add_argument("--budget", type=float, default=480, help="seconds for all steps together")
    p.add_argument("--only", nargs="+", choices=[s[0] for s in STEPS], help="run only these steps")
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, results to $OUT only: check every command on a CPU before a GPU session")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir(parents=True)
    report = {"steps": [], "left_out": []}
    with open(out / "session.log", "w") as log:
        install_wheels(log)
        env = environment()
        for name, cmd, gpu_args, smoke_args, limit in STEPS:
            if a.only and name not in a.only:
                continue
            left = a.budget - (time.monotonic() - start)
            if left < min(limit, 30):
                report["left_out"].append(name)
                continue
            cmd = cmd + ["--device", a.device] + (smoke_args if a.smoke else gpu_args)
            print(f"\n=== {name}: {' '.join(cmd)} (at most {min(limit, left):.0f} s)", file=log, flush=True)
            t0 = time.monotonic()
            try:
                rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=min(limit, left)).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            report["steps"].append({"step": name, "command": " ".join(cmd), "rc": rc,
                                    "seconds": round(time.monotonic() - t0, 1)})
            print(f"=== {name}: rc {rc} after {time.monotonic() - t0:.0f} s", file=log, flush=True)
    written = sorted(RESULTS.glob("*.json"))
    with tarfile.open(out / "gpu_results.tar.gz", "w:gz") as tar:
        for f in written:
            tar.add(f, arcname=f"benchmarks/results/{f.name}")
    report["results"] = [f.name for f in written]
    report["seconds"] = round(time.monotonic() - start, 1)
    (out / "session.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
