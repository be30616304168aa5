"""`zoo.models.cmt.grad_probe` on the CPU recipe with fewer generated scenes: per-frame gradients under each
modality condition, and the measured imbalance at initialisation (a frame without LiDAR has the largest gradient)."""

import math
from pathlib import Path

import pytest
import yaml

from zoo.errors import ZooError
from zoo.models.cmt.grad_probe import DROPS, probe

pytestmark = pytest.mark.usefixtures("one_thread")


def test_grad_probe_reports_each_condition_and_the_lidar_less_frames_lead():
    with open(Path(__file__).parents[1] / "configs/cmt/fusion_tiny_synthetic.yaml") as f:
        config = yaml.safe_load(f)
    config["data"]["init_args"]["synthetic"] = {"n_scenes": 3, "samples_per_scene": 3, "sweeps_per_sample": 2,
                                                "image_size": [400, 225], "val_scenes": 1}
    report = probe(config, frames=3)
    assert set(report) == set(DROPS)
    for r in report.values():
        assert math.isfinite(r["grad_norm_max"]) and 0 < r["grad_norm_median"] <= r["grad_norm_max"]
        assert len(r["largest_last_frame"]) == 3
        assert math.isfinite(r["loss_cls_mean"]) and r["loss_cls_mean"] > 0
    lidar_less = report["LiDAR dropped"]["grad_norm_median"]  # measured 1.8x and 1.5x the other two
    assert lidar_less > 1.3 * max(report["both sensors"]["grad_norm_median"],
                                  report["cameras dropped"]["grad_norm_median"])


def test_grad_probe_refuses_a_recipe_of_another_model():
    with open(Path(__file__).parents[1] / "configs/knn_ood/resnet18_cifar10_ce_cpu.yaml") as f:
        config = yaml.safe_load(f)
    with pytest.raises(ZooError, match="not a CMT training recipe"):
        probe(config)
