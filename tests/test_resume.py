"""A run resumed from a checkpoint goes on as the uninterrupted run would: the training order of each epoch is a
function of (seed, epoch) (`zoo.data.sampling.EpochShuffle`), not replayed from epoch 0 after the resume."""

import pytest
import torch
from conftest import interrupt_at
from pytorch_lightning.trainer.connectors.data_connector import _get_distributed_sampler
from safetensors.torch import load_file
from torch.utils.data import DataLoader, DistributedSampler

from zoo.cli import main
from zoo.data.sampling import EpochShuffle
from zoo.training.classification import ClassifierModule

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = "configs/knn_ood/resnet20_cifar10_small.yaml"


def _fit(shapes_data, root, *extra, workers: int = 0) -> int:
    """The kNN-OOD ResNet-20 small recipe on 22 training images of the shapes data, no augmentation (so a batch's
    images say which samples it holds)."""
    return main(["fit", "--config", SMALL, "--data.init_args.data", str(shapes_data), "--data.init_args.num_workers",
                 str(workers), "--data.init_args.batch_size", "8", "--data.init_args.train_subset", "24",
                 "--data.init_args.test_subset", "8", "--data.init_args.augment", "none", "--trainer.limit_val_batches",
                 "1", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root), *extra])


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
    made = [load_file(str(tmp_path / run / "model" / "model.safetensors")) for run in ("whole", "parts")]
    assert all(torch.equal(v, made[1][k]) for k, v in made[0].items())


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


def test_epoch_shuffle_follows_set_epoch_and_gives_way_to_lightnings_distributed_sampler():
    """The order depends on (seed, epoch) only; under DDP Lightning swaps it for its DistributedSampler, as it did
    the plain RandomSampler."""
    a, b = EpochShuffle(range(50), seed=0), EpochShuffle(range(50), seed=0)
    b.set_epoch(3)
    assert list(a) == list(EpochShuffle(range(50), seed=0)) and list(a) != list(b)
    a.set_epoch(3)
    assert list(a) == list(b) and list(a) != list(EpochShuffle(range(50), seed=1))
    loader = DataLoader(range(50), batch_size=4, sampler=a)
    ddp = _get_distributed_sampler(loader, shuffle=True, overfit_batches=0, num_replicas=2, rank=0)
    assert type(ddp) is DistributedSampler and ddp.shuffle
