"""Drums quick start for ``zoo demo``: the paper's text from Groove MIDI, a brief fit, the structural evaluation of the
published from-scratch baseline, a generation benchmark.

Without the Groove MIDI data the demo writes a few grooves as MIDI itself (a rock beat with variations) and uses
them as train, validation and test split.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from ...data.catalog import available
from ...hub import load_manifest, repo_root
from ...io import write_text
from .encoding import lines_to_onsets
from .examples import encode_file, open_examples
from .midi import write_drum_midi

BASELINE = "drums_smollm2_scratch.groove"


def _embedded_grooves(folder: Path) -> Path:
    """Write 24 sixteen-bar variations of a rock beat as MIDI, encode them back, and store the examples as
    ``<split>.jsonl``."""
    beat = ["--oo--", "------", "----o-", "------", "--o-o-", "------", "----o-", "---o--",
            "---oo-", "------", "----o-", "---o--", "--o-o-", "------", "----o-", "------"]
    splits = {"train": [], "validation": [], "test": []}
    for i in range(24):
        bars = [list(beat) for _ in range(16)]
        for b in range(3, 16, 4):  # a fill every fourth bar, varied per groove
            bars[b][12 + i % 4:] = ["-----o"] * (4 - i % 4)
        lines = [line for bar in bars for line in bar]
        e = encode_file(f"groove{i}", write_drum_midi(lines_to_onsets(lines), folder / f"groove{i}.mid"))
        splits["train" if i < 16 else "validation" if i < 20 else "test"].append(e)
    for split, examples in splits.items():
        write_text(folder / f"{split}.jsonl", "".join(json.dumps(asdict(e)) + "\n" for e in examples))
    return folder


def run(workdir: Path) -> list[dict]:
    from ...bench.harness import benchmark
    from ...eval import evaluate
    from ...metrics.drums import structure_stats
    from ...training.cli import ZooLightningCLI

    rows = []
    real = available("groove_midi")
    data = "groove_midi" if real else str(_embedded_grooves(workdir / "grooves"))
    desc = "Groove MIDI v1.0.0" if real else "24 embedded rock grooves (no ../shared data)"

    t0 = time.perf_counter()
    splits = {s: open_examples(data, s) for s in ("train", "validation", "test")}
    human = structure_stats([e.human_lines for e in splits["test"]])  # the paper's way: unstripped windows
    reference = " (5.08 computed from the authors' released windows)" if real else ""
    rows.append({"step": "MIDI -> paper's drum text (x/4 beats, 16-bar window, 8-bar minimum)", "data": desc,
                 "result": f"{'/'.join(str(len(v)) for v in splits.values())} train/val/test examples; human "
                           f"test stability {human['mean_stability']:.2f}{reference}",
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    cli = ZooLightningCLI(run=False, args=[
        "--config", str(repo_root() / "configs/drums/gpt2_tiny_groove.yaml"), "--data.init_args.data", data,
        "--data.init_args.train_subset", "32", "--trainer.max_steps", "8", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(workdir / "fit")])
    cli.trainer.fit(cli.model, cli.datamodule)
    loss = float(cli.trainer.callback_metrics["val/completion_loss"])
    rows.append({"step": "fit drums_gpt2_tiny, 8 steps of 8 grooves", "data": desc,
                 "result": f"val completion loss {loss:.3f} nats/token", "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    published = BASELINE in load_manifest()
    source = BASELINE if published else str(workdir / "fit" / "model")
    r = evaluate(source, "drums", data=data, split="test", samples=4, temperature=0.9, max_new_tokens=1000,
                 seed=0, encoding="paper", batch_size=4, out_dir=workdir / "eval", json_out=workdir / "drums.json")
    rows.append({"step": f"continue 4 test prompts with {source if published else 'the fitted tiny GPT-2'}",
                 "data": desc, "result": f"stability generated {r['generated']['mean_stability']:.2f} vs human "
                                         f"{r['human']['mean_stability']:.2f}; MIDI + piano rolls in eval/",
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    b = benchmark(source, mode="generate", batch_size=4, warmup=1, iters=2)
    rows.append({"step": "bench generate, batch 4, CPU fp32", "data": "random drum text",
                 "result": f"{b['tokens_per_s']:.0f} generated tokens/s, p50 {b['latency_ms']['p50']:.0f} ms per "
                           f"4 x 128 tokens", "seconds": time.perf_counter() - t0})
    return rows
