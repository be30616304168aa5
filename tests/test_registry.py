import re
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.registry import _natural_key


def test_list_models_pattern_and_pretrained():
    names = zoo.list_models()
    assert names == sorted(names, key=_natural_key)
    assert sorted(["resnet110", "resnet18", "resnet2"], key=_natural_key) == ["resnet2", "resnet18", "resnet110"]
    assert "knn_ood_resnet20" in names
    assert zoo.list_models("knn_ood_resnet?0") == ["knn_ood_resnet20"]
    assert zoo.list_models("resnet5") == ["knn_ood_resnet56", "pmt_iqa_resnet50"]  # no glob characters: a part
    assert zoo.list_models("knn") == zoo.list_models("knn*") and zoo.list_models("zzz") == []
    assert zoo.list_models("KNN") == zoo.list_models("knn") == zoo.list_models("KNN_OOD_*")  # any case
    assert "knn_ood_resnet20.cifar10" in zoo.list_models(pretrained=True)


def test_create_model_kwargs_and_cfg():
    m = zoo.create_model("knn_ood_resnet20", num_classes=7)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert m.zoo_cfg == {"architecture": "knn_ood_resnet20", "model_args": {"num_classes": 7}, "tag": None}


def test_unknown_model_suggests_close_names():
    with pytest.raises(ZooError, match="did you mean knn_ood_resnet20"):
        zoo.create_model("knn_ood_resnt20")
    with pytest.raises(ZooError, match=r"unknown model 'KNN_OOD_RESNET20' \(did you mean knn_ood_resnet20,"):
        zoo.create_model("KNN_OOD_RESNET20")  # names are lower case; the suggestion ignores case


@pytest.mark.parametrize("name, needle", [
    (None, "a model name is a str, 'arch' or 'arch.tag' (`zoo list`), not NoneType None"),
    (20, "a model name is a str, 'arch' or 'arch.tag' (`zoo list`), not int 20"),
    ("knn_ood_resnet20.", "model name 'knn_ood_resnet20.' ends in '.': give 'knn_ood_resnet20', or"),
])
def test_a_model_name_that_is_no_name_is_one_error(name, needle):
    with pytest.raises(ZooError) as exc:
        zoo.create_model(name)
    assert str(exc.value).startswith(needle)


@pytest.mark.parametrize("call, needle", [
    (lambda: zoo.from_pretrained(None), "from_pretrained takes a folder path or a 'name.tag' str, not NoneType None"),
    (lambda: zoo.model_info(3), "model_info takes a name, name.tag, paper id or folder path, not int 3"),
    (lambda: zoo.list_models(5), "list_models takes a name pattern str (knn, knn_ood_resnet?0), not int 5"),
])
def test_the_lookups_refuse_what_is_no_name(call, needle):
    with pytest.raises(ZooError) as exc:
        call()
    assert str(exc.value) == needle


def test_unknown_tag_lists_available():
    with pytest.raises(ZooError, match="weights for knn_ood_resnet20: knn_ood_resnet20.cifar10"):
        zoo.create_model("knn_ood_resnet20.imagenet", pretrained=True)


@pytest.mark.parametrize("name, kwargs, needle", [
    ("knn_ood_resnet20", {"width": 3}, "bad arguments for model 'knn_ood_resnet20' (width=3): TypeError: "),
    ("knn_ood_resnet20", {"num_classes": -1}, "bad arguments for model 'knn_ood_resnet20' (num_classes=-1): "
                                              "ValueError: num_classes must be at least 1, got -1"),
    ("tinymim_vit_tiny", {"patch_size": 0}, "bad arguments for model 'tinymim_vit_tiny' (patch_size=0): "
                                            "ValueError: patch_size must be at least 1, got 0"),
])
def test_bad_constructor_argument_is_a_user_error(name, kwargs, needle):
    """Whatever the builder raises for the user's arguments is one error naming the model and those arguments."""
    with pytest.raises(ZooError) as exc:
        zoo.create_model(name, **kwargs)
    assert str(exc.value).startswith(needle)


def test_pretrained_default_tag_loads_verified_weights():
    m = zoo.create_model("knn_ood_resnet20", pretrained=True)
    assert m.zoo_cfg["tag"] == "cifar10"
    assert m.input_spec["mean"] == [0.485, 0.456, 0.406]  # from the manifest's model_args
    ref = zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True)
    for a, b in zip(m.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


def test_model_info_has_paper_and_results():
    info = zoo.model_info("knn_ood_resnet20.cifar10")
    assert info["paper"]["arxiv"] == "2204.06507"
    res = info["weights"]["knn_ood_resnet20.cifar10"]["results"][0]
    assert {"paper_value", "zoo_value", "dataset", "split", "command"} <= set(res)


def test_model_info_of_a_paper_id_lists_its_models(capsys):
    """`zoo info knn_ood` (a paper id from the README's table) said "unknown model"."""
    from zoo.cli import main

    info = zoo.model_info("knn_ood")
    assert info["kind"] == "paper" and info["paper"]["arxiv"] == "2204.06507"
    assert info["models"]["knn_ood_resnet20"] == ["cifar10"] and "knn_ood_cifar_resnet" in info["models"]
    assert zoo.model_info("pmt_iqa")["name"] == "pmt_iqa" and "kind" not in zoo.model_info("pmt_iqa")  # a model too
    assert main(["info", "knn_ood"]) == 0
    assert "knn_ood_resnet56:" in capsys.readouterr().out


def test_model_info_shows_a_papers_data_entries(capsys):
    """DOORPING's distilled sets are manifest entries but not weights: `zoo info` shows them (with their paper and
    results), model loading refuses them."""
    from zoo.cli import main

    info = zoo.model_info("doorping_distilled.cifar10_dc_convnet_ipc10_doorping")
    assert info["kind"].startswith("data") and info["paper"]["id"] == "doorping"
    assert list(info["weights"]) == ["doorping_distilled.cifar10_dc_convnet_ipc10_doorping"]
    assert len(zoo.model_info("doorping_distilled")["weights"]) == 12  # DC and DM, 2 datasets x 3 attacks each
    assert main(["info", "doorping_distilled.cifar10_dc_convnet_ipc10_doorping"]) == 0
    assert "asr_incl_target" in capsys.readouterr().out
    with pytest.raises(ZooError, match="is data made by the doorping code, not model weights"):
        zoo.create_model("doorping_distilled.cifar10_dc_convnet_ipc10_doorping", pretrained=True)


def test_model_info_of_a_file_names_the_folder_to_give(tmp_path, capsys):
    """`zoo info RUN/model/model.safetensors` said the existing file "does not exist"."""
    from zoo.cli import main

    folder = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "model")
    weights = folder / "model.safetensors"
    with pytest.raises(ZooError, match=re.escape(f"{weights} is a file of the zoo model folder {folder}: give the")):
        zoo.model_info(str(weights))
    distilled = tmp_path / "distilled.safetensors"
    distilled.write_bytes(b"x")
    assert main(["info", str(distilled)]) == 2
    err = capsys.readouterr().err
    assert f"{distilled} is a file, not a model: zoo info reads a folder written by zoo.save_pretrained" in err
    assert "does not exist" not in err


def test_pretrained_tag_and_path_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar10").mkdir()  # a folder named like the tag: the tag wins
    assert zoo.create_model("knn_ood_resnet20", pretrained="cifar10").zoo_cfg["tag"] == "cifar10"
    for missing in (Path("my_weights.safetensors"), "my_weights.safetensors", "no/such/folder"):
        with pytest.raises(ZooError, match="not found"):  # never the default tag in its place
            zoo.create_model("knn_ood_resnet20", pretrained=missing)
    zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "mine")
    assert zoo.create_model("knn_ood_resnet20", pretrained="mine").zoo_cfg["tag"] is None


_DETECTOR = ("a 3-D detector: takes camera images, LiDAR points and their projections, and checks them itself "
             "(test_cmt_model.py::test_bad_inputs_are_user_errors)")
_DRUM_LM = "a language model: takes token ids"
# Registered models that are not image models (no input_spec), with the reason; every other one is checked below.
NOT_IMAGE_MODELS = {
    **dict.fromkeys(["cmt_camera_r50", "cmt_camera_vov99", "cmt_fusion_r50", "cmt_fusion_vov99", "cmt_lidar_voxel0075",
                     "cmt_tiny", "cmt_tiny_lite0"], _DETECTOR),
    **dict.fromkeys(["drums_gpt2_tiny", "drums_lm", "drums_smollm2_135m", "drums_smollm2_scratch"], _DRUM_LM),
}
# Image models whose check takes seconds on the development CPU (their size at 224x224): checked with -m slow.
SLOW_INPUT_CHECK = {"knn_ood_timm", "pmt_iqa", "tinymim_vit", "tinymim_vit_base", "tinymim_vit_large",
                    "tinymim_vit_small"}


def test_the_models_listed_for_the_input_check_are_registered():
    stale = sorted({*NOT_IMAGE_MODELS, *SLOW_INPUT_CHECK} - set(zoo.list_models()))
    assert not stale, f"{stale} are no longer registered: remove them from tests/test_registry.py"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_INPUT_CHECK else n
                                  for n in zoo.list_models() if n not in NOT_IMAGE_MODELS])
def test_image_models_check_their_input(name):
    """A wrong input to an image model is one ZooError saying what to pass (not a convolution's error). Every
    registered model is one, but those in `NOT_IMAGE_MODELS`."""
    m = zoo.create_model(name).eval()
    assert hasattr(m, "input_spec"), (f"{name} has no input_spec: give an image model one (docs/adding-a-paper.md), "
                                      f"or add {name} to NOT_IMAGE_MODELS in tests/test_registry.py with the reason")
    c, h, w = m.input_spec["input_size"]
    x = torch.randn(2, c, h, w)
    bad = [(x[0], r"got shape \[.*add the batch dimension, x\[None\]"),
           (torch.randn(2, c + 1, h, w), rf"takes images \[B, {c}, H, W\]"),
           ((x * 50).to(torch.uint8), "takes float images normalised"),
           (x.double(), "weights are torch.float32 but the input is torch.float64")]
    if m.input_spec.get("fixed_size"):  # DOORPING's networks and the TinyMIM ViTs: built for one input size
        bad.append((torch.randn(2, c, h - 4, w - 4), rf"takes {h}x{w} images .* got {h - 4}x{w - 4}"))
    with torch.inference_mode():
        for inp, needle in bad:
            with pytest.raises(ZooError, match=needle):
                m(inp)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the dtype is autocast's business
            m(x.bfloat16())
            with pytest.raises(ZooError, match="weights are torch.float32 but the input is torch.float64"):
                m(x.double())  # but autocast never casts float64
        m(x)


def test_from_pretrained_of_a_missing_folder_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ZooError, match=r"'my_model' is neither a folder here \(.*my_model does not exist\) nor a "
                                       r"registered model"):
        zoo.from_pretrained("my_model")
