import pickle
import re

import pytest
import torch

import zoo
from zoo.checkpoint import load_state_dict, read_foreign, read_weights
from zoo.errors import ZooError


def test_save_and_load_round_trip(tmp_path):
    m = zoo.create_model("knn_ood_resnet20", num_classes=5).eval()
    out = zoo.save_pretrained(m, tmp_path / "m")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    m2 = zoo.from_pretrained(out).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(m(x), m2(x))
    assert m2.zoo_cfg["model_args"] == {"num_classes": 5}


def test_safetensors_files_are_reproducible_byte_for_byte(tmp_path):
    """The same tensors and metadata give the same bytes (safetensors alone orders the metadata map at random per
    process), and the file reads back with safetensors' own loader."""
    from safetensors import safe_open

    from zoo.checkpoint import save_safetensors

    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(3, dtype=torch.int64)}
    metadata = {k: f"value {k} é" for k in "fedcba"}
    files = []
    for i in range(12):
        order = dict(sorted(metadata.items(), reverse=bool(i % 2)))
        save_safetensors(tensors, tmp_path / f"{i}.safetensors", order)
        files.append((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(set(files)) == 1 and int.from_bytes(files[0][:8], "little") % 8 == 0
    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata() == metadata and torch.equal(f.get_tensor("b"), tensors["b"])


def test_save_requires_a_zoo_model(tmp_path):
    with pytest.raises(ZooError, match="create_model"):
        zoo.save_pretrained(torch.nn.Linear(2, 2), tmp_path)


def test_a_path_given_as_the_state_dict_says_how_to_read_it(tmp_path):
    with pytest.raises(ZooError, match=r"load_state_dict takes a state dict, not the path 'x.safetensors': read the "
                                       r"file first, load_state_dict\(model, read_weights\(path\)\)"):
        load_state_dict(zoo.create_model("knn_ood_resnet20"), "x.safetensors")


def test_load_report_lists_every_problem():
    m = zoo.create_model("knn_ood_resnet20")
    sd = dict(m.state_dict())
    sd.pop("fc.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["fc.weight"] = torch.zeros(3, 64)
    with pytest.raises(ZooError) as exc:
        load_state_dict(m, sd)
    msg = str(exc.value)
    assert "fc.bias" in msg and "extra.weight" in msg and "fc.weight model (10, 64) vs file (3, 64)" in msg


def test_allow_lists_are_explicit():
    m = zoo.create_model("knn_ood_resnet20")
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("fc.")}
    sd["head.0.weight"] = torch.zeros(1)
    report = load_state_dict(m, sd, allow_missing=["fc.*"], allow_unexpected=["head.*"])
    assert report.missing == ["fc.weight", "fc.bias"] and report.unexpected == ["head.0.weight"]
    with pytest.raises(ZooError):
        load_state_dict(m, sd, allow_missing=["fc.*"])


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Exploit(marker)}, evil)
    with pytest.raises(ZooError, match="refused to load"):
        read_foreign(evil)
    assert not marker.exists()
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ZooError, match="refused to load"):
        read_foreign(plain)
    assert not marker.exists()


def test_corrupt_and_truncated_files_are_clear_errors(tmp_path):
    m = zoo.create_model("knn_ood_resnet20")
    good = zoo.save_pretrained(m, tmp_path / "m") / "model.safetensors"
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ZooError, match="corrupt or truncated"):
        read_weights(cut)
    torch.save({"w": torch.zeros(100)}, tmp_path / "x.pth")
    half = tmp_path / "half.pth"
    half.write_bytes((tmp_path / "x.pth").read_bytes()[:200])
    with pytest.raises(ZooError, match="corrupt or truncated"):
        read_foreign(half)


def test_from_pretrained_rejects_wrong_architecture(tmp_path):
    out = zoo.save_pretrained(zoo.create_model("knn_ood_resnet56"), tmp_path / "m")
    cfg = (out / "config.json").read_text().replace("knn_ood_resnet56", "knn_ood_resnet20")
    (out / "config.json").write_text(cfg)
    with pytest.raises(ZooError, match=r"holds knn_ood_resnet56 weights but .*config.json names knn_ood_resnet20"):
        zoo.from_pretrained(out)


def test_a_wrong_file_lists_a_few_keys_and_how_many_more():
    m = zoo.create_model("knn_ood_resnet20")
    with pytest.raises(ZooError) as exc:
        load_state_dict(m, {f"net.{i}.weight": torch.zeros(1) for i in range(300)})
    msg = str(exc.value)
    assert len(msg) < 1500 and f"missing in file ({len(m.state_dict())})" in msg and "... and 292 more" in msg


@pytest.mark.parametrize("text, needle", [
    ("null", "needs an object with 'architecture'"),
    ('{"architecture": 5}', "needs an object with 'architecture'"),
    ('{"architecture": "knn_ood_resnet20", "model_args": [1]}', "'model_args' must be an object"),
])
def test_a_malformed_config_json_is_one_error(text, needle, tmp_path):
    out = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "m")
    (out / "config.json").write_text(text)
    with pytest.raises(ZooError, match=needle):
        zoo.from_pretrained(out)


def test_non_checkpoints_and_crc_corruption_are_named_as_such(tmp_path):
    text = tmp_path / "page.th"
    text.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(ZooError, match="not a PyTorch checkpoint") as exc:
        read_foreign(text)
    assert "would run code" not in str(exc.value)
    src = tmp_path / "x.pth"
    torch.save({"w": torch.arange(100000.0)}, src)
    data = bytearray(src.read_bytes())
    data[200000:200200] = bytes(200)  # inside the tensor's bytes: torch.load alone would not notice
    bad = tmp_path / "bad.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="fails its CRC check"):
        read_foreign(bad)


def test_a_saved_folder_is_verified_against_its_recorded_sha256(tmp_path):
    out = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "m")
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5000:] = bytes(5000)
    weights.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="does not match the sha256"):
        zoo.from_pretrained(out)


def test_saved_files_get_the_permissions_open_would_give(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    out = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "m")
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == dict.fromkeys(
        ("config.json", "model.safetensors", "README.md"), 0o666 & ~umask)


def test_model_card_front_matter_is_yaml_with_the_weights_licence(tmp_path):
    import yaml

    from zoo.hub import load_manifest

    out = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True), tmp_path / "m")
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert front["license"] == load_manifest()["knn_ood_resnet20.cifar10"]["license"]
    assert front["tags"] == ["knn_ood"]


def test_random_init_of_a_tag_records_no_tag():
    assert zoo.create_model("knn_ood_resnet20.cifar10").zoo_cfg["tag"] is None
    assert zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True).zoo_cfg["tag"] == "cifar10"


def test_timm_folder_reloads_without_its_initial_weights_file(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    init = tmp_path / "resnet18.safetensors"
    save_file(timm.create_model("resnet18").state_dict(), str(init))
    m = zoo.create_model("knn_ood_timm", model_name="resnet18", weights_file=str(init)).eval()
    out = zoo.save_pretrained(m, tmp_path / "m")
    init.unlink()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(zoo.from_pretrained(out).eval()(x), m(x))
    with pytest.raises(ZooError, match="does not exist"):
        zoo.create_model("knn_ood_timm", model_name="resnet18", weights_file=str(init))


def test_cifar10_weights_record_their_class_names_through_save_and_load(tmp_path):
    """The manifest's ``classes`` reach ``zoo_cfg`` and survive save/load, so that evaluation can match class folders
    to outputs by name (a folder of cats and dogs alone is labelled by name, not as classes 0 and 1)."""
    model = zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True)
    assert model.zoo_cfg["classes"][3] == "cat" and len(model.zoo_cfg["classes"]) == 10
    again = zoo.from_pretrained(zoo.save_pretrained(model, tmp_path / "m"))
    assert again.zoo_cfg["classes"] == model.zoo_cfg["classes"]
    assert "classes" not in zoo.create_model("knn_ood_resnet20").zoo_cfg  # random weights: no names


def test_create_model_from_a_folder_takes_its_config_as_from_pretrained_does(tmp_path):
    """``create_model(arch, pretrained=FOLDER)`` builds the model the folder's config.json describes (its
    ``model_args``, e.g. another normalisation, tag and classes), after the same sha256 check, with keyword
    arguments overriding it; a folder of another model is refused. It used to read the weights alone."""
    model = zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True, mean=[0.485, 0.456, 0.406],
                             std=[0.229, 0.224, 0.225]).eval()
    folder = zoo.save_pretrained(model, tmp_path / "m")
    built, loaded = zoo.create_model("knn_ood_resnet20", pretrained=str(folder)).eval(), zoo.from_pretrained(folder)
    assert built.zoo_cfg == loaded.zoo_cfg == model.zoo_cfg
    assert tuple(built.input_spec["mean"]) == tuple(loaded.input_spec["mean"]) == (0.485, 0.456, 0.406)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(built(x), model(x))
    overridden = zoo.create_model("knn_ood_resnet20", pretrained=folder, mean=[0.5] * 3)
    assert tuple(overridden.input_spec["mean"]) == (0.5,) * 3
    with pytest.raises(ZooError, match=f"{folder} holds a knn_ood_resnet20 model, not knn_ood_resnet56: load it with "
                                       f"zoo.from_pretrained"):
        zoo.create_model("knn_ood_resnet56", pretrained=folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + bytes(10))
    with pytest.raises(ZooError, match="does not match the sha256"):
        zoo.create_model("knn_ood_resnet20", pretrained=folder)


@pytest.mark.parametrize("kwargs, needle", [
    ({"metadata": {"when": object()}}, "must be JSON-serialisable for config.json (not JSON serialisable: object)"),
    ({"model_card": 5}, "model_card is the README.md text, a str; got int"),
])
def test_a_bad_save_argument_leaves_the_folders_model_as_it_was(tmp_path, kwargs, needle):
    """save_pretrained checks its arguments before writing: the weights of the model already in the folder are not
    replaced by those of a save that then fails (the folder would no longer match its config's sha256)."""
    folder = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ZooError, match=re.escape(needle)):
        zoo.save_pretrained(zoo.create_model("knn_ood_resnet56"), folder, **kwargs)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    zoo.from_pretrained(folder)
    with pytest.raises(ZooError, match="a part of that path is a file; give a folder path"):
        zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), folder / "config.json" / "sub")
