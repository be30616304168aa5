"""PMT-IQA quick start for ``zoo demo``: a brief frozen-backbone fit through the CLI, the IQA evaluation of the
zoo's BIQ2021 weights, a benchmark. Uses 96 images of the BIQ2021 subset (36 to fit, 60 of its test split to
evaluate, so that the published weights' SRCC is not one of 12 images) with 2 crops each; 9 of the 36 validate),
or generated degraded photographs when the subset is absent."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from ...data.catalog import available
from ...data.iqa import read_table
from ...data.iqa_synthetic import distorted_photos
from ...hub import load_manifest, repo_root

WEIGHTS = "pmt_iqa_efficientnet_lite0.biq2021"


def _small_biq2021(folder: Path, n_train: int = 36, n_test: int = 60, seed: int = 0) -> Path:
    """A CSV of ``n_train`` + ``n_test`` BIQ2021-subset images (absolute paths, official split labels)."""
    table = read_table("biq2021_subset")
    rng = np.random.default_rng(seed)
    labels = np.asarray(table.split)
    rows = np.r_[rng.choice(np.flatnonzero(labels == "train"), n_train, replace=False),
                 rng.choice(np.flatnonzero(labels == "test"), n_test, replace=False)]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "mos.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos_0_1", "split"])
        for r in rows:
            w.writerow([str(table.paths[r]), f"{table.scores[r]:.4f}", table.split[r]])
    return folder


def run(workdir: Path) -> list[dict]:
    from ...bench.harness import benchmark
    from ...eval import evaluate
    from ...training.cli import ZooLightningCLI

    rows = []
    real = available("biq2021_subset")
    data = _small_biq2021(workdir / "biq2021_small") if real else distorted_photos(n=48)
    desc = "BIQ2021 subset, 36 + 60 images" if real else "degraded scikit-image photos (no ../shared data)"

    t0 = time.perf_counter()
    cli = ZooLightningCLI(run=False, args=[
        "--config", str(repo_root() / "configs/pmt_iqa/efficientnet_lite0_biq2021_frozen.yaml"),
        "--data.init_args.data", str(data), "--data.init_args.split", "official",
        "--data.init_args.val_fraction", "0.25",
        "--data.init_args.cache_crops", "2", "--data.init_args.crops", "2", "--data.init_args.test_crops", "2",
        "--data.init_args.num_workers", "0", "--trainer.max_epochs", "5", "--trainer.log_every_n_steps", "1",
        "--trainer.default_root_dir", str(workdir / "fit")])
    cli.trainer.fit(cli.model, cli.datamodule)
    srcc = float(cli.trainer.callback_metrics["val/srcc"])
    n_val = len(cli.datamodule.rows["val"])
    rows.append({"step": "fit PMT heads on frozen EfficientNet-Lite0, 5 epochs, 2 crops", "data": desc,
                 "result": f"val SRCC {srcc:.3f} ({n_val} images)", "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    source = WEIGHTS if WEIGHTS in load_manifest() else str(workdir / "fit" / "model")
    r = evaluate(source, "iqa", data=str(data), crops=2, split="test", layout="auto", csv=None,
                 image_col=None, score_col=None, resize=None, logistic=False, crop_seed=0, num_workers=0,
                 batch_size=32, json_out=workdir / "iqa.json")
    rows.append({"step": f"IQA eval of {source if source == WEIGHTS else 'the demo fit'}, 2 crops", "data": desc,
                 "result": f"SRCC {r['srcc']:.3f} PLCC {r['plcc']:.3f} (n={r['n']})",
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    b = benchmark("pmt_iqa_efficientnet_lite0", mode="infer", batch_size=4, warmup=1, iters=3, channels_last=True)
    rows.append({"step": "bench pmt_iqa_efficientnet_lite0 infer, 4 images x 4 crops, CPU fp32 channels-last",
                 "data": "synthetic input", "result": f"{b['samples_per_s']:.1f} images/s, "
                                                      f"p50 {b['latency_ms']['p50']:.0f} ms",
                 "seconds": time.perf_counter() - t0})
    return rows
