"""zoo.release.publish: content-addressed weights beside a manifest, one entry per key, replaced on republishing."""

import json

import pytest
import torch
import yaml

import zoo
from zoo.hub import fetch, load_manifest
from zoo.release import HEADER, publish

RESULT = [{"task": "classification", "dataset": "x", "split": "test", "metric": "top1", "paper_value": None,
           "zoo_value": 0.5, "command": "zoo eval ..."}]


def test_publish_twice_under_one_key_replaces_file_and_entry(tmp_path, monkeypatch):
    manifest = tmp_path / "ck" / "manifest.yaml"
    manifest.parent.mkdir()
    monkeypatch.setenv("ZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    folders = [zoo.save_pretrained(zoo.create_model("knn_ood_cifar_resnet", depth=20), tmp_path / f"m{i}")
               for i in range(2)]  # two random inits: different weights
    other = publish(folders[0], "knn_ood_resnet20.other", license="MIT", recipe="r", results=[],
                    manifest=manifest)

    first = publish(folders[0], "knn_ood_resnet20.test", license="MIT", recipe="r0", results=RESULT,
                    manifest=manifest, origin={"repo": "https://example.org"})
    assert first["file"].startswith("knn_ood_resnet20.test-") and (manifest.parent / first["file"]).is_file()
    # the generic architecture's depth is implied by the key's name: resnet20 gets no depth
    assert zoo.from_pretrained(folders[0]).zoo_cfg["model_args"] == {"depth": 20}
    assert first["model_args"] == {} and first["urls"] == [f"file:{first['file']}"]
    assert first["origin"] == {"repo": "https://example.org"} and first["results"] == RESULT

    second = publish(folders[1], "knn_ood_resnet20.test", license="MIT", recipe="r1", results=RESULT,
                     manifest=manifest, default=True)
    assert second["sha256"] != first["sha256"] and second["file"] != first["file"]
    assert not (manifest.parent / first["file"]).exists()  # the replaced file is gone...
    assert (manifest.parent / other["file"]).exists()  # ...the other key's stays
    assert sorted(p.name for p in manifest.parent.glob("*.safetensors")) == sorted([other["file"],
                                                                                    second["file"]])
    text = manifest.read_text()
    assert text.startswith(HEADER)
    entries = yaml.safe_load(text)
    assert list(entries) == ["knn_ood_resnet20.other", "knn_ood_resnet20.test"]
    e = entries["knn_ood_resnet20.test"]
    assert e["recipe"] == "r1" and e["default"] is True and "origin" not in e and e["results"] == RESULT
    assert e["size"] == (manifest.parent / e["file"]).stat().st_size
    assert load_manifest()["knn_ood_resnet20.test"] == e

    # the entry verifies and loads strictly, as the second model
    assert fetch("knn_ood_resnet20.test").read_bytes() == (folders[1] / "model.safetensors").read_bytes()
    m = zoo.create_model("knn_ood_resnet20.test", pretrained=True)
    want = zoo.from_pretrained(folders[1]).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in m.state_dict().items())


def test_publish_fp16_and_a_key_without_tag(tmp_path):
    manifest = tmp_path / "manifest.yaml"
    folder = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "m")
    e = publish(folder, "knn_ood_resnet20.half", license="MIT", recipe="r", results=[], manifest=manifest,
                fp16=True)
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / e["file"]))
    assert {v.dtype for v in tensors.values()} <= {torch.float16, torch.int64}
    from zoo.errors import ZooError

    with pytest.raises(ZooError, match="needs a tag"):
        publish(folder, "knn_ood_resnet20", license="MIT", recipe="r", results=[], manifest=manifest)


@pytest.mark.parametrize("extra, needle", [(["--results", "[{"], "--results is not valid JSON"),
                                           (["--results", "[]", "--key", "knn_ood_resnet20"], "needs a tag")])
def test_release_command_errors_are_one_usage_line(extra, needle, tmp_path, capsys):
    from zoo.release import main

    folder = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "m")
    with pytest.raises(SystemExit) as exc:
        main([str(folder), "--key", "knn_ood_resnet20.t", "--license", "MIT", "--recipe", "r", *extra])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and needle in err and "Traceback" not in err


def test_a_result_is_checked_against_its_source_file(tmp_path, monkeypatch):
    """JSON (dotted key, mean over files, scale) and CSV (last value of a column) sources; publish refuses a number
    its source does not hold."""
    from zoo.errors import ZooError
    from zoo.results import check_result, stated_tolerance, written_to

    (tmp_path / "a.json").write_text('{"generated": {"nds": 0.27237}}')
    (tmp_path / "b.json").write_text('{"generated": {"nds": 0.27243}}')
    (tmp_path / "m.csv").write_text("epoch,val/loss\n0,0.9\n1,\n2,0.82677\n")
    mean = {"metric": "NDS", "zoo_value": 27.24, "source": {"files": ["a.json", "b.json"], "key": "generated.nds",
                                                           "scale": 100}}
    assert check_result(mean, tmp_path) == pytest.approx(27.24)
    assert check_result({"zoo_value": 0.8268, "source": {"files": ["m.csv"], "key": "val/loss"}}, tmp_path) == \
        pytest.approx(0.82677)
    assert check_result({"zoo_value": 0.1}, tmp_path) is None
    assert stated_tolerance(0.8103) == pytest.approx(5e-5) and stated_tolerance(27.2) == pytest.approx(0.05)
    assert stated_tolerance(0.0) == 5e-5  # YAML's 0.0 may have been 0.0000
    # YAML reads 0.6300 back as 0.63: a fraction is held to its 4th decimal, a number in per cent to its 2nd
    assert written_to(0.63) == pytest.approx(5e-5) and written_to(46.3, scale=100) == pytest.approx(5e-3)
    assert written_to(9.3075) == pytest.approx(5e-5) and written_to(0.83, scale=100) == pytest.approx(5e-3)
    (tmp_path / "asr.json").write_text('{"asr": 0.634}')
    with pytest.raises(ZooError, match="zoo_value 0.63 but its source reads 0.634"):
        check_result({"zoo_value": 0.63, "source": {"files": ["asr.json"], "key": "asr"}}, tmp_path)
    for result, needle in [({**mean, "zoo_value": 27.25}, "source reads 27.24"),
                           ({**mean, "source": {"files": ["a.json"], "key": "generated.map"}}, "no key"),
                           ({**mean, "source": {"files": ["c.json"], "key": "nds"}}, "does not exist"),
                           ({**mean, "source": {"files": ["m.csv"], "key": "top1"}}, "no column"),
                           ({**mean, "source": {"key": "nds"}}, "needs 'files'")]:
        with pytest.raises(ZooError, match=needle):
            check_result(result, tmp_path)

    monkeypatch.setattr("zoo.release.repo_root", lambda: tmp_path)
    folder = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "m")
    with pytest.raises(ZooError, match="source reads"):
        publish(folder, "knn_ood_resnet20.t", license="MIT", recipe="r", results=[{**mean, "zoo_value": 30.0}],
                manifest=tmp_path / "manifest.yaml")
    assert not (tmp_path / "manifest.yaml").exists()


def test_a_source_key_indexes_or_selects_in_a_json_list(tmp_path):
    """An eval's list of rows (kNN-OOD's ``average``: one per scorer) is read by position or by matching fields;
    a selector that matches no row, or several, is an error naming them."""
    from zoo.errors import ZooError
    from zoo.results import check_result

    rows = [{"scorer": "knn", "ood": "a", "fpr95": 0.3789}, {"scorer": "msp", "ood": "a", "fpr95": 0.7982},
            {"scorer": "msp", "ood": "b", "fpr95": 0.5}]
    (tmp_path / "ood.json").write_text(json.dumps({"average": rows}))

    def result(key, value):
        return {"metric": "fpr95", "zoo_value": value, "source": {"files": ["ood.json"], "key": key}}

    assert check_result(result("average.scorer=knn.fpr95", 0.3789), tmp_path) == pytest.approx(0.3789)
    assert check_result(result("average.scorer=msp,ood=b.fpr95", 0.5), tmp_path) == pytest.approx(0.5)
    assert check_result(result("average.1.fpr95", 0.7982), tmp_path) == pytest.approx(0.7982)
    for key, needle in [("average.scorer=msp.fpr95", "2 items of the list match 'scorer=msp'"),
                        ("average.scorer=energy.fpr95", "0 items"), ("average.3.fpr95", "missing '3'"),
                        ("average.knn.fpr95", "missing 'knn'")]:
        with pytest.raises(ZooError, match=needle):
            check_result(result(key, 0.5), tmp_path)
