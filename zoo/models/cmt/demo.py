"""CMT quick start for ``zoo demo``: the real keyframe's geometry check and overlay, a brief fit on generated
nuScenes-format scenes, their devkit evaluation (NDS), and a benchmark."""

from __future__ import annotations

import time
from pathlib import Path

from ...data.catalog import available, locate
from ...data.nuscenes_synthetic import VERSION, synthetic_nuscenes
from ...hub import load_manifest, repo_root

DEMO_DATA = dict(n_scenes=3, samples_per_scene=4, sweeps_per_sample=2, image_size=(200, 113), objects=(12, 14),
                 val_scenes=1, seed=7)


def run(workdir: Path) -> list[dict]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one intra-op thread is faster than two competing ones
    try:
        return _run(Path(workdir))
    finally:
        torch.set_num_threads(threads)


def _run(workdir: Path) -> list[dict]:
    from ...bench.harness import benchmark
    from ...eval import evaluate
    from ...training.cli import ZooLightningCLI

    rows = []
    if available("nuscenes_keyframe"):
        from ...data.nuscenes import frames_from_infos, load_points, read_info_pickle
        from .visualize import geometry_check, plot_bev, plot_cameras

        t0 = time.perf_counter()
        pkl = next(locate("nuscenes_keyframe").glob("*.pkl"))
        frame = frames_from_infos(pkl)[0]
        report = geometry_check(frame, read_info_pickle(pkl)["data_list"][0]["cam_instances"])
        plot_cameras(frame, frame.boxes, frame.names, workdir / "keyframe_cameras.png", title="nuScenes keyframe: "
                     "its 3D boxes projected with the info file's calibration")
        plot_bev(load_points(frame, 0), frame.boxes, frame.names, None, [], workdir / "keyframe_bev.png")
        n = sum(r["n_zoo"] for r in report.values())
        worst = {k: max(r[k] for r in report.values()) for k in ("center_2d_px", "depth_m", "bbox_px")}
        rows.append({"step": "geometry check: project the info file's 3D boxes", "data": "nuScenes keyframe (real)",
                     "result": f"{n}/{sum(r['n_info'] for r in report.values())} camera boxes; max error centre "
                               f"{worst['center_2d_px']:.1e} px, depth {worst['depth_m']:.1e} m, 2D box "
                               f"{worst['bbox_px']:.2f} px", "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    root = synthetic_nuscenes(**DEMO_DATA)
    cli = ZooLightningCLI(run=False, args=[
        "--config", str(repo_root() / "configs/cmt/fusion_tiny_synthetic.yaml"),
        "--data.init_args.synthetic", str(DEMO_DATA).replace("(", "[").replace(")", "]"),
        "--data.init_args.num_workers", "0", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "0",  # the devkit evaluation is the next step
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(workdir / "fit")])
    cli.trainer.fit(cli.model, cli.datamodule)
    rows.append({"step": "fit cmt_tiny (fusion, masked-modal training), 3 steps", "data": "generated nuScenes-format "
                 "scenes", "result": f"train loss {float(cli.trainer.callback_metrics['train/loss']):.1f}",
                 "seconds": time.perf_counter() - t0})

    source = "cmt_tiny.synthetic_fusion"  # the fusion detector trained with GT-paste and CBGS, without masking
    if source not in load_manifest():
        source = str(workdir / "fit" / "model")
    for drop in (None, "lidar"):
        t0 = time.perf_counter()
        r = evaluate(source, "det3d", data=str(root), version=VERSION, split="synthetic_val", drop_modality=drop,
                     sweeps=None, score_threshold=0.3, num_workers=0,
                     json_out=workdir / f"det3d{'_no' + drop if drop else ''}.json")
        rows.append({"step": f"devkit eval of {source if source.startswith('cmt') else 'the fitted model'}"
                             f"{', LiDAR dropped' if drop else ''}", "data": "generated scenes, synthetic_val",
                     "result": f"NDS {r['NDS']:.3f}, mAP {r['mAP']:.3f}", "seconds": time.perf_counter() - t0})

    t0 = time.perf_counter()
    b = benchmark("cmt_tiny", mode="infer", batch_size=1, warmup=1, iters=2)
    rows.append({"step": "bench cmt_tiny infer, batch 1, CPU fp32", "data": "synthetic frame",
                 "result": f"{b['frames_per_s']:.2f} frames/s, p50 {b['latency_ms']['p50']:.0f} ms",
                 "seconds": time.perf_counter() - t0})
    return rows
