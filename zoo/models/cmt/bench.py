"""``zoo bench`` adapter for CMT: six camera images and a LiDAR point cloud per frame, at the model's input size.

The synthetic frame is built from the synthetic nuScenes rig (`zoo.data.nuscenes_synthetic`): lidar2img of the
six cameras scaled to the model's image size, and a point cloud ray-cast against the ground and a few cuboids
(about 40 000 points per sweep; earlier sweeps are the same sweep shifted by the ego motion of a car at 8 m/s,
with their time lags, for the model's ``sweeps``), so point and voxel counts look like real data. Infer mode times `CMT.predict` (forward and top-k decoding); train mode the real
loss (matching, denoising) with the cuboids as ground truth. One sample is one frame.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ...bench.adapters import BenchAdapter
from ...data.nuscenes_synthetic import (CAMERA_RIG, LIDAR_ELEVATIONS, LIDAR_POSE, _pose, camera_intrinsics,
                                        camera_to_ego, ray_cast)
from .losses import CMTCriterion


@lru_cache(maxsize=8)
def synthetic_frame(image_hw: tuple[int, int], sweeps: int, seed: int = 0):
    """(lidar2img [6, 4, 4], points [P, 5], gt_boxes [n, 9], gt_labels [n]) of one synthetic frame (cached: do
    not modify the returned tensors in place)."""
    rng = np.random.default_rng(seed)
    h, w = image_hw
    lidar2ego = _pose(LIDAR_POSE[0], np.deg2rad(LIDAR_POSE[1]))
    l2i = []
    for cam in CAMERA_RIG:
        k = np.eye(4)
        k[:3, :3] = camera_intrinsics(cam, (w, w * 9 / 16))
        k[1, 2] -= w * 9 / 16 - h  # bottom crop of a 16:9 image to the model's height, as the test pipeline
        l2i.append(k @ np.linalg.inv(camera_to_ego(cam)) @ lidar2ego)
    boxes = np.array([[rng.uniform(-40, 40), rng.uniform(-40, 40), 0.85, 4.5, 1.9, 1.7, rng.uniform(-3, 3)]
                      for _ in range(30)])
    az = np.deg2rad(np.arange(0, 360, 0.2))
    el, az = np.meshgrid(LIDAR_ELEVATIONS, az, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    origin = lidar2ego[:3, 3]
    dist, _ = ray_cast(origin, dirs @ lidar2ego[:3, :3].T, boxes)  # ego frame, ground at z = 0
    ok = np.isfinite(dist)
    pts_ego = origin + dirs[ok] @ lidar2ego[:3, :3].T * dist[ok, None]
    pts = (pts_ego - lidar2ego[:3, 3]) @ lidar2ego[:3, :3]  # ego -> LiDAR frame
    sweep = np.c_[pts, rng.uniform(0, 60, len(pts)), np.zeros(len(pts))]
    # earlier sweeps as seen from the keyframe of an ego driving at 8 m/s along the LiDAR's y axis (its heading)
    clouds = [sweep + np.array([0, -0.4 * i, 0, 0, 0.05 * i]) for i in range(1 + sweeps)]
    ego2lidar = np.linalg.inv(lidar2ego)
    centres = np.c_[boxes[:, :3], np.ones(len(boxes))] @ ego2lidar.T
    yaw = boxes[:, 6] - np.deg2rad(LIDAR_POSE[1])
    gt = np.c_[centres[:, :3], boxes[:, 3:6], yaw, np.zeros((len(boxes), 2))]
    return (torch.tensor(np.stack(l2i), dtype=torch.float32), torch.tensor(np.concatenate(clouds), dtype=torch.float32),
            torch.tensor(gt, dtype=torch.float32), torch.zeros(len(gt), dtype=torch.long))


def cmt_adapter(model) -> BenchAdapter:
    spec = model.input_spec
    h, w = spec["image_size"]
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    sweeps = spec.get("sweeps", 10)
    l2i, points, gt_boxes, gt_labels = synthetic_frame((int(h), int(w)), int(sweeps))
    cams, lidar = "camera" in model.modalities, "lidar" in model.modalities
    criterion = CMTCriterion(model.num_classes, dn_split=model.dn_split)

    def make_batch(b: int, device: torch.device):
        g = torch.Generator().manual_seed(0)
        return {"images": torch.randn(b, 6, 3, ph, pw, generator=g).to(device) if cams else None,
                "lidar2img": l2i[None].repeat(b, 1, 1, 1).to(device) if cams else None,
                "points": [points.to(device) for _ in range(b)] if lidar else None,
                "gt_boxes": [gt_boxes.to(device) for _ in range(b)], "gt_labels": [gt_labels.to(device) for _ in range(b)]}

    def loss(m, batch):
        out = m(batch["images"], batch["points"], batch["lidar2img"], batch["gt_boxes"], batch["gt_labels"])
        return criterion(out, batch["gt_boxes"], batch["gt_labels"])["loss"]

    parts = ([f"6 images [3, {ph}, {pw}]"] if cams else []) + ([f"{len(points)} points x 5 ({1 + sweeps} sweeps)"]
                                                                 if lidar else [])
    return BenchAdapter(
        make_batch=make_batch,
        forward=lambda m, batch: m.predict(batch["images"], batch["points"], batch["lidar2img"]),
        loss=loss,
        unit="frames",
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-4, weight_decay=0.01),
        input_desc="per frame: " + " + ".join(parts),
    )
