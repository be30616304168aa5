"""`zoo.models.cmt.object_pixels`: the projected size of a box against the pinhole formula, the cases no camera
sees, and the per-band report on generated scenes."""

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from zoo.errors import ZooError
from zoo.models.cmt.object_pixels import main, measure, projected_extent

F, CX, CY, HW = 200.0, 128.0, 48.0, (96, 256)


def forward_camera() -> np.ndarray:
    """lidar2img [1, 4, 4] of a pinhole camera at the LiDAR origin looking along +x (camera z = x, x = -y, y = -z)."""
    lidar2cam = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    k = np.array([[F, 0, CX, 0], [0, F, CY, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    return (k @ lidar2cam)[None]


def test_extent_is_the_pinhole_size_of_the_near_face():
    d, (l, w, h) = 20.0, (4.0, 2.0, 1.5)
    boxes = np.array([[d, 0, 0, l, w, h, 0, 0, 0], [-d, 0, 0, l, w, h, 0, 0, 0], [d, 30, 0, l, w, h, 0, 0, 0]])
    ext = projected_extent(boxes, forward_camera(), HW)
    near = d - l / 2                       # the face nearest the camera spans the most pixels
    assert ext[0] == pytest.approx([F * h / near, F * w / near])
    assert np.isnan(ext[1]).all()          # behind the camera
    assert np.isnan(ext[2]).all()          # centre projects outside the 256 px wide image


def test_report_on_generated_scenes():
    with open(Path(__file__).parents[1] / "configs/cmt/fusion_tiny_synthetic.yaml") as f:
        data = yaml.safe_load(f)["data"]["init_args"]
    data["synthetic"] = {"n_scenes": 3, "samples_per_scene": 3, "sweeps_per_sample": 2, "image_size": [400, 225],
                         "val_scenes": 1}
    r = measure(data)
    assert r["image_hw"] == [96, 256] and 0 < r["seen"] <= r["boxes"]
    *bands, total = r["bands"]
    assert total["boxes"] == r["seen"] == sum(b["boxes"] for b in bands)
    heights = [b["median_height_px"] for b in bands]
    assert heights == sorted(heights, reverse=True) and all(math.isfinite(x) for x in heights)


def test_refuses_a_recipe_of_another_model():
    with pytest.raises(ZooError, match="not a CMT training recipe"):
        main(["--config", str(Path(__file__).parents[1] / "configs/knn_ood/resnet18_cifar10_ce_cpu.yaml")])
