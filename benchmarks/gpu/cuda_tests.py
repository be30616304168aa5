"""The tests that need a CUDA device (CUDA-graph capture of the drum decoder's step and of DOORPING's inner loop),
run by the GPU session so that their outcome comes back with the benchmarks:

    python benchmarks/gpu/cuda_tests.py [--device cuda]

Writes ``compare_cuda_tests__<device>__torch<ver>.json`` (per test: outcome and seconds) through
`zoo.bench.compare.save`; exit status 1 when a test failed. On a CPU every such test is skipped (``--device cpu``:
the smoke check of this step).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="recorded in the result; the tests pick CUDA themselves")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        rc = pytest.main(["-q", "-p", "no:cacheprovider", "-k", "cuda", f"--junitxml={junit}",
                          *[str(ROOT / t) for t in TESTS]])
        rows = outcomes(junit)
    sys.path.insert(0, str(ROOT))
    from zoo.bench.compare import save

    print(f"wrote {save('cuda_tests', {'tests': rows, 'pytest_exit': int(rc)}, a.device)}")
    return 0 if rc in (0, pytest.ExitCode.NO_TESTS_COLLECTED) else 1


if __name__ == "__main__":
    sys.exit(main())
