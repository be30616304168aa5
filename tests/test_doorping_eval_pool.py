"""DOORPING's cross-architecture evaluation pool (the authors' ``get_eval_pool`` with ``eval_mode='M'``): VGG11 and
ResNet18 as the Dataset Condensation code builds them, their sizes, the authors' state-dict layout, and
`zoo eval --task backdoor --arch` with them."""

import json

import pytest
import torch
from torch import nn

import zoo
from zoo.cli import main
from zoo.errors import ZooError
from zoo.models.doorping.attack import naive_trigger
from zoo.models.doorping.synset import DistilledSet

pytestmark = pytest.mark.usefixtures("one_thread")

# Parameters at 10 classes, from the architectures (conv k*k*c_in*c_out (+ c_out bias in VGG11, none in ResNet18),
# GroupNorm(C, C, affine) 2C, Linear in*out + out):
# VGG11: convs 3->64 1,792; 64->128 73,856; 128->256 295,168; 256->256 590,080; 256->512 1,180,160;
#   512->512 x3 3 * 2,359,808 = 7,079,424: 9,220,480. Norms 2 * (64 + 128 + 256 + 256 + 4 * 512) = 5,504.
#   Classifier 512 * 10 + 10 = 5,130. Total 9,231,114; 1-channel: first conv 1 * 64 * 9 + 64 = 640 instead of
#   1,792: 9,229,962.
# ResNet18: stem 3 * 64 * 9 + 128 = 1,856. layer1: 4 * 36,864 + 4 * 128 = 147,968. layer2: 73,728 + 3 * 147,456 +
#   shortcut 64 * 128 = 8,192 + 5 * 256 = 525,568. layer3: 294,912 + 3 * 589,824 + 32,768 + 5 * 512 = 2,099,712.
#   layer4: 1,179,648 + 3 * 2,359,296 + 131,072 + 5 * 1,024 = 8,393,728. Features 11,168,832. baadd's classifier
#   512 * 512 + 512 = 262,656 plus 5,130: 11,436,618 (the DC repository's single Linear: 11,173,962).
#   1-channel: stem conv 1 * 64 * 9 = 576 instead of 1,728: 11,435,466.
# (Checked against the authors' classes, baadd DC/networks.py and DatasetCondensation networks.py, built outside the
# repository: the same counts, key names and outputs.)
PARAMS = {("doorping_vgg11", 3): 9_231_114, ("doorping_vgg11", 1): 9_229_962,
          ("doorping_resnet18", 3): 11_436_618, ("doorping_resnet18", 1): 11_435_466}


def _authors_vgg11_state(channels: int, classes: int) -> dict[str, tuple]:
    """Key -> shape of the authors' VGG11 (instance norm) state_dict: conv, norm, ReLU per width, max-pools
    between, so the convs sit at features.0, 4, 8, 11, 15, 18, 22, 25 and each norm right after."""
    widths = [(channels, 64, 0), (64, 128, 4), (128, 256, 8), (256, 256, 11), (256, 512, 15), (512, 512, 18),
              (512, 512, 22), (512, 512, 25)]
    out = {}
    for c_in, c_out, i in widths:
        out |= {f"features.{i}.weight": (c_out, c_in, 3, 3), f"features.{i}.bias": (c_out,),
                f"features.{i + 1}.weight": (c_out,), f"features.{i + 1}.bias": (c_out,)}
    return out | {"classifier.weight": (classes, 512), "classifier.bias": (classes,)}


def _authors_resnet18_state(channels: int, classes: int) -> dict[str, tuple]:
    """Key -> shape of baadd's ResNet18 (instance norm) state_dict: conv1/bn1, layerK.B.{conv1,bn1,conv2,bn2} and
    shortcut.{0,1} in the first block of stages 2-4, classifier.0 (512 -> 512) and classifier.1 (512 -> classes)."""
    out = {"conv1.weight": (64, channels, 3, 3), "bn1.weight": (64,), "bn1.bias": (64,)}
    c_in = 64
    for k, planes in enumerate((64, 128, 256, 512), start=1):
        for b in (0, 1):
            p = f"layer{k}.{b}."
            out |= {p + "conv1.weight": (planes, c_in, 3, 3), p + "bn1.weight": (planes,), p + "bn1.bias": (planes,),
                    p + "conv2.weight": (planes, planes, 3, 3), p + "bn2.weight": (planes,), p + "bn2.bias": (planes,)}
            if c_in != planes:
                out |= {p + "shortcut.0.weight": (planes, c_in, 1, 1), p + "shortcut.1.weight": (planes,),
                        p + "shortcut.1.bias": (planes,)}
            c_in = planes
    return out | {"classifier.0.weight": (512, 512), "classifier.0.bias": (512,),
                  "classifier.1.weight": (classes, 512), "classifier.1.bias": (classes,)}


AUTHORS = {"doorping_vgg11": _authors_vgg11_state, "doorping_resnet18": _authors_resnet18_state}


@pytest.mark.parametrize("name", ["doorping_vgg11", "doorping_resnet18"])
@pytest.mark.parametrize("channels", [3, 1])
def test_shapes_sizes_and_the_authors_layout(name, channels):
    m = zoo.create_model(name, channels=channels, image_size=32, num_classes=10, mean=[0.5] * channels,
                         std=[0.25] * channels)
    x = torch.randn(2, channels, 32, 32)
    assert m(x).shape == (2, 10) and m.embed(x).shape == (2, 512)  # the 512 features the authors hard-code
    assert sum(p.numel() for p in m.parameters()) == PARAMS[name, channels]
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == AUTHORS[name](channels, 10)
    assert list(m.state_dict()) == list(AUTHORS[name](channels, 10))  # the authors' order too
    assert m.input_spec["input_size"] == [channels, 32, 32] and m.input_spec["fixed_size"]
    assert m.get_classifier().out_features == 10


def test_details_of_the_dc_definitions():
    vgg1, vgg3 = zoo.create_model("doorping_vgg11", channels=1), zoo.create_model("doorping_vgg11")
    assert vgg1.features[0].padding == (3, 3) and vgg3.features[0].padding == (1, 1)  # the ConvNet's 1-channel pad
    assert vgg3.features[0].bias is not None and isinstance(vgg3.features[29], nn.AvgPool2d)
    assert sum(isinstance(layer, nn.MaxPool2d) for layer in vgg3.features) == 5
    gn = vgg3.features[1]
    assert isinstance(gn, nn.GroupNorm) and (gn.num_groups, gn.num_channels, gn.affine) == (64, 64, True)
    assert vgg3.penultimate == "features.25" and vgg3.get_submodule(vgg3.penultimate).out_channels == 512
    assert zoo.create_model("doorping_vgg11", channels=1, image_size=28).embed(torch.randn(1, 1, 28, 28)).shape == (
        1, 512)  # 28 + 2 * 3 - 2 = 32 before the pools, as the ConvNet

    res = zoo.create_model("doorping_resnet18", channels=1)
    assert res.conv1.padding == (1, 1) and res.conv1.stride == (1, 1) and res.conv1.bias is None  # CIFAR stem
    assert isinstance(res.bn1, nn.GroupNorm) and res.bn1.num_groups == 64
    assert isinstance(res.classifier[0], nn.Linear) and res.penultimate == "classifier.0"  # no ReLU between
    dc = zoo.create_model("doorping_resnet18", hidden=0)  # the DatasetCondensation repository's head
    assert isinstance(dc.classifier, nn.Linear) and sum(p.numel() for p in dc.parameters()) == 11_173_962
    bn = zoo.create_model("doorping_vgg11", norm="batchnorm")  # the DC code's VGG11BN
    assert isinstance(bn.features[1], nn.BatchNorm2d) and sum(p.numel() for p in bn.parameters()) == 9_231_114
    for name in ("doorping_vgg11", "doorping_resnet18"):
        with pytest.raises(ZooError, match="norm must be 'instancenorm'"):
            zoo.create_model(name, norm="layernorm")
        with pytest.raises(ZooError, match="too small"):
            zoo.create_model(name, image_size=16 if name == "doorping_resnet18" else 24)


@pytest.mark.parametrize("name", ["doorping_vgg11", "doorping_resnet18"])
def test_a_state_dict_with_the_authors_names_loads_strictly(name, tmp_path):
    """As their DC script saves it (``torch.save(net.state_dict(), .../model_<i>.pth)``), read back into the zoo's
    network with no renaming and every tensor landing in place."""
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) for k, shape in AUTHORS[name](3, 10).items()}
    torch.save(sd, tmp_path / "model_0.pth")
    m = zoo.create_model(name)
    assert not m.load_state_dict(torch.load(tmp_path / "model_0.pth", weights_only=True), strict=True).missing_keys
    assert all(torch.equal(m.state_dict()[k], v) for k, v in sd.items())
    m.eval()(torch.randn(1, 3, 32, 32))
    # `zoo convert doorping` recognises the file inside the authors' run folder (eval_mode 'M' adds "_M")
    from zoo.models.doorping.convert import convert

    run = tmp_path / "ConvNet_CIFAR10_10ipc_doorping_portion_0.01_size_2_ori_1.0_M" / "1000"
    run.mkdir(parents=True)
    torch.save({"module." + k: v for k, v in sd.items()}, run / "model_0.pth")  # DataParallel-saved
    net = zoo.from_pretrained(convert(run / "model_0.pth", tmp_path / "zoo"))
    assert net.zoo_cfg["architecture"] == name and all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())


def _random_set(tmp_path) -> str:
    """A 1-image-per-class, 32 px RGB NAIVEATTACK set of noise (for the synthetic ``shapes`` data's 10 classes)."""
    trig, mask = naive_trigger(32, 2, [0.5] * 3, [0.25] * 3)
    s = DistilledSet(torch.randn(10, 3, 32, 32), torch.arange(10), dataset="shapes", mean=[0.5] * 3, std=[0.25] * 3,
                     method="dc", attack="naive", ipc=1, arch="doorping_convnet", trigger=trig, trigger_mask=mask)
    return str(s.save(tmp_path / "set.safetensors"))


def test_zoo_eval_backdoor_trains_the_pool_networks(shapes_data, tmp_path, capsys):
    path = _random_set(tmp_path)
    for arch in ("doorping_resnet18", "doorping_vgg11"):
        out = tmp_path / f"{arch}.json"
        assert main(["eval", path, "--task", "backdoor", "--data", str(shapes_data), "--arch", arch, "--models", "1",
                     "--epochs", "1", "--test-subset", "20", "--json", str(out), "--device", "cpu"]) == 0
        r = json.loads(out.read_text())
        assert {"cta", "cta_std", "asr", "asr_std", "asr_incl_target", "asr_incl_target_std", "per_model", "models",
                "arch", "epochs", "n_test", "trigger"} <= set(r)
        assert r["arch"] == arch and r["models"] == 1 and len(r["per_model"]) == 1 and r["n_test"] == 20
        assert 0 <= r["cta"] <= 1 and 0 <= r["asr"] <= 1
    capsys.readouterr()
    assert main(["eval", path, "--task", "backdoor", "--data", str(shapes_data), "--arch", "knn_ood_resnet20"]) == 2
    err = capsys.readouterr().err
    assert "not a DOORPING network" in err and "doorping_vgg11" in err and "doorping_resnet18" in err


def test_the_converter_reads_the_dc_repositorys_resnet18bn_head_and_norm(tmp_path):
    """The Dataset Condensation repository's ResNet18BN: one Linear head (``hidden=0``) and BatchNorm statistics."""
    from zoo.models.doorping.convert import convert

    ref = zoo.create_model("doorping_resnet18", hidden=0, norm="batchnorm")
    run = tmp_path / "ConvNet_CIFAR10_10ipc_poisoned_portion_0.01_size_2_ori_1.0_M" / "1000"
    run.mkdir(parents=True)
    torch.save(ref.state_dict(), run / "model_0.pth")
    net = zoo.from_pretrained(convert(run / "model_0.pth", tmp_path / "zoo"))
    args = net.zoo_cfg["model_args"]
    assert (args["hidden"], args["norm"]) == (0, "batchnorm") and isinstance(net.classifier, nn.Linear)
