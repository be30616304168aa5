"""`DrumLMModule`: fine-tune (or train from scratch) any drum LM on prompt-completion drum text.

The loss is the paper's fine-tuning objective as OpenAI's legacy fine-tunes ran it: next-token cross-entropy on
the completion, with the prompt tokens weighted by ``prompt_loss_weight`` (that API's default, 0.01). AdamW over
the trainable parameters (the adapters with LoRA), linear warm-up then cosine decay per step.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from ...registry import create_model
from ...training.optim import build_optimizer, param_groups, warmup_cosine
from .encoding import Example
from .lm import weighted_loss


class DrumLMModule(pl.LightningModule):
    """Fine-tunes (or trains from scratch) a drum LM on batches of `DrumLM.collate`: the prompt-weighted
    next-token loss, AdamW and a warm-up + cosine schedule (see the module docstring).

    Args:
        model: registry name (``drums_smollm2_135m``, ``drums_smollm2_scratch``, ``drums_gpt2_tiny``, ``drums_lm``).
        model_args: its constructor arguments (``lora``, ``config``, ``max_length``, ...).
        pretrained: as `zoo.create_model` (a ``name.tag`` or folder to continue from).
        lr, weight_decay, betas: AdamW settings.
        warmup_steps: linear warm-up steps before the cosine decay.
        prompt_loss_weight: weight of prompt tokens in the loss.
    """

    def __init__(self, model: str = "drums_smollm2_135m", model_args: dict[str, Any] | None = None,
                 pretrained: bool | str = False, lr: float = 2e-4, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), warmup_steps: int = 10, prompt_loss_weight: float = 0.01):
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model, pretrained=pretrained, **(model_args or {}))

    def collate(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Tokenised batch for the DataModule's loaders (see `DrumLM.collate`)."""
        return self.model.collate(examples, self.hparams.prompt_loss_weight)

    def _step(self, batch, stage: str) -> torch.Tensor:
        nll = self.model.token_nll(batch)
        loss = weighted_loss(nll, batch["loss_weight"])
        tokens = int(batch["attention_mask"].sum())
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True,
                 batch_size=tokens, sync_dist=stage != "train")
        if stage != "train":  # the completion alone: the part the paper's model has to write
            completion = batch["loss_weight"][:, 1:] == 1
            self.log(f"{stage}/completion_loss", nll[completion].mean(), on_epoch=True,
                     batch_size=int(completion.sum()), sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        opt = build_optimizer(param_groups(self.model, hp.weight_decay), "adamw", hp.lr, hp.weight_decay,
                              betas=hp.betas)
        total = self.trainer.estimated_stepping_batches
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": warmup_cosine(opt, total, min(hp.warmup_steps, total // 2)),
                                 "interval": "step"}}
