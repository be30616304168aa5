"""Each paper's seeded training recipe, crashed in the middle of an epoch and resumed from its last step checkpoint,
ends with the weights of the uninterrupted run: the randomness of its data (crops, flips, LiDAR augmentation,
modality masks) and of its steps (dropout, drop-path, MAE masks, query denoising) is a function of the run's seeds
and position, not of the process (`zoo.data.sampling`, `zoo.training.resume`). `tests/test_resume.py` checks the
mechanism on the kNN-OOD classifier; this file checks that no paper's module draws from elsewhere."""

import pytest
import torch
from conftest import require_data
from safetensors.torch import load_file

from zoo.cli import main
from zoo.training.resume import SeededTraining

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.logger", "false", "--checkpoint.every_n_train_steps",
         "1", "--trainer.max_steps", "5", "--trainer.max_epochs", "-1", "--trainer.limit_val_batches", "0"]
CRASH_STEP = 4  # the second batch of the second epoch: the recipes below have 3 training batches an epoch


def _crash_and_resume(args: list[str], tmp_path, monkeypatch, after: tuple[str, ...] = ()) -> None:
    """Fit ``args`` (then `QUIET`, then ``after``) uninterrupted; fit again with an error before step `CRASH_STEP`,
    resume with ``--ckpt_path last``; the exported weights must be equal."""
    args = [*args, *QUIET, *after]
    assert main(["fit", *args, "--trainer.default_root_dir", str(tmp_path / "whole")]) == 0
    seed_step, crashed_at = SeededTraining.on_train_batch_start, []

    def crash(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == CRASH_STEP:
            crashed_at.append((trainer.current_epoch, batch_idx))
            raise RuntimeError("lost the node")
        seed_step(self, trainer, pl_module, batch, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(SeededTraining, "on_train_batch_start", crash)
        with pytest.raises(RuntimeError, match="lost the node"):
            main(["fit", *args, "--trainer.default_root_dir", str(tmp_path / "parts")])
    assert crashed_at == [(1, 1)]  # in the middle of an epoch
    assert main(["fit", *args, "--trainer.default_root_dir", str(tmp_path / "parts"), "--ckpt_path",
                 "last"]) == 0
    whole, parts = (load_file(str(tmp_path / run / "model" / "model.safetensors")) for run in ("whole", "parts"))
    assert whole.keys() == parts.keys()
    assert [k for k, v in whole.items() if not torch.equal(v, parts[k])] == []


TINYMIM_DATA = ["--data.init_args.train_subset", "50", "--data.init_args.test_subset", "8",
                "--data.init_args.batch_size", "15", "--data.init_args.num_workers", "0"]


def test_tinymim_mae_pretraining(tmp_path, monkeypatch):
    """Random masks (torch.rand in the step), crops and flips."""
    require_data("cifar10_jpeg")
    _crash_and_resume(["--config", "configs/tinymim/cifar10_mae_student.yaml", *TINYMIM_DATA], tmp_path, monkeypatch)


def test_tinymim_relation_distillation(teacher, tmp_path, monkeypatch):
    """The student's drop-path and colour jitter, the shared crop."""
    require_data("cifar10_jpeg")
    _crash_and_resume(["--config", "configs/tinymim/cifar10_distill.yaml", *TINYMIM_DATA, "--model.init_args.teacher",
                       str(teacher)], tmp_path, monkeypatch)


def test_tinymim_fine_tuning(tmp_path, monkeypatch):
    """Mixup and cutmix (timm's, drawing from NumPy's generator), drop-path, RandAugment and random erasing (42
    training images in 3 batches of 14: timm's mixup wants an even batch)."""
    require_data("cifar10_jpeg")
    _crash_and_resume(["--config", "configs/tinymim/cifar10_finetune.yaml", *TINYMIM_DATA, "--data.init_args.train_subset",
                       "47", "--data.init_args.batch_size", "14", "--model.init_args.mixup", "0.8",
                       "--model.init_args.cutmix", "1.0", "--data.init_args.rand_augment", "rand-m9-mstd0.5-inc1",
                       "--data.init_args.random_erasing", "0.25"], tmp_path, monkeypatch)


def test_drums_language_model(tmp_path, monkeypatch):
    """The LM's dropout over shuffled prompt-completion examples."""
    require_data("groove_midi")
    _crash_and_resume(["--config", "configs/drums/gpt2_tiny_groove.yaml", "--data.init_args.train_subset", "9",
                       "--data.init_args.batch_size", "3"], tmp_path, monkeypatch)


def test_cmt_fusion_with_modality_masking_and_query_denoising(tmp_path, monkeypatch):
    """LiDAR rotation/scale/flip, image resize/crop, modality masks (per sample) and denoising queries (per step)."""
    from test_cmt_cli import RECIPE, SYNTH

    _crash_and_resume(["--config", RECIPE, "--data.init_args.synthetic", SYNTH,
                       "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "1",
                       "--model.init_args.model_args", "{modalities: [camera, lidar], num_query: 40, num_layers: 1}"],
                      tmp_path, monkeypatch)


def test_pmt_iqa_fine_tuning(tmp_path, monkeypatch):
    """Random crops and flips of each image, the progressive schedule over the whole network (EfficientNet-Lite0)."""
    from test_pmt_iqa import _tiny_biq

    data = _tiny_biq(tmp_path / "biq", n_train=9, n_test=2)
    _crash_and_resume(["--config", "configs/pmt_iqa/efficientnet_lite0_biq2021_small.yaml", "--data.init_args.data",
                       str(data), "--data.init_args.val_fraction", "0.34", "--data.init_args.test_subset", "2",
                       "--data.init_args.crops", "1", "--data.init_args.batch_size", "2",
                       "--data.init_args.num_workers", "0"], tmp_path, monkeypatch,
                      after=("--trainer.max_epochs", "2"))  # the progressive schedule needs them


DM = ["--config", "configs/doorping/dm_cpu.yaml"]
DC = ["--config", "configs/doorping/dc_cpu.yaml", "--model.init_args.ipc", "2", "--model.init_args.outer_loop", "2",
      "--model.init_args.inner_loop", "1"]


@pytest.mark.parametrize("recipe, stop", [pytest.param(DM, "crash", marks=pytest.mark.slow), (DM, "sigterm"),
                                          (DC, "crash"), pytest.param(DC, "sigterm", marks=pytest.mark.slow)],
                         ids=["dm-crash", "dm-sigterm", "dc-crash", "dc-sigterm"])
def test_doorping_distillation(recipe, stop, tmp_path, monkeypatch, recwarn):
    """DOORPING's distillation is one epoch of iterations, each drawing real images, a fresh network and DSA
    parameters from the process's generators (the published sets' streams): its checkpoints carry those generators
    and the trigger log. A crash after a step checkpoint, or SIGTERM (which Lightning ends at a step's end, after the
    in-run evaluation due there: every second iteration here), at the fourth of six iterations; the resumed run
    writes the uninterrupted run's set and trigger log."""
    import json
    import os
    import signal

    from zoo.models.doorping.distill import Distillation

    require_data("fashion_mnist")
    args = ["fit", *recipe, "--model.init_args.iterations", "6", "--model.init_args.batch_real", "8",
            "--model.init_args.trigger_steps", "3", "--trainer.enable_progress_bar", "false", "--trainer.logger",
            "false"] + (["--checkpoint.every_n_train_steps", "1"] if stop == "crash" else
                        ["--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
                         "--model.init_args.val_models", "1", "--model.init_args.val_epochs", "1",
                         "--model.init_args.val_test_subset", "20"])
    assert main([*args, "--trainer.default_root_dir", str(tmp_path / "whole")]) == 0
    step, stops = Distillation.training_step, []

    def stopping(self, batch, batch_idx):
        if batch_idx == 3:
            stops.append(batch_idx)
            if stop == "crash":
                raise RuntimeError("lost the node")
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler notes it; the run stops after this step
        return step(self, batch, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(Distillation, "training_step", stopping)
        if stop == "crash":
            with pytest.raises(RuntimeError, match="lost the node"):
                main([*args, "--trainer.default_root_dir", str(tmp_path / "parts")])
        else:
            assert main([*args, "--trainer.default_root_dir", str(tmp_path / "parts")]) == 143
    assert stops == [3]
    recwarn.clear()
    assert main([*args, "--trainer.default_root_dir", str(tmp_path / "parts"), "--ckpt_path", "last"]) == 0
    assert not [w for w in recwarn if "not seeded" in str(w.message)]  # the module restores its own randomness
    whole, parts = (load_file(str(tmp_path / run / "distilled.safetensors")) for run in ("whole", "parts"))
    assert [k for k, v in whole.items() if not torch.equal(v, parts[k])] == []
    logs = [json.loads((tmp_path / run / "distilled_trigger_log.json").read_text()) for run in ("whole", "parts")]
    assert logs[0] == logs[1] and [r["iteration"] for r in logs[0]][-1] == 5
