"""Bird's-eye-view and camera overlays of 3D boxes (ground truth and detections), and the real-keyframe report.

``python -m zoo.models.cmt.visualize --data DATA [--index I] [--model NAME_OR_FOLDER] --out DIR`` draws one
frame of a nuScenes dataroot (``--version``, ``--split``), an mmdet3d info pickle or the ``nuscenes_keyframe``
catalogue entry: LiDAR points with boxes from above, and the six images with the boxes projected.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ...data.nuscenes import CAMERAS, CLASSES, Frame, box_corners, camera_instances, load_images, load_points, \
    project_points
from ...io import atomic_path

_COLORS = {name: c for name, c in zip(CLASSES, ("tab:red", "tab:blue", "gold", "darkorange", "grey", "silver",
                                                 "purple", "cyan", "tab:green", "orangered"))}
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_bev(points: np.ndarray, gt: np.ndarray, gt_names, det: np.ndarray | None, det_names, path: Path,
             extent: float = 55.0, title: str = "") -> Path:
    """LiDAR points [P, >=2] from above with box footprints: ground truth [n, >=7] dashed black, detections
    [k, >=7] coloured by class, each with a heading tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 7))
    sub = points[:: max(1, len(points) // 60000)]
    ax.scatter(sub[:, 0], sub[:, 1], s=0.2, c="0.6", linewidths=0)
    for boxes, names, style in ((gt, gt_names, "gt"), (det, det_names, "det")):
        if boxes is None:
            continue
        for b, name in zip(boxes, names):
            c = box_corners(b[None, :7])[0][[0, 1, 5, 4, 0], :2]
            color = "k" if style == "gt" else _COLORS[name]
            ax.plot(c[:, 0], c[:, 1], "--" if style == "gt" else "-", color=color, lw=1.0)
            front = c[:2].mean(0)
            ax.plot([b[0], front[0]], [b[1], front[1]], color=color, lw=1.0)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, LiDAR frame)")
    ax.set_ylabel("y (m)")
    ax.set_title(title or "BEV: ground truth dashed black, detections by class colour", fontsize=9)
    return _save(fig, path)


def plot_cameras(frame: Frame, boxes: np.ndarray, names, path: Path, upright_in_world: bool = True,
                 title: str = "") -> Path:
    """The six camera images (2 x 3, nuScenes layout) with ``boxes`` [k, >=7] (LiDAR frame) projected."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = load_images(frame)
    order = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")
    corners = box_corners(np.asarray(boxes)[:, :7], frame.ego2global @ frame.lidar2ego if upright_in_world else None)
    fig, axes = plt.subplots(2, 3, figsize=(15, 5.6))
    for ax, cam in zip(axes.ravel(), order):
        img = images[CAMERAS.index(cam)][:, :, ::-1]
        c = frame.cams[cam]
        ax.imshow(img)
        h, w = img.shape[:2]
        for uv, depth, name in zip(*project_points(corners, c.lidar2img), names):
            if (depth < 0.5).any():
                continue
            if uv[:, 0].max() < 0 or uv[:, 0].min() > w or uv[:, 1].max() < 0 or uv[:, 1].min() > h:
                continue
            for i, j in _EDGES:
                ax.plot(uv[[i, j], 0], uv[[i, j], 1], color=_COLORS[name], lw=0.8)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(cam, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def geometry_check(frame: Frame, reference: dict[str, list[dict]], image_size=(1600, 900)) -> dict:
    """Compare `camera_instances` of ``frame`` with an info file's ``cam_instances`` (per camera).

    Returns ``{camera: {"n_info", "n_zoo", "center_2d_px", "depth_m", "bbox_px"}}`` with the largest absolute
    differences after pairing the boxes one to one (Hungarian on centre and depth).
    """
    from scipy.optimize import linear_sum_assignment

    mine = camera_instances(frame, image_size)
    out = {}
    for cam in CAMERAS:
        ref, zoo = reference.get(cam, []), mine[cam]
        row = {"n_info": len(ref), "n_zoo": len(zoo), "center_2d_px": 0.0, "depth_m": 0.0, "bbox_px": 0.0}
        if ref and zoo:
            a = np.array([[*r["center_2d"], r["depth"]] for r in ref])
            b = np.array([[*z["center_2d"], z["depth"]] for z in zoo])
            i, j = linear_sum_assignment(np.abs(a[:, None] - b[None]).sum(-1))
            row["center_2d_px"] = float(np.abs(a[i, :2] - b[j, :2]).max())
            row["depth_m"] = float(np.abs(a[i, 2] - b[j, 2]).max())
            row["bbox_px"] = float(max(np.abs(np.array(ref[p]["bbox"]) - np.array(zoo[q]["bbox"])).max()
                                       for p, q in zip(i, j)))
        out[cam] = row
    return out


def main(argv=None) -> None:
    import torch

    from .dataset import CMTDataset, collate, open_frames

    p = argparse.ArgumentParser(prog="python -m zoo.models.cmt.visualize")
    p.add_argument("--data", required=True, help="nuScenes dataroot, mmdet3d info .pkl or nuscenes_keyframe")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="mini_val")
    p.add_argument("--index", type=int, default=0, help="frame of the split")
    p.add_argument("--model", default=None, help="a CMT folder or name.tag: also draw its detections")
    p.add_argument("--score", type=float, default=0.3, help="score threshold for drawn detections")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    model = None
    if a.model:
        from ...checkpoint import from_pretrained

        model = from_pretrained(a.model).eval()
    sweeps = model.input_spec.get("sweeps", 10) if model is not None else 10  # the model's own, as it was trained
    frames, _ = open_frames(a.data, a.version, a.split, sweeps)
    frame = frames[a.index]
    out = Path(a.out)
    det, det_names = None, []
    if model is not None:
        ds = CMTDataset([frame], False, model.pc_range, model.input_spec["image_size"], sweeps=sweeps,
                        modalities=model.modalities)
        batch = collate([ds[0]])
        with torch.no_grad():
            pred = model.predict(batch.get("images"), batch["points"], batch.get("lidar2img"))[0]
        keep = pred["scores"] >= a.score
        det = pred["boxes"][keep].numpy()
        det_names = [CLASSES[i] for i in pred["labels"][keep].tolist()]
    points = load_points(frame, sweeps)
    print(plot_bev(points, frame.boxes, frame.names, det, det_names, out / "bev.png"))
    print(plot_cameras(frame, frame.boxes, frame.names, out / "cameras_gt.png", title="ground truth (projected)"))
    if det is not None:
        print(plot_cameras(frame, det, det_names, out / "cameras_det.png", upright_in_world=False,
                           title=f"detections with score >= {a.score}"))


if __name__ == "__main__":
    main()
