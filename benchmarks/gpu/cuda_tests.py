"""The tests that need a CUDA device (CUDA-graph capture of the drum decoder's step and of DOORPING's inner loop),
run by the GPU session so that their outcome comes back with the benchmarks:

    python benchmarks/gpu/cuda_tests.py [--device cuda]

Writes ``compare_cuda_tests__<device>__torch<ver>.json`` through `zoo.bench.compare.save`: ``rows`` (per test:
outcome and seconds; none when pytest stopped before writing its JUnit report), ``pytest_exit`` and a ``summary``
of both, as `zoo.bench.report` renders them; exit status 1 unless pytest's was 0. pytest is the device's own, run
without the plugins installed beside it (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``). On a CPU every such test is skipped
(``--device cpu``: the smoke check of this step).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ["tests/test_drums_static_decode.py", "tests/test_doorping.py"]


def outcomes(junit: Path) -> list[dict]:
    """Per test case of a JUnit XML report: ``{"test", "outcome", "seconds"}``."""
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                     "seconds": float(case.get("time", 0))})
    return rows


def run_tests(tests: list[str], junit: Path) -> int:
    """pytest's exit status for the tests named ``cuda`` in ``tests``, run in a child process."""
    env = os.environ | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                           f"--junitxml={junit}", *tests], cwd=ROOT, env=env).returncode


def payload(rows: list[dict], rc: int) -> dict:
    """What the result file holds: the rows, pytest's exit status, and a summary of both."""
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(Counter(r["outcome"] for r in rows).items()))
    summary = f"pytest exit status {rc}: {counts or 'no test ran'}."
    return {"description": "The CUDA-only tests (" + ", ".join(TESTS) + ", -k cuda): outcome per test.",
            "rows": rows, "pytest_exit": rc, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="recorded in the result; the tests pick CUDA themselves")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        rc = run_tests([str(ROOT / t) for t in TESTS], junit)
        rows = outcomes(junit) if junit.exists() else []
    sys.path.insert(0, str(ROOT))
    from zoo.bench.compare import save

    print(f"wrote {save('cuda_tests', payload(rows, rc), a.device)}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
