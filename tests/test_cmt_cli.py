"""The zoo verbs for CMT: list, info, a few `zoo fit` steps (devkit-scored validation, exported model), bench."""

import json

import pytest

import zoo
from zoo.cli import main

RECIPE = "configs/cmt/fusion_tiny_synthetic.yaml"
SYNTH = "{n_scenes: 2, samples_per_scene: 3, sweeps_per_sample: 2, image_size: [200, 113], objects: [12, 14], val_scenes: 1}"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_list_and_info(capsys):
    assert main(["list", "cmt*"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("cmt_fusion_r50", "cmt_camera_vov99", "cmt_lidar_voxel0075", "cmt_tiny"))
    assert main(["info", "cmt_fusion_r50", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["paper"]["venue"] == "ICCV 2023" and info["model_card"] == "zoo/models/cmt/README.md"


def test_fit_a_few_steps_validates_with_the_devkit_and_exports(tmp_path):
    root = tmp_path / "run"
    args = ["fit", "--config", RECIPE, "--data.init_args.synthetic", SYNTH, "--data.init_args.num_workers", "0",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.check_val_every_n_epoch", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
            "--model.init_args.model_args", "{modalities: [camera, lidar], num_query: 40, num_layers: 1}"]
    assert main(args) == 0
    model = zoo.from_pretrained(root / "model")
    assert model.zoo_cfg["architecture"] == "cmt_tiny" and model.decoder.layers.__len__() == 1
    metrics = next(root.rglob("metrics.csv")).read_text()
    assert "val/NDS" in metrics and "train/dn_loss_cls" in metrics
    assert (root / "checkpoints" / "last.ckpt").exists()


def test_bench_infer(tmp_path):
    assert main(["bench", "cmt_tiny", "--batch-size", "1", "--warmup", "1", "--iters", "1", "--json",
                 str(tmp_path / "b.json")]) == 0
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["unit"] == "frames" and r["frames_per_s"] > 0 and "6 images" in r["input"] and "points" in r["input"]
    assert r["flops_per_sample"] > 1e8


def test_fit_with_the_authors_training_set_recipe(tmp_path, capsys):
    """GT-paste for the first epoch of two (the loader rebuilt at epoch 1) over CBGS-resampled frames."""
    root, db = tmp_path / "run", tmp_path / "gt_db"
    args = ["fit", "--config", RECIPE, "--data.init_args.synthetic", SYNTH, "--data.init_args.num_workers", "0",
            "--data.init_args.gt_paste", f"{{database: {db}, epochs: 1}}", "--data.init_args.cbgs", "true",
            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "0",
            "--trainer.reload_dataloaders_every_n_epochs", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(root),
            "--model.init_args.model_args", "{modalities: [camera, lidar], num_query: 40, num_layers: 1}"]
    assert main(args) == 0
    assert (db / "dbinfos.pkl").is_file() and (root / "model").is_dir()
    assert main(args[:-4] + ["--trainer.reload_dataloaders_every_n_epochs", "0", "--trainer.default_root_dir",
                             str(tmp_path / "bad"), *args[-2:]]) != 0
    assert "set trainer.reload_dataloaders_every_n_epochs to 1" in capsys.readouterr().err
