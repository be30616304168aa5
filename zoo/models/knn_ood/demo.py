"""kNN-OOD quick start for ``zoo demo``: a one-epoch fit through the CLI, the OOD evaluation, a benchmark."""

from __future__ import annotations

import time
from pathlib import Path

from ...data import synthetic
from ...data.catalog import available, locate
from ...hub import load_manifest, repo_root


def run(workdir: Path) -> list[dict]:
    from ...bench.harness import benchmark
    from ...eval import evaluate
    from ...training.cli import ZooLightningCLI

    rows = []
    real = available("cifar10_jpeg")
    id_data = "cifar10_jpeg" if real else str(synthetic.shapes())
    desc = "CIFAR-10 JPEG" if real else "generated shapes (no ../shared data)"

    t0 = time.perf_counter()
    cli = ZooLightningCLI(run=False, args=[
        "--config", str(repo_root() / "configs/knn_ood/resnet20_cifar10_small.yaml"),
        "--data.init_args.data", id_data, "--data.init_args.train_subset", "4000",
        "--data.init_args.test_subset", "1000", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(workdir / "fit")])
    cli.trainer.fit(cli.model, cli.datamodule)
    acc = float(cli.trainer.callback_metrics["val/acc"])
    rows.append({"step": "fit ResNet-20, 1 epoch on 3.6k images", "data": desc, "result": f"val acc {acc:.3f}",
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    pretrained = real and "knn_ood_resnet20.cifar10" in load_manifest()
    source = "knn_ood_resnet20.cifar10" if pretrained else str(workdir / "fit" / "model")
    ood = [str(synthetic.textures())] + ([str(locate("fashion_mnist"))] if available("fashion_mnist") else [])
    r = evaluate(source, "ood", id_data=id_data, ood=ood, k=50, alpha=1.0, scorers="knn,msp,energy,mahalanobis",
                 backend="auto", id_train_subset=5000, id_test_subset=1000, ood_subset=1000, num_workers=2,
                 json_out=workdir / "ood.json")
    avg = {a["scorer"]: a for a in r["average"]}
    rows.append({"step": f"OOD eval of {source.split('/')[-2] if not pretrained else source}", "data": desc,
                 "result": f"avg FPR95 kNN {100 * avg['knn']['fpr95']:.1f} % vs MSP {100 * avg['msp']['fpr95']:.1f} %"
                           f" (AUROC {100 * avg['knn']['auroc']:.1f} / {100 * avg['msp']['auroc']:.1f})",
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    b = benchmark("knn_ood_resnet20", mode="infer", batch_size=64, warmup=2, iters=5)
    rows.append({"step": "bench knn_ood_resnet20 infer, batch 64, CPU fp32", "data": "synthetic input",
                 "result": f"{b['samples_per_s']:.0f} images/s, p50 {b['latency_ms']['p50']:.1f} ms, "
                           f"MFU {100 * b['mfu']:.1f} % of measured peak",
                 "seconds": time.perf_counter() - t0})
    return rows
