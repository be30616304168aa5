"""A run resumed from a checkpoint goes on as the uninterrupted run would: the training order of each epoch is a
function of (seed, epoch) (`zoo.data.sampling.EpochShuffle`), not replayed from epoch 0 after the resume; each
sample's augmentation a function of (seed, epoch, index) (`SeededSamples`), and each step's randomness one of (seed,
epoch, batch) (`zoo.training.resume.SeededTraining`), so the resumed weights equal the uninterrupted ones."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import interrupt_at
from safetensors.torch import load_file
from torch.utils.data import DataLoader, DistributedSampler

from zoo.cli import main
from zoo.data.sampling import EpochShuffle, SampleKey, SeededSamples
from zoo.training.classification import ClassifierModule
from zoo.training.resume import SeededTraining

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = "configs/knn_ood/resnet20_cifar10_small.yaml"


def _fit(shapes_data, root, *extra, workers: int = 0, augment: str = "none") -> int:
    """The kNN-OOD ResNet-20 small recipe on 22 training images of the shapes data, by default without augmentation
    (so a batch's images say which samples it holds)."""
    return main(["fit", "--config", SMALL, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers",
                 str(workers), "--data.init_args.batch_size", "8", "--data.init_args.train_subset", "24",
                 "--data.init_args.test_subset", "8", "--data.init_args.augment", augment, "--trainer.limit_val_batches",
                 "1", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root), *extra])


def _weights(root):
    return load_file(str(root / "model" / "model.safetensors"))


def _checkpointed(root, name: str = "last.ckpt") -> dict:
    """The zoo model's weights in a Lightning checkpoint of the run at ``root``, named as ``model/`` names them."""
    state = torch.load(root / "checkpoints" / name, weights_only=False)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


@pytest.fixture
def dropout_step(monkeypatch):
    """A training step that draws from torch's generator as dropout does (ResNet-20 has no dropout of its own)."""
    step = ClassifierModule.training_step

    def noisy(self, batch, batch_idx):
        return step(self, (torch.nn.functional.dropout(batch[0], 0.3, training=True), batch[1]), batch_idx)

    monkeypatch.setattr(ClassifierModule, "training_step", noisy)


@pytest.fixture
def orders(monkeypatch):
    """Per training epoch, the samples in the order training saw them (each image's pixel sum stands for it)."""
    seen: dict[int, list[float]] = {}
    step = ClassifierModule.training_step

    def spy(self, batch, batch_idx):
        seen.setdefault(self.current_epoch, []).extend(batch[0].flatten(1).sum(1).tolist())
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ClassifierModule, "training_step", spy)
    return seen


def _stop_after_epoch(epoch: int):
    """An ``on_train_epoch_end`` hook that ends training after ``epoch`` (an interruption that keeps the run's
    settings: a shorter ``max_epochs`` would change the learning-rate schedule)."""
    def hook(self):
        self.trainer.should_stop = self.trainer.should_stop or self.current_epoch == epoch
    return hook


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_run_draws_the_uninterrupted_runs_order_and_weights(shapes_data, tmp_path, orders, monkeypatch,
                                                                       workers):
    """Resuming after epoch 1 gave epoch 2 epoch 0's order (a loader generator seeded afresh at every start; with
    workers, a loader draws its first order when it is built, before Lightning's first ``set_epoch``)."""
    assert _fit(shapes_data, tmp_path / "whole", "--trainer.max_epochs", "3", workers=workers) == 0
    whole = dict(orders)
    orders.clear()
    with monkeypatch.context() as m:
        m.setattr(ClassifierModule, "on_train_epoch_end", _stop_after_epoch(1))
        assert _fit(shapes_data, tmp_path / "parts", "--trainer.max_epochs", "3", workers=workers) == 0
    assert sorted(orders) == [0, 1]
    assert _fit(shapes_data, tmp_path / "parts", "--trainer.max_epochs", "3", "--ckpt_path", "last",
                workers=workers) == 0
    assert len(whole[2]) == 22 and sorted(whole[2]) == sorted(whole[0])
    assert whole[2] != whole[0] and whole[2] != whole[1]
    assert orders == whole
    assert _equal(_weights(tmp_path / "whole"), _weights(tmp_path / "parts"))
    assert _equal(_weights(tmp_path / "parts"), _checkpointed(tmp_path / "parts"))  # model/ holds the trained weights


def test_a_run_interrupted_mid_epoch_resumes_that_epochs_order_where_it_stopped(shapes_data, tmp_path, orders,
                                                                                   monkeypatch):
    """Ctrl-C at the second of an epoch's three batches, then ``--ckpt_path last`` (``interrupted.ckpt``): the
    epoch's remaining batches are the ones the uninterrupted run saw (the resume drew the epoch from its start)."""
    assert _fit(shapes_data, tmp_path / "whole", "--trainer.max_epochs", "1") == 0
    whole = list(orders[0])
    orders.clear()
    with monkeypatch.context() as m:
        m.setattr(ClassifierModule, "training_step", interrupt_at(ClassifierModule.training_step, 1))
        assert _fit(shapes_data, tmp_path / "parts", "--trainer.max_epochs", "1") == 130
    assert _fit(shapes_data, tmp_path / "parts", "--trainer.max_epochs", "1", "--ckpt_path", "last") == 0
    assert orders[0] == whole and len(whole) == 22


def test_a_run_that_saves_every_n_steps_keeps_its_final_state_and_an_extension_resumes_there(shapes_data, tmp_path,
                                                                                              orders):
    """Saving every 2 of an epoch's 3 steps, ``last.ckpt`` holds step 2; ``final.ckpt`` holds the end (step 3), so a
    run extended by an epoch with ``--ckpt_path last`` trains only the new epoch (it redid epoch 0's third batch),
    also when both files have the same modification time. The exported ``model/`` holds the end's weights each
    time (not step 2's, nor, after the extension, the first run's)."""
    steps = ["--checkpoint.every_n_train_steps", "2"]
    assert _fit(shapes_data, tmp_path, "--trainer.max_epochs", "1", *steps) == 0
    assert torch.load(tmp_path / "checkpoints" / "final.ckpt", weights_only=False)["global_step"] == 3
    exported, at_step_2 = _weights(tmp_path), _checkpointed(tmp_path)
    assert _equal(exported, _checkpointed(tmp_path, "final.ckpt")) and not _equal(exported, at_step_2)
    for name in ("last.ckpt", "final.ckpt"):  # written in one second (a coarse-mtime filesystem): final still wins
        os.utime(tmp_path / "checkpoints" / name, (1e9, 1e9))
    orders.clear()
    assert _fit(shapes_data, tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", "last", *steps) == 0
    assert list(orders) == [1] and len(orders[1]) == 22
    extended = _weights(tmp_path)
    assert _equal(extended, _checkpointed(tmp_path, "final.ckpt")) and not _equal(extended, exported)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_with_augmentation_and_dropout_resumed_after_an_epoch_ends_with_the_uninterrupted_weights(
        shapes_data, tmp_path, monkeypatch, dropout_step, workers):
    """Random crops and flips drew from each worker's generator and dropout from the process's, neither carried by a
    checkpoint: the resumed run's weights differed from the uninterrupted run's by up to 0.28."""
    assert _fit(shapes_data, tmp_path / "whole", "--trainer.max_epochs", "3", workers=workers, augment="standard") == 0
    with monkeypatch.context() as m:
        m.setattr(ClassifierModule, "on_train_epoch_end", _stop_after_epoch(0))
        assert _fit(shapes_data, tmp_path / "parts", "--trainer.max_epochs", "3", workers=workers,
                    augment="standard") == 0
    assert _fit(shapes_data, tmp_path / "parts", "--trainer.max_epochs", "3", "--ckpt_path", "last",
                workers=workers, augment="standard") == 0
    assert _equal(_weights(tmp_path / "whole"), _weights(tmp_path / "parts"))


def test_a_run_with_augmentation_and_dropout_interrupted_mid_epoch_resumes_to_the_uninterrupted_weights(
        shapes_data, tmp_path, monkeypatch, dropout_step, recwarn):
    """Ctrl-C at the second of an epoch's three batches, two loader workers: the resumed run ends with the weights of
    the uninterrupted one (and without Lightning's warning that the loader is not resumable)."""
    assert _fit(shapes_data, tmp_path / "whole", "--trainer.max_epochs", "2", workers=2, augment="standard") == 0
    with monkeypatch.context() as m:
        m.setattr(ClassifierModule, "training_step", interrupt_at(ClassifierModule.training_step, 1))
        assert _fit(shapes_data, tmp_path / "parts", "--trainer.max_epochs", "2", workers=2, augment="standard") == 130
    assert _fit(shapes_data, tmp_path / "parts", "--trainer.max_epochs", "2", "--ckpt_path", "last", workers=2,
                augment="standard") == 0
    assert _equal(_weights(tmp_path / "whole"), _weights(tmp_path / "parts"))
    assert not [w for w in recwarn if "not resumable" in str(w.message) or "starts afresh" in str(w.message)]


@pytest.mark.parametrize(("batch", "workers"), [(2, 0), (0, 2)])
def test_a_run_that_crashed_resumes_from_its_last_step_checkpoint_to_the_uninterrupted_weights(
        shapes_data, tmp_path, monkeypatch, dropout_step, batch, workers):
    """An error that is not an interrupt (a bug, a lost node; a SIGKILL saves nothing either) in epoch 1, with a
    checkpoint after every step (``--checkpoint.every_n_train_steps 1``, saved at a batch's end, which Lightning
    counts as finished on restore): at batch 2 the resume skipped one batch too few; at batch 0 the checkpoint is
    the end of epoch 0's last batch."""
    steps = ["--trainer.max_epochs", "2", "--checkpoint.every_n_train_steps", "1"]
    assert _fit(shapes_data, tmp_path / "whole", *steps, workers=workers, augment="standard") == 0
    step = ClassifierModule.training_step

    def crash(self, b, i):
        if self.current_epoch == 1 and i == batch:
            raise RuntimeError("lost the node")
        return step(self, b, i)

    with monkeypatch.context() as m:
        m.setattr(ClassifierModule, "training_step", crash)
        with pytest.raises(RuntimeError, match="lost the node"):
            _fit(shapes_data, tmp_path / "parts", *steps, workers=workers, augment="standard")
    assert _fit(shapes_data, tmp_path / "parts", *steps, "--ckpt_path", "last", workers=workers,
                augment="standard") == 0
    assert _equal(_weights(tmp_path / "whole"), _weights(tmp_path / "parts"))


_DDP_SCRIPT = """
import os, sys
import torch
from zoo.training.classification import ClassifierModule

step = ClassifierModule.training_step

def noisy(self, batch, batch_idx):  # draws from torch's generator as dropout does
    if (self.current_epoch, batch_idx) == (1, 1) and os.environ.get("CRASH") == "1":
        raise RuntimeError("lost the node")
    return step(self, (torch.nn.functional.dropout(batch[0], 0.3, training=True), batch[1]), batch_idx)

ClassifierModule.training_step = noisy
from zoo.cli import main
sys.exit(main(sys.argv[1:]))
"""


# slow (70.6 s in a `pytest --durations` run on the shared CPU, 2026-12-07): the default suite keeps DDP through
# tests/test_cli.py::test_ddp_two_gloo_processes
@pytest.mark.slow
def test_a_ddp_run_that_crashed_mid_epoch_resumes_to_the_uninterrupted_weights(shapes_data, tmp_path):
    """Two gloo ranks with a loader worker each, augmentation and dropout, a checkpoint after every step: both ranks
    fail at epoch 1's second batch, and ``--ckpt_path last`` ends with the uninterrupted run's weights (Lightning
    kept each rank's `EpochShuffle` share, resumed past its finished batch, with each sample seeded by its key)."""
    script = tmp_path / "fit_with_dropout.py"
    script.write_text(_DDP_SCRIPT)

    def fit(root, *extra, crash=False):
        env = {**os.environ, "PL_DISABLE_FORK": "1", "CRASH": "1" if crash else "0", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(script), "fit", "--config", SMALL, "--data.init_args.data", str(shapes_data),
               "--data.init_args.num_workers", "1", "--data.init_args.batch_size", "4",
               "--data.init_args.train_subset", "24", "--data.init_args.test_subset", "8",
               "--trainer.limit_val_batches", "1", "--trainer.max_epochs", "2", "--checkpoint.every_n_train_steps", "1",
               "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root), *extra]
        return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)

    runs = fit(tmp_path / "whole"), fit(tmp_path / "parts", crash=True), fit(tmp_path / "parts", "--ckpt_path", "last")
    for run in runs:
        assert (run.returncode != 0) == ("lost the node" in run.stderr), run.stderr[-3000:]
    assert _equal(_weights(tmp_path / "whole"), _weights(tmp_path / "parts"))


def test_the_number_of_loader_workers_does_not_change_the_trained_weights(shapes_data, tmp_path, dropout_step):
    """Each sample's augmentation is a function of (seed, epoch, index), not of the worker that loads it."""
    for workers in (0, 2):
        assert _fit(shapes_data, tmp_path / str(workers), "--trainer.max_epochs", "2", workers=workers,
                    augment="standard") == 0
    assert _equal(_weights(tmp_path / "0"), _weights(tmp_path / "2"))


def test_seeded_samples_augment_by_seed_epoch_and_index_and_leave_the_callers_generators_alone():
    """The item of a `SampleKey` is the same whatever the generators' state; another epoch augments it anew; a plain
    index (DDP's sampler) is passed through to the dataset."""
    data = SeededSamples(_Noise(), seed=5)
    torch.manual_seed(0)
    first = data[SampleKey(epoch=1, index=3)]
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(data[SampleKey(1, 3)], first) and not torch.equal(data[SampleKey(2, 3)], first)
    torch.manual_seed(0)
    data[SampleKey(1, 3)]
    assert torch.equal(torch.rand(1), after)  # the caller's generator goes on as if the item had not been built
    assert data[4].shape == (3,) and next(iter(EpochShuffle(range(4), seed=0))).epoch == 0


@pytest.mark.parametrize(("completed", "says"), [(2, r"middle of epoch 1 \(batch 2\).*starts afresh"),
                                                  (0, r"start of epoch 1 with a training loader that is not seeded")])
def test_a_resume_with_a_loader_that_is_not_seeded_says_it_differs_from_the_uninterrupted_run(completed, says):
    """PMT-IQA's cached-feature loader (a plain shuffle, drawing from the process's generator): Lightning's own
    warning is silenced by `zoo fit`, so the callback says what a resume, mid-epoch or at an epoch's start, does."""
    loader = DataLoader(range(8), batch_size=2, shuffle=True)
    progress = SimpleNamespace(current=SimpleNamespace(completed=completed))
    loop = SimpleNamespace(_combined_loader=SimpleNamespace(flattened=[loader]), restarted_mid_epoch=completed > 0,
                           epoch_loop=SimpleNamespace(batch_progress=progress, restarted_on_train_batch_end=False))
    trainer = SimpleNamespace(fit_loop=loop, ckpt_path="run/checkpoints/interrupted.ckpt", current_epoch=1,
                              num_training_batches=4)
    loop.trainer = trainer
    callback = SeededTraining()
    with pytest.warns(UserWarning, match=says):
        callback.on_train_start(trainer, None)
    assert callback.data_seed is None  # its steps are not seeded either


@pytest.mark.parametrize(("lightning", "completed", "at_batch_end", "done"), [
    ("2.5+", 2, False, 2), ("2.5+", 2, True, 3), ("2.5+", 3, True, 0), ("2.4", 2, None, 2), ("2.4", 4, None, 0),
])
def test_the_batches_a_resume_skips_are_those_lightning_counts_as_done(lightning, completed, at_batch_end, done):
    """Lightning 2.5+ counts a batch saved at its end (``every_n_train_steps``) as done, and one at an epoch's last
    batch as the next epoch's start; Lightning 2.4 (within the supported range, without those properties) resumes
    after the completed batches."""
    from zoo.training.resume import _batches_done

    progress = SimpleNamespace(current=SimpleNamespace(completed=completed))
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress), trainer=SimpleNamespace(
        num_training_batches=4))
    if lightning == "2.5+":
        loop.restarted_mid_epoch = True
        loop.epoch_loop.restarted_on_train_batch_end = at_batch_end
    assert _batches_done(loop) == done


class _Noise(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.rand(3) + index


def test_epoch_shuffle_follows_set_epoch_and_shares_an_epochs_order_among_ddp_ranks():
    """The order depends on (seed, epoch) only. Under DDP rank r takes every second key from the r-th (51 samples:
    26 each, one repeated, as ``DistributedSampler`` pads), and, being a ``DistributedSampler``, Lightning keeps it
    (it replaced a plain ``RandomSampler`` by its own, which yields bare indices)."""
    a, b = EpochShuffle(range(50), seed=0), EpochShuffle(range(50), seed=0)
    b.set_epoch(3)
    assert list(a) == list(EpochShuffle(range(50), seed=0)) and list(a) != list(b)
    a.set_epoch(3)
    assert list(a) == list(b) and list(a) != list(EpochShuffle(range(50), seed=1))
    whole = [k.index for k in EpochShuffle(range(51), seed=0)]
    ranks = [[k.index for k in EpochShuffle(range(51), seed=0, num_replicas=2, rank=r)] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 26 and set(ranks[0] + ranks[1]) == set(range(51))
    assert [i for pair in zip(*ranks) for i in pair][:51] == whole
    assert isinstance(a, DistributedSampler)  # Lightning's test for keeping a loader's sampler under DDP
