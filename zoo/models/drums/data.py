"""The LightningDataModule that feeds Groove MIDI prompt-completion examples (`zoo.models.drums.examples`) to a
causal LM."""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset

from ...data.sampling import seeded_training
from ...data.splits import SplitDataModule, check_loader_args
from ...data.workers import ignore_foreign_sigterm
from ...errors import ZooError
from .encoding import Example
from .examples import open_examples, why_no_examples


class ExampleSet(Dataset):
    """Items: `Example` (text); the LightningModule's ``collate`` tokenises a batch."""

    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


class GrooveMidiDataModule(SplitDataModule):
    """Train / validation / test prompt-completion examples for a causal-LM LightningModule.

    The fitted LightningModule's ``collate(list[Example]) -> dict`` tokenises batches, so one config names the
    tokenizer once (through the model).

    Args:
        data: ``groove_midi`` (catalogue), a Groove MIDI folder or archive, or a folder of ``<split>.jsonl`` files.
        batch_size, num_workers: loader settings.
        train_subset: use only the first N training examples (small recipes and tests).
        encoding: ``paper`` (six ``o``/``-`` columns) or ``events`` (velocity and micro-timing; see
            `zoo.models.drums.events`).
        seed: seed of the training order (`zoo.data.sampling.EpochShuffle`).
    """

    def __init__(self, data: str = "groove_midi", batch_size: int = 4, num_workers: int = 0,
                 train_subset: int | None = None, encoding: str = "paper", seed: int = 0):
        super().__init__()
        check_loader_args(batch_size, num_workers)
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        module = self.trainer.lightning_module if self.trainer is not None else None
        self.collate = getattr(module, "collate", None)
        if self.collate is None:
            raise ZooError("GrooveMidiDataModule needs a LightningModule with collate(examples), e.g. "
                           "zoo.models.drums.module.DrumLMModule")
        model_encoding = getattr(getattr(module, "model", None), "encoding", hp.encoding)
        if model_encoding != hp.encoding:
            raise ZooError(f"the data are {hp.encoding} text but the model is built for {model_encoding} text: set "
                           f"the model's model_args encoding: {hp.encoding} too (it is saved with the model, so "
                           f"zoo eval reads the same text)")
        train = open_examples(hp.data, "train", hp.encoding)
        self.train_set = ExampleSet(train[: hp.train_subset] if hp.train_subset else train)
        self.val_set = ExampleSet(open_examples(hp.data, "validation", hp.encoding))
        self.test_set = ExampleSet(open_examples(hp.data, "test", hp.encoding))
        if not len(self.train_set):
            raise ZooError(f"no training examples in {hp.data}: {why_no_examples(hp.data, 'train')}")

    def _loader(self, ds: ExampleSet, shuffle: bool) -> DataLoader:
        hp = self.hparams
        ds, sampler = seeded_training(ds, hp.seed, hp.batch_size) if shuffle else (ds, None)
        return DataLoader(ds, batch_size=hp.batch_size, sampler=sampler,
                          num_workers=hp.num_workers, collate_fn=self.collate, persistent_workers=hp.num_workers > 0,
                          worker_init_fn=ignore_foreign_sigterm)

