"""How large the ground-truth objects appear in the images the network is fed: the projected height and width of
each box in the camera that sees its centre (the largest such view), per distance band. It measures what the
camera path has to work with at a recipe's input resolution, against the image branch's token stride (16 px).

    python -m zoo.models.cmt.object_pixels --config configs/cmt/fusion_tiny_synthetic.yaml
    python -m zoo.models.cmt.object_pixels --config configs/cmt/fusion_r50_mini.yaml --data nuscenes_keyframe \
        [--image-size 640 1600]
"""

import argparse

import numpy as np
import yaml

from ...data.nuscenes import box_corners, project_points
from ...errors import ZooError
from .datamodule import NuScenesDataModule

BANDS = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, float("inf")))


def projected_extent(boxes: np.ndarray, lidar2img: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Boxes [n, >=7] (LiDAR frame, gravity centre, l w h yaw), lidar2img [N, 4, 4] of the network's input images
    of size image_hw -> [n, 2] (height, width) in pixels of each box's corner hull in the camera whose image holds
    its projected centre (the tallest view when several do; unclipped); NaN where no camera sees the centre or a
    corner lies behind the camera."""
    h_img, w_img = image_hw
    corners = box_corners(np.asarray(boxes, np.float64)[:, :7])                           # [n, 8, 3]
    pts = np.concatenate([corners, boxes[:, None, :3]], 1)                                # [n, 9, 3]
    uv, depth = project_points(pts, np.asarray(lidar2img)[:, None])                      # [N, n, 9, 2], [N, n, 9]
    centre = uv[:, :, 8]                                                                  # [N, n, 2]
    sees = ((depth > 1e-3).all(-1) & (centre[..., 0] >= 0) & (centre[..., 0] < w_img)
            & (centre[..., 1] >= 0) & (centre[..., 1] < h_img))                           # [N, n]
    extent = np.stack([np.ptp(uv[:, :, :8, 1], -1), np.ptp(uv[:, :, :8, 0], -1)], -1)    # [N, n, 2]
    extent = np.where(sees[..., None], extent, np.nan)
    tallest = np.where(sees, extent[..., 0], -np.inf).argmax(0)                          # [n]; 0 if none sees it
    return extent[tallest, np.arange(len(boxes))]


def measure(data_args: dict, stride: int = 16) -> dict:
    """The recipe's validation frames through the test pipeline (no augmentation; each image resized to cover
    the input size, bottom-cropped, centred) -> per distance band (horizontal distance of the box centre from the
    LiDAR): number of boxes seen by a camera, their median projected height and width in pixels, and the fraction
    shorter than one token row (``stride`` px)."""
    dm = NuScenesDataModule(**dict(data_args, modalities=["camera"], num_workers=0))
    dm.prepare_data()
    dm.setup("validate")
    rows, dists = [], []
    for i in range(len(dm.val_set)):
        item = dm.val_set[i]
        boxes = item["gt_boxes"].numpy()
        rows.append(projected_extent(boxes, item["lidar2img"].numpy(), tuple(item["images"].shape[-2:])))
        dists.append(np.hypot(boxes[:, 0], boxes[:, 1]))
    if not rows or not sum(len(r) for r in rows):
        raise ZooError("the validation split holds no ground-truth boxes to measure")
    ext, dist = np.concatenate(rows), np.concatenate(dists)
    seen = ~np.isnan(ext[:, 0])
    report = {"image_hw": list(item["images"].shape[-2:]), "boxes": int(len(ext)), "seen": int(seen.sum()),
              "bands": []}
    for lo, hi in BANDS + ((0.0, float("inf")),):
        k = seen & (dist >= lo) & (dist < hi)
        if k.any():
            report["bands"].append({"from_m": lo, "to_m": hi, "boxes": int(k.sum()),
                                    "median_height_px": float(np.median(ext[k, 0])),
                                    "median_width_px": float(np.median(ext[k, 1])),
                                    "below_one_token_row": float(np.mean(ext[k, 0] < stride))})
    return report


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="a CMT training recipe (zoo fit --config ...)")
    ap.add_argument("--data", help="override the recipe's data (a dataroot, an info .pkl, nuscenes_keyframe)")
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="override the input size")
    a = ap.parse_args(argv)
    with open(a.config) as f:
        config = yaml.safe_load(f)
    if "data" not in config or not str(config["data"].get("class_path", "")).endswith("NuScenesDataModule"):
        raise ZooError(f"{a.config} is not a CMT training recipe (data: NuScenesDataModule); pass one of "
                       f"configs/cmt/*.yaml")
    overrides = {"data": a.data, "image_size": a.image_size}
    args = dict(config["data"]["init_args"], **{k: v for k, v in overrides.items() if v is not None})
    r = measure(args)
    print(f"input {r['image_hw'][1]}x{r['image_hw'][0]}: {r['seen']} of {r['boxes']} boxes seen by a camera")
    for b in r["bands"]:
        print(f"  {b['from_m']:.0f}-{b['to_m']:.0f} m: {b['boxes']} boxes, median {b['median_height_px']:.1f} px "
              f"tall x {b['median_width_px']:.1f} px wide, {100 * b['below_one_token_row']:.0f} % under one "
              f"token row (16 px)")


if __name__ == "__main__":
    main()
