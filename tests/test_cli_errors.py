"""Bad input to `zoo list`, `zoo info`, `zoo bench --suite` and `zoo demo`: one clear error naming the thing and the
fix, before any work runs, and no output file written (or overwritten) for a run that measured nothing."""

import json

import pytest

import zoo
import zoo.demo
from zoo.cli import main
from zoo.errors import ZooError


def test_list_and_info_json_take_no_file_name(tmp_path, capsys):
    """``--json`` of list and info prints JSON and takes no value: a file given after it was a name pattern that
    matched nothing (``[]``, exit 0), or an unrecognised argument; it is refused with the redirection to use."""
    out = tmp_path / "l.json"
    assert main(["list", "--pretrained", "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"zoo: error: zoo list: --json takes no file name (it prints JSON to stdout); redirect it: "
                            f"`zoo list --pretrained --json > {out}`\n")
    assert main(["list", str(tmp_path / "x" / "x.json"), "--json"]) == 2
    assert f"redirect it: `zoo list --json > {tmp_path / 'x' / 'x.json'}`" in capsys.readouterr().err
    for args, redirect in [(["knn_ood", "--json", "out.json"], "zoo info knn_ood --json > out.json"),
                           (["--json", "out.json", "knn_ood"], "zoo info --json knn_ood > out.json")]:
        assert main(["info", *args]) == 2
        assert capsys.readouterr().err == (f"zoo: error: zoo info: --json takes no file name (it prints JSON to "
                                           f"stdout); redirect it: `{redirect}`\n")
    assert not out.exists() and not (tmp_path / "x").exists()
    assert main(["list", "--json", "knn_ood_resnet2"]) == 0  # a pattern after --json still is one
    assert list(json.loads(capsys.readouterr().out)) == ["knn_ood_resnet20"]


def test_a_suite_that_is_not_valid_yaml_or_is_a_folder_is_named(tmp_path, capsys):
    suite = tmp_path / "s4.yaml"
    suite.write_text("name: [unclosed\n")
    assert main(["bench", "--suite", str(suite), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (f"zoo: error: {suite} is not valid YAML (line 2, column 1: expected ',' or ']', "
                                       f"but got '<stream end>', while parsing a flow sequence started at line 1, "
                                       f"column 7): fix the file\n")
    assert main(["bench", "--suite", str(tmp_path), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (f"zoo: error: suite {tmp_path} is a folder: give a suite YAML file, one of "
                                       f"{suite}\n")
    assert main(["bench", "--suite", str(tmp_path / "empty"), "--device", "cpu"]) == 2  # does not exist
    (tmp_path / "empty").mkdir()
    assert main(["bench", "--suite", str(tmp_path / "empty"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.endswith("is a folder: give a suite YAML file, e.g. configs/bench/NAME.yaml\n")


def test_a_suite_whose_every_job_fails_writes_nothing(tmp_path, capsys):
    """A results file of failures only would replace an earlier one (a committed file, without --json) with nothing
    measured; the exit status stays 2."""
    suite, out = tmp_path / "s.yaml", tmp_path / "out.json"
    suite.write_text("name: t\nruns:\n  - {model: doorping_convnet, model_args: {width: 0}, iters: 1, warmup: 1}\n")
    assert main(["bench", "--suite", str(suite), "--device", "cpu", "--json", str(out)]) == 2
    assert f"zoo: error: every job of {suite} failed, so nothing was written; the first: " in capsys.readouterr().err
    assert not out.exists()
    out.write_text("earlier results\n")
    assert main(["bench", "--suite", str(suite), "--device", "cpu", "--json", str(out)]) == 2
    assert out.read_text() == "earlier results\n"


def test_a_misspelt_suite_model_fails_before_any_job_runs(tmp_path, capsys):
    suite, out = tmp_path / "s.yaml", tmp_path / "out.json"
    suite.write_text("name: t\nruns:\n  - {model: doorping_convnet, model_args: {width: 4}, batch_sizes: [2], "
                     "iters: 1, warmup: 1}\n  - {model: knn_od_resnet20}\n")
    assert main(["bench", "--suite", str(suite), "--device", "cpu", "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # the first job did not run
    assert captured.err.startswith(f"zoo: error: {suite}: run 1 (knn_od_resnet20): unknown model 'knn_od_resnet20' "
                                   f"(did you mean knn_ood_resnet20")
    assert not out.exists()
    suite.write_text("name: t\nruns:\n  - {model: knn_ood_resnet20.cifar1}\n  - {model: no/such/folder}\n")
    with pytest.raises(ZooError, match=r"run 0 \(knn_ood_resnet20.cifar1\): no weights named "
                                       r"'knn_ood_resnet20.cifar1' \(did you mean knn_ood_resnet20.cifar10"):
        zoo.bench.suite.load_suite(suite)


def test_demo_refuses_a_file_workdir_and_an_empty_paper_id(tmp_path, capsys, monkeypatch):
    """Both used to run demos first: a file --workdir failed each paper's demo after its training, and an empty
    --only ran every paper's demo (minutes)."""
    monkeypatch.setattr(zoo.demo, "load_object", lambda target: pytest.fail(f"a demo ran: {target}"))
    workdir = tmp_path / "results.txt"
    workdir.write_text("keep\n")
    assert main(["demo", "--workdir", str(workdir), "--only", "knn_ood"]) == 2
    assert capsys.readouterr().err == f"zoo: error: --workdir {workdir} is a file: give a folder path\n"
    assert workdir.read_text() == "keep\n"
    for only in ["", "knn_ood,", "knn_ood,,doorping"]:
        assert main(["demo", "--workdir", str(tmp_path / "w"), "--only", only]) == 2
        assert capsys.readouterr().err.startswith(f"zoo: error: --only has an empty paper id ({only!r}): give "
                                                  f"comma-separated paper ids (papers with a demo: ")
    assert not (tmp_path / "w").exists()


def test_a_broken_model_folder_is_reported_by_info_and_on_loading(tmp_path, capsys):
    """`zoo info` showed a folder without its weights, or naming an unregistered architecture, as if it were fine;
    loading the latter said its two files came from different models."""
    good = zoo.save_pretrained(zoo.create_model("doorping_convnet", width=4), tmp_path / "good")
    assert main(["info", str(good)]) == 0 and "architecture: doorping_convnet" in capsys.readouterr().out
    no_weights = zoo.save_pretrained(zoo.create_model("doorping_convnet", width=4), tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    assert main(["info", str(no_weights)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"zoo: error: {no_weights} is not a complete zoo model folder: model.safetensors is "
                            f"missing; save the model again (zoo.save_pretrained), or copy the whole folder\n")
    config = good / "config.json"
    config.write_text(config.read_text().replace('"doorping_convnet"', '"doorping_convnt"'))
    error = (f"unknown architecture 'doorping_convnt' in {config} (did you mean doorping_convnet, doorping_convnet_in, "
             f"doorping_alexnet?); correct its 'architecture' (see `zoo list`) or save the model again")
    assert main(["info", str(good)]) == 2
    assert capsys.readouterr().err == f"zoo: error: {error}\n"
    assert main(["bench", str(good), "--device", "cpu", "--iters", "1", "--batch-size", "1"]) == 2
    assert capsys.readouterr().err == f"zoo: error: {error}\n"
    with pytest.raises(ZooError) as exc:
        zoo.from_pretrained(good)
    assert str(exc.value) == error
