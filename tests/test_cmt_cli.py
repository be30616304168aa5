"""The zoo verbs for CMT: list, info, a few `zoo fit` steps (devkit-scored validation, exported model), bench."""

import json

import pytest

import zoo
from zoo.cli import main
from zoo.hub import repo_root

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


@pytest.mark.parametrize("recipe", sorted(p.name for p in (repo_root() / "configs" / "cmt").glob("*.yaml")
                                          if not p.name.startswith("bench")))
def test_every_recipe_feeds_its_model_the_data_it_expects(recipe):
    """Each recipe's NuScenesDataModule matches its model's range, modalities, image size and sweeps (the check
    `setup` runs; the models are built on the meta device, the check reads their settings only)."""
    import torch
    import yaml

    from zoo.models.cmt.datamodule import NuScenesDataModule

    config = yaml.safe_load((repo_root() / "configs" / "cmt" / recipe).read_text())
    model_args = config["model"]["init_args"]
    with torch.device("meta"):
        model = zoo.create_model(model_args["model"], **model_args.get("model_args", {}))
    NuScenesDataModule(**config["data"]["init_args"]).check_model(model)


def test_data_that_do_not_match_the_model_stop_fit_at_setup(tmp_path):
    """The DataModule's defaults (the R50 recipe's 320x800 images, 10 sweeps, +-54 m) under cmt_tiny (96x256, 2
    sweeps, +-32 m): one error naming each setting, before any training step; a tiny recipe's data pass setup."""
    from types import SimpleNamespace

    import pytorch_lightning as pl
    import yaml

    from zoo.errors import ZooError
    from zoo.models.cmt.datamodule import NuScenesDataModule
    from zoo.models.cmt.module import CMTModule

    synthetic = yaml.safe_load(SYNTH)
    module = CMTModule("cmt_tiny", {"num_query": 40, "num_layers": 1})
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(ZooError) as info:
        trainer.fit(module, NuScenesDataModule(synthetic=synthetic, num_workers=0))
    message = str(info.value)
    assert "point_cloud_range is [-32.0, -32.0, -3.0, 32.0, 32.0, 3.0] for the model but [-54.0" in message
    assert "image_size is [96, 256] for the model but [320, 800] for the data (--data.init_args.image_size)" in message
    assert "sweeps is 2 for the model but 10 for the data (--data.init_args.sweeps)" in message
    assert "modalities" not in message and trainer.global_step == 0
    data_args = yaml.safe_load((repo_root() / RECIPE).read_text())["data"]["init_args"]
    dm = NuScenesDataModule(**{**data_args, "synthetic": synthetic, "num_workers": 0})
    dm.trainer = SimpleNamespace(lightning_module=module)
    dm.prepare_data()
    dm.setup("validate")
    assert len(dm.val_set)
    module.model = zoo.create_model("cmt_tiny", modalities=["lidar"], num_query=40, num_layers=1)
    with pytest.raises(ZooError, match=r"modalities is \['lidar'\] for the model but \['camera', 'lidar'\]"):
        dm.setup("validate")


def test_validation_workers_persist_and_drop_a_sigterm_not_their_trainers():
    """The validation loader's workers live across epochs, as the training loader's, so a job-wide SIGTERM
    (`zoo.data.workers`) cannot reach a worker that is still starting at the next validation."""
    from zoo.data.workers import ignore_foreign_sigterm
    from zoo.models.cmt.datamodule import NuScenesDataModule

    dm = NuScenesDataModule(num_workers=1)
    dm.val_set = [0, 1]
    loader = dm.val_dataloader()
    assert loader.persistent_workers and loader.worker_init_fn is ignore_foreign_sigterm
