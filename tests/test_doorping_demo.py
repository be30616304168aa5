"""The DOORPING demo's explanation of a trigger that did not move: every patch pixel at the top of the valid range."""

import torch

from zoo.models.doorping.demo import _trigger_at_top
from zoo.models.doorping.synset import DistilledSet


def _set(trigger_value: float, tmp_path):
    mean, std = [0.5], [0.25]
    mask = torch.zeros(1, 8, 8)
    mask[:, -2:, -2:] = 1
    s = DistilledSet(images=torch.zeros(2, 1, 8, 8), labels=torch.tensor([0, 1]), dataset="fashion_mnist", mean=mean,
                     std=std, target_class=0, attack="doorping", method="dc", ipc=1, arch="doorping_convnet",
                     trigger=torch.full((1, 8, 8), trigger_value), trigger_mask=mask)
    path = tmp_path / f"s{trigger_value}.safetensors"
    s.save(path)
    return path


def test_a_trigger_clamped_at_white_is_recognised(tmp_path):
    assert _trigger_at_top(_set((1 - 0.5) / 0.25, tmp_path))  # raw 1.0 in normalised space
    assert not _trigger_at_top(_set(1.0, tmp_path))  # raw 0.75
