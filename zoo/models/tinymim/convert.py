"""Authors' checkpoints -> zoo folders: TinyMIM's released models and MAE's released encoders.

All of them are ``{"model": state_dict, ...}`` files (``state_dict`` is accepted too) with timm key names
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``),
which `TinyMIMViT` shares. The layout is recognised from the keys:

* **fine-tuned classifier** (TinyMIM/MAE ``main_finetune.py``): ``fc_norm`` + ``head``, no final ``norm`` ->
  global-average pooling with ``fc_norm``; with ``norm`` + ``head`` and no ``fc_norm`` (MAE ``--cls_token``) ->
  class-token pooling.
* **MAE with its decoder** (``decoder_*``, ``mask_token``; MAE's "visualize" checkpoints): the decoder is dropped
  and the encoder kept.
* **pre-trained encoder** (``norm``, no head): TinyMIM's distilled students or MAE's ``mae_pretrain_vit_*.pth``.
  Only the head split differs, which the weights do not show: TinyMIM students were distilled with 6 heads and a
  12-head last block (ViT-T/S) or 12 heads and a 16-head last block (ViT-B); MAE encoders use ``width / 64``
  heads throughout (ViT-B 12, ViT-L 16), except ViT-H/14, 1280 wide with 16 heads of 80 channels (`WIDTH_HEADS`).
  A TinyMIM checkpoint is recognised by its saved training ``args.model`` (``tinymim_*``), by ``tinymim`` in the
  file name, or by a width MAE never released (192, 384); anything else is read as MAE, with a warning where
  neither says MAE either (`is_unnamed_encoder`: a renamed TinyMIM-B student would get the wrong last block).

**Overrides** (``model_args``; ``zoo convert tinymim ... --model-args '{num_heads: 3, last_block_heads: 12}'``): a
checkpoint trained with another head split than the guessed one gives its heads here. Only the head counts
(`OVERRIDABLE`) can be given, each a divisor of the width; a key left out keeps its planned value. What the weights
fix (width, depth, patch and image size, MLP ratio, classes, pooling: `FIXED_BY_WEIGHTS`) is refused. The saved
folder records them as ``metadata["model_args_overrides"]``.

**Downstream checkpoints** hold the ViT under a prefix (``backbone.`` in mmsegmentation/mmdetection, ``encoder.`` in
other wrappers) beside their heads (``decode_head.``, ``auxiliary_head.``, ``neck.``). When the timm keys are found
under exactly one of `BACKBONE_PREFIXES` and not at the top, the prefix is stripped, the keys outside it are dropped
(named in ``metadata["dropped"]``, the prefix in ``metadata["key_prefix"]``), and the ViT is read as above. The
segmentation backbones of TinyMIM's and MAE's own code (BEiT-style: layer scale ``gamma_1``/``gamma_2``, relative
position bias tables), mmsegmentation's ViT/MAE (``patch_embed.projection``, ``layers.N.ln1``, ``ffn.layers``, also
layer scale and relative position bias) and ViTDet (relative position ``rel_pos_h``/``rel_pos_w``) are refused by
name: `TinyMIMViT` has neither layer scale nor relative position terms; convert the pre-trained encoder they were
fine-tuned from instead.

Head counts of classifiers are ``width / 64`` (ViT-T 3, S 6, B 12, L 16; ViT-H 16), as in the authors' fine-tuning
models; classifiers evaluate as MAE does (shorter side resized by 1 / 0.875, centre crop).
TinyMIM*-T (a DeiT distillation token and an extra 1280-wide layer) is not supported and is refused by name.
Training state saved beside the weights (``epoch``; ``args`` as a plain argparse namespace, read without running
any code) is kept as metadata; optimiser state is ignored.
"""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

import torch

from ...checkpoint import foreign_state_dict, load_state_dict, read_foreign, save_pretrained
from ...errors import ZooError
from ...hub import sha256_file
from ...registry import create_model

NAMED_SIZES = {(192, 12): "tinymim_vit_tiny", (384, 12): "tinymim_vit_small", (768, 12): "tinymim_vit_base",
               (1024, 24): "tinymim_vit_large"}
TINYMIM_HEADS = {192: (6, 12), 384: (6, 12), 768: (12, 16)}  # (heads, last-block heads) of the distilled students
WIDTH_HEADS = {1280: 16}  # widths whose heads are not 64 channels wide: MAE's ViT-H/14 (heads of 80)
MAE_DECODER = ("decoder_", "mask_token")
MAE_ENCODER = "MAE pre-trained encoder"  # the layout `plan` names an encoder not named or trained as TinyMIM
OVERRIDABLE = ("num_heads", "last_block_heads")  # what the weights do not show
FIXED_BY_WEIGHTS = ("embed_dim", "depth", "patch_size", "img_size", "in_chans", "mlp_ratio", "num_classes",
                    "global_pool")
BACKBONE_PREFIXES = ("encoder.", "backbone.")
TIMM_KEYS = ("patch_embed.proj.weight", "pos_embed")
UNSUPPORTED_TERMS = {  # key-name pattern -> what TinyMIMViT lacks (BEiT-style segmentation backbones, ViTDet)
    r"(^|\.)(gamma_[12]|ls[12]\.gamma)$": "layer scale",
    r"(^|\.)relative_position_bias_table$": "relative position bias",
    r"(^|\.)rel_pos_[hw]$": "relative position embeddings",
}


def read_checkpoint(src: Path) -> tuple[dict, dict]:
    """(state dict, metadata) of an authors' checkpoint; ``module.`` prefixes are removed."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = read_foreign(src)
    sd = foreign_state_dict(ckpt, src)
    meta = {}
    if isinstance(ckpt.get("epoch"), int):
        meta["epoch"] = ckpt["epoch"]
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace) and isinstance(getattr(args, "model", None), str):
        meta["trained_as"] = args.model
    return sd, meta


def strip_backbone_prefix(sd: dict) -> tuple[dict, str, list[str]]:
    """(state dict, stripped prefix, dropped top-level names): the ViT of a downstream checkpoint, whose timm keys lie
    under one of `BACKBONE_PREFIXES` only; ``sd`` itself (and ``""``, ``[]``) otherwise."""
    if all(k in sd for k in TIMM_KEYS):
        return sd, "", []
    found = [p for p in BACKBONE_PREFIXES if all(p + k in sd for k in TIMM_KEYS)]
    if len(found) > 1:
        raise ZooError(f"the checkpoint holds two ViTs (under {' and '.join(found)}): the converter cannot tell which "
                       f"is the backbone; save the one you want as its own state dict and convert that")
    if not found:
        return sd, "", []
    prefix = found[0]
    dropped = sorted({k.split(".")[0] for k in sd if not k.startswith(prefix)})
    return {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}, prefix, dropped


def refuse_unsupported(sd: dict) -> None:
    """Raise a `ZooError` naming the ViT variants `TinyMIMViT` cannot hold: mmsegmentation's key names, layer scale
    and relative position terms (see the module docstring)."""
    mmseg = next((k for k in sd if k.endswith("patch_embed.projection.weight")), None)
    if mmseg:
        raise ZooError(f"{mmseg}: an mmsegmentation/mmdetection ViT (patch_embed.projection, layers.N.ln1, "
                       f"ffn.layers), which the converter does not read: it reads timm names (patch_embed.proj, "
                       f"blocks.N.norm1, mlp.fc1); convert the pre-trained encoder the model was fine-tuned from")
    terms = {}
    for pattern, term in UNSUPPORTED_TERMS.items():
        key = next((k for k in sd if re.search(pattern, k)), None)
        if key:
            terms[term] = key
    if terms:
        found = ", ".join(f"{term} ({key})" for term, key in terms.items())
        raise ZooError(f"this ViT has {found}, which TinyMIMViT does not implement (BEiT-style segmentation "
                       f"backbones and ViTDet have them); convert the pre-trained encoder it was fine-tuned from (e.g. "
                       f"TinyMIM-PT-B.pth, mae_pretrain_vit_base.pth)")


def geometry(sd: dict) -> dict:
    """Width, depth, patch size, image size, channels (and an MLP ratio other than 4) from a ViT's shapes."""
    if "dist_token" in sd or "head_dist.weight" in sd or any(k.startswith("conv1x1") for k in sd):
        raise ZooError("this is a TinyMIM*-T checkpoint (distillation token, extra 1280-wide layer), which the zoo "
                       "does not implement; convert the plain TinyMIM-T/S/B checkpoints instead")
    refuse_unsupported(sd)
    if any(k not in sd for k in TIMM_KEYS):
        sample = ", ".join(list(sd)[:5])
        raise ZooError(f"unrecognised layout (first keys: {sample}); expected a timm-named ViT with "
                       f"patch_embed.proj.weight and pos_embed (TinyMIM or MAE checkpoint)")
    dim, in_chans, patch, _ = sd["patch_embed.proj.weight"].shape
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
    grid = int(round((sd["pos_embed"].shape[1] - 1) ** 0.5))
    if grid * grid + 1 != sd["pos_embed"].shape[1]:
        raise ZooError(f"pos_embed has {sd['pos_embed'].shape[1]} entries: expected a square grid plus one class "
                       f"token")
    out = {"embed_dim": dim, "depth": depth, "patch_size": patch, "img_size": grid * patch, "in_chans": in_chans}
    hidden = sd["blocks.0.mlp.fc1.weight"].shape[0] if "blocks.0.mlp.fc1.weight" in sd else 4 * dim
    if hidden != 4 * dim:
        out["mlp_ratio"] = hidden / dim
    return out


def is_tinymim_encoder(src: Path, meta: dict, dim: int) -> bool:
    """Whether an encoder-only checkpoint is a TinyMIM student (see the module docstring)."""
    trained_as = meta.get("trained_as", "")
    if trained_as:
        return trained_as.startswith("tinymim")
    return "tinymim" in src.name.lower() or dim in (192, 384)


def is_unnamed_encoder(src: Path, meta: dict, dim: int) -> bool:
    """Whether an encoder `plan` read as MAE's (so not named or trained as TinyMIM) could as well be a TinyMIM
    student: it has a TinyMIM student's width, no saved training args, and no "mae" in its file name."""
    return dim in TINYMIM_HEADS and not meta.get("trained_as") and "mae" not in src.name.lower()


def plan(src: Path, sd: dict, meta: dict) -> tuple[str, dict, dict, str]:
    """(architecture, model_args, zoo state dict, layout name) for a checkpoint."""
    g = geometry(sd)
    dim, depth = g["embed_dim"], g["depth"]
    arch = NAMED_SIZES.get((dim, depth), "tinymim_vit")
    if arch == "tinymim_vit":
        args = {**g, "num_heads": WIDTH_HEADS.get(dim, max(1, dim // 64))}
    else:
        args = {k: v for k, v in g.items() if k not in ("embed_dim", "depth")}
    sd = {k: v for k, v in sd.items() if not k.startswith(MAE_DECODER)}
    if "head.weight" in sd:
        pool = "avg" if "fc_norm.weight" in sd else "token"
        args.update(num_classes=sd["head.weight"].shape[0], global_pool=pool, crop_pct=0.875)  # MAE's eval crop
        pooling = "global average pool + fc_norm" if pool == "avg" else "class token"
        return arch, args, sd, f"fine-tuned classifier ({pooling})"
    args.update(num_classes=0, global_pool="token", fixed_pos_embed=True)
    if is_tinymim_encoder(src, meta, dim) and dim in TINYMIM_HEADS:
        args["num_heads"], args["last_block_heads"] = TINYMIM_HEADS[dim]
        return arch, args, sd, "TinyMIM pre-trained student"
    return arch, args, sd, MAE_ENCODER


def apply_overrides(args: dict, overrides: dict, width: int) -> dict:
    """``args`` with the user's head counts ``overrides`` (`OVERRIDABLE`), each checked to divide ``width``."""
    fixed = [k for k in overrides if k in FIXED_BY_WEIGHTS]
    if fixed:
        raise ZooError(f"--model-args {', '.join(fixed)}: fixed by the weights (their shapes and layout), so they "
                       f"cannot be overridden; give only {', '.join(OVERRIDABLE)}")
    unknown = [k for k in overrides if k not in OVERRIDABLE]
    if unknown:
        raise ZooError(f"--model-args {', '.join(unknown)}: not an override the TinyMIM converter takes; give only "
                       f"{', '.join(OVERRIDABLE)} (the head split the weights do not show)")
    for key, heads in overrides.items():
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise ZooError(f"--model-args {key}={heads!r}: a head count must be a positive integer (e.g. "
                           f"{max(1, width // 64)})")
        if width % heads:
            raise ZooError(f"--model-args {key}={heads!r} does not divide the width {width}: give a head count that "
                           f"divides {width} (e.g. {max(1, width // 64)})")
    return {**args, **overrides}


def convert(src: str | Path, out_dir: str | Path, model_args: dict | None = None) -> Path:
    """Convert a TinyMIM or MAE checkpoint ``src`` into a zoo folder at ``out_dir``; returns ``out_dir``.
    ``model_args`` overrides the planned head counts (see the module docstring)."""
    src = Path(src)
    sd, meta = read_checkpoint(src)
    sd, prefix, dropped = strip_backbone_prefix(sd)
    arch, args, zoo_sd, layout = plan(src, sd, meta)
    if prefix:  # trained further downstream: its position embedding was learnt, whatever the encoder's was
        args.pop("fixed_pos_embed", None)
        layout = f"backbone of a downstream checkpoint (under {prefix}; read as: {layout})"
    width = zoo_sd["patch_embed.proj.weight"].shape[0]
    if model_args:
        args = apply_overrides(args, model_args, width)
    elif layout == MAE_ENCODER and is_unnamed_encoder(src, meta, width):
        last = TINYMIM_HEADS[width][1]
        warnings.warn(f"{src.name} is read as an MAE encoder ({args['num_heads']} heads in every block): neither its "
                      f"name nor saved training args tell it from a TinyMIM student of width {width}, whose last block "
                      f"has {last} heads, which the weights do not show; if it is one, convert it with --model-args "
                      f"'{{last_block_heads: {last}}}'", stacklevel=2)
    try:
        model = create_model(arch, **args)
    except ZooError as exc:
        raise ZooError(f"{src}: {exc}") from None
    load_state_dict(model, zoo_sd, source=str(src))
    dropped = sorted(set(dropped) | {k.split(".")[0] for k in sd if k.startswith(MAE_DECODER)})
    metadata = {"converted_from": src.name, "source_sha256": sha256_file(src), "layout": layout, **meta}
    if prefix:
        metadata["key_prefix"] = prefix
    if dropped:
        metadata["dropped"] = dropped
    if model_args:
        metadata["model_args_overrides"] = dict(model_args)
    return save_pretrained(model, out_dir, metadata=metadata)
