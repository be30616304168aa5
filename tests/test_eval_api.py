"""The Python API of `zoo.eval` and `OODDetector`: options are checked as the CLI checks them, and misuse is one
`ZooError` naming the fix."""

import argparse
import inspect

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.eval import EvalContext, evaluate, get_task
from zoo.models.knn_ood.detector import OODDetector
from zoo.models.knn_ood.scorers import KNNScorer, build_scorers


def test_python_options_are_converted_like_the_cli():
    ood = get_task("ood")(id_data="x", ood="fashion_mnist", k="5", alpha=1).options
    assert (ood.ood, ood.k, ood.alpha) == (["fashion_mnist"], 5, 1.0)
    assert get_task("ood")(id_data="x", ood=["a", "b"], k=5).options.k == 5
    iqa = get_task("iqa")(data="x", resize=(512, "384"), target_sign=-1, logistic=True, crops=None).options
    assert (iqa.resize, iqa.target_sign, iqa.logistic, iqa.crops) == ([512, 384], "-1", True, 4)


@pytest.mark.parametrize("task, options, needle", [
    ("backdoor", {"data": "x", "augment": "bogus"}, "task 'backdoor': augment='bogus' is not accepted: choose from "
                                                    "none, dsa"),
    ("backdoor", {"data": "x", "compile": "yes"}, "compile='yes' is not accepted: it is a flag, pass True or False"),
    ("backdoor", {"data": "x", "epochs": 1.5}, "epochs=1.5 is not accepted: invalid int value: 1.5"),
    ("ood", {"id_data": "x", "ood": "y", "k": "abc"}, "task 'ood': k='abc' is not accepted: 'abc' is not an integer"),
    ("ood", {"id_data": "x", "ood": "y", "k": 0}, "k=0 is not accepted: 0 is less than 1"),
    ("ood", {"id_data": "x", "ood": "y", "scorers": ["knn"]}, "scorers=['knn'] is not accepted: it takes one value, "
                                                              "not a list (comma-separated: knn, msp"),
    ("ood", {"id_data": "x", "ood": []}, "ood=[] is not accepted: it takes one or more values"),
    ("iqa", {"data": "x", "resize": 512}, "task 'iqa': resize=512 is not accepted: it takes 2 values"),
    ("iqa", {"data": "x", "resize": ["a", 1]}, "resize=['a', 1] is not accepted: invalid int value: 'a'"),
    ("iqa", {"data": "x", "target_sign": 2}, "target_sign=2 is not accepted: choose from auto, 1, -1"),
    ("det3d", {"data": "x", "drop_modality": "radar"}, "drop_modality='radar' is not accepted: choose from lidar"),
])
def test_bad_python_options_are_one_user_error(task, options, needle):
    with pytest.raises(ZooError) as err:
        get_task(task)(**options)
    assert needle in str(err.value)


@pytest.mark.parametrize("argv", [
    ["--task", "ood", "--id-data", "x", "--ood", "a", "--ood", "b", "--k", "7", "--alpha", "0.5"],
    ["--task", "iqa", "--data", "x", "--resize", "512", "384", "--logistic", "--target-sign", "-1"],
    ["--task", "backdoor", "--data", "x", "--augment", "dsa", "--compile"],
    ["--task", "det3d", "--data", "x", "--drop-modality", "lidar", "--sweeps", "0"],
    ["--task", "drums", "--encoding", "events", "--temperature", "0.9"],
])
def test_options_the_cli_parsed_pass_unchanged(argv):
    from zoo.cli import _eval_parser

    parsed = vars(_eval_parser(argv).parse_args(["model", *argv]))
    task = get_task(parsed["task"])
    parser = argparse.ArgumentParser(add_help=False)
    task.add_arguments(parser)
    opts = {a.dest: parsed[a.dest] for a in parser._actions}
    assert vars(task(**opts).options) == opts


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta"])
def test_an_unknown_device_lists_the_accepted_ones(device):
    with pytest.raises(ZooError, match=f"device '{device}' is not one this zoo runs on: use cpu, cuda .*, cuda:N"):
        evaluate("unused", "classification", data="unused", device=device)


def test_a_missing_cuda_ordinal_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ZooError, match="--device cuda:1 given but this machine has 1 CUDA devices"):
        evaluate("unused", "classification", data="unused", device="cuda:1")


def test_classification_rejects_a_non_classifier_in_setup(shapes_data):
    """An IQA model (its output is a dict) is refused in setup, naming the task that fits, before any image is
    scored (it used to fail in score, after the whole test set)."""
    task = get_task("classification")(data=str(shapes_data))
    ctx = EvalContext(torch.device("cpu"), None, 8, 0, None)
    model = zoo.create_model("pmt_iqa_efficientnet_lite0")
    with pytest.raises(ZooError, match=r"pmt_iqa_efficientnet_lite0 cannot classify images: .*\(logits "
                                       r"\[B, num_classes\], get_classifier\(\).*; evaluate it with --task iqa$"):
        task.setup(model, ctx)
    assert not hasattr(task, "loader")
    with pytest.raises(ZooError, match=r"Linear cannot classify images: .*knn_ood_resnet20.cifar10\)$"):
        task.setup(torch.nn.Linear(2, 2), ctx)


def test_classification_setup_accepts_a_classifier(shapes_data):
    task = get_task("classification")(data=str(shapes_data))
    task.setup(zoo.create_model("knn_ood_resnet20"), EvalContext(torch.device("cpu"), None, 8, 0, None))
    assert task.num_classes == 10 and len(task.loader.dataset) == 100  # 10 test images a class
    task._check_classifier(zoo.create_model("pmt_iqa_imagenet_backbone"))  # `zoo convert pmt_iqa`'s ImageNet form


def test_detector_says_what_to_pass():
    model = zoo.create_model("knn_ood_resnet20").eval()
    images = torch.randn(4, 3, 32, 32)
    det = OODDetector(model, build_scorers(["knn"], k=2))
    with pytest.raises(ZooError, match="OODDetector.setup takes a torch DataLoader .* got a list"):
        det.setup([images])
    det.setup(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(4)), batch_size=2))
    with pytest.raises(ZooError, match=r"OODDetector.score takes one batch of images, a tensor \[B, C, H, W\], "
                                       r"got list"):
        det.score([images[0]])
    with pytest.raises(ZooError, match=r"got \[3, 32, 32\]"):
        det.score(images[0])
    with pytest.raises(ZooError, match="score_features takes the Features"):
        det.score_features(images)
    assert det.score(images)["knn"].shape == (4,)


@pytest.mark.parametrize("fn", [get_task, OODDetector.setup, OODDetector.save, OODDetector.load, KNNScorer.setup,
                                KNNScorer.score, KNNScorer.state], ids=lambda fn: fn.__qualname__)
def test_public_api_is_documented(fn):
    assert inspect.getdoc(fn)


def test_plots_are_written_before_the_json(shapes_data, tmp_path, monkeypatch):
    """A JSON on disk means the run's plots are there too: a task whose plots fail leaves no JSON behind, and each
    task sees where the JSON goes (to name its plots after it)."""
    task = get_task("classification")
    seen = []

    def failing_plots(self, result, scores, out_dir):
        seen.append(self.ctx.json_out)
        raise RuntimeError("no display")

    monkeypatch.setattr(task, "artifacts", failing_plots)
    with pytest.raises(RuntimeError, match="no display"):
        evaluate("knn_ood_resnet20", "classification", model=zoo.create_model("knn_ood_resnet20"),
                 data=str(shapes_data), batch_size=50, num_workers=0, json_out=tmp_path / "r.json")
    assert seen == [tmp_path / "r.json"] and not (tmp_path / "r.json").exists()
