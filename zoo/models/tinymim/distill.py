"""TinyMIM pre-training: a small ViT learns, without labels, to match a frozen MIM-pretrained teacher.

Batches are ``(views [B, 2, C, H, W], labels)`` from `TinyMIMDataModule(views="distill")`: view 0 (the shared
crop, normalised) goes to the teacher, view 1 (the same crop with colour jitter) to the student; labels are
unused. Validation batches ``(images [B, C, H, W], labels)`` feed the same image to both.

Targets (``target``):

* ``relation`` (TinyMIM): Q-K and V-V relations of the teacher's block ``teacher_layer`` and the student's block
  ``student_layer`` (default: each model's last), KL(teacher || student); see `losses`.
* ``cls``: the student's class token (after its last block and final norm, through a linear projector) regresses
  the teacher's whitened class token after ``teacher_layer``.
* ``feature``: the same for every token (FD-style feature distillation).

The teacher stays frozen and in eval mode; sequential distillation is the same module with a distilled student
as ``teacher``. After ``fit`` the student alone is exported (``self.model``); the projector is discarded.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ...checkpoint import WEIGHTS_NAME, load_state_dict, read_config, read_weights
from ...errors import ZooError
from ...registry import create_model
from ...training.optim import param_groups
from .losses import feature_loss, relation_loss
from .model import TinyMIMViT, local_source
from .optim import absolute_lr, adamw_warmup_cosine

TARGETS = ("relation", "cls", "feature")


def load_frozen(source: str, overrides: dict | None = None) -> TinyMIMViT:
    """A teacher from a zoo folder or a ``name.tag``, with constructor ``overrides`` (e.g. a head count that
    differs from the one it was trained with), frozen and in eval mode; it must be a `TinyMIMViT`."""
    overrides = overrides or {}
    path = local_source(source, "teacher")
    if path is not None:
        cfg = read_config(path)
        arch = cfg["architecture"]
        model = create_model(arch, **{**cfg.get("model_args", {}), **overrides})
        load_state_dict(model, read_weights(path / WEIGHTS_NAME), source=str(path / WEIGHTS_NAME))
    else:
        arch = source
        model = create_model(source, pretrained=True, **overrides)
    if not isinstance(model, TinyMIMViT):
        raise ZooError(f"teacher {source} is a {arch} model ({type(model).__name__}), but the teacher must be a "
                       f"TinyMIM/MAE ViT (tinymim_vit*): convert an MAE or TinyMIM checkpoint with "
                       f"`zoo convert tinymim --src FILE --out DIR`")
    return model.eval().requires_grad_(False)


class DistillModule(pl.LightningModule):
    """TinyMIM distillation and the paper's CLS-token and feature baselines.

    Args:
        student, student_args: the student (registry name and arguments). TinyMIM students use
            ``num_classes: 0``, ``global_pool: token``, ``fixed_pos_embed: true``, ``drop_path_rate: 0.1`` with
            ``drop_path_mode: uniform``, and ``last_block_heads`` = the teacher's head count.
        teacher: a zoo folder or ``name.tag`` of the MIM-pretrained teacher; teacher_args: constructor overrides.
        target: ``relation`` | ``cls`` | ``feature``.
        teacher_layer, student_layer: 1-based blocks the targets come from (default: each model's last block;
            the paper distils ViT-L's block 18 into ViT-B).
        lr, blr, weight_decay, betas, warmup_epochs, min_lr: AdamW with warm-up + cosine (paper: blr 1.5e-4,
            0.05, (0.9, 0.95), 15 of 300 epochs, 0).
    """

    def __init__(self, student: str = "tinymim_vit_tiny", student_args: dict[str, Any] | None = None,
                 teacher: str | None = None, teacher_args: dict[str, Any] | None = None, target: str = "relation",
                 teacher_layer: int | None = None, student_layer: int | None = None, lr: float | None = None,
                 blr: float = 1.5e-4, weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.95),
                 warmup_epochs: float = 15, min_lr: float = 0.0):
        super().__init__()
        if target not in TARGETS:
            raise ZooError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
        if teacher is None:
            raise ZooError("DistillModule needs a teacher: a zoo folder or name.tag of an MIM-pretrained ViT "
                           "(model.init_args.teacher)")
        self.save_hyperparameters()
        self.model = create_model(student, **(student_args or {}))
        self.teacher = load_frozen(teacher, teacher_args)
        self.teacher_layer = teacher_layer if teacher_layer is not None else len(self.teacher.blocks)
        self.student_layer = student_layer if student_layer is not None else len(self.model.blocks)
        self.teacher.check_layer(self.teacher_layer)
        self.model.check_layer(self.student_layer)
        if self.model.input_spec["input_size"] != self.teacher.input_spec["input_size"] or \
                self.model.patch_embed.patch_size != self.teacher.patch_embed.patch_size:
            raise ZooError(f"student input {self.model.input_spec['input_size']} / patch "
                           f"{self.model.patch_embed.patch_size} differ from the teacher's "
                           f"{self.teacher.input_spec['input_size']} / {self.teacher.patch_embed.patch_size}: "
                           f"both must see the same tokens")
        t_norm, s_norm = ([spec["mean"], spec["std"]] for spec in (self.teacher.input_spec, self.model.input_spec))
        if [list(map(float, v)) for v in t_norm] != [list(map(float, v)) for v in s_norm]:
            raise ZooError(f"the teacher reads images normalised with mean {t_norm[0]} / std {t_norm[1]}, the "
                           f"student with {s_norm[0]} / {s_norm[1]}; both views are normalised with the student's, "
                           f"so build the student with the teacher's (student_args: {{mean: {t_norm[0]}, std: "
                           f"{t_norm[1]}}})")
        if target == "relation":
            t_heads, s_heads = self.teacher.heads_at(self.teacher_layer), self.model.heads_at(self.student_layer)
            if t_heads != s_heads:
                raise ZooError(f"the teacher's block {self.teacher_layer} has {t_heads} heads but the student's "
                               f"block {self.student_layer} has {s_heads}: {self._heads_fix(t_heads)}")
        else:
            self.projector = nn.Linear(self.model.embed_dim, self.teacher.embed_dim)

    def _heads_fix(self, t_heads: int) -> str:
        """How to give the student's relation block the teacher's ``t_heads`` heads."""
        if self.student_layer == len(self.model.blocks):
            return f"build the student with last_block_heads: {t_heads}"
        return (f"build the student with num_heads: {t_heads} (last_block_heads sets only its last block, and "
                f"student_layer is {self.student_layer} of {len(self.model.blocks)}), or pick a student_layer or "
                f"teacher_layer whose heads match")

    @property
    def input_spec(self) -> dict:
        return self.model.input_spec

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def losses(self, teacher_images: torch.Tensor, student_images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both ``[B, C, H, W]`` -> ``{"loss", ...}`` (``qk`` and ``vv`` for the relation target)."""
        if self.hparams.target == "relation":
            with torch.no_grad():
                t = self.teacher.block_qkv(teacher_images, self.teacher_layer)
            return relation_loss(t, self.model.block_qkv(student_images, self.student_layer))
        with torch.no_grad():
            t = self.teacher.block_tokens(teacher_images, self.teacher_layer)
        s = self.model.norm(self.model.block_tokens(student_images, self.student_layer))
        if self.hparams.target == "cls":
            t, s = t[:, 0], s[:, 0]
        return {"loss": feature_loss(self.projector(s), t)}

    def training_step(self, batch, batch_idx):
        views = batch[0]
        if views.ndim != 5 or views.shape[1] != 2:
            raise ZooError(f"distillation batches must be [B, 2, C, H, W] (teacher view, student view), got "
                           f"{tuple(views.shape)}: use TinyMIMDataModule with views: distill")
        out = self.losses(views[:, 0], views[:, 1])
        self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=True, on_step=True, on_epoch=True,
                      batch_size=len(views))
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        x = batch[0]
        out = self.losses(x, x)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, prog_bar=True, on_epoch=True, batch_size=len(x),
                      sync_dist=True)

    def _teacher_fingerprint(self) -> torch.Tensor:
        """[T] float64: the sum of each of the teacher's tensors, to tell its weights from another teacher's."""
        return torch.stack([t.detach().double().sum().cpu() for t in self.teacher.state_dict().values()])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The frozen teacher is left out of training checkpoints (the ImageNet ViT-B recipe's ViT-L teacher would
        add 1.2 GB to each); `on_load_checkpoint` takes it from ``teacher`` again, with a fingerprint to check it is
        the same one."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
        checkpoint["tinymim_teacher_fingerprint"] = self._teacher_fingerprint()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Put the teacher back into ``checkpoint`` (a `ZooError` when ``teacher`` now holds other weights than the
        checkpoint's run had: its fingerprint, or, in a checkpoint written with the teacher, its tensors)."""
        state, teacher = checkpoint["state_dict"], self.teacher.state_dict()
        if any(k.startswith("teacher.") for k in state):  # written before the teacher was left out
            differs = state.keys() & {f"teacher.{k}" for k in teacher} != {f"teacher.{k}" for k in teacher} or any(
                not torch.equal(state[f"teacher.{k}"].to(v.device), v) for k, v in teacher.items())
        else:
            saved, mine = checkpoint.get("tinymim_teacher_fingerprint"), self._teacher_fingerprint()
            differs = saved is not None and (saved.shape != mine.shape
                                             or not torch.allclose(saved, mine, rtol=1e-6, atol=1e-6))
        if differs:
            raise ZooError(f"the teacher {self.hparams.teacher} is not the one this checkpoint was trained with (its "
                           f"weights differ); resume with the run's teacher (model.init_args.teacher)")
        state.update({f"teacher.{k}": v for k, v in teacher.items()})

    def configure_optimizers(self):
        hp = self.hparams
        groups = param_groups(self.model, hp.weight_decay)
        if hp.target != "relation":
            groups += param_groups(self.projector, hp.weight_decay)
        return adamw_warmup_cosine(self, groups, absolute_lr(self, hp.lr, hp.blr), hp.warmup_epochs, hp.min_lr,
                                   hp.betas)
