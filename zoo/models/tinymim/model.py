"""Vision Transformers for TinyMIM: timm's `VisionTransformer` with the hooks the paper needs.

A `TinyMIMViT` *is* a timm ``VisionTransformer`` (same module names, so the authors' timm-named checkpoints load
key for key), plus:

* ``last_block_heads``: the last block may split its attention into a different number of heads than the others.
  TinyMIM builds its students this way so that the student's relation maps have the teacher's head count
  (ViT-T/S distilled with 6 heads and a 12-head last block; ViT-B with 12 and a 16-head last block). The weights
  have the same shapes either way, so a 6-head distilled ViT-T loads into the 3-head ViT-T it is fine-tuned as.
* `block_qkv`: the per-head queries, keys and values of one block (input after that block's ``norm1``), computed
  by running the model only up to that block, and `block_tokens`: the token features after one block.
* ``drop_path_mode``: ``"linear"`` (timm's rule, 0 -> rate over depth; the fine-tuning recipe) or ``"uniform"``
  (the same rate in every block but the last, as the authors' distillation students).
* ``fixed_pos_embed``: a frozen 2-D sin-cos position embedding (MAE and TinyMIM pre-training); fine-tuning makes it
  learnable and starts from the checkpoint's values.

Weights are initialised as MAE does (xavier-uniform linear and patch-embedding weights, class token N(0, 0.02),
sin-cos position embedding). Tensors: images ``[B, C, H, W]``; tokens ``[B, N, D]`` with ``N = 1 + (H/p)(W/p)``,
the class token first; per-head tensors ``[B, heads, N, D/heads]``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

from ...data.transforms import INTERPOLATIONS
from ...errors import ZooError, require
from ...registry import check_image_input
from ..sizes import check_bools, check_ints, check_mean_std, check_positive

require("timm", "tinymim")  # a clear error naming the extra before the imports below
from timm.layers import DropPath  # noqa: E402
from timm.models.vision_transformer import Block, VisionTransformer  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position embedding: ``[1 + grid * grid, dim]``, a zero row for the class token first.

    The first ``dim / 2`` channels encode the column index, the rest the row index; each half is
    ``[sin(pos * w_i), cos(pos * w_i)]`` with ``w_i = 10000 ** (-i / (dim / 4))``.
    """
    if dim % 4:
        raise ZooError(f"embed_dim {dim} must be a multiple of 4 for the sin-cos position embedding")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")

    def encode(pos):
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([encode(cols), encode(rows)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb]).float()


class TinyMIMViT(VisionTransformer):
    """A ViT with a class token, built from keyword arguments.

    Args:
        img_size, patch_size, in_chans: input geometry (32 px with patch 4 for CIFAR, 224 with patch 16 for ImageNet).
        embed_dim, depth, num_heads, mlp_ratio: the transformer (qkv bias on, LayerNorm eps 1e-6, GELU).
        last_block_heads: head count of the last block (default: ``num_heads``).
        num_classes: classifier outputs; 0 for a pre-training encoder (``forward`` then returns pooled features).
        global_pool: ``"avg"`` (mean of patch tokens + ``fc_norm``, the MAE/TinyMIM fine-tuning head) or ``"token"``
            (class token after the final ``norm``; the layout of pre-training encoders).
        drop_path_rate, drop_path_mode: stochastic depth, ``"linear"`` or ``"uniform"`` (see the module docstring).
        fixed_pos_embed: freeze the sin-cos position embedding (pre-training).
        mean, std, interpolation, crop_pct: the input contract recorded in ``input_spec``.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, last_block_heads: int | None = None,
                 mlp_ratio: float = 4.0, global_pool: str = "avg", drop_path_rate: float = 0.0,
                 drop_path_mode: str = "linear", fixed_pos_embed: bool = False, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, interpolation: str = "bicubic", crop_pct: float = 1.0):
        check_ints(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, depth=depth,
                   num_heads=num_heads, last_block_heads=last_block_heads)
        check_ints(0, num_classes=num_classes)
        check_positive(mlp_ratio=mlp_ratio, crop_pct=crop_pct)
        check_bools(fixed_pos_embed=fixed_pos_embed)
        check_mean_std(mean, std, in_chans)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        if not (isinstance(drop_path_rate, (int, float)) and 0 <= drop_path_rate < 1):
            raise ValueError(f"drop_path_rate must be a probability in [0, 1), got {drop_path_rate!r}")
        if int(embed_dim * mlp_ratio) < 1:  # timm's MLP width
            raise ValueError(f"mlp_ratio {mlp_ratio} leaves the MLP of a width-{embed_dim} block no hidden units: "
                             f"give at least 1/{embed_dim}")
        if global_pool not in ("avg", "token"):
            raise ZooError(f"global_pool must be 'avg' or 'token', got {global_pool!r}")
        if drop_path_mode not in ("linear", "uniform"):
            raise ZooError(f"drop_path_mode must be 'linear' or 'uniform', got {drop_path_mode!r}")
        if img_size % patch_size:
            raise ZooError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        last_block_heads = num_heads if last_block_heads is None else last_block_heads
        for heads in (num_heads, last_block_heads):
            if embed_dim % heads:
                raise ZooError(f"embed_dim {embed_dim} is not divisible by {heads} heads")
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
                         global_pool=global_pool, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                         mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm_layer,
                         drop_path_rate=drop_path_rate if drop_path_mode == "linear" else 0.0, weight_init="skip")
        if last_block_heads != num_heads:  # rebuilt with the other head count, keeping timm's drop-path modules
            last = Block(embed_dim, last_block_heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            last.drop_path1, last.drop_path2 = self.blocks[-1].drop_path1, self.blocks[-1].drop_path2
            self.blocks[-1] = last
        if drop_path_mode == "uniform" and drop_path_rate > 0:
            for block in self.blocks[:-1]:
                block.drop_path1, block.drop_path2 = DropPath(drop_path_rate), DropPath(drop_path_rate)
        self.last_block_heads = last_block_heads
        self.pos_embed.requires_grad_(not fixed_pos_embed)
        # fixed_size: timm's patch embedding and position embedding take img_size only (no dynamic_img_size);
        # another size needs a model built for it (fine-tuning resamples the position embedding)
        self.input_spec = {"input_size": [in_chans, img_size, img_size], "mean": list(mean), "std": list(std),
                           "interpolation": interpolation, "crop_pct": crop_pct, "fixed_size": True}
        self.init_mae_weights()

    @torch.no_grad()
    def init_mae_weights(self) -> None:
        """MAE's initialisation: sin-cos position embedding, xavier-uniform patch embedding and linear weights,
        zero biases, class token N(0, 0.02), unit LayerNorms."""
        grid = self.patch_embed.grid_size[0]
        self.pos_embed.copy_(sincos_pos_embed(self.embed_dim, grid)[None])
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def check_layer(self, layer: int) -> None:
        """Raise a `ZooError` unless ``layer`` names a block (1-based)."""
        if not 1 <= layer <= len(self.blocks):
            raise ZooError(f"layer {layer} does not exist: this ViT has blocks 1..{len(self.blocks)}")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> tokens ``[B, N, D]`` with position embeddings (class token first).

        `block_qkv` and `block_tokens` start here, not at ``forward``: the images get the check that ``forward``'s
        input hook gives a zoo model (`zoo.registry.check_image_input`; models from `zoo.create_model`)."""
        if getattr(self, "zoo_cfg", None):
            check_image_input(self, (x,))
        return self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))

    def block_tokens(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Token features ``[B, N, D]`` after block ``layer`` (1-based), running only blocks ``1..layer``."""
        self.check_layer(layer)
        x = self.embed(x)
        for block in self.blocks[:layer]:
            x = block(x)
        return x

    def block_qkv(self, x: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head Q, K, V of block ``layer`` (1-based), each ``[B, heads, N, D / heads]``.

        The input of that block's attention is its ``norm1`` output; blocks after ``layer``, and the attention
        output and MLP of block ``layer`` itself, are never run (the authors' relation path returns there too).
        """
        self.check_layer(layer)
        x = self.embed(x)
        for block in self.blocks[:layer - 1]:
            x = block(x)
        block = self.blocks[layer - 1]
        attn = block.attn
        b, n, _ = x.shape
        qkv = attn.qkv(block.norm1(x)).reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def heads_at(self, layer: int) -> int:
        """Number of attention heads of block ``layer`` (1-based)."""
        self.check_layer(layer)
        return self.blocks[layer - 1].attn.num_heads


def local_source(source: str, what: str, weights_file: bool = False) -> Path | None:
    """Resolve where a model to start from lies: a zoo folder (or, with ``weights_file``, a ``.safetensors``
    file) -> its path; a string that is no path -> None (a ``name.tag`` of the manifest). Any other path raises a
    `ZooError` naming ``what`` (e.g. "teacher") and how to make a zoo folder."""
    path = Path(source)
    if path.is_dir() or (weights_file and path.suffix == ".safetensors" and path.is_file()):
        return path
    if path.exists() or "/" in source:
        file = ", a .safetensors file" if weights_file else ""
        raise ZooError(f"{what} {source} is not a zoo model folder (config.json + model.safetensors){file} or a "
                       f"name.tag from `zoo list --pretrained`; convert an MAE or TinyMIM checkpoint with "
                       f"`zoo convert tinymim --src FILE --out DIR`")
    return None


def tinymim_vit(**kwargs) -> TinyMIMViT:
    """Any size (``embed_dim``, ``depth``, ``num_heads``, ...); used by the converter and the CIFAR recipes."""
    return TinyMIMViT(**kwargs)


def tinymim_vit_tiny(**kwargs) -> TinyMIMViT:
    """ViT-T: width 192, 12 blocks, 3 heads (the fine-tuning layout; distillation uses 6 heads, last block 12)."""
    return TinyMIMViT(**{"embed_dim": 192, "depth": 12, "num_heads": 3, **kwargs})


def tinymim_vit_small(**kwargs) -> TinyMIMViT:
    """ViT-S: width 384, 12 blocks, 6 heads (distillation: last block 12 heads)."""
    return TinyMIMViT(**{"embed_dim": 384, "depth": 12, "num_heads": 6, **kwargs})


def tinymim_vit_base(**kwargs) -> TinyMIMViT:
    """ViT-B: width 768, 12 blocks, 12 heads (the MAE-B teacher; distilled from MAE-L with a 16-head last block)."""
    return TinyMIMViT(**{"embed_dim": 768, "depth": 12, "num_heads": 12, **kwargs})


def tinymim_vit_large(**kwargs) -> TinyMIMViT:
    """ViT-L: width 1024, 24 blocks, 16 heads (the MAE-L teacher of TinyMIM-B, read at block 18)."""
    return TinyMIMViT(**{"embed_dim": 1024, "depth": 24, "num_heads": 16, **kwargs})

