"""`zoo convert` with the wrong file, or the wrong --out: one line naming the --src file, what it is and the fix,
before anything is written; and a next step that fits what was written."""

import pytest
import torch

import zoo
from zoo.cli import main

RUN = "ConvNet_CIFAR10_10ipc_doorping_portion_0.01_size_2_ori_1.0"  # the authors' run folder name


def _akamaster(path):
    """A CIFAR ResNet-20 as akamaster saves it: ``{'state_dict': {'module.conv1.weight', ..., 'module.linear.*'}}``
    (3x3 stem, three stages)."""
    sd = zoo.create_model("knn_ood_cifar_resnet", depth=20).state_dict()
    torch.save({"state_dict": {"module." + k.replace("fc.", "linear."): v for k, v in sd.items()}}, path)
    return path


def _torchvision_resnet18(path):
    """A torchvision ImageNet ResNet-18 state dict (7x7 stem, ``fc`` [1000, 512])."""
    sd = zoo.create_model("pmt_iqa_imagenet_backbone", arch="resnet18", num_classes=1000).state_dict()
    torch.save({k.removeprefix("net."): v for k, v in sd.items()}, path)
    return path


@pytest.mark.parametrize("paper, make, needles", [
    ("tinymim", _akamaster, ["unrecognised layout (first keys: conv1.weight"]),
    ("pmt_iqa", _akamaster, ["a CIFAR ResNet (3x3 stem", "`zoo convert knn_ood` reads CIFAR ResNets"]),
    ("cmt", _akamaster, ["not a CMT checkpoint (first keys: conv1.weight"]),
    ("doorping", _akamaster, ["unrecognised layout (keys conv1.weight"]),  # unwrapped from 'state_dict'
    ("knn_ood", _torchvision_resnet18, ["an ImageNet-style ResNet (7x7 stem", "`zoo convert pmt_iqa` reads"]),
])
def test_a_wrong_checkpoint_is_named_with_what_it_is_and_the_converter_that_reads_it(paper, make, needles, tmp_path,
                                                                                     capsys):
    (tmp_path / RUN).mkdir()  # doorping reads the dataset from the authors' run folder name
    src = make(tmp_path / RUN / "ck.pth")
    assert main(["convert", paper, "--src", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"zoo: error: {src}: " in err, err
    assert all(n in err for n in needles), err
    assert "expected a state_dict of tensors" not in err and not (tmp_path / "out").exists()


def test_doorping_reads_a_network_wrapped_under_state_dict_as_the_other_converters_do(tmp_path):
    from zoo.models.doorping.convert import convert

    (tmp_path / RUN).mkdir()
    sd = {k: v.clone().normal_() for k, v in zoo.create_model("doorping_convnet").state_dict().items()}
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, tmp_path / RUN / "model_0.pth")
    net = zoo.from_pretrained(convert(tmp_path / RUN / "model_0.pth", tmp_path / "net"))
    assert torch.equal(net.state_dict()["classifier.0.weight"], sd["classifier.0.weight"])


def test_a_distilled_set_is_not_offered_to_from_pretrained(tmp_path, capsys):
    run = tmp_path / RUN.replace("_doorping_", "_poisoned_")  # the naive attack: no trigger file needed
    run.mkdir()
    torch.save({"data": [[torch.randn(10, 3, 32, 32), torch.arange(10)]]}, run / "res_DC_CIFAR10_ConvNet_1ipc.pt")
    assert main(["convert", "doorping", "--src", str(run / "res_DC_CIFAR10_ConvNet_1ipc.pt"),
                 "--out", str(tmp_path / "set")]) == 0
    out = capsys.readouterr().out
    dest = tmp_path / "set" / "distilled.safetensors"
    assert f"wrote {dest}; it is data made by the doorping code, not a model" in out
    assert f"zoo eval {dest} --task backdoor --data DATA" in out and "zoo/models/doorping/README.md" in out
    assert "load it with zoo.from_pretrained" not in out


@pytest.mark.parametrize("out, force, needle", [
    ("{tmp}/afile", False, "--out {tmp}/afile is a file: give a folder path"),
    ("{tmp}/afile", True, "--out {tmp}/afile is a file: give a folder path"),
    ("{tmp}/afile/sub", False, "--out: {tmp}/afile is a file, so the folder {tmp}/afile/sub cannot be made there"),
    ("/proc/nope/out", False, "--out: the folder /proc/nope/out cannot be written"),
])
def test_an_out_that_cannot_be_a_folder_is_refused_before_converting(out, force, needle, tmp_path, monkeypatch,
                                                                     capsys):
    from zoo.models.knn_ood import convert

    monkeypatch.setattr(convert, "convert", lambda *a: pytest.fail("the converter ran"))
    (tmp_path / "afile").write_text("x")
    argv = ["convert", "knn_ood", "--src", "x.th", "--out", out.format(tmp=tmp_path)] + ["--force"] * force
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle.format(tmp=tmp_path) in err and "--force" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("paper", ["cmt", "pmt_iqa", "doorping", "knn_ood"])
def test_model_args_are_refused_by_name_for_a_converter_that_takes_none(paper, tmp_path, capsys):
    """Only a converter with a ``model_args`` parameter (TinyMIM's) takes --model-args; the others are refused
    before the checkpoint is read (x.pth does not exist) or anything is written."""
    argv = ["convert", paper, "--src", "x.pth", "--out", str(tmp_path / "out"), "--model-args", "{num_heads: 6}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--model-args is not supported for paper {paper}" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
