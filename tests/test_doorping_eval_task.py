"""`zoo eval --task backdoor` on generated data (no download): --data of another dataset, --test-subset < 1, the
grid's name, and the per-method default of --augment."""

import json

import numpy as np
import pytest
import torch

from zoo.cli import main
from zoo.errors import ZooError
from zoo.eval import evaluate
from zoo.models.doorping.attack import naive_trigger
from zoo.models.doorping.synset import DistilledSet

FAST = {"models": 1, "epochs": 1, "test_subset": 10, "num_workers": 0}


def _set(tmp_path, method="dc", dataset="shapes", name="set") -> str:
    """A 1-image-per-class 32 px RGB NAIVEATTACK set of noise (10 classes, as the ``shapes`` data)."""
    trig, mask = naive_trigger(32, 2, [0.5] * 3, [0.25] * 3)
    s = DistilledSet(torch.randn(10, 3, 32, 32), torch.arange(10), dataset=dataset, mean=[0.5] * 3, std=[0.25] * 3,
                     method=method, attack="naive", ipc=1, arch="doorping_convnet", trigger=trig, trigger_mask=mask)
    return str(s.save(tmp_path / f"{name}.safetensors"))


def _tree(root, classes: int):
    """``root/{train,test}/c<i>/*.png``: 2 random 32 px RGB images per class and split."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(classes):
            (root / split / f"c{c:02d}").mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / f"c{c:02d}" / f"{i}.png")
    return str(root)


@pytest.mark.parametrize("folder, classes, needle", [
    ("cifar10", 10, "--data {data} is cifar10 but the set was distilled from shapes: point --data at the set's "
                    "dataset (shapes)"),
    ("fake100", 20, "--data {data} has 20 classes but the set 10: point --data at the set's dataset (shapes)"),
], ids=["known-name", "class-count"])
def test_data_of_another_dataset_is_refused(folder, classes, needle, tmp_path, capsys):
    """A tree named after a dataset the zoo knows (another than the set's), or with another number of classes, is
    refused before any network is trained (it was scored: CTA 5 % for a 20-class tree and a CIFAR-10 set)."""
    data = _tree(tmp_path / folder, classes)
    assert main(["eval", _set(tmp_path), "--task", "backdoor", "--data", data, "--models", "1", "--epochs", "1",
                 "--device", "cpu", "--num-workers", "0"]) == 2
    err = capsys.readouterr().err
    assert needle.format(data=data) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_test_subset_below_one_is_refused(shapes_data, tmp_path, capsys):
    """`--test-subset=-5` scored all but 5 images and 0 ended in "no samples"; both are a usage error now."""
    path = _set(tmp_path)
    for n in ("0", "-5"):
        assert main(["eval", path, "--task", "backdoor", "--data", str(shapes_data), f"--test-subset={n}"]) == 2
        err = capsys.readouterr().err
        assert f"--test-subset: {n} is less than 1" in err and "Traceback" not in err
    with pytest.raises(ZooError, match="test_subset=0 is not accepted: 0 is less than 1"):
        evaluate(path, "backdoor", data=str(shapes_data), **{**FAST, "test_subset": 0})


def test_a_learning_rate_that_is_not_positive_is_refused(shapes_data, tmp_path, capsys):
    """`--lr -1` ended in a traceback from torch's SGD, and `--lr 0` trained nothing (CTA at chance) without a word:
    both are a usage error now."""
    path = _set(tmp_path)
    for lr in ("-1", "0", "nan"):
        assert main(["eval", path, "--task", "backdoor", "--data", str(shapes_data), "--lr", lr]) == 2
        err = capsys.readouterr().err
        assert f"argument --lr: {float(lr)} is not greater than 0" in err and "Traceback" not in err


def test_the_grid_is_named_after_the_json(shapes_data, tmp_path):
    """Two evaluations writing into one folder keep their own grids; with --out-dir alone the set names it."""
    path = _set(tmp_path)
    for stem in ("a", "b"):
        evaluate(path, "backdoor", data=str(shapes_data), json_out=tmp_path / "out" / f"{stem}.json", **FAST)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.grid.png", "a.json", "b.grid.png", "b.json"]
    assert (tmp_path / "out" / "a.grid.png").read_bytes()[:4] == b"\x89PNG"
    evaluate(path, "backdoor", data=str(shapes_data), out_dir=tmp_path / "plots", **FAST)
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["set.grid.png"]


@pytest.mark.parametrize("method, augment, expected", [
    ("dc", None, "none"), ("dsa", None, "dsa"), ("dm", None, "dsa"), ("dm", "none", "none"), ("dc", "dsa", "dsa"),
])
def test_augment_defaults_to_the_sets_method(method, augment, expected, shapes_data, tmp_path):
    """DC's evaluation trains without augmentation, DSA's and DM's with DSA (fact sheet A.4, A.6); --augment
    overrides, and the JSON records what was used."""
    out = tmp_path / "r.json"
    r = evaluate(_set(tmp_path, method), "backdoor", data=str(shapes_data), augment=augment, json_out=out, **FAST)
    assert r["augment"] == expected and json.loads(out.read_text())["augment"] == expected
    assert r["epochs"] == 1 and r["method"] == method


def test_model_weights_given_as_the_set_are_named_as_such(tmp_path, capsys):
    """`zoo eval knn_ood_resnet20.cifar10 --task backdoor` named the cache path of the weights and told how to write
    a set; a manifest key, a zoo model folder or a model name now say they are a model, as the user typed them."""
    import zoo

    folder = zoo.save_pretrained(zoo.create_model("doorping_convnet"), tmp_path / "m")
    advice = ("not a distilled set: --task backdoor evaluates a DOORPING distilled set (see `zoo info "
              "doorping_distilled`)")
    for source, what in (("knn_ood_resnet20.cifar10", "is model weights"),
                         (str(folder), "is model weights (a zoo model folder)"),
                         ("doorping_convnet", "names a model")):
        assert main(["eval", source, "--task", "backdoor", "--data", "cifar10_jpeg", "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert f"zoo: error: {source} {what}, {advice}" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ZooError, match="model.safetensors is not a DOORPING distilled set: it lacks dataset"):
        evaluate(str(folder / "model.safetensors"), "backdoor", data="cifar10_jpeg", **FAST)  # a file keeps its detail


def test_finalize_scores_the_triggered_predictions_and_leaves_target_class_images_out_of_the_asr():
    """Per network (a column): CTA from the clean predictions, ASR from the triggered ones over the images whose label
    is not the target class (0 here), ``asr_incl_target`` over all of them; the summary is their mean and std."""
    from types import SimpleNamespace

    from zoo.models.doorping.backdoor_task import BackdoorTask

    task = BackdoorTask(data="unused")
    task.model = SimpleNamespace(target_class=0, dataset="shapes", method="dc", attack="naive", ipc=1)
    task.nets, task.arch, task.augment, task.trigger_desc = [None, None], "doorping_convnet", "none", "patch"
    task.options = SimpleNamespace(epochs=1)
    labels = torch.tensor([0, 0, 1, 2, 3])
    clean = torch.stack([labels, torch.tensor([0, 0, 1, 2, 0])], 1)  # network 1 misses the last image
    triggered = torch.stack([torch.tensor([0, 1, 0, 0, 3]), torch.zeros(5, dtype=torch.long)], 1)
    r = task.finalize({"clean": {"pred": clean, "label": labels}, "triggered": {"pred": triggered, "label": labels}})
    assert [m["cta"] for m in r["per_model"]] == pytest.approx([1.0, 0.8])
    assert [m["asr"] for m in r["per_model"]] == pytest.approx([2 / 3, 1.0])  # 2 of the 3 non-target images; all
    assert [m["asr_incl_target"] for m in r["per_model"]] == pytest.approx([3 / 5, 1.0])
    assert r["cta"] == pytest.approx(0.9) and r["asr"] == pytest.approx(5 / 6) and r["asr_incl_target"] == 0.8
    assert r["cta_std"] == pytest.approx(0.1) and r["asr_std"] == pytest.approx(1 / 6)  # population std, as the authors
