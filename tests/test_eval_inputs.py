"""Bad inputs to `zoo.eval.evaluate` are one `ZooError` naming the option, the value and the fix, raised before the
model or the data are loaded (they used to surface as DataLoader errors, IsADirectoryError or silent nonsense)."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.errors import ZooError
from zoo.eval import evaluate, get_task
from zoo.eval.base import EvalTask
from zoo.io import check_outputs


class Stop(Exception):
    """Raised by a patched `EvalTask.setup` once `evaluate` has checked its options and loaded nothing heavy."""


@pytest.fixture
def no_loading(monkeypatch):
    """`evaluate` may not load a model: every refusal here comes before that."""
    monkeypatch.setattr(EvalTask, "load", lambda *args: pytest.fail("the model was loaded"))


def _images(root, folders: dict):
    """Tiny 8x8 PNGs: ``folders`` maps a folder (relative to ``root``) to its number of images; returns ``root``."""
    rng = np.random.default_rng(0)
    for folder, n in folders.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
    return root


@pytest.mark.parametrize("option, value, needle", [
    ("batch_size", 0, "evaluate: batch_size=0 is not accepted: 0 is less than 1"),
    ("batch_size", -1, "evaluate: batch_size=-1 is not accepted: -1 is less than 1"),
    ("batch_size", 2.5, "evaluate: batch_size=2.5 is not accepted: '2.5' is not an integer"),
    ("batch_size", "four", "evaluate: batch_size='four' is not accepted: 'four' is not an integer"),
    ("num_workers", -1, "evaluate: num_workers=-1 is not accepted: -1 is less than 0"),
])
def test_bad_batch_settings_are_refused_before_loading(option, value, needle, no_loading):
    with pytest.raises(ZooError) as err:
        evaluate("unused", "classification", data="unused", **{option: value})
    assert needle in str(err.value)


def test_batch_settings_are_converted_like_the_cli(monkeypatch):
    """``"4"`` is 4 (as ``--batch-size 4`` is), and ``precision=32`` is ``"32"``; the task sees the converted values
    (``"4"`` used to reach the DataLoader as text)."""
    seen = []

    def stop(self, model, ctx):
        seen.append((ctx.batch_size, ctx.num_workers, ctx.amp_dtype))
        raise Stop

    monkeypatch.setattr(get_task("classification"), "setup", stop)
    with pytest.raises(Stop):
        evaluate("unused", "classification", model=torch.nn.Identity(), data="unused", batch_size="4",
                 num_workers="0", precision=32)
    assert seen == [(4, 0, None)]


@pytest.mark.parametrize("split", ["bogus", "train"])
def test_a_folder_without_splits_refuses_another_split(split, tmp_path):
    """A flat folder of class folders is scored whole as split test; another split used to score it whole too and
    report it under that split's name."""
    flat = _images(tmp_path / "flat", {"cat": 2, "dog": 2})
    model = zoo.create_model("knn_ood_resnet20")
    with pytest.raises(ZooError, match=rf"split {split}: .*flat has no split folders \(train/, test/\), so it is "
                                       rf"scored whole, as split test: leave the split out, or give a folder holding "
                                       rf"{split}/<class>/"):
        evaluate("unused", "classification", model=model, data=str(flat), split=split, batch_size=4, num_workers=0)
    result = evaluate("unused", "classification", model=model, data=str(flat), batch_size=4, num_workers=0)
    assert (result["split"], result["n"]) == ("test", 4)
    only_val = _images(tmp_path / "inet", {"val/cat": 1, "val/dog": 1})  # read from inside its lone folder, val/
    result = evaluate("unused", "classification", model=model, data=str(only_val), split="val", batch_size=4,
                      num_workers=0)
    assert (result["split"], result["n"]) == ("val", 2)


@pytest.mark.parametrize("outputs, needle", [
    ({"json_out": "o/r.json", "save_scores": "o/r.json"},
     "--save-scores {tmp}/o/r.json is the same path as --json {tmp}/o/r.json (a file): give each output its own path"),
    ({"json_out": "o/r.json", "out_dir": "o/../o/r.json/plots"},
     "--out-dir {tmp}/o/../o/r.json/plots is a path inside --json {tmp}/o/r.json (a file): give each output its own "
     "path"),
])
def test_two_outputs_at_one_path_are_refused_before_any_work(outputs, needle, tmp_path, no_loading):
    """They used to pass the output check, then the JSON failed with IsADirectoryError after the evaluation, leaving
    the scores where it should have been."""
    with pytest.raises(ZooError) as err:
        evaluate("unused", "ood", id_data="x", ood="y", **{k: tmp_path / v for k, v in outputs.items()})
    assert str(err.value) == needle.format(tmp=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_outputs_in_one_folder_pass(tmp_path):
    """The usual layout: the JSON, the scores and the plots side by side."""
    check_outputs({"--json": tmp_path / "r.json"}, {"--save-scores": tmp_path, "--out-dir": tmp_path})


@pytest.mark.parametrize("id_data, ood", [
    ("cifar10_jpeg", "cifar10_jpeg"),
    ("cifar10_jpeg", ["fashion_mnist", "cifar10_jpeg"]),
    ("{tmp}/d", "{tmp}/e/../d/"),
    ("{tmp}/d", "{tmp}/d/test"),
    ("{tmp}/d/test", "{tmp}/d"),
])
def test_the_id_data_is_refused_as_an_ood_set(id_data, ood, tmp_path, no_loading):
    """Scored as an OOD set, the ID data (or its test split) used to be compared with itself without a word."""
    id_data = id_data.format(tmp=tmp_path)
    ood = [o.format(tmp=tmp_path) for o in ood] if isinstance(ood, list) else ood.format(tmp=tmp_path)
    same = ood[-1] if isinstance(ood, list) else ood
    with pytest.raises(ZooError) as err:
        evaluate("unused", "ood", id_data=id_data, ood=ood)
    assert str(err.value) == (f"task 'ood': ood={same!r} is the ID data id_data={id_data!r} (the same dataset, or a "
                              f"folder inside or around it): it would score the ID data against itself; give OOD "
                              f"sets other than the ID data")


def test_other_ood_sets_pass(tmp_path):
    assert get_task("ood")(id_data="cifar10_jpeg", ood=["fashion_mnist", "skimage_textures"]).options.ood == [
        "fashion_mnist", "skimage_textures"]
    assert get_task("ood")(id_data=str(tmp_path / "d"), ood=str(tmp_path / "d2")).options.ood == [str(tmp_path / "d2")]


@pytest.mark.parametrize("task", [None, 3, ["ood"]])
def test_a_task_that_is_not_a_name_is_an_unknown_task(task, no_loading):
    with pytest.raises(ZooError, match=rf"^unknown eval task {re.escape(repr(task))}; available: .*classification"):
        evaluate("unused", task, data="unused")
