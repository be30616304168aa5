"""CMT's multi-modal GT-paste (the authors' ``UnifiedObjectSample`` with its ``UnifiedDataBaseSampler``): objects
from the training set's ground-truth database (`zoo.models.cmt.gt_database`) are added to a training frame, their
LiDAR points into the cloud and their image crops into the camera images, before any other augmentation.

Per frame and class c (in ``sample_groups`` order): draw ``round(rate * (max_c - n_c))`` database objects of c
(n_c: the frame's boxes of c) without replacement among those with at least ``min_points`` points; keep each
whose bird's-eye-view rectangle overlaps neither the frame's boxes nor those kept before it (of two overlapping
draws the authors keep the later, the zoo the earlier: the same count, as the draws are in random order). Each kept
object stays where it was in its own frame (same rig, same LiDAR frame). The cloud loses its points inside the
kept boxes and gains the objects' points. In each camera, every box (the frame's and the pasted) whose corners all
lie in front of it is painted far to near over its projected 2D box: a pasted object's crop resized to that box,
a frame object's own pixels cut before any paste (so near frame objects stay in front of far pasted ones), each
blended as ``(1 - mixup) * image + mixup * patch`` (``mixup`` < 0: replaced). The authors' points are not
re-filtered by occlusion either (their ``modify_points`` is off in every CMT recipe). A pasted object's unknown
velocity (NaN in the database, as the devkit gives it) becomes 0, mmdet3d's convention for CMT's targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data.nuscenes import CLASSES, bev_overlaps, lidar_to_image, points_in_boxes
from ...errors import ZooError, require
from .gt_database import image_boxes, load_gt_database

cv2 = require("cv2", "det3d")  # OpenCV, which nuscenes-devkit installs

# The authors' fusion and LiDAR recipes: the number of objects of each class a frame is filled up to
SAMPLE_GROUPS = {"car": 2, "truck": 3, "construction_vehicle": 7, "bus": 4, "trailer": 6, "barrier": 2,
                 "motorcycle": 6, "bicycle": 6, "pedestrian": 2, "traffic_cone": 2}


class ObjectSample:
    """GT-paste for a training sample dict (see `zoo.models.cmt.transforms` for its keys), in place.

    Args:
        database: a `zoo.models.cmt.gt_database` folder.
        sample_groups: class name -> the count a frame is filled up to (default `SAMPLE_GROUPS`).
        min_points: database objects with fewer LiDAR points are never pasted (the authors: 5 for every class).
        mixup: the pasted patches' blend weight (the authors' fusion recipes: 0.5).
        rate: the fraction of the missing count drawn (the authors: 1.0).
        paste_images: paste the image crops too (``False``: points only, the LiDAR recipes' ``ObjectSample``).
    """

    def __init__(self, database: str | Path, sample_groups: dict[str, int] | None = None, min_points: int = 5,
                 mixup: float = 0.5, rate: float = 1.0, paste_images: bool = True):
        groups = dict(SAMPLE_GROUPS if sample_groups is None else sample_groups)
        unknown = sorted(set(groups) - set(CLASSES))
        if unknown:
            raise ZooError(f"gt_paste sample_groups names unknown classes {unknown}; the classes are {CLASSES}")
        self.folder, self.groups = Path(database), groups
        infos = load_gt_database(self.folder)
        self.pools = {c: [i for i in infos.get(c, []) if i["num_points"] >= min_points] for c in groups}
        self.mixup, self.rate, self.paste_images = mixup, rate, paste_images

    def draw(self, boxes: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> list[dict]:
        """Database infos to paste into a frame with ``boxes`` [n, 7] and ``labels`` [n], collision-free."""
        taken = np.asarray(boxes, np.float64).reshape(-1, 7)
        picked = []
        for name, max_num in self.groups.items():
            pool = self.pools[name]
            want = int(round(self.rate * (max_num - int((labels == CLASSES.index(name)).sum()))))
            if want <= 0 or not pool:
                continue
            for j in rng.choice(len(pool), min(want, len(pool)), replace=False):
                box = pool[j]["box"][None]
                if len(taken) and bev_overlaps(box, taken).any():
                    continue
                taken = np.concatenate([taken, box])
                picked.append(pool[j])
        return picked

    def __call__(self, sample: dict, rng: np.random.Generator) -> None:
        picked = self.draw(sample["boxes"], sample["labels"], rng)
        if not picked:
            return
        new = np.stack([p["box"] for p in picked])  # [k, 7]
        points = sample["points"]
        kept = points[~points_in_boxes(points, new).any(1)]
        pasted = [np.load(self.folder / p["points"]) + np.r_[p["box"][:3], 0.0, 0.0].astype(np.float32)
                  for p in picked]
        sample["points"] = np.concatenate([kept, *pasted]).astype(np.float32)
        n_raw = len(sample["boxes"])
        sample["boxes"] = np.concatenate([sample["boxes"], new])
        # an unknown velocity (NaN: the object was seen in one sample only) is 0, as for the frame's own boxes
        velocity = np.nan_to_num(np.stack([p["velocity"] for p in picked]), nan=0.0)
        sample["velocity"] = np.concatenate([sample["velocity"], velocity])
        sample["labels"] = np.concatenate([sample["labels"], [CLASSES.index(p["name"]) for p in picked]])
        if self.paste_images and len(sample["images"]):
            crops = [cv2.imread(str(self.folder / p["image"]), cv2.IMREAD_COLOR) if p["image"] else None
                     for p in picked]
            sample["images"] = [self._paste(img, lidar_to_image(k, l2c), sample["boxes"], n_raw, crops)
                                for img, k, l2c in zip(sample["images"], sample["cam2img"], sample["lidar2cam"])]

    def _paste(self, img: np.ndarray, lidar2img: np.ndarray, boxes: np.ndarray, n_raw: int,
               crops: list[np.ndarray | None]) -> np.ndarray:
        """One camera: paint the boxes' patches far to near. img [H, W, 3] uint8; boxes [n_raw + k, 7]."""
        b2d, front, depth = image_boxes(boxes, lidar2img, img.shape[:2])
        visible = front & (b2d[:, 2] - b2d[:, 0] > 1) & (b2d[:, 3] - b2d[:, 1] > 1)
        has_crop = np.r_[np.zeros(n_raw, bool), [c is not None for c in crops]]
        if not (visible & has_crop).any():
            return img
        out = img.astype(np.float32)
        for i in sorted(np.flatnonzero(visible), key=lambda i: -depth[i]):
            x0, y0, x1, y1 = b2d[i]
            if i < n_raw:
                patch = img[y0:y1, x0:x1].astype(np.float32)
            elif crops[i - n_raw] is not None:
                patch = cv2.resize(crops[i - n_raw], (x1 - x0, y1 - y0)).astype(np.float32)
            else:
                continue
            region = out[y0:y1, x0:x1]
            out[y0:y1, x0:x1] = patch if self.mixup < 0 else (1 - self.mixup) * region + self.mixup * patch
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
