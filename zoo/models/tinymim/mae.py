"""MAE pre-training (He et al. 2022), the teachers' recipe and the paper's "MAE from scratch" baseline.

Per image: the patches are shuffled by random noise, ``mask_ratio`` of them are dropped, the encoder (a
`TinyMIMViT`) runs on the visible ones plus the class token, a light decoder re-inserts a shared mask token at
the dropped positions and predicts every patch's pixels, and the loss is the mean squared error on the dropped
patches only, against pixels normalised per patch (``norm_pix_loss``). After ``fit`` the encoder alone is
exported (``self.model``); the decoder is discarded, as in MAE's released checkpoints.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ...errors import ZooError
from ...registry import create_model
from ...training.optim import param_groups
from .model import Block, TinyMIMViT, sincos_pos_embed
from .optim import absolute_lr, adamw_warmup_cosine


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, L, p * p * C]``, patches in row-major order, pixels as (row, column, channel)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def random_masking(tokens: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``1 - mask_ratio`` of each sample's tokens.

    Args:
        tokens: ``[B, L, D]`` patch tokens (no class token).
    Returns:
        kept ``[B, K, D]`` with ``K = int(L * (1 - mask_ratio))``; mask ``[B, L]`` (1 = dropped, in the original
        order); ids_restore ``[B, L]`` (the permutation that puts the shuffled sequence back in order).
    """
    b, n, d = tokens.shape
    keep = int(n * (1 - mask_ratio))
    ids_shuffle = torch.rand(b, n, device=tokens.device).argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    kept = tokens.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
    mask = torch.ones(b, n, device=tokens.device)
    mask[:, :keep] = 0
    return kept, mask.gather(1, ids_restore), ids_restore


def masked_pixel_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      norm_pix: bool = True) -> torch.Tensor:
    """Mean over dropped patches of the per-patch MSE. ``pred, target: [B, L, P]``, ``mask: [B, L]``.

    With ``norm_pix`` each target patch is standardised by its own mean and (unbiased) variance, eps 1e-6.
    """
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = (pred.float() - target.float()).pow(2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


def encode_visible(encoder: TinyMIMViT, images: torch.Tensor, mask_ratio: float):
    """The encoder on the visible patches: ``[B, C, H, W]`` -> (latent ``[B, 1 + K, D]``, mask, ids_restore)."""
    x = encoder.patch_embed(images) + encoder.pos_embed[:, 1:]
    x, mask, ids_restore = random_masking(x, mask_ratio)
    cls = (encoder.cls_token + encoder.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    for block in encoder.blocks:
        x = block(x)
    return encoder.norm(x), mask, ids_restore


class MAEDecoder(nn.Module):
    """MAE's light decoder (MAE's parameter names): latent ``[B, 1 + K, D]`` + ids_restore ``[B, L]`` ->
    per-patch pixel predictions ``[B, L, p * p * C]``.

    Args:
        embed_dim: encoder width; num_patches: L; patch_size, in_chans: the pixels predicted per patch.
        decoder_dim, depth, num_heads, mlp_ratio: the decoder transformer (MAE: 512, 8, 16, 4).
    """

    def __init__(self, embed_dim: int, num_patches: int, patch_size: int, in_chans: int = 3,
                 decoder_dim: int = 512, depth: int = 8, num_heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        grid = int(round(num_patches ** 0.5))
        if grid * grid != num_patches:
            raise ZooError(f"MAE needs a square patch grid, got {num_patches} patches")
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(decoder_dim, grid)[None], requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(decoder_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
                                                  norm_layer=norm) for _ in range(depth))
        self.decoder_norm = norm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size * patch_size * in_chans)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        b, n_vis, d = x.shape
        masked = self.mask_token.expand(b, ids_restore.shape[1] + 1 - n_vis, -1)
        patches = torch.cat([x[:, 1:], masked], dim=1).gather(1, ids_restore[..., None].expand(-1, -1, d))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


class MAEModule(pl.LightningModule):
    """MAE pre-training of a zoo ViT encoder. Batches: ``(images [B, C, H, W], labels)``; labels are unused.

    Args:
        model, model_args: the encoder (registry name and arguments; pre-training encoders use
            ``num_classes: 0``, ``global_pool: token``, ``fixed_pos_embed: true``).
        decoder_dim, decoder_depth, decoder_heads: the decoder (MAE: 512, 8, 16).
        mask_ratio: share of patches dropped (MAE: 0.75).
        norm_pix_loss: per-patch normalised pixel targets (MAE's best setting).
        lr, blr: absolute learning rate, or base rate scaled by effective batch / 256 (MAE: blr 1.5e-4).
        weight_decay, betas, warmup_epochs, min_lr: AdamW and the warm-up + cosine schedule (MAE: 0.05,
            (0.9, 0.95), 40 epochs, 0).
    """

    def __init__(self, model: str = "tinymim_vit_base", model_args: dict[str, Any] | None = None,
                 decoder_dim: int = 512, decoder_depth: int = 8, decoder_heads: int = 16, mask_ratio: float = 0.75,
                 norm_pix_loss: bool = True, lr: float | None = None, blr: float = 1.5e-4,
                 weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.95), warmup_epochs: float = 40,
                 min_lr: float = 0.0):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ZooError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.save_hyperparameters()
        self.model = create_model(model, **(model_args or {}))
        self.patch_size = self.model.patch_embed.patch_size[0]
        self.decoder = MAEDecoder(self.model.embed_dim, self.model.patch_embed.num_patches, self.patch_size,
                                  self.model.input_spec["input_size"][0], decoder_dim, decoder_depth, decoder_heads)

    @property
    def input_spec(self) -> dict:
        return self.model.input_spec

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B, C, H, W]`` -> ``{"loss", "pred" [B, L, P], "mask" [B, L]}``."""
        latent, mask, ids_restore = encode_visible(self.model, images, self.hparams.mask_ratio)
        pred = self.decoder(latent, ids_restore)
        loss = masked_pixel_loss(pred, patchify(images, self.patch_size), mask, self.hparams.norm_pix_loss)
        return {"loss": loss, "pred": pred, "mask": mask}

    def training_step(self, batch, batch_idx):
        loss = self(batch[0])["loss"]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self(batch[0])["loss"]
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=len(batch[0]), sync_dist=True)

    def test_step(self, batch, batch_idx):
        loss = self(batch[0])["loss"]
        self.log("test/loss", loss, on_epoch=True, batch_size=len(batch[0]), sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        groups = param_groups(self.model, hp.weight_decay) + param_groups(self.decoder, hp.weight_decay)
        return adamw_warmup_cosine(self, groups, absolute_lr(self, hp.lr, hp.blr), hp.warmup_epochs, hp.min_lr,
                                   hp.betas)
