"""The `zoo` command, driven in-process (one Python start for all tests) except where a real process matters."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import VERBS, main
from zoo.errors import ZooError

SMALL = "configs/knn_ood/resnet20_cifar10_small.yaml"


def test_help_lists_every_verb(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(v in out for v in VERBS)


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_has_help(verb, capsys):
    """``zoo VERB --help`` prints the verb's usage and exits 0 (argparse and LightningCLI exit through
    SystemExit(0))."""
    try:
        code = main([verb, "--help"])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "usage:" in captured.out and "--help" in captured.out and "Traceback" not in captured.err


def _tiny_manifest(tmp_path, monkeypatch):
    """A manifest in ``tmp_path/ck`` with one entry whose weights file lies beside it; a fresh cache."""
    import hashlib

    import yaml

    ck = tmp_path / "ck"
    ck.mkdir()
    weights = ck / "tiny.bin"
    weights.write_bytes(b"weights" * 100)
    entry = {"file": "tiny.bin", "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "size": 700,
             "urls": ["file:tiny.bin"], "license": "MIT", "recipe": "test", "results": []}
    (ck / "manifest.yaml").write_text(yaml.safe_dump({"knn_ood_resnet20.tiny": entry}))
    monkeypatch.setenv("ZOO_MANIFEST", str(ck / "manifest.yaml"))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    return weights


def test_verify_passes_then_fails_after_tampering(tmp_path, monkeypatch, capsys):
    weights = _tiny_manifest(tmp_path, monkeypatch)
    assert main(["verify"]) == 0
    assert capsys.readouterr().out.strip() == "knn_ood_resnet20.tiny: ok"
    cached = tmp_path / "home" / "weights" / "tiny.bin"
    cached.write_bytes(b"tampered")  # a corrupt cache copy is reported (exit 2), then fetched again
    assert main(["verify"]) == 2 and cached.read_bytes() == weights.read_bytes()
    captured = capsys.readouterr()
    assert f"the cached copy {cached} did not match its sha256 (corrupt or tampered)" in captured.out
    assert captured.err == ("zoo: error: 1 manifest entry was corrupt in the cache and has been replaced with a "
                            "verified copy\n")
    assert main(["verify", "knn_ood_resnet20"]) == 0  # a name: its default weights only
    assert capsys.readouterr().out.strip() == "knn_ood_resnet20.tiny: ok"
    assert main(["verify", "knn_ood_resnet20.nosuch"]) == 2
    assert "no weights named 'knn_ood_resnet20.nosuch'" in capsys.readouterr().err
    weights.write_bytes(b"weights" * 99 + b"WEIGHTS")  # same size, other bytes
    cached.unlink()
    assert main(["verify"]) == 2
    captured = capsys.readouterr()
    assert "does not match the manifest's" in captured.out
    assert captured.err == "zoo: error: 1 manifest entry failed verification\n"


def test_a_real_closed_pipe_ends_quietly(tmp_path):
    """`zoo list | head -1` through a real pipe, several times (a write into the closed pipe drops the buffer, so
    the flush that follows succeeds: the pipe itself must say that its reader is gone)."""
    cmd = f"{sys.executable} -m zoo list 2>>{tmp_path / 'err'} | head -1"
    for _ in range(4):
        out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
        assert out.stdout.strip()
    assert "Broken pipe" not in (tmp_path / "err").read_text()


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`zoo list | head -1`: the reader closes the pipe; zoo stops with 141 (128 + SIGPIPE) and no error line."""
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["list"]) == 141
    assert capsys.readouterr().err == ""
    monkeypatch.undo()

    def worker_pipe_breaks(*args, **kwargs):  # a pipe other than stdout: reported, not swallowed
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("zoo.registry.list_models", worker_pipe_breaks)
    assert main(["list"]) == 2
    assert "zoo: error: [Errno 32] Broken pipe" in capsys.readouterr().err


def test_debug_flag_and_env_reraise_user_errors(monkeypatch, capsys):
    from zoo.errors import ZooError

    assert main(["info", "knn_ood_resnet2"]) == 2
    with pytest.raises(ZooError, match="did you mean"):
        main(["--debug", "info", "knn_ood_resnet2"])
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(ZooError, match="did you mean"):
        main(["info", "knn_ood_resnet2"])


def test_download_without_names_is_a_user_error(capsys):
    assert main(["download"]) == 2
    err = capsys.readouterr().err
    assert "name at least one name.tag, or --all" in err and len(err.strip().splitlines()) == 1


def test_demo_reports_every_paper_then_fails_naming_the_broken_one(tmp_path, monkeypatch, capsys):
    """`zoo.demo.main` with one paper's demo raising: the other papers still run, the table has a FAILED row for
    it with the error, and the demo exits naming it; limited to a good paper it returns its rows."""
    import zoo.demo
    from zoo.registry import list_papers

    papers = [p for p in list_papers() if p.demo]
    broken = papers[1]

    def stub(workdir):
        return [{"step": f"stub {workdir.name}", "data": "none", "result": "fine", "seconds": 0.25}]

    def boom(workdir):
        raise RuntimeError("demo exploded")

    monkeypatch.setattr(zoo.demo, "load_object", lambda path: boom if path == broken.demo else stub)
    with pytest.raises(SystemExit) as exc:
        zoo.demo.main(str(tmp_path))
    assert str(exc.value.code) == f"demo failed for: {broken.id}"
    captured = capsys.readouterr()
    assert "RuntimeError: demo exploded" in captured.err  # the traceback
    lines = captured.out.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.split()[:2] == ["paper", "step"]) + 1:]
    failed = [line for line in table if "FAILED" in line]
    assert len(failed) == 1 and failed[0].split()[0] == broken.id and "RuntimeError('demo exploded')" in failed[0]
    for p in papers:
        if p is not broken:
            assert any(line.split()[:3] == [p.id, "stub", p.id] for line in table), p.id
    rows = zoo.demo.main(str(tmp_path), only=[papers[0].id])
    assert rows == [{"paper": papers[0].id, "step": f"stub {papers[0].id}", "data": "none", "result": "fine",
                     "seconds": 0.25}]


def test_list_and_info(capsys):
    assert main(["list", "knn_ood_resnet*"]) == 0
    out = capsys.readouterr().out
    assert "knn_ood_resnet20" in out and "weights: cifar10" in out
    assert main(["list", "--pretrained", "--json"]) == 0
    assert "knn_ood_resnet56.cifar10" in json.loads(capsys.readouterr().out)
    assert main(["info", "knn_ood_resnet20.cifar10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paper"]["venue"] == "ICML 2022"


def test_list_of_a_tag_pattern_without_pretrained_points_to_it(capsys):
    assert main(["list", "*.cifar10"]) == 0
    assert "no models match '*.cifar10'; weights entries (name.tag) are listed with --pretrained: zoo list " \
           "--pretrained '*.cifar10'" in capsys.readouterr().out
    assert main(["list", "--pretrained", "*.cifar10"]) == 0
    assert "knn_ood_resnet20.cifar10" in capsys.readouterr().out
    assert main(["list", "zzz"]) == 0
    assert capsys.readouterr().out.strip() == "no models match 'zzz'"
    assert main(["list", "knn_od"]) == 0  # a misspelt paper or model name
    assert capsys.readouterr().out.strip().startswith("no models match 'knn_od' (did you mean knn_ood, ")


def test_list_of_a_data_prefix_points_to_zoo_info(capsys):
    """DOORPING's distilled sets are manifest entries but not models: a pattern that matches only them says so."""
    hint = "doorping_distilled.* entries are data, not models (distilled sets): zoo info doorping_distilled"
    assert main(["list", "doorping_distilled"]) == 0
    assert capsys.readouterr().out.strip() == f"no models match 'doorping_distilled'; {hint}"
    assert main(["list", "--pretrained", "doorping"]) == 0
    assert capsys.readouterr().out.strip() == f"no weights match 'doorping'; {hint}"


def test_convert_reads_a_relative_src_from_the_data_folder(tmp_path, monkeypatch, capsys):
    """The manifest's recipes name converted checkpoints by their place in ZOO_DATA_DIR; a relative --src that is
    not in the working directory is read from there (and said so), one that is in neither stays an error."""
    data = tmp_path / "data"
    (data / "ckpts").mkdir(parents=True)
    sd = zoo.create_model("knn_ood_cifar_resnet", depth=20).state_dict()  # in akamaster's names, as they save it
    torch.save({"state_dict": {"module." + k.replace("fc.", "linear."): v for k, v in sd.items()
                               if not k.endswith("num_batches_tracked")}}, data / "ckpts" / "r20.th")
    monkeypatch.setenv("ZOO_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "knn_ood", "--src", "ckpts/r20.th", "--out", str(tmp_path / "out")]) == 0
    assert f"--src ckpts/r20.th read from the data folder: {data / 'ckpts' / 'r20.th'}" in capsys.readouterr().err
    assert zoo.model_info(str(tmp_path / "out"))["metadata"]["converted_from"] == "r20.th"
    assert main(["convert", "knn_ood", "--src", "ckpts/none.th", "--out", str(tmp_path / "out2")]) == 2
    assert "ckpts/none.th" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["info", "knn_ood_resnet2"], "did you mean"),
    (["eval", "/no/such/folder", "--task", "classification", "--data", "x"], "/no/such/folder does not exist"),
    (["info", "/no/such/folder"], "/no/such/folder does not exist"),
    (["bench", "/no/such/folder"], "/no/such/folder does not exist"),
    (["bench", "knn_ood_resnet20", "--batch-size", "0"], "argument --batch-size: 0 is less than 1"),
    (["bench", "knn_ood_resnet20", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["eval", "knn_ood_resnet20", "--task", "ood", "--id-data", "x", "--ood", "y", "--ood-subset", "0"],
     "argument --ood-subset: 0 is less than 1"),
    (["eval", "knn_ood_resnet20", "--task", "ood", "--id-data", "x", "--ood", "y", "--scorers", ","],
     "no scorer named"),
    (["convert", "knn_ood", "--src", "/no/such.th", "--out", "no_such_out"], "does not exist"),
    (["convert", "knn_ood", "--src", "README.md", "--out", "no_such_out"], "not a PyTorch checkpoint"),
    (["convert", "knn_ood", "--src", "zoo", "--out", "no_such_out"], "checkpoint zoo is a folder: give the"),
    (["convert", "knn_ood", "--src", "README.md", "--out", "zoo"], "--out zoo already exists and is not an empty"),
    (["fit", "--config", SMALL, "--ckpt_path", "/no/such.ckpt", "--trainer.fast_dev_run", "1"],
     "--ckpt_path /no/such.ckpt does not exist"),
    (["fit", "--config", SMALL, "--ckpt_path", "last", "--trainer.fast_dev_run", "1"],
     "--ckpt_path last resumes the run in --trainer.default_root_dir"),
    (["fit", "--config", SMALL, "--trainer.accelerator", "cuda"] if not torch.cuda.is_available() else ["nope"],
     "zoo fit: " if not torch.cuda.is_available() else "unknown verb"),
    (["fit", "--config", SMALL, "--trainer.max_epochs", "-3"], "`max_epochs` must be a non-negative integer or -1"),
    (["fit", "--config", SMALL, "--ckpt_path", "README.md"], "--ckpt_path README.md is not a readable Lightning "
                                                              "checkpoint (not a zip-format torch.save file"),
    (["demo", "--only", "knn_ood,nosuchpaper"], "no demo for nosuchpaper; papers with a demo: "),
    (["bench", "--suite", "configs/bench/cpu-smoke.yaml", "--mode", "train", "--compile"],
     "drop --mode, --compile, or drop --suite"),
    (["bench", "knn_ood_resnet20", "--suite", "configs/bench/cpu-smoke.yaml"],
     "drop a MODEL argument, or drop --suite"),
    (["download", "knn_ood_resnet2"], "did you mean"),
    (["convert", "nopaper", "--src", "a", "--out", "b"], "unknown paper"),
    (["bench", "knn_ood_resnet20", "--iters", "0"], "argument --iters: 0 is less than 1"),
    (["eval", "cmt_tiny.synthetic", "--task", "det3d", "--data", "x", "--score-threshold", "2"],
     "argument --score-threshold: 2.0 is not between 0 and 1"),
    (["bench", "knn_ood_resnet20", "--iter", "3"], "unrecognized arguments: --iter"),  # no abbreviations
    (["eval", "knn_ood_resnet20", "--ta", "ood"], "zoo eval: unrecognized arguments: --ta ood; did you mean --task?"),
    # a mistyped option is named before the required one it leaves missing
    (["eval", "knn_ood_resnet20.cifar10", "--task", "classification", "--dta", "cifar10_jpeg"],
     "zoo eval: unrecognized arguments: --dta cifar10_jpeg; did you mean --data? (see `zoo eval --help`)"),
    (["eval", "knn_ood_resnet20.cifar10", "--task", "classification"], "the following arguments are required: --data"),
    (["bench", "knn_ood_resnet20", "--iter", "3", "--devic", "cpu"],
     "unrecognized arguments: --iter 3 --devic cpu; did you mean --iters (for --iter), --device (for --devic)?"),
    (["fit", "--config", SMALL, "--model.init_args.model", "knn_ood_resnet2", "--trainer.fast_dev_run", "1"],
     "did you mean"),
    (["fit", "--config", "configs/tinymim/cifar10_distill.yaml", "--model.init_args.teacher", "/no/such/teacher",
      "--trainer.fast_dev_run", "1"], "is not a zoo model folder"),
    (["eval", "knn_ood_resnet20.cifar10", "--task", "classificaton", "--data", "x"],
     "unknown eval task 'classificaton' (did you mean classification?)"),
    (["eval", "knn_ood_resnet20.cifar10", "--id-data", "x", "--ood", "y"],
     "zoo eval: --task is required (--id-data, --ood belong to --task ood)"),
])
def test_user_errors_are_one_line_without_traceback(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_verb_suggests(capsys):
    assert main(["lst"]) == 2
    assert "did you mean list" in capsys.readouterr().err


def test_print_config_resolves_subclasses(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", SMALL, "--print_config"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: zoo.training.classification.ClassifierModule" in out and "train_subset: 10000" in out


def test_nested_constructor_dict_keys_keep_their_types(capsys):
    """``--model.init_args.model_args.KEY VALUE`` must reach the model as a number, not the string "VALUE"."""
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", SMALL, "--model.init_args.model_args.num_classes", "7", "--print_config"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "num_classes: 7\n" in out and "'7'" not in out


def test_fit_fast_dev_run_gets_its_own_folder_and_exports(shapes_data, runs_dir):
    args = ["fit", "--config", SMALL, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "16", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0
    assert main(args) == 0
    runs = sorted((runs_dir / "resnet20_cifar10_small").iterdir())
    assert len(runs) == 2  # each run has its own folder
    run = runs[0]
    assert list(run.rglob("config.yaml")) and (run / "checkpoints" / "last.ckpt").exists()
    model = zoo.from_pretrained(run / "model")
    assert model.zoo_cfg["architecture"] == "knn_ood_resnet20"


@pytest.mark.parametrize("extra, needle", [
    (["--config", "configs/knn_ood/nope.yaml"], "File does not exist"),
    (["--config", "configs/knn_ood"], "Path is not a file"),
    (["--config", SMALL, "--model.init_args.nope", "3"], "Option 'nope' is not accepted"),
    (["--config", SMALL, "--trainer.max_epochs", "x"], "Given value: x"),
    (["--config", SMALL, "--model.init_args.lr", "fast"], "Got value: fast"),
    (["--config", SMALL, "--trainer.max_step", "1"],  # no abbreviations
     "unrecognized arguments: --trainer.max_step 1; did you mean --trainer.max_steps?"),
    (["--config", SMALL, "--model.init_args.lrr", "1"], "Option 'lrr' is not accepted; did you mean lr?"),
])
def test_fit_usage_errors_are_one_line(extra, needle, capsys):
    assert main(["fit", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: zoo fit: ") and needle in err and err.count("\n") == 1 and "usage" not in err


@pytest.mark.parametrize("override, needle", [
    ("trainer:\n  max_epoch: 1\n", "does not accept option 'trainer.max_epoch'; set in {file}; did you mean "
                                    "trainer.max_epochs? (see `zoo fit --help`)"),
    ("data:\n  init_args:\n    batch_sise: 8\n", "Option 'batch_sise' is not accepted; set in {file}; did you mean "
                                                 "batch_size? (see `zoo fit --help`)"),
    ("model:\n  init_args:\n    zzzzzz: 8\n", "Option 'zzzzzz' is not accepted; set in {file} (see"),  # nothing close
])
def test_fit_names_the_config_file_with_an_unaccepted_option_and_its_closest_name(override, needle, tmp_path, capsys):
    """LightningCLI says neither which of the ``--config`` files holds a mistyped option nor what was meant."""
    file = tmp_path / "override.yaml"
    file.write_text(override)
    assert main(["fit", "--config", SMALL, "--config", str(file)]) == 2
    err = capsys.readouterr().err
    assert needle.format(file=file) in err and err.count("\n") == 1
    assert err.count("set in") == ("set in" in needle)  # the recipe, which does not set it, is not named


def test_a_demos_cli_without_subcommands_keeps_its_usage_error_and_gets_the_hint():
    """The papers' demos build the CLI with ``run=False`` (no subcommands): the hint reads that parser's options."""
    import argparse

    from zoo.training.cli import ZooLightningCLI

    with pytest.raises(argparse.ArgumentError, match="unrecognized arguments: --trainer.max_epoch") as exc:
        ZooLightningCLI(run=False, args=["--config", SMALL, "--trainer.max_epoch", "1"])
    assert exc.value.zoo_hint == "; did you mean --trainer.max_epochs?"


def test_fit_names_its_run_folder_and_keeps_a_recipes_logs_in_it(shapes_data, tmp_path, monkeypatch, capsys):
    """A logger's relative save_dir (the drums CPU recipes' ``lightning_logs``) lands in the run folder, not in the
    directory zoo was started from."""
    config = str(Path(SMALL).resolve())
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "run"
    assert main(["fit", "--config", config, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers",
                 "0", "--data.init_args.batch_size", "16", "--trainer.max_steps", "1", "--trainer.limit_val_batches",
                 "1", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root),
                 "--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", "csv_logs"]) == 0
    assert f"zoo: run folder {root}" in capsys.readouterr().err
    assert list((root / "csv_logs").rglob("metrics.csv")) and not (tmp_path / "csv_logs").exists()


def test_a_fit_failing_at_data_setup_removes_the_empty_run_folder_it_made(runs_dir, tmp_path, capsys):
    """A wrong data path is found at the data's setup, after the run folder was named: no empty
    ``runs/<config>/<timestamp>/lightning_logs/version_0`` is left; a folder the user gave is left alone."""
    args = ["fit", "--config", SMALL, "--data.init_args.data", str(tmp_path / "nope"), "--data.init_args.num_workers",
            "0", "--trainer.enable_progress_bar", "false"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "zoo: run folder" in err and "nope" in err.splitlines()[-1]
    assert not (runs_dir / "resnet20_cifar10_small").exists()
    given = tmp_path / "mine"
    assert main([*args, "--trainer.default_root_dir", str(given)]) == 2
    assert given.is_dir()


def test_fit_prints_no_lightning_advertisement_or_tensorboard_notice(tmp_path):
    env = {**os.environ, "ZOO_RUNS_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "zoo", "fit", "--config", SMALL, "--data.init_args.data", str(tmp_path / "nope"),
           "--trainer.enable_progress_bar", "false"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2 and "zoo: run folder" in out.stderr and "nope" in out.stderr, out.stderr[-2000:]
    assert "litlogger" not in out.stderr and "tensorboardX" not in out.stderr


def test_resume_from_last_checkpoint(shapes_data, tmp_path):
    root = tmp_path / "run"
    base = ["--config", SMALL, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "16", "--trainer.limit_val_batches", "1", "--trainer.default_root_dir",
            str(root), "--trainer.enable_progress_bar", "false"]
    assert main(["fit", *base, "--trainer.max_steps", "2"]) == 0
    assert main(["fit", *base, "--trainer.max_steps", "4", "--ckpt_path", "last"]) == 0
    import torch

    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4


def test_last_resumes_the_newest_checkpoint_of_a_run_without_last_ckpt(shapes_data, tmp_path, monkeypatch):
    """``--checkpoint.save_last false`` writes no last.ckpt; ``--ckpt_path last`` then resumes the run's newest
    checkpoint (it used to start afresh, Lightning only warning): the second fit trains the second epoch only."""
    from zoo.training.resume import SeededTraining

    root = tmp_path / "run"
    base = ["--config", SMALL, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "16", "--trainer.limit_val_batches", "1", "--trainer.default_root_dir",
            str(root), "--trainer.enable_progress_bar", "false", "--checkpoint.save_last", "false"]
    steps, seed_step = [], SeededTraining.on_train_batch_start
    monkeypatch.setattr(SeededTraining, "on_train_batch_start",
                        lambda self, trainer, *a: steps.append(trainer.current_epoch) or seed_step(self, trainer, *a))
    assert main(["fit", *base, "--trainer.max_epochs", "1"]) == 0
    assert not (root / "checkpoints" / "last.ckpt").exists() and set(steps) == {0}
    first = len(steps)
    assert main(["fit", *base, "--trainer.max_epochs", "2", "--ckpt_path", "last"]) == 0
    assert steps[first:] == [1] * first


def test_a_run_killed_midway_resumes_from_its_last_epoch(shapes_data, tmp_path, monkeypatch):
    """A kill skips Lightning's end-of-training save; the per-epoch checkpoint must already be there, also when
    the epochs are not validated (the CMT recipes validate every 20th)."""
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint

    root = tmp_path / "run"
    base = ["--config", SMALL, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "16", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches",
            "1", "--trainer.check_val_every_n_epoch", "5", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false"]
    with monkeypatch.context() as m:
        m.setattr(ModelCheckpoint, "on_train_end", lambda *args: None)
        assert main(["fit", *base, "--trainer.max_epochs", "2"]) == 0
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 4
    assert len(list((root / "checkpoints").glob("*.ckpt"))) == 2  # one epoch file and the last.ckpt link to it
    assert main(["fit", *base, "--trainer.max_epochs", "3", "--ckpt_path", "last"]) == 0
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6


def _fit_args(shapes_data, root, *extra):
    return ["fit", "--config", SMALL, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "16", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar",
            "false", "--trainer.default_root_dir", str(root), *extra]


def test_resuming_needs_a_checkpoint_of_the_same_model_and_a_fresh_fit_a_fresh_folder(shapes_data, tmp_path, capsys):
    root = tmp_path / "run"
    assert main(_fit_args(shapes_data, tmp_path / "typo", "--trainer.max_steps", "1", "--ckpt_path", "last")) == 2
    assert "holds no checkpoint to resume" in capsys.readouterr().err  # Lightning would start afresh
    assert main(_fit_args(shapes_data, root, "--trainer.max_steps", "2")) == 0
    assert main(_fit_args(shapes_data, root, "--trainer.max_steps", "2")) == 2
    assert "already holds a run" in capsys.readouterr().err  # it would have replaced that run's model/
    resnet56 = ["--model.init_args.model", "knn_ood_resnet56", "--trainer.max_steps", "4"]
    assert main(_fit_args(shapes_data, root, *resnet56, "--ckpt_path", "last")) == 2
    assert "holds a knn_ood_resnet20 model, but the config names knn_ood_resnet56" in capsys.readouterr().err
    ckpt = str(root / "checkpoints" / "last.ckpt")
    assert main(_fit_args(shapes_data, tmp_path / "new", *resnet56, "--ckpt_path", ckpt)) == 2
    assert "holds a knn_ood_resnet20 model" in capsys.readouterr().err
    assert main(["fit", "--config", "configs/tinymim/cifar10_distill.yaml", "--ckpt_path", ckpt]) == 2
    assert "was written by zoo.training.classification.ClassifierModule, but the config trains" in \
        capsys.readouterr().err


def test_a_fit_without_a_training_step_exports_nothing(shapes_data, tmp_path, capsys):
    assert main(_fit_args(shapes_data, tmp_path / "run", "--trainer.max_epochs", "0")) == 0
    assert "no training step ran" in capsys.readouterr().err and not (tmp_path / "run" / "model").exists()


def test_an_interrupted_fit_saves_its_step_says_how_to_resume_and_resumes(shapes_data, tmp_path, capsys,
                                                                           monkeypatch):
    """Ctrl-C midway through a one-epoch run kept nothing (checkpoints came at epoch ends) and exited 1."""
    from conftest import interrupt_at

    from zoo.training.classification import ClassifierModule

    root = tmp_path / "run"
    step = ClassifierModule.training_step
    with monkeypatch.context() as m:
        m.setattr(ClassifierModule, "training_step", interrupt_at(step, 3))
        assert main(_fit_args(shapes_data, root, "--trainer.max_epochs", "1")) == 130
    err = capsys.readouterr().err
    assert f"fit interrupted (Ctrl-C); resume with --trainer.default_root_dir {root} --ckpt_path last" in err
    assert torch.load(root / "checkpoints" / "interrupted.ckpt", weights_only=False)["global_step"] == 3
    steps = []
    with monkeypatch.context() as m:
        m.setattr(ClassifierModule, "training_step", lambda self, batch, i: steps.append(self.global_step) or
                  step(self, batch, i))
        assert main(_fit_args(shapes_data, root, "--trainer.max_epochs", "1", "--ckpt_path", "last")) == 0
    assert steps[0] == 3  # resumed at the step reached, not at 0
    assert not (root / "checkpoints" / "interrupted.ckpt").exists() and (root / "model").is_dir()


def test_two_runs_started_in_one_second_get_a_folder_each(runs_dir, monkeypatch):
    from zoo.training.cli import _run_dir

    monkeypatch.setattr("time.strftime", lambda fmt: "20261206-000000")
    first, second = _run_dir(["a/b.yaml"]), _run_dir(["a/b.yaml"])
    assert first != second and Path(first).is_dir() and Path(second).name == "20261206-000000-1"


def test_ddp_two_gloo_processes(shapes_data, tmp_path):
    """`zoo fit ... --trainer.strategy ddp --trainer.devices 2` on CPU: Lightning launches the second rank."""
    env = {**os.environ, "ZOO_RUNS_DIR": str(tmp_path), "PL_DISABLE_FORK": "1"}
    cmd = [sys.executable, "-m", "zoo", "fit", "--config", SMALL, "--data.init_args.data", str(shapes_data),
           "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "16", "--trainer.max_steps", "3",
           "--trainer.limit_val_batches", "2", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false",
           "--trainer.default_root_dir", str(tmp_path / "ddp")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "distributed_backend=gloo" in log and "All distributed processes registered" in log
    assert (tmp_path / "ddp" / "model" / "model.safetensors").exists()


def test_download_of_a_bare_name_fetches_its_default_tag(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    assert main(["download", "knn_ood_resnet20"]) == 0
    key, path = capsys.readouterr().out.strip().split(": ")
    assert key == "knn_ood_resnet20.cifar10" and path.startswith(str(tmp_path))


@pytest.mark.parametrize("flags, needle", [
    (["--json", ""], "--json needs a file path"),
    (["--json", "{tmp}"], "is a folder: give a file path, e.g. {tmp}/result.json"),
    (["--json", "{tmp}/afile/r.json"], "--json: {tmp}/afile is a file"),
    (["--out-dir", "{tmp}/afile/sub"], "--out-dir: {tmp}/afile is a file"),
    (["--save-scores", "{tmp}/afile"], "--save-scores {tmp}/afile is a file: give a folder path"),
    (["--json", "/proc/nope/r.json"], "--json: the folder /proc/nope cannot be written: creating a file in /proc"),
    (["--save-scores", "/proc/nope/s"], "--save-scores: the folder /proc/nope/s cannot be written"),
    (["--out-dir", "/proc/nope/o"], "--out-dir: the folder /proc/nope/o cannot be written"),
])
def test_eval_refuses_unwritable_outputs_before_loading_the_model(flags, needle, tmp_path, monkeypatch, capsys):
    from zoo.eval.base import EvalTask

    monkeypatch.setattr(EvalTask, "load", lambda *args: pytest.fail("the model was loaded"))
    (tmp_path / "afile").write_text("x")
    flags = [f.format(tmp=tmp_path) for f in flags]
    assert main(["eval", "knn_ood_resnet20.cifar10", "--task", "classification", "--data", "d", *flags]) == 2
    assert needle.format(tmp=tmp_path) in capsys.readouterr().err


def test_the_output_check_creates_nothing(tmp_path):
    from zoo.io import check_outputs

    check_outputs({"--json": tmp_path / "new" / "r.json"}, {"--out-dir": tmp_path / "a" / "b"})
    assert list(tmp_path.iterdir()) == []  # neither the folders nor the probe file


@pytest.mark.parametrize("suite", [False, True])
@pytest.mark.parametrize("path, needle", [
    ("{tmp}", "--json {tmp} is a folder: give a file path, e.g. {tmp}/result.json"),
    ("/proc/nope/x.json", "--json: the folder /proc/nope cannot be written"),
    ("{tmp}/afile/x.json", "--json: {tmp}/afile is a file"),
])
def test_bench_refuses_an_unwritable_json_before_benchmarking(suite, path, needle, tmp_path, monkeypatch, capsys):
    import zoo.bench.harness
    import zoo.bench.suite

    monkeypatch.setattr(zoo.bench.harness, "benchmark", lambda *a, **k: pytest.fail("the benchmark ran"))
    monkeypatch.setattr(zoo.bench.suite, "run_suite", lambda *a, **k: pytest.fail("the suite ran"))
    (tmp_path / "afile").write_text("x")
    what = ["--suite", "configs/bench/cpu-smoke.yaml"] if suite else ["knn_ood_resnet20"]
    assert main(["bench", *what, "--device", "cpu", "--json", path.format(tmp=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle.format(tmp=tmp_path) in err and ".partial" not in err


@pytest.mark.parametrize("flag", ["--out", "--out-dir"])
def test_eval_out_is_an_option_of_its_own(flag, monkeypatch, capsys, tmp_path):
    """The issues' ``--out DIR`` is a named alias of ``--out-dir``, not an abbreviation that a new option could
    make ambiguous: it is listed in the help and reaches ``evaluate`` as ``out_dir``."""
    import zoo.eval

    seen = {}
    monkeypatch.setattr(zoo.eval, "evaluate", lambda model, task, **kw: seen.update(kw, model=model, task=task))
    assert main(["eval", "some_model", "--task", "classification", "--data", "d", flag, str(tmp_path)]) == 0
    assert seen["out_dir"] == str(tmp_path) and seen["task"] == "classification"
    with pytest.raises(SystemExit):
        main(["eval", "some_model", "--task", "classification", "--help"])
    assert "--out-dir OUT_DIR, --out OUT_DIR" in capsys.readouterr().out


def test_eval_task_options_are_checked_for_python_callers():
    from zoo.eval import get_task

    task = get_task("classification")
    with pytest.raises(ZooError, match="task 'classification' has no option splt; its options: data, split"):
        task(data="cifar10_jpeg", splt="test")
    with pytest.raises(ZooError, match="task 'classification' needs --data"):
        task(split="test")
    assert vars(task(data="x").options) == {"data": "x", "split": "test"}


def test_sigterm_to_the_whole_process_group_saves_the_step_and_exits_143(shapes_data, tmp_path):
    """A scheduler that stops a job signals all its processes (Slurm's scancel, systemd's stop): SIGTERM reaches
    the DataLoader workers as well as the trainer. The workers leave the stop to the trainer, which ends the step,
    saves ``interrupted.ckpt`` and exits 143 (a worker that died of the signal would crash the step instead), and
    no process of the group is left."""
    import signal
    import time

    root, log = tmp_path / "run", tmp_path / "stderr.txt"
    args = _fit_args(shapes_data, root, "--trainer.max_epochs", "1000")
    args[args.index("--data.init_args.num_workers") + 1] = "1"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], stderr=err, text=True, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (root / "checkpoints" / "last.ckpt").exists() and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None and (root / "checkpoints" / "last.ckpt").exists(), log.read_text()[-2000:]
        group = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(p) == proc.pid]
        assert any((p / "comm").read_text().strip() == "pt_data_worker" for p in group), "no DataLoader worker"
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
        time.sleep(2)
        left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(p) == proc.pid]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    err = log.read_text()
    assert proc.returncode == 143, err[-2000:]
    assert "fit interrupted (SIGTERM); resume with" in err and (root / "checkpoints" / "interrupted.ckpt").is_file()
    assert not left, f"processes of the stopped fit still running: {left}"


def _pgid(proc_dir: Path) -> int | None:
    try:
        return os.getpgid(int(proc_dir.name))
    except (ProcessLookupError, PermissionError):
        return None


def test_a_script_that_leaves_a_loader_iterator_open_still_exits(tmp_path):
    """`zoo.data.workers.ignore_foreign_sigterm` keeps PyTorch's own shutdown working: at interpreter exit,
    multiprocessing terminates a worker whose iterator was never closed, and the worker must go."""
    script = ("import torch\nfrom torch.utils.data import DataLoader\nfrom zoo.data.workers import ignore_foreign_sigterm\n"
              "loader = DataLoader(torch.arange(100), batch_size=10, num_workers=1, persistent_workers=True, "
              "worker_init_fn=ignore_foreign_sigterm)\nbatches = iter(loader)\nprint(next(batches).sum().item())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0 and out.stdout.strip() == "45", out.stderr[-2000:]


def test_fit_shows_no_deprecation_notice_from_lightnings_own_use_of_torch(shapes_data, tmp_path):
    """torch deprecates `isinstance(treespec, LeafSpec)`, which Lightning's CombinedLoader still runs as every fit
    starts: noise about Lightning, not about the user's run, so `zoo fit` drops it."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", "--config", SMALL, "--data.init_args.data", str(shapes_data),
                     "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "16",
                     "--trainer.limit_val_batches", "1",
                     "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false",
                     "--trainer.default_root_dir", str(tmp_path)]) == 0
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
