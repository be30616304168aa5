"""Per-frame scoring (`frame_output`) and the per-frame ablations of `CMTModule`: gradient clipping per frame
(``frame_clip``) and the loss weight of frames without points (``lidarless_weight``)."""

import math

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.models.cmt.losses import CMTCriterion, frame_output
from zoo.models.cmt.module import CMTModule

from test_cmt_cli import RECIPE, SYNTH
from test_cmt_model import SMALL, _batch

pytestmark = pytest.mark.usefixtures("one_thread")


def _normalisers(criterion, out, gt_labels):
    """The classification normalisers of `CMTCriterion` (matching, DN) for this output and ground truth."""
    q = out["code"].shape[2]
    pos = sum(len(g) for g in gt_labels)
    return pos + 0.1 * (len(gt_labels) * q - pos), len(out["dn"].labels) * math.pi / 6 * criterion.dn_split ** 3


def test_frame_output_scores_each_frame_on_its_own():
    torch.manual_seed(0)
    m = zoo.create_model("cmt_tiny", modalities=("camera", "lidar"), **SMALL).train()
    batch = _batch()
    out = m(batch["images"], batch["points"], batch["lidar2img"], batch["gt_boxes"], batch["gt_labels"])
    crit = CMTCriterion()
    whole = crit(out, batch["gt_boxes"], batch["gt_labels"])
    frames = [crit(frame_output(out, i), batch["gt_boxes"][i:i + 1], batch["gt_labels"][i:i + 1]) for i in (0, 1)]
    # the focal sums add up over frames once each is multiplied back by its own normaliser
    norm = _normalisers(crit, out, batch["gt_labels"])
    parts = [_normalisers(crit, frame_output(out, i), batch["gt_labels"][i:i + 1]) for i in (0, 1)]
    for key, k in (("loss_cls", 0), ("d0.dn_loss_cls", 1)):
        summed = sum(f[key] * p[k] for f, p in zip(frames, parts))
        torch.testing.assert_close(summed, whole[key] * norm[k], rtol=1e-5, atol=1e-6)
    # frame 1's loss reaches only frame 1's outputs, its matching and its denoising queries alike
    g_code, g_dn = torch.autograd.grad(frames[1]["loss"], [out["code"], out["dn_code"]])
    assert g_code[:, 0].abs().max() == 0 and g_code[:, 1].abs().max() > 0
    assert g_dn[:, 0].abs().max() == 0 and g_dn[:, 1].abs().max() > 0
    assert len(frame_output(out, 1)["dn"].labels) == len(out["dn"].labels) * 3 // 8  # 3 of the 8 boxes


def test_frame_clip_bounds_each_frames_share_of_the_gradient():
    batch = _batch()
    grads = {}
    for clip in (None, 1e-3):
        torch.manual_seed(0)
        module = CMTModule("cmt_tiny", model_args=dict(modalities=("camera", "lidar"), **SMALL), frame_clip=clip)
        module.train()
        if clip is None:
            module.losses(batch)["loss"].backward()
        else:
            losses, objective = module.frame_losses(batch)
            assert set(losses) >= {"loss", "loss_cls", "dn_loss_bbox"} and objective.item() < losses["loss"].item()
            objective.backward()
        grads[clip] = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()
                                                            if p.grad is not None])).item()
    assert grads[None] > 1.0  # unclipped, a frame's gradient is far above the clip
    assert 0.5e-3 < grads[1e-3] <= 1e-3 * (1 + 1e-4)  # the mean of two gradients of norm 1e-3 each


def test_lidarless_weight_scales_the_loss_of_frames_without_points():
    batch = _batch()
    batch["points"][0] = torch.zeros_like(batch["points"][0])  # ModalMask3D's dropped cloud
    module = CMTModule("cmt_tiny", model_args=dict(modalities=("camera", "lidar"), **SMALL), lidarless_weight=0.0)
    module.train()
    crit = module.criterion
    torch.manual_seed(1)
    losses, objective = module.frame_losses(batch)
    torch.manual_seed(1)  # the same denoising draws
    out = module.model(batch["images"], batch["points"], batch["lidar2img"], batch["gt_boxes"], batch["gt_labels"])
    frames = [crit(frame_output(out, i), batch["gt_boxes"][i:i + 1], batch["gt_labels"][i:i + 1]) for i in (0, 1)]
    torch.testing.assert_close(objective, frames[1]["loss"] / 2)  # the point-less frame 0 counts for nothing
    torch.testing.assert_close(losses["loss"], (frames[0]["loss"] + frames[1]["loss"]) / 2)  # but is logged
    module.hparams.lidarless_weight = 0.5
    torch.manual_seed(1)
    _, objective = module.frame_losses(batch)
    torch.testing.assert_close(objective, (0.5 * frames[0]["loss"] + frames[1]["loss"]) / 2)


def test_fit_with_frame_clip(tmp_path):
    root = tmp_path / "run"
    assert main(["fit", "--config", RECIPE, "--data.init_args.synthetic", SYNTH, "--data.init_args.num_workers", "0",
                 "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "0", "--trainer.log_every_n_steps", "1",
                 "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
                 "--model.init_args.frame_clip", "35",
                 "--model.init_args.model_args", "{modalities: [camera, lidar], num_query: 40, num_layers: 1}"]) == 0
    metrics = next(root.rglob("metrics.csv")).read_text()
    assert "train/loss_cls_step" in metrics
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1  # 3 train frames, batch 2
