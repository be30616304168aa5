"""The ground-truth database of CMT's multi-modal GT-paste: every training object's LiDAR points and one image
crop of it, which `ObjectSample` pastes into other frames.

For each box of each training frame (LiDAR frame, 7-DoF boxes upright in it, as mmdet3d's):

* its points: those of the accumulated cloud (keyframe + ``sweeps``) inside the box, stored relative to the box
  centre ([k, 5] float32 .npy: x, y, z, intensity, time lag);
* its image crop: the 2D hull of its eight projected corners, clipped to the image, from the camera where that
  crop is largest, skipped where a corner is behind the camera or the clipped crop is 10 px or less in width or
  height (a PNG, BGR as loaded). The authors' converter means to keep the largest crop too, but never updates
  its running area, so it keeps the last camera that passes; the zoo keeps the largest.

The folder holds ``dbinfos.pkl`` (class name -> list of info dicts: ``name``, ``points``, ``image`` (relative
paths; ``image`` "" without a crop), ``camera``, ``box`` [7], ``velocity`` [2] (as read: NaN where unknown, which
`ObjectSample` pastes as 0), ``num_points``, ``token``, ``index``) beside ``points/`` and ``images/``; it is
written once through a temporary folder.

Build one for a split: ``python -m zoo.models.cmt.gt_database --data DATAROOT --version v1.0-trainval
--split train --out DIR [--sweeps 10]``; a training recipe with ``gt_paste`` builds it itself (`NuScenesDataModule`).
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from ...data.nuscenes import CAMERAS, Frame, box_corners, load_images, load_points, points_in_boxes, project_points
from ...errors import ZooError, require
from ...io import write_dir_once

cv2 = require("cv2", "det3d")  # OpenCV, which nuscenes-devkit installs

DB_INFO = "dbinfos.pkl"
MIN_CROP = 10  # px: crops this narrow or low are not stored (the authors' threshold)


def image_boxes(boxes: np.ndarray, lidar2img: np.ndarray, image_hw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The authors' 2D box of each 3D box in one camera: the extent of its eight projected corners, clipped to the
    image and cut to whole pixels (meaningful only where all corners are in front of the camera).

    Args:
        boxes: [n, 7]; lidar2img: [4, 4]; image_hw: (H, W).
    Returns:
        [n, 4] int (x0, y0, x1, y1; all four 0 for a box with any corner behind the camera), [n] bool (every
        corner in front), [n] mean corner depth.
    """
    uv, depth = project_points(box_corners(boxes), lidar2img)  # [n, 8, 2], [n, 8]
    front = (depth > 0).all(1)
    uv = np.where(front[:, None, None], uv, 0.0)
    h, w = image_hw
    x = np.clip(np.stack([uv[..., 0].min(1), uv[..., 0].max(1)], 1), 0, w - 1)
    y = np.clip(np.stack([uv[..., 1].min(1), uv[..., 1].max(1)], 1), 0, h - 1)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1).astype(int), front, depth.mean(1)


def largest_crop(box: np.ndarray, images: list[np.ndarray], frame: Frame) -> tuple[np.ndarray | None, str]:
    """The largest image crop of one [7] box over the six cameras, and its camera ("" if none qualifies)."""
    best, best_cam, best_area = None, "", 0
    for name, img in zip(CAMERAS, images):
        b2d, front, _ = image_boxes(box[None], frame.cams[name].lidar2img, img.shape[:2])
        (x0, y0, x1, y1), in_front = b2d[0], front[0]
        if not in_front or x1 - x0 <= MIN_CROP or y1 - y0 <= MIN_CROP:
            continue
        if (x1 - x0) * (y1 - y0) > best_area:
            best, best_cam, best_area = img[y0:y1, x0:x1], name, (x1 - x0) * (y1 - y0)
    return best, best_cam


def _fill(tmp: Path, frames: list[Frame], sweeps: int) -> None:
    (tmp / "points").mkdir()
    (tmp / "images").mkdir()
    infos: dict[str, list[dict]] = {}
    for frame in frames:
        if not len(frame.boxes):
            continue
        points = load_points(frame, sweeps)
        images = load_images(frame)
        inside = points_in_boxes(points, frame.boxes)  # [P, n]
        for i, (box, name) in enumerate(zip(frame.boxes.astype(np.float64), frame.names)):
            stem = f"{frame.token}_{i}_{name}"
            obj = points[inside[:, i]].copy()
            obj[:, :3] -= box[:3].astype(np.float32)
            np.save(tmp / "points" / f"{stem}.npy", obj)
            crop, camera = largest_crop(box, images, frame)
            if crop is not None:
                cv2.imwrite(str(tmp / "images" / f"{stem}.png"), crop)
            infos.setdefault(name, []).append({
                "name": name, "points": f"points/{stem}.npy", "image": f"images/{stem}.png" if camera else "",
                "camera": camera, "box": box, "velocity": frame.velocity[i].astype(np.float64),
                "num_points": len(obj), "token": frame.token, "index": i})
    if not infos:
        raise ZooError("no annotated box in these frames: the GT-paste database would be empty")
    with open(tmp / DB_INFO, "wb") as f:
        pickle.dump(infos, f)


def build_gt_database(frames: list[Frame], out: str | Path, sweeps: int = 10) -> Path:
    """Write the database of ``frames`` to ``out`` (once; an existing database is returned as it is)."""
    return write_dir_once(Path(out), lambda tmp: _fill(tmp, frames, sweeps))


def load_gt_database(folder: str | Path) -> dict[str, list[dict]]:
    """``dbinfos.pkl`` of a database folder, or a `ZooError` saying how to build one."""
    path = Path(folder) / DB_INFO
    if not path.is_file():
        raise ZooError(f"{folder} is not a GT-paste database ({DB_INFO} is missing); build it with "
                       f"`python -m zoo.models.cmt.gt_database --data DATAROOT --split TRAIN_SPLIT --out {folder}`")
    with open(path, "rb") as f:
        return pickle.load(f)


def main(argv: list[str] | None = None) -> None:
    from .dataset import open_frames

    ap = argparse.ArgumentParser(prog="python -m zoo.models.cmt.gt_database", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a nuScenes dataroot or an mmdet3d info .pkl")
    ap.add_argument("--version", default="v1.0-trainval")
    ap.add_argument("--split", default="train", help="the training split")
    ap.add_argument("--data-root", default=None, help="sensor files of an info .pkl")
    ap.add_argument("--sweeps", type=int, default=10, help="LiDAR sweeps accumulated, as in training")
    ap.add_argument("--out", required=True, help="the database folder to write")
    args = ap.parse_args(argv)
    if Path(args.out).exists():
        raise ZooError(f"{args.out} exists; pick another --out or delete it first")
    frames, _ = open_frames(args.data, args.version, args.split, args.sweeps, args.data_root)
    out = build_gt_database(frames, args.out, args.sweeps)
    infos = load_gt_database(out)
    print(f"{out}: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(infos.items())))


if __name__ == "__main__":
    main()
