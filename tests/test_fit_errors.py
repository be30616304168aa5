"""`zoo fit` refuses a ``--ckpt_path`` that is no Lightning checkpoint file (a zoo model's weights, a run folder, a
missing path) and a ``--trainer.default_root_dir`` that is a file with one line that names the fix, before it makes
a run folder or does any work."""

import pytest

import zoo
from zoo.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = "configs/knn_ood/resnet20_cifar10_small.yaml"
RECIPE = "resnet20_cifar10_small"  # its run folders: $ZOO_RUNS_DIR/<recipe>/<timestamp>


def _fit(shapes_data, *extra) -> int:
    """The kNN-OOD ResNet-20 small recipe on the shapes data, one training step (a new run folder unless ``extra``
    gives --trainer.default_root_dir)."""
    return main(["fit", "--config", SMALL, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers",
                 "0", "--data.init_args.batch_size", "8", "--data.init_args.train_subset", "16",
                 "--data.init_args.test_subset", "8", "--trainer.limit_val_batches", "1",
                 "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "1", *extra])


def _one_error(capsys) -> str:
    """The CLI's stderr, checked to be one error line without a traceback, and without a run started."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and "zoo: run folder" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    return lines[0]


@pytest.fixture
def zoo_run(tmp_path):
    """A run folder as `zoo fit` leaves it: ``checkpoints/`` and the zoo model in ``model/``."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    zoo.save_pretrained(zoo.create_model("knn_ood_resnet20", num_classes=10), run / "model")
    return run


def test_a_zoo_models_weights_as_ckpt_path_name_the_runs_checkpoints_and_the_pretrained_argument(
        shapes_data, runs_dir, zoo_run, capsys):
    """A zoo model's ``model.safetensors`` (or its folder) is no Lightning checkpoint: the error names the run's
    checkpoints to resume and the recipe's ``pretrained`` argument to start from the weights, which then works."""
    weights = zoo_run / "model" / "model.safetensors"
    for given in (weights, zoo_run / "model"):
        assert _fit(shapes_data, "--ckpt_path", str(given)) == 2
        assert _one_error(capsys) == (
            f"zoo: error: --ckpt_path {given} is a zoo model's weights (safetensors), not a Lightning checkpoint: "
            f"give a .ckpt from {zoo_run}/checkpoints/ (or `last` with --trainer.default_root_dir {zoo_run}); to "
            f"start training from these weights, give --model.init_args.pretrained {given} instead")
    assert not (runs_dir / RECIPE).exists()
    assert _fit(shapes_data, "--model.init_args.pretrained", str(weights), "--trainer.default_root_dir",
                str(zoo_run.parent / "from_weights")) == 0


def test_a_run_folder_as_ckpt_path_names_its_last_checkpoint_and_the_resume_options(
        shapes_data, runs_dir, tmp_path, capsys):
    """A run folder (or its ``checkpoints/``) is not a checkpoint file: the error says it is a folder, not that it
    does not exist, and gives both ways to resume that run."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for given in (run, run / "checkpoints"):
        assert _fit(shapes_data, "--ckpt_path", str(given)) == 2
        assert _one_error(capsys) == (
            f"zoo: error: --ckpt_path {given} is a folder: give a checkpoint file in it ({run}/checkpoints/last.ckpt), "
            f"or resume that run with --trainer.default_root_dir {run} --ckpt_path last")
    assert not (runs_dir / RECIPE).exists()


def test_a_missing_ckpt_path_leaves_no_run_folder(shapes_data, runs_dir, tmp_path, capsys):
    """The check comes before the run folder is made: no empty ``runs/<recipe>/<timestamp>/`` is left behind."""
    missing = tmp_path / "no_such.ckpt"
    assert _fit(shapes_data, "--ckpt_path", str(missing)) == 2
    assert f"--ckpt_path {missing} does not exist: give a Lightning .ckpt file" in _one_error(capsys)
    assert not (runs_dir / RECIPE).exists()


@pytest.mark.parametrize("length", [["--trainer.max_steps", "2"], ["--trainer.fast_dev_run", "true"]])
def test_a_file_as_default_root_dir_is_refused_before_any_work(shapes_data, runs_dir, tmp_path, length, capsys):
    """A ``--trainer.default_root_dir`` that is a file (or lies under one) is refused before the data's setup and
    training, whose first write into it would fail (at the end of a ``fast_dev_run``); the file is left as it was."""
    script = tmp_path / "t.sh"
    script.write_text("echo hi\n")
    assert _fit(shapes_data, *length, "--trainer.default_root_dir", str(script)) == 2
    assert _one_error(capsys) == f"zoo: error: --trainer.default_root_dir {script} is a file: give a folder"
    assert _fit(shapes_data, *length, "--trainer.default_root_dir", str(script / "run")) == 2
    assert _one_error(capsys) == (f"zoo: error: --trainer.default_root_dir {script / 'run'} lies under the file "
                                  f"{script}: give a folder")
    assert script.read_text() == "echo hi\n" and sorted(p.name for p in tmp_path.iterdir()) == ["t.sh"]
    assert not runs_dir.exists()
