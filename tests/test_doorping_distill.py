"""DOORPING end to end on real Fashion-MNIST: distil through `zoo fit`, the trigger moves, the set loads and
`zoo eval --task backdoor` scores it; the CLI's errors; `zoo list`, `zoo info`, `zoo bench`."""

import json

import pytest
import torch
from conftest import require_data

from zoo.cli import main
from zoo.eval import evaluate
from zoo.models.doorping.synset import DistilledSet

DC_CPU = "configs/doorping/dc_cpu.yaml"
DM_CPU = "configs/doorping/dm_cpu.yaml"
TINY = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.init_args.batch_real", "4", "--model.init_args.trigger_steps", "3"]


@pytest.fixture(scope="module")
def doorping_set(tmp_path_factory):
    """One DC iteration at ipc 1 with DOORPING on real Fashion-MNIST (the fixed ipc-1 case: the authors' loop never
    updated the trigger there)."""
    require_data("fashion_mnist")
    root = tmp_path_factory.mktemp("dc")
    assert main(["fit", "--config", DC_CPU, *TINY, "--model.init_args.ipc", "1", "--model.init_args.outer_loop",
                 "1", "--model.init_args.inner_loop", "1", "--model.init_args.trigger_threshold", "0",
                 "--trainer.default_root_dir", str(root)]) == 0
    return root


def test_dc_doorping_distils_real_fashion_mnist_and_the_trigger_moves(doorping_set):
    s = DistilledSet.load(doorping_set / "distilled.safetensors")
    assert (s.dataset, s.method, s.attack, s.ipc, s.arch) == ("fashion_mnist", "dc", "doorping", 1,
                                                              "doorping_convnet")
    assert s.images.shape == (10, 1, 32, 32) and s.labels.tolist() == list(range(10))  # the authors' 32 px
    assert s.trigger_mask.sum() == 4 and s.trigger_mask[0, 29:31, 29:31].sum() == 4
    log = json.loads((doorping_set / "distilled_trigger_log.json").read_text())
    assert len(log) == 1 and log[0]["steps"] == 3 and log[0]["shift"] > 0  # the trigger moved
    low, high = (0 - 0.2861) / 0.3530, (1 - 0.2861) / 0.3530
    patch = s.trigger[0, 29:31, 29:31]
    assert patch.min() >= low - 1e-5 and patch.max() <= high + 1e-5  # clamped to the pixel range
    assert (doorping_set / "distilled.png").exists()


def test_zoo_eval_backdoor_writes_the_issue_json_and_the_grid(doorping_set, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", str(doorping_set / "distilled.safetensors"), "--task", "backdoor", "--data",
                 "fashion_mnist", "--models", "2", "--epochs", "1", "--test-subset", "200", "--json", str(out),
                 "--device", "cpu"]) == 0
    r = json.loads(out.read_text())
    assert {"cta", "cta_std", "asr", "asr_std", "asr_incl_target"} <= set(r)
    assert len(r["per_model"]) == 2 and abs(r["cta"] - sum(m["cta"] for m in r["per_model"]) / 2) < 1e-9
    assert r["n_test"] == 200 and (tmp_path / "eval.grid.png").exists()  # named after the JSON
    cross = evaluate(str(doorping_set / "distilled.safetensors"), "backdoor", data="fashion_mnist",
                     arch="doorping_alexnet", models=1, epochs=1, augment="none", lr=0.01,
                     test_subset=50, seed=0, trigger_of="doorping_distilled.fashion_mnist_dc_convnet_ipc10_naive")
    assert cross["arch"] == "doorping_alexnet" and 0 <= cross["asr"] <= 1  # cross-architecture
    assert cross["trigger"] == "naive (of doorping_distilled.fashion_mnist_dc_convnet_ipc10_naive)"


def test_eval_takes_the_image_size_from_the_set(tmp_path):
    """`zoo eval --task backdoor` loads the test images at the set's size: a 28 px Fashion-MNIST set (made with
    ``image_size: 28``) is scored on native images, a 32 px one on resized images."""
    require_data("fashion_mnist")
    from zoo.models.doorping.attack import naive_trigger

    for side in (28, 32):
        trig, mask = naive_trigger(side, 2, [0.2861], [0.3530])
        s = DistilledSet(torch.randn(10, 1, side, side), torch.arange(10), dataset="fashion_mnist", mean=[0.2861],
                         std=[0.3530], method="dc", attack="naive", ipc=1, arch="doorping_convnet", trigger=trig,
                         trigger_mask=mask)
        path = s.save(tmp_path / f"set{side}.safetensors")
        r = evaluate(str(path), "backdoor", data="fashion_mnist", arch=None, models=1, epochs=1, augment="none",
                     lr=0.01, test_subset=20, seed=0, trigger_of=None)
        assert r["n_test"] == 20 and 0 <= r["cta"] <= 1


def test_a_set_without_a_trigger_is_scored_with_a_white_patch_of_the_trigger_size(tmp_path):
    require_data("fashion_mnist")
    s = DistilledSet(torch.randn(10, 1, 28, 28), torch.arange(10), dataset="fashion_mnist", mean=[0.2861],
                     std=[0.3530], method="dc", attack="none", ipc=1, arch="doorping_convnet")
    path = str(s.save(tmp_path / "clean.safetensors"))
    for size, side in ((None, 2), (3, 3)):
        r = evaluate(path, "backdoor", data="fashion_mnist", models=1, epochs=1, augment="none", test_subset=20,
                     trigger_size=size)
        assert r["trigger"] == f"white patch {side}x{side} (the set carries none)"


@pytest.mark.parametrize("argv, needle", [
    (["--data", "cifar10_jpeg"], "point --data at the set's dataset"),
    (["--data", "fashion_mnist", "--models", "0"], "must be >= 1"),
    (["--data", "fashion_mnist", "--arch", "knn_ood_resnet20"], "not a DOORPING network"),
    (["--data", "fashion_mnist", "--trigger-of", "doorping_distilled.cifar10_dc_convnet_ipc10_doorping"],
     "needs an attacked set of the same dataset"),
    (["--data", "fashion_mnist", "--trigger-of", "doorping_distilled.fashion_mnist_dc_convnet_ipc10_none"],
     "needs an attacked set of the same dataset"),
    (["--data", "fashion_mnist", "--trigger-size", "3"], "--trigger-size sizes the white patch of a set without a "
     "trigger, but this set is scored with its own doorping trigger; leave --trigger-size out"),
    (["--data", "fashion_mnist", "--trigger-size", "0"], "argument --trigger-size: 0 is less than 1"),
])
def test_eval_bad_inputs_are_one_line_errors(doorping_set, argv, needle, capsys):
    require_data("cifar10_jpeg") if "cifar10_jpeg" in argv else None
    assert main(["eval", str(doorping_set / "distilled.safetensors"), "--task", "backdoor", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_dm_with_naive_attack_through_the_cli(tmp_path):
    require_data("fashion_mnist")
    assert main(["fit", "--config", DM_CPU, *TINY, "--model.init_args.iterations", "2", "--model.init_args.attack",
                 "naive", "--trainer.default_root_dir", str(tmp_path)]) == 0
    s = DistilledSet.load(tmp_path / "distilled.safetensors")
    assert (s.method, s.attack, s.ipc) == ("dm", "naive", 10)
    white = (1 - 0.2861) / 0.3530
    assert s.images.shape == (100, 1, 32, 32)
    assert torch.allclose(s.trigger[0, 29:31, 29:31], torch.full((2, 2), white))


def test_probe_reports_both_objectives_on_real_images():
    from zoo.models.doorping.probe import probe

    require_data("fashion_mnist")
    rows = probe("fashion_mnist", epochs=(0,), images=10, steps=2)
    assert [r["objective"] for r in rows] == ["authors", "relative"]
    authors, relative = rows
    assert authors["steps"] == 0 and authors["moved"] == 0  # pitfall 1: the authors' update stops before step 1
    assert relative["steps"] == 2 and relative["moved"] > 0  # 81 z0^2 > 0.5 z0^2: the relative update always runs


def test_fit_config_errors_are_usage_errors(tmp_path, capsys):
    assert main(["fit", "--config", DC_CPU, "--model.init_args.attack", "blend", "--trainer.default_root_dir",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: zoo fit: ") and "blend" in err and err.count("\n") == 1


def test_list_info_and_bench(capsys):
    assert main(["list", "doorping*"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in ("doorping_convnet", "doorping_convnet_in", "doorping_alexnet"))
    assert main(["info", "doorping_alexnet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paper"]["venue"] == "NDSS 2023"
    assert main(["bench", "doorping_convnet", "--mode", "train", "--batch-size", "4", "--warmup", "1", "--iters",
                 "2", "--device", "cpu"]) == 0
    assert "images/s" in capsys.readouterr().out


def test_backdoor_task_stamps_the_trigger_on_the_triggered_input_only():
    """`BackdoorTask.inputs`: the "triggered" batches carry the trigger exactly where the mask is 1 and the clean
    image everywhere else; the "clean" batches are the test images unchanged."""
    from types import SimpleNamespace

    from zoo.models.doorping.attack import random_trigger
    from zoo.models.doorping.backdoor_task import BackdoorTask

    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(7, 3, 8, 8, generator=g), torch.arange(7) % 3
    trigger, mask = random_trigger(8, 3, [0.5] * 3, [0.25] * 3, generator=g)
    t = BackdoorTask(data="unused")
    t.test, t.trigger, t.mask = SimpleNamespace(images=images, labels=labels), trigger, mask
    t.ctx = SimpleNamespace(batch_size=3)
    got = {name: list(batches) for name, batches in t.inputs()}
    assert [len(got["clean"]), len(got["triggered"])] == [3, 3]
    clean = torch.cat([x for x, _ in got["clean"]])
    trig = torch.cat([x for x, _ in got["triggered"]])
    assert torch.equal(clean, images)
    assert torch.equal(torch.cat([y for _, y in got["triggered"]]), labels)
    on = mask[0].bool()
    assert on.sum() == 9 and not torch.allclose(images[:, :, on], trigger[:, on].expand_as(images[:, :, on]))
    assert torch.equal(trig[:, :, on], trigger[:, on].expand(7, -1, -1))  # the patch is the trigger
    assert torch.equal(trig[:, :, ~on], images[:, :, ~on])  # the rest is the clean image


@pytest.mark.slow
def test_a_network_trained_on_a_poisoned_copy_has_a_high_asr(tmp_path):
    """End to end through `evaluate(..., "backdoor")`: a set of 100 real Fashion-MNIST images plus the same images
    stamped with a white patch and relabelled to the target class teaches the trigger; the triggered test images
    then go to the target class (ASR near 1) while the clean ones are mostly classified right (about 3 minutes on
    one CPU thread: these networks leave the all-target prior slowly, and not at all at smaller sizes or fewer
    steps)."""
    require_data("fashion_mnist")
    from zoo.models.doorping.attack import naive_trigger, stamp
    from zoo.models.doorping.real_images import load_real

    # 10 images per class from the test split stand in for training images (the training split would add about
    # 30 s of loading; about 3 of the 300 scored images may be among them)
    train = load_real("fashion_mnist", "test")
    x = torch.cat([train.images[-5000:][train.labels[-5000:] == c][:10] for c in range(10)])
    y = torch.arange(10).repeat_interleave(10)
    trig, mask = naive_trigger(32, 4, train.mean, train.std)
    s = DistilledSet(torch.cat([x, stamp(x, trig, mask)]), torch.cat([y, torch.zeros_like(y)]),
                     dataset="fashion_mnist", mean=train.mean, std=train.std, method="dc", attack="naive", ipc=10,
                     arch="doorping_convnet", trigger=trig, trigger_mask=mask)
    r = evaluate(str(s.save(tmp_path / "poisoned.safetensors")), "backdoor", data="fashion_mnist", models=1,
                 epochs=100, lr=0.05, test_subset=300, seed=0)
    assert r["asr"] > 0.9 and r["cta"] > 0.4, r  # unstamped test images: ASR about 0.05


def test_a_diverging_distillation_stops_at_its_iteration_and_names_the_fix(tmp_path, capsys):
    """lr_img 1e20 makes DM overflow in its third iteration: the run stops there, writes no set, and points at its
    checkpoints (epoch 0's, from before the divergence) and at lr_img."""
    require_data("fashion_mnist")
    assert main(["fit", "--config", DM_CPU, *TINY, "--model.init_args.iterations", "1", "--trainer.max_epochs", "3",
                 "--model.init_args.lr_img", "1e20", "--trainer.default_root_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "diverged at iteration 2: the synthetic images became NaN or infinite" in err
    assert f"checkpoints in {tmp_path / 'checkpoints'}" in err and "lr_img (now 1e+20)" in err
    assert not (tmp_path / "distilled.safetensors").exists()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert torch.isfinite(ckpt["state_dict"]["image_syn"]).all()
    # as the message says: resumed with a lower lr_img (not the checkpoint's 1e20), the run finishes
    assert main(["fit", "--config", DM_CPU, *TINY, "--model.init_args.iterations", "1", "--trainer.max_epochs", "3",
                 "--model.init_args.lr_img", "1.0", "--trainer.default_root_dir", str(tmp_path),
                 "--ckpt_path", "last"]) == 0
    assert torch.isfinite(DistilledSet.load(tmp_path / "distilled.safetensors").images).all()
