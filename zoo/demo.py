"""``zoo demo``: every registered paper's quick start (a brief fit, the paper's metric, a benchmark), one table.

Each paper's ``demo`` entry is ``run(workdir: Path) -> list[dict]`` returning rows with the keys of `COLUMNS`.
It uses the real data under the data root when present and falls back to embedded data otherwise, so the demo
runs anywhere; the row says which data it used. A paper whose extra is not installed (`zoo.errors.MissingDependency`)
is skipped with a row saying what to install; that is not a failure.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path

from .errors import ZooError
from .io import check_outputs
from .registry import as_missing_dependency, list_papers, load_object

COLUMNS = ("paper", "step", "data", "result", "seconds")


def main(workdir: str | None = None, only: list[str] | None = None) -> list[dict]:
    """Run the demo of every paper (or of the ids in ``only``) under ``workdir`` (default: a new temp folder), print
    the table and return its rows.

    Raises:
        ZooError: for an empty or unknown paper id in ``only``, or a ``workdir`` that is a file (before any demo).
        SystemExit: naming the papers whose demo failed, after all of them ran (papers skipped for a missing extra
            are not failures).
    """
    known = [p.id for p in list_papers() if p.demo]
    if only is not None and not all(only):  # `--only ''` or `--only knn_ood,`: not every paper, nor a paper ''
        raise ZooError(f"--only has an empty paper id ({','.join(only)!r}): give comma-separated paper ids (papers "
                       f"with a demo: {', '.join(known)}), or drop --only to run every paper's demo")
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise ZooError(f"no demo for {', '.join(unknown)}; papers with a demo: {', '.join(known)}")
    check_outputs(folders={"--workdir": workdir})  # before the first paper's demo, not when it writes there
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="zoo-demo-"))
    rows, failures, skipped = [], [], []
    for paper in list_papers():
        if not paper.demo or (only and paper.id not in only):
            continue
        t0 = time.perf_counter()
        print(f"== {paper.id}: {paper.title}", flush=True)
        try:
            for row in load_object(paper.demo)(root / paper.id):
                rows.append({"paper": paper.id, **row})
                print(f"   {row['step']}: {row['result']} ({row['seconds']:.1f} s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - the demo reports every paper, then fails
            missing = as_missing_dependency(exc)
            if missing is not None:
                print(f"   skipped: {missing}", flush=True)
                skipped.append(paper.id)
            else:
                traceback.print_exc()
                failures.append(paper.id)
            rows.append({"paper": paper.id, "step": "skipped" if missing else "FAILED", "data": "",
                         "result": str(missing) if missing else repr(exc)[:120], "seconds": time.perf_counter() - t0})
    _print_table(rows)
    print(f"\noutputs in {root}")
    if skipped:
        print(f"skipped (an extra is not installed; not a failure): {', '.join(skipped)}")
    if failures:
        raise SystemExit(f"demo failed for: {', '.join(failures)}")
    return rows


def _print_table(rows: list[dict]) -> None:
    """Print ``rows`` as a table of `COLUMNS`, each column as wide as its widest cell."""
    widths = {c: max([len(c), *(len(_fmt(r[c])) for r in rows)]) for c in COLUMNS}
    print("\n" + "  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for r in rows:
        print("  ".join(_fmt(r[c]).ljust(widths[c]) for c in COLUMNS))


def _fmt(v) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)
