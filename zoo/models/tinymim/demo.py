"""TinyMIM quick start for ``zoo demo``: a brief relation distillation through the CLI, a brief fine-tuning of the
distilled student, top-1 of the published student on real CIFAR-10 test images, and a benchmark.

With the real data the published teacher distils and the published fine-tuned student is evaluated on 1 000
CIFAR-10 test images; without it, generated shapes and a randomly initialised teacher of the same architecture
stand in, and the freshly fine-tuned student is evaluated instead.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from ...data import synthetic
from ...data.catalog import available, locate
from ...hub import load_manifest, repo_root

TEACHER = "tinymim_vit.cifar10_mae_teacher"
STUDENT = "tinymim_vit.cifar10_tinymim_finetuned"


def _fit(config: str, workdir: Path, data: str, extra: list[str]) -> dict:
    from ...training.cli import ZooLightningCLI

    cli = ZooLightningCLI(run=False, args=[
        "--config", str(repo_root() / f"configs/tinymim/{config}.yaml"), "--data.init_args.data", data,
        "--data.init_args.train_subset", "440", "--data.init_args.test_subset", "100", "--data.init_args.batch_size",
        "40", "--data.init_args.num_workers", "0", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar",
        "false", "--trainer.logger", "false", "--trainer.default_root_dir", str(workdir), *extra])
    cli.trainer.fit(cli.model, cli.datamodule)
    return {k: float(v) for k, v in cli.trainer.callback_metrics.items()}


def _test_images(n_per_class: int, out: Path) -> Path:
    """``n_per_class`` CIFAR-10 test images per class copied into ``out/test/<class>/``."""
    for cls_dir in sorted((locate("cifar10_jpeg") / "test").iterdir()):
        (out / "test" / cls_dir.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls_dir.iterdir())[:n_per_class]:
            shutil.copy(f, out / "test" / cls_dir.name / f.name)
    return out


def run(workdir: Path) -> list[dict]:
    import zoo
    from ...bench.harness import benchmark
    from ...eval import evaluate

    rows = []
    manifest = load_manifest()
    real = available("cifar10_jpeg") and TEACHER in manifest and STUDENT in manifest
    data = "cifar10_jpeg" if real else str(synthetic.shapes())
    desc = "CIFAR-10 JPEG, 400 train images" if real else "generated shapes (no ../shared data), 400 images"
    teacher = TEACHER
    if not real:
        cfg = manifest.get(TEACHER, {}).get("model_args") or dict(
            embed_dim=256, depth=8, num_heads=4, img_size=32, patch_size=8, num_classes=0, global_pool="token")
        teacher = str(zoo.save_pretrained(zoo.create_model("tinymim_vit", **cfg), workdir / "random_teacher"))

    t0 = time.perf_counter()
    m = _fit("cifar10_distill", workdir / "distill", data, ["--model.init_args.teacher", teacher])
    rows.append({"step": "TinyMIM relation distillation, 1 epoch", "data": desc,
                 "result": f"val KL(QK) {m['val/qk']:.3f} + KL(VV) {m['val/vv']:.3f}",
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    m = _fit("cifar10_finetune", workdir / "finetune", data,
             ["--model.init_args.pretrained_encoder", str(workdir / "distill" / "model")])
    rows.append({"step": "fine-tune the distilled student, 1 epoch", "data": desc,
                 "result": f"val top-1 {100 * m['val/acc']:.1f} % (the held-out 10 %; chance 10 %)",
                 "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    source = STUDENT if real else str(workdir / "finetune" / "model")
    test = _test_images(100, workdir / "cifar10_test_1000") if real else data
    r = evaluate(source, "classification", data=str(test), split="test", num_workers=0,
                 json_out=workdir / "classification.json")
    rows.append({"step": f"zoo eval {source if real else 'the fine-tuned student'} --task classification",
                 "data": f"{'CIFAR-10 JPEG test' if real else 'generated shapes test'}, {r['n']} images",
                 "result": f"top-1 {100 * r['top1']:.1f} %", "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    b = benchmark(source if real else None, model=None if real else zoo.from_pretrained(source), mode="train",
                  batch_size=64, warmup=1, iters=3)
    rows.append({"step": "bench student train step, batch 64, CPU fp32", "data": "synthetic input",
                 "result": f"{b['samples_per_s']:.0f} images/s, {b['flops_per_sample'] / 1e6:.0f} MFLOP/image",
                 "seconds": time.perf_counter() - t0})
    return rows
