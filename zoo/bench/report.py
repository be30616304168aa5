"""Regenerate the result tables of ``benchmarks/README.md`` from ``benchmarks/results/*.json``.

``python -m zoo.bench.report`` rewrites the part of the README between the ``<!-- results:begin -->`` and
``<!-- results:end -->`` markers; everything else in the README is left as written.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..hub import repo_root
from ..io import write_text

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def table(data: dict, source: str) -> str:
    env = data["env"]
    head = (f"### {data['suite']} on {env['device_name']}\n\n"
            f"`{source}`: torch {env['torch']}, CUDA {env.get('cuda') or '-'}, driver {env.get('driver') or '-'}, "
            f"zoo {env['zoo']}, commit {(env.get('git_commit') or '-')[:12]}, {env.get('threads')} threads. "
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
                    f"| {r['peak_tflops']:.1f} {r['peak_dtype']} ({r['peak_source']}) |")
    return head + "\n".join(rows) + "\n"


def render(results_dir: Path) -> str:
    parts = []
    for path in sorted(results_dir.glob("*.json")):
        parts.append(table(json.loads(path.read_text()), f"benchmarks/results/{path.name}"))
    return "\n".join(parts) if parts else "_No results committed yet._\n"


def main() -> None:
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
