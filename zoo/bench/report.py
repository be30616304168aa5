"""Regenerate the result tables of ``benchmarks/README.md`` from ``benchmarks/results/*.json``.

``python -m zoo.bench.report`` rewrites the part of the README between the ``<!-- results:begin -->`` and
``<!-- results:end -->`` markers; everything else in the README is left as written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..hub import repo_root
from ..io import write_text

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def table(data: dict, source: str) -> str:
    env = data["env"]
    commits = sorted({(r.get("env", env).get("git_commit") or "-")[:12] for r in data["results"]}) or ["-"]
    head = (f"### {data['suite']} on {env['device_name']}\n\n"
            f"`{source}`: torch {env['torch']}, CUDA {env.get('cuda') or '-'}, driver {env.get('driver') or '-'}, "
            f"zoo {env['zoo']}, commit {', '.join(commits)}, {env.get('threads')} threads. "
            f"Command: `{data.get('command') or 'zoo bench --suite ' + data['suite_file']}`\n\n")
    rows = ["| model | mode | precision | batch | samples/s | p50 ms | p90 ms | p99 ms | peak MB | GFLOP/sample "
            "| TFLOP/s | MFU | peak (source) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        lat = r["latency_ms"]
        bs = f"{r['batch_size']}" + (f" (OOM at {r['oom_backoff']})" if r.get("oom_backoff") else "")
        rows.append(f"| {r['model']} | {r['mode']} | {r['precision']} | {bs} | {r['samples_per_s']:.1f} "
                    f"| {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {r['peak_mem_mb']:.0f} "
                    f"| {r['flops_per_sample'] / 1e9:.3f} | {r['tflops']:.3f} | {100 * r['mfu']:.1f} % "
                    f"| {r['peak_tflops']:.3g} TFLOP/s {r['peak_dtype']} ({r['peak_source']}){tf32_note(r)} |")
    failed = "".join(f"\nFailed: {f['source']} {f['mode']} {f['precision']} batch {f['batch_size']}: {f['error']}\n"
                     for f in data.get("failed", []))
    return head + "\n".join(rows) + "\n" + failed


def tf32_note(r: dict) -> str:
    """GPU fp32 rows measured before the bench switched cuDNN's TF32 convolutions off (rows without ``tf32_conv``)."""
    if r["device"] == "cuda" and r["precision"] == "32" and "tf32_conv" not in r:
        return "; convolutions ran in TF32 (cuDNN's default), so MFU against the fp32 peak is overstated"
    return ""


def comparison(data: dict, source: str) -> str:
    """A side-by-side comparison file: ``description``, ``rows`` (flat dicts, one per setting), ``summary``."""
    env = data["env"]
    head = (f"### Comparison: {data['comparison']} on {env['device_name']}\n\n{data.get('description', '')}\n\n"
            f"`{source}`: torch {env['torch']}, zoo {env['zoo']}, commit {(env.get('git_commit') or '-')[:12]}, "
            f"{env.get('threads')} threads. Command: `{data['command']}`\n\n")
    rows = data.get("rows", [])
    if not rows:  # a run that measured nothing (cuda_tests when pytest stopped early) still says why
        return head + (f"{data['summary']}\n" if data.get("summary") else "")
    cols = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return head + "\n".join(lines) + (f"\n\n{data['summary']}\n" if data.get("summary") else "\n")


def render(results_dir: Path) -> str:
    parts = []
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        render_one = comparison if "comparison" in data else table
        parts.append(render_one(data, f"benchmarks/results/{path.name}"))
    return "\n".join(parts) if parts else "_No results committed yet._\n"


def main(argv: list[str] | None = None) -> None:
    """The command: no arguments besides ``--help``, which only prints what the command does."""
    argparse.ArgumentParser(prog="python -m zoo.bench.report", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    root = repo_root() / "benchmarks"
    readme = root / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} lacks the {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    write_text(readme, f"{head}{BEGIN}\n{render(root / 'results')}{END}{tail}")


if __name__ == "__main__":
    main()
