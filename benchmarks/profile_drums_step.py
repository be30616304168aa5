"""Where a drum LM's decoding step spends its time: torch profiler over `sample_ids`, operators by self time.

Samples ``--new-tokens`` tokens for ``--batch`` identical 40-token prompts (no stop at ``END``, so every run does
the same work) after a short warm-up, and prints the profiler's table; with ``--out`` also writes it to a file.

    OMP_NUM_THREADS=1 python benchmarks/profile_drums_step.py                       # the published adapter
    OMP_NUM_THREADS=1 python benchmarks/profile_drums_step.py --out benchmarks/results/logs/profile.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import zoo
from zoo.io import write_text
from zoo.models.drums.generate import sample_ids


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="drums_smollm2_135m.groove_lora")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--decoder", default="dynamic")
    p.add_argument("--rows", type=int, default=15, help="operators shown")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    model = zoo.from_pretrained(a.model).eval()
    prompts = [model.tokenizer.encode("o-----\n---o--\n--o---\nSEP\n" * 4)[:40]] * a.batch

    def run(n: int) -> None:
        sample_ids(model, prompts, max_new_tokens=n, stop_at_end=False, decoder=a.decoder,
                   generator=torch.Generator().manual_seed(0))

    run(4)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(a.new_tokens)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows)
    total_ms = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3
    text = (f"{a.model}, batch {a.batch}, {a.new_tokens} new tokens (prefill + {a.new_tokens - 1} steps), decoder "
            f"{a.decoder}, {torch.get_num_threads()} threads: {total_ms:.0f} ms in all, "
            f"{total_ms / a.new_tokens:.1f} ms per token step\n{table}")
    print(text)
    if a.out:
        write_text(a.out, text)


if __name__ == "__main__":
    main()
