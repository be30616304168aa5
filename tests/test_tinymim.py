"""TinyMIM: ViT hooks, relations and losses against direct formulas, MAE pieces, converters, data views, optimiser
groups and bad inputs. The LightningModules on real CIFAR-10 are in test_tinymim_fit.py."""

import argparse
import math

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import zoo
from zoo.errors import ZooError
from zoo.models.tinymim.convert import convert
from zoo.models.tinymim.losses import feature_loss, relation_kl, relation_logits, relation_loss
from zoo.models.tinymim.mae import MAEDecoder, masked_pixel_loss, patchify, random_masking
from zoo.models.tinymim.model import sincos_pos_embed

SMALL = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=0, global_pool="token")


def small_vit(**kw):
    return zoo.create_model("tinymim_vit", **{**SMALL, **kw})


def test_block_qkv_are_the_attention_inputs_of_that_block():
    m = small_vit(last_block_heads=4).eval()
    x = torch.randn(2, 3, 32, 32)
    seen = {}
    m.blocks[1].norm1.register_forward_hook(lambda mod, inp, out: seen.setdefault("h", out))
    m.forward_features(x)
    q, k, v = m.block_qkv(x, 2)
    w, b = m.blocks[1].attn.qkv.weight, m.blocks[1].attn.qkv.bias
    direct = seen["h"] @ w.T + b  # [B, N, 3D]: q | k | v, each split into 2 heads of 16
    assert q.shape == (2, 2, 17, 16)
    assert torch.allclose(q[:, 1], direct[..., 16:32], atol=1e-6)
    assert torch.allclose(k[:, 0], direct[..., 32:48], atol=1e-6)
    assert torch.allclose(v[:, 1], direct[..., 80:96], atol=1e-6)
    assert m.block_qkv(x, 3)[0].shape == (2, 4, 17, 8)  # the last block splits into last_block_heads
    tokens = m.block_tokens(x, 3)
    assert torch.allclose(m.norm(tokens), m.forward_features(x), atol=1e-6)


def test_last_block_heads_keep_the_weight_layout_and_drop_path_modes():
    distilled = small_vit(last_block_heads=4, drop_path_rate=0.1, drop_path_mode="uniform")
    plain = small_vit()
    assert {k: v.shape for k, v in distilled.state_dict().items()} == {k: v.shape for k, v in
                                                                       plain.state_dict().items()}
    assert [b.drop_path1.drop_prob for b in distilled.blocks[:-1]] == [0.1, 0.1]
    assert isinstance(distilled.blocks[-1].drop_path1, torch.nn.Identity)
    linear = small_vit(drop_path_rate=0.2)
    assert isinstance(linear.blocks[0].drop_path1, torch.nn.Identity)
    assert linear.blocks[2].drop_path1.drop_prob == pytest.approx(0.2)
    # a last block rebuilt with another head count keeps its linear rate (0 -> 0.2 over 3 blocks)
    rebuilt = small_vit(drop_path_rate=0.2, last_block_heads=4)
    assert rebuilt.blocks[-1].attn.num_heads == 4
    for block, rate in zip(rebuilt.blocks, [0.0, 0.1, 0.2]):
        for drop_path in (block.drop_path1, block.drop_path2):
            assert getattr(drop_path, "drop_prob", 0.0) == pytest.approx(rate)
    assert plain.pos_embed.requires_grad
    assert small_vit(fixed_pos_embed=True).pos_embed.requires_grad is False


def test_relation_gradients_reach_the_student_only_up_to_its_relation_block_and_round_trip(tmp_path):
    teacher = small_vit(embed_dim=64, num_heads=4).eval().requires_grad_(False)
    student = small_vit(last_block_heads=4, drop_path_rate=0.1, drop_path_mode="uniform", fixed_pos_embed=True)
    x = torch.randn(2, 3, 32, 32)
    relation_loss(teacher.block_qkv(x, 3), student.block_qkv(x, 3))["loss"].backward()
    grads = {k: p.grad for k, p in student.named_parameters()}
    assert grads["blocks.0.attn.qkv.weight"].abs().sum() > 0 and grads["blocks.2.attn.qkv.weight"].abs().sum() > 0
    assert all(grads[k] is None for k in grads if k.startswith(("blocks.2.mlp", "blocks.2.attn.proj", "norm.")))
    assert grads["pos_embed"] is None  # fixed sin-cos
    folder = zoo.save_pretrained(student.eval(), tmp_path / "student")
    again = zoo.from_pretrained(folder).eval()
    assert again.heads_at(3) == 4 and again.heads_at(1) == 2 and not again.pos_embed.requires_grad
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(student.block_qkv(x, 3), again.block_qkv(x, 3)))


def test_sincos_pos_embed_matches_mae_formula():
    dim, grid = 16, 3
    pe = sincos_pos_embed(dim, grid)
    assert pe.shape == (10, 16) and torch.equal(pe[0], torch.zeros(16))
    row, col = 2, 1  # patch index row * grid + col
    omega = [1 / 10000 ** (i / 4) for i in range(4)]
    expected = ([math.sin(col * o) for o in omega] + [math.cos(col * o) for o in omega]
                + [math.sin(row * o) for o in omega] + [math.cos(row * o) for o in omega])
    assert torch.allclose(pe[1 + row * grid + col], torch.tensor(expected), atol=1e-6)


def _direct_relation_loss(t, s):
    """Loops over batch, head, query: KL(softmax(t_i) || softmax(s_i)) with each side's own 1/sqrt(d)."""
    (tq, tk, tv), (sq, sk, sv) = t, s
    total_qk = total_vv = 0.0
    b, h, n, _ = tq.shape
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                for (ta, tb, sa, sb, acc) in ((tq, tk, sq, sk, "qk"), (tv, tv, sv, sv, "vv")):
                    pt = torch.softmax(ta[bi, hi, i] @ tb[bi, hi].T / math.sqrt(ta.shape[-1]), 0)
                    ps = torch.softmax(sa[bi, hi, i] @ sb[bi, hi].T / math.sqrt(sa.shape[-1]), 0)
                    kl = float((pt * (pt.log() - ps.log())).sum())
                    if acc == "qk":
                        total_qk += kl
                    else:
                        total_vv += kl
    return total_qk / (b * h * n), total_vv / (b * h * n)


def test_relation_loss_matches_direct_formula_with_each_models_temperature():
    g = torch.Generator().manual_seed(0)
    teacher = tuple(torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))  # head dim 8: temperature sqrt(8)
    student = tuple(torch.randn(2, 3, 5, 2, generator=g) for _ in range(3))  # head dim 2: temperature sqrt(2)
    out = relation_loss(teacher, student)
    qk, vv = _direct_relation_loss(teacher, student)
    assert out["qk"].item() == pytest.approx(qk, rel=1e-5)
    assert out["vv"].item() == pytest.approx(vv, rel=1e-5)
    assert out["loss"].item() == pytest.approx(qk + vv, rel=1e-5)
    # the authors' form: KLDivLoss(log of the student's probabilities, teacher's probabilities), summed over keys
    t_rel, s_rel = relation_logits(*teacher[:2]).softmax(-1), relation_logits(*student[:2]).softmax(-1)
    authors = torch.nn.KLDivLoss(reduction="none")(s_rel.log(), t_rel).sum(-1).mean()
    assert torch.allclose(out["qk"], authors, atol=1e-6)
    assert relation_kl(relation_logits(*teacher[:2]), relation_logits(*teacher[:2])).abs().item() < 1e-6


def test_relation_shapes_must_agree():
    with pytest.raises(ZooError, match="last_block_heads"):
        relation_kl(torch.zeros(1, 4, 5, 5), torch.zeros(1, 2, 5, 5))


def test_feature_loss_matches_direct_formula():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 5, 6, generator=g) * 3, torch.randn(2, 5, 6, generator=g) * 5 + 2
    white = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-6)
    d = (s - white).abs()
    direct = torch.where(d < 2.0, 0.5 * d ** 2 / 2.0, d - 1.0).mean()
    assert torch.allclose(feature_loss(s, t), direct, atol=1e-5)


def test_patchify_masking_and_pixel_loss():
    imgs = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    p = patchify(imgs, 4)
    assert p.shape == (2, 4, 48)
    # patch 1 = rows 0-3, columns 4-7; its first pixel is (row 0, col 4), channels last
    assert torch.equal(p[0, 1, :3], imgs[0, :, 0, 4])
    tokens = torch.randn(3, 16, 5)
    torch.manual_seed(0)
    kept, mask, ids_restore = random_masking(tokens, 0.75)
    assert kept.shape == (3, 4, 5) and mask.sum(1).tolist() == [12, 12, 12]
    for b in range(3):
        visible = tokens[b][mask[b] == 0]
        assert {tuple(r.tolist()) for r in visible} == {tuple(r.tolist()) for r in kept[b]}
    pred, target = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    m = torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, 1]])
    norm_t = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    direct = sum(((pred[b, i] - norm_t[b, i]) ** 2).mean() for b in range(2) for i in range(4) if m[b, i]) / 4
    assert torch.allclose(masked_pixel_loss(pred, target, m), direct, atol=1e-6)
    dec = MAEDecoder(embed_dim=32, num_patches=16, patch_size=8, decoder_dim=16, depth=1, num_heads=2)
    assert dec(torch.randn(3, 5, 32), ids_restore).shape == (3, 16, 192)


def test_mae_decoder_puts_each_visible_latent_back_at_its_patch_and_the_mask_token_at_the_dropped_ones():
    """With the decoder's linear maps, norm and blocks taken out, its output less the position embedding is the
    un-shuffled sequence: each kept token at the patch it came from (so the pixel loss compares a prediction with
    its own patch), the shared mask token at every dropped patch."""
    tokens = torch.randn(3, 16, 8)
    torch.manual_seed(0)
    kept, mask, ids_restore = random_masking(tokens, 0.75)
    dec = MAEDecoder(embed_dim=8, num_patches=16, patch_size=1, in_chans=8, decoder_dim=8, depth=0, num_heads=2)
    dec.decoder_embed = dec.decoder_norm = dec.decoder_pred = torch.nn.Identity()
    with torch.no_grad():
        out = dec(torch.cat([torch.randn(3, 1, 8), kept], 1), ids_restore) - dec.decoder_pos_embed[:, 1:]
    visible = mask == 0
    assert torch.allclose(out[visible], tokens[visible], atol=1e-6)
    assert torch.allclose(out[~visible], dec.mask_token[0, 0].expand(int((~visible).sum()), 8), atol=1e-6)


def _distill_module(folder, **kw):
    """A `DistillModule` from a 4-block 64-wide teacher (4 heads, saved as a zoo folder under ``folder``) into a
    3-block student whose last block has the teacher's 4 heads."""
    from zoo.models.tinymim.distill import DistillModule

    torch.manual_seed(0)
    teacher = zoo.save_pretrained(small_vit(embed_dim=64, num_heads=4, depth=4).eval(), folder / "teacher")
    return DistillModule(student="tinymim_vit", student_args={**SMALL, "last_block_heads": 4},
                         teacher=str(teacher), **kw).eval()


def test_distillation_targets_the_teachers_chosen_block(tmp_path):
    """``teacher_layer`` picks the teacher block whose Q, K, V the relations come from (the paper's intermediate
    layer), against the student's last block; the default is the teacher's last block."""
    x = torch.randn(2, 3, 32, 32)
    for layer, module in ((2, _distill_module(tmp_path / "2", teacher_layer=2)), (4, _distill_module(tmp_path / "4"))):
        with torch.no_grad():
            direct = relation_loss(module.teacher.block_qkv(x, layer), module.model.block_qkv(x, 3))["loss"]
            assert torch.allclose(module.losses(x, x)["loss"], direct), layer
            other = relation_loss(module.teacher.block_qkv(x, 6 - layer), module.model.block_qkv(x, 3))["loss"]
            assert not torch.allclose(direct, other)  # the two blocks give the student different targets


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_a_distillation_step_gives_the_teacher_the_plain_view_and_the_student_the_jittered_one(tmp_path):
    """A batch is [B, 2, C, H, W] = (teacher view, student view) of one crop (`DistillViews`: colour jitter for the
    student only, the paper's split): the step feeds view 0 to the teacher and view 1 to the student."""
    module = _distill_module(tmp_path)
    seen = {}

    def spy(name, block_qkv):
        def record(images, layer):
            seen[name] = images
            return block_qkv(images, layer)
        return record

    module.teacher.block_qkv = spy("teacher", module.teacher.block_qkv)
    module.model.block_qkv = spy("student", module.model.block_qkv)
    views = torch.randn(2, 2, 3, 32, 32)
    module.training_step((views, torch.zeros(2, dtype=torch.long)), 0)
    assert torch.equal(seen["teacher"], views[:, 0]) and torch.equal(seen["student"], views[:, 1])


def _official_vit(**kw):
    """timm's VisionTransformer as the authors' fine-tuning model: qkv bias, LayerNorm eps 1e-6."""
    from functools import partial

    return VisionTransformer(norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, **kw).eval()


def _randomised(sd: dict) -> dict:
    g = torch.Generator().manual_seed(3)
    return {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in sd.items()}


def test_converter_finetuned_logits_equal_timm_vit(tmp_path):
    """TinyMIM-T fine-tuned layout at 224 px: `model` key, fc_norm + head, no final norm, 3 heads."""
    ref = _official_vit(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3, num_classes=1000,
                        global_pool="avg", fc_norm=True)
    sd = _randomised(ref.state_dict())
    assert {"fc_norm.weight", "head.weight", "blocks.11.attn.qkv.weight", "pos_embed"} <= set(sd)
    assert "norm.weight" not in sd and sd["pos_embed"].shape == (1, 197, 192)
    ref.load_state_dict(sd, strict=True)
    torch.save({"model": sd, "epoch": 99}, tmp_path / "tinymim_finetuned_t.pth")
    out = convert(tmp_path / "tinymim_finetuned_t.pth", tmp_path / "zoo")
    model = zoo.from_pretrained(out).eval()
    assert model.zoo_cfg["architecture"] == "tinymim_vit_tiny"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)


def test_converter_cls_token_classifier(tmp_path):
    ref = _official_vit(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=1, num_classes=10)
    sd = _randomised(ref.state_dict())
    ref.load_state_dict(sd)
    torch.save({"model": sd}, tmp_path / "cls.pth")
    model = zoo.from_pretrained(convert(tmp_path / "cls.pth", tmp_path / "zoo")).eval()
    assert model.zoo_cfg["model_args"]["global_pool"] == "token"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)


def test_converter_tinymim_pretrained_student_has_the_teachers_head_count(tmp_path):
    """TinyMIM-PT-T: encoder keys with the final norm, saved with the training args; 6 heads, last block 12."""
    ref = _official_vit(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=6, num_classes=0)
    sd = _randomised(ref.state_dict())
    ref.load_state_dict(sd)
    assert "norm.weight" in sd and "head.weight" not in sd
    args = argparse.Namespace(model="tinymim_vit_tiny_patch16", teacher_model="mae_vit_base", blr=1.5e-4)
    torch.save({"model": sd, "epoch": 299, "args": args}, tmp_path / "checkpoint-299.pth")
    out = convert(tmp_path / "checkpoint-299.pth", tmp_path / "zoo")
    model = zoo.from_pretrained(out)
    args = model.zoo_cfg["model_args"]
    assert (args["num_heads"], args["last_block_heads"]) == (6, 12)
    assert zoo.model_info(str(out))["metadata"]["trained_as"] == "tinymim_vit_tiny_patch16"
    x = torch.randn(1, 3, 224, 224)
    assert model.block_qkv(x, 12)[0].shape == (1, 12, 197, 16)
    with torch.no_grad():  # blocks 1-11 (6 heads) agree with timm
        ours = model.block_tokens(x, 11)
        ref.blocks = ref.blocks[:11]
        assert torch.allclose(ours, ref.blocks(ref._pos_embed(ref.patch_embed(x))), atol=1e-5)


@pytest.mark.parametrize("size", [
    # MAE ViT-B/16 with its 512x8 decoder: MAE's key names and shapes (20 s on 2 busy cores)
    pytest.param(dict(img_size=224, patch_size=16, embed_dim=768, depth=12, decoder=(512, 8, 16)),
                 marks=pytest.mark.slow, id="vit_base"),
    pytest.param(dict(img_size=32, patch_size=8, embed_dim=128, depth=2, decoder=(64, 2, 4)), id="small"),
])
def test_converter_mae_checkpoint_drops_the_decoder(size, tmp_path):
    """An MAE checkpoint with its decoder (MAE's key names): the decoder is dropped and the encoder's features
    equal timm's ViT with the same weights."""
    dim, (dec_dim, dec_depth, dec_heads) = size["embed_dim"], size["decoder"]
    ref = _official_vit(img_size=size["img_size"], patch_size=size["patch_size"], embed_dim=dim,
                        depth=size["depth"], num_heads=dim // 64, num_classes=0)
    sd = _randomised(ref.state_dict())
    grid = size["img_size"] // size["patch_size"]
    dec = MAEDecoder(dim, grid * grid, size["patch_size"], decoder_dim=dec_dim, depth=dec_depth, num_heads=dec_heads)
    sd.update({k: torch.zeros(v.shape) for k, v in dec.state_dict().items()})
    assert {"decoder_embed.weight", "mask_token", "decoder_pos_embed", f"decoder_blocks.{dec_depth - 1}.mlp.fc2.bias",
            "decoder_pred.weight"} <= set(sd)
    ref.load_state_dict({k: v for k, v in sd.items() if not k.startswith(("decoder", "mask_token"))})
    torch.save({"model": sd}, tmp_path / "mae_visualize_vit.pth")
    out = convert(tmp_path / "mae_visualize_vit.pth", tmp_path / "zoo")
    model = zoo.from_pretrained(out)
    meta = zoo.model_info(str(out))["metadata"]
    assert meta["layout"] == "MAE pre-trained encoder" and "decoder_blocks" in meta["dropped"]
    assert model.last_block_heads == dim // 64
    x = torch.randn(1, 3, size["img_size"], size["img_size"])
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), ref.forward_features(x), atol=1e-5)


def test_converter_mae_vit_huge_encoder_has_16_heads_of_80_channels(tmp_path):
    """MAE's ViT-H/14 (1280 wide, 16 heads; one block and 28-pixel images here: only the head count matters): the
    attention splits into 16 heads, as timm's ViT with the same weights."""
    ref = _official_vit(img_size=28, patch_size=14, embed_dim=1280, depth=1, num_heads=16, num_classes=0)
    sd = _randomised(ref.state_dict())
    ref.load_state_dict(sd)
    torch.save({"model": sd}, tmp_path / "mae_pretrain_vit_huge.pth")
    model = zoo.from_pretrained(convert(tmp_path / "mae_pretrain_vit_huge.pth", tmp_path / "zoo"))
    assert (model.zoo_cfg["model_args"]["num_heads"], model.last_block_heads) == (16, 16)
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), ref.forward_features(x), atol=1e-4)


@pytest.mark.parametrize("file_name, args, heads", [
    ("TinyMIM-PT-B.pth", None, (12, 16)),  # the authors' released file name
    ("checkpoint-299.pth", argparse.Namespace(model="tinymim_vit_base_patch16"), (12, 16)),
    ("mae_pretrain_vit_base.pth", None, (12, 12)),
    ("checkpoint-299.pth", None, (12, 12)),  # nothing tells: read as MAE, with a warning
])
def test_converter_encoder_head_split_from_args_or_file_name(tmp_path, file_name, args, heads):
    """Width-768 encoders (one block, small images: only the detection matters) are TinyMIM-B or MAE-B; one whose
    name and args do not say which is read as MAE-B with a warning that gives the TinyMIM-B override."""
    import warnings

    sd = _official_vit(img_size=32, patch_size=16, embed_dim=768, depth=1, num_heads=12, num_classes=0).state_dict()
    torch.save({"state_dict": sd} if args is None else {"model": sd, "args": args}, tmp_path / file_name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = zoo.from_pretrained(convert(tmp_path / file_name, tmp_path / "zoo"))
    assert (model.zoo_cfg["model_args"]["num_heads"], model.last_block_heads) == heads
    told = [str(w.message) for w in caught if "is read as an MAE encoder" in str(w.message)]
    assert told == ([f"{file_name} is read as an MAE encoder (12 heads in every block): neither its name nor saved "
                     f"training args tell it from a TinyMIM student of width 768, whose last block has 16 heads, "
                     f"which the weights do not show; if it is one, convert it with --model-args "
                     f"'{{last_block_heads: 16}}'"] if file_name == "checkpoint-299.pth" and args is None else [])


def test_converter_refuses_unknown_and_tinymim_star(tmp_path):
    torch.save({"model": {"encoder.w": torch.zeros(2)}}, tmp_path / "x.pth")
    with pytest.raises(ZooError, match="unrecognised layout"):
        convert(tmp_path / "x.pth", tmp_path / "out")
    star = _official_vit(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=1, num_classes=10).state_dict()
    star["dist_token"] = torch.zeros(1, 1, 64)
    torch.save({"model": star}, tmp_path / "star.pth")
    with pytest.raises(ZooError, match="TinyMIM\\*-T"):
        convert(tmp_path / "star.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zoo_convert_cli(tmp_path, capsys):
    from zoo.cli import main

    ref = _official_vit(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=1, num_classes=10,
                        global_pool="avg", fc_norm=True)
    torch.save({"model": ref.state_dict()}, tmp_path / "ft.pth")
    assert main(["convert", "tinymim", "--src", str(tmp_path / "ft.pth"), "--out", str(tmp_path / "z")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["convert", "tinymim", "--src", str(tmp_path / "none.pth"), "--out", str(tmp_path / "y")]) == 2


def _head_split_vit(dim: int, heads: int, last_heads: int):
    """timm's ViT encoder (2 blocks, final norm, no head) with ``heads`` heads and a last block of ``last_heads``:
    the reference for a checkpoint whose head split the converter cannot see. Its attention LayerNorms scale by
    about 1 and its qkv weights are 5x larger than `_randomised` makes them, so that attention is far from uniform
    and the split shows in the outputs."""
    from functools import partial

    from timm.models.vision_transformer import Block

    ref = _official_vit(img_size=32, patch_size=8, embed_dim=dim, depth=2, num_heads=heads, num_classes=0)
    ref.blocks[-1] = Block(dim, last_heads, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    sd = _randomised(ref.state_dict())
    sd |= {k: v + 1 for k, v in sd.items() if k.endswith("norm1.weight")}
    ref.load_state_dict({k: v * 5 if k.endswith("attn.qkv.weight") else v for k, v in sd.items()})
    return ref.eval()


def _attention_outputs(vit, x: torch.Tensor) -> torch.Tensor:
    """The outputs of every block's attention (before the residual sum), stacked."""
    outs = []
    hooks = [b.attn.register_forward_hook(lambda mod, inp, out: outs.append(out)) for b in vit.blocks]
    with torch.no_grad():
        vit.forward_features(x)
    for h in hooks:
        h.remove()
    return torch.stack(outs)


@pytest.mark.parametrize("file_name, dim, heads, overrides", [
    ("mae_pretrain_custom.pth", 64, (4, 4), {"num_heads": 4}),  # read as MAE: 1 head planned
    ("tinymim_student.pth", 192, (3, 12), {"num_heads": 3}),  # a 3-head student: the planned 12-head last block stays
    ("tinymim_student.pth", 192, (6, 6), {"last_block_heads": 6}),  # a student without the wider last block
])
def test_converter_model_args_give_the_head_split_the_weights_do_not_show(file_name, dim, heads, overrides, tmp_path):
    """The planned split gives other attention outputs than the reference; with the overrides the converted model
    equals it, and the folder's metadata records the overrides."""
    ref = _head_split_vit(dim, *heads)
    torch.save({"model": ref.state_dict()}, tmp_path / file_name)
    x = torch.randn(2, 3, 32, 32)
    guessed = zoo.from_pretrained(convert(tmp_path / file_name, tmp_path / "guessed")).eval()
    out = convert(tmp_path / file_name, tmp_path / "zoo", model_args=overrides)
    model = zoo.from_pretrained(out).eval()
    assert (model.heads_at(1), model.heads_at(2)) == heads != (guessed.heads_at(1), guessed.heads_at(2))
    assert not torch.allclose(_attention_outputs(guessed, x), _attention_outputs(ref, x), atol=1e-2)
    assert torch.allclose(_attention_outputs(model, x), _attention_outputs(ref, x), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), ref.forward_features(x), atol=1e-5)
    assert zoo.model_info(str(out))["metadata"]["model_args_overrides"] == overrides
    assert "model_args_overrides" not in zoo.model_info(str(tmp_path / "guessed"))["metadata"]


@pytest.mark.parametrize("overrides, needles", [
    ({"embed_dim": 128}, ["embed_dim", "fixed by the weights"]),
    ({"depth": 3, "patch_size": 4, "num_heads": 2}, ["depth, patch_size", "fixed by the weights"]),
    ({"num_heads": 5}, ["num_heads=5", "does not divide the width 64"]),
    ({"last_block_heads": 0}, ["last_block_heads=0", "must be a positive integer"]),
    ({"num_heads": "2"}, ["num_heads='2'", "must be a positive integer"]),
    ({"qkv_bias": False}, ["qkv_bias", "not an override", "num_heads, last_block_heads"]),
])
def test_converter_refuses_model_args_the_weights_fix_or_that_do_not_fit(overrides, needles, tmp_path):
    torch.save({"model": _head_split_vit(64, 1, 1).state_dict()}, tmp_path / "enc.pth")
    with pytest.raises(ZooError) as err:
        convert(tmp_path / "enc.pth", tmp_path / "out", model_args=overrides)
    assert all(n in str(err.value) for n in needles) and "\n" not in str(err.value), err.value
    assert not (tmp_path / "out").exists()


def test_zoo_convert_model_args_option(tmp_path, capsys):
    from zoo.cli import _convert_parser, main

    assert "--model-args" in _convert_parser([]).format_help()
    ref = _head_split_vit(64, 4, 4)
    torch.save({"model": ref.state_dict()}, tmp_path / "enc.pth")
    argv = ["convert", "tinymim", "--src", str(tmp_path / "enc.pth"), "--out", str(tmp_path / "z")]
    assert main(argv + ["--model-args", "{num_heads: 4}"]) == 0
    assert zoo.from_pretrained(tmp_path / "z").heads_at(2) == 4
    capsys.readouterr()
    for bad in ("[4]", "{num_heads: 4", "num_heads"):
        assert main(argv[:-1] + [str(tmp_path / "y"), "--model-args", bad]) == 2
        err = capsys.readouterr().err
        assert "--model-args" in err and "mapping" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "y").exists()


def _segmentation_heads() -> dict:
    """Keys a segmentation checkpoint holds beside its backbone (UperNet in mmseg: neck, decode and auxiliary
    heads)."""
    return {"decode_head.conv_seg.weight": torch.zeros(150, 64, 1, 1), "auxiliary_head.conv_seg.bias": torch.zeros(150),
            "neck.lateral_convs.0.conv.weight": torch.zeros(64, 64, 1, 1)}


@pytest.mark.parametrize("prefix", ["encoder.", "backbone."])
def test_converter_strips_a_downstream_backbone_prefix_and_drops_the_heads(prefix, tmp_path):
    ref = _head_split_vit(64, 1, 1)
    sd = {prefix + k: v for k, v in ref.state_dict().items()} | _segmentation_heads()
    torch.save({"state_dict": sd, "meta": {"iter": 160000}}, tmp_path / "seg.pth")
    out = convert(tmp_path / "seg.pth", tmp_path / "zoo")
    meta = zoo.model_info(str(out))["metadata"]
    assert meta["dropped"] == ["auxiliary_head", "decode_head", "neck"] and meta["key_prefix"] == prefix
    assert meta["layout"].startswith(f"backbone of a downstream checkpoint (under {prefix}")
    assert zoo.from_pretrained(out).pos_embed.requires_grad  # learnt downstream: not frozen as MAE's sin-cos
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(zoo.from_pretrained(out).forward_features(x), ref.forward_features(x), atol=1e-5)


def _mmseg_names(sd: dict) -> dict:
    """mmsegmentation's ViT/MAE backbone names (patch_embed.projection, layers.N.ln1, ffn.layers)."""
    renames = [("patch_embed.proj", "patch_embed.projection"), ("blocks.", "layers."), ("norm1", "ln1"),
               ("norm2", "ln2"), ("mlp.fc1", "ffn.layers.0.0"), ("mlp.fc2", "ffn.layers.1")]
    out = {}
    for k, v in sd.items():
        for old, new in renames:
            k = k.replace(old, new)
        out[k] = v
    return out


def _with_layer_scale_and_relative_bias(sd: dict) -> dict:
    """The BEiT-style backbone of TinyMIM's and MAE's segmentation code: per-block layer scale (gamma_1, gamma_2)
    and relative position bias tables, and the fpn1-4 feature pyramid."""
    out = dict(sd)
    for i in range(2):
        out |= {f"blocks.{i}.gamma_1": torch.ones(64), f"blocks.{i}.gamma_2": torch.ones(64),
                f"blocks.{i}.attn.relative_position_bias_table": torch.zeros(7 * 7 + 3, 1)}
    return out | {"fpn1.0.weight": torch.zeros(64, 128, 2, 2)}


@pytest.mark.parametrize("make, needles", [
    (lambda sd: {"backbone." + k: v for k, v in _with_layer_scale_and_relative_bias(sd).items()},
     ["layer scale (blocks.0.gamma_1)", "relative position bias (blocks.0.attn.relative_position_bias_table)",
      "convert the pre-trained encoder"]),
    (lambda sd: {"backbone." + k: v for k, v in _mmseg_names(sd).items()},
     ["mmsegmentation", "backbone.patch_embed.projection.weight", "timm names"]),
    (lambda sd: {p + k: v for k, v in sd.items() for p in ("encoder.", "backbone.")},
     ["two ViTs", "encoder.", "backbone."]),
    (lambda sd: {"backbone.net." + k: v for k, v in sd.items() if k != "cls_token"}  # ViTDet: no class token
     | {f"backbone.net.blocks.{i}.attn.rel_pos_{hw}": torch.zeros(7, 64) for i in range(2) for hw in "hw"},
     ["relative position embeddings (backbone.net.blocks.0.attn.rel_pos_h)"]),
])
def test_converter_refuses_downstream_backbones_it_cannot_hold(make, needles, tmp_path):
    sd = make(_head_split_vit(64, 1, 1).state_dict()) | _segmentation_heads()
    torch.save({"state_dict": sd}, tmp_path / "seg.pth")
    with pytest.raises(ZooError) as err:
        convert(tmp_path / "seg.pth", tmp_path / "out")
    assert all(n in str(err.value) for n in needles) and "\n" not in str(err.value), err.value
    assert not (tmp_path / "out").exists()


def test_distill_views_share_one_crop():
    from PIL import Image

    from zoo.models.tinymim.data import DistillViews

    spec = small_vit().input_spec
    im = Image.fromarray((torch.rand(40, 40, 3) * 255).byte().numpy())
    torch.manual_seed(0)
    same = DistillViews(spec, color_jitter=0.0)(im)
    assert same.shape == (2, 3, 32, 32) and torch.equal(same[0], same[1])
    torch.manual_seed(0)
    jittered = DistillViews(spec, color_jitter=0.4)(im)
    assert torch.equal(jittered[0], same[0]) and not torch.equal(jittered[1], same[1])


def test_finetune_view_jitters_colour_only_without_randaugment():
    """timm's rule, made a named setting: the fine-tuning view's colour jitter applies where RandAugment is off
    (the CIFAR recipe: 0.4), never beside RandAugment (MAE's recipe), and 0 turns it off."""
    from torchvision.transforms import ColorJitter

    from zoo.models.tinymim.data import finetune_transform

    def jitters(**kwargs) -> bool:
        return any(isinstance(t, ColorJitter) for t in finetune_transform(small_vit().input_spec, **kwargs)
                   .transforms[-1].transforms)

    assert jitters(rand_augment=None, color_jitter=0.4)
    assert not jitters(rand_augment=None, color_jitter=0)
    assert not jitters(rand_augment="rand-m9-mstd0.5-inc1", color_jitter=0.4)


def test_layer_decay_groups():
    from zoo.models.tinymim.optim import layer_decay_groups

    m = small_vit(num_classes=10, global_pool="avg")
    groups = layer_decay_groups(m, 0.05, 0.5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(m.named_parameters())
    assert by_param[id(named["cls_token"])]["lr_scale"] == 0.5 ** 4  # depth 3: layers 0..4
    assert by_param[id(named["cls_token"])]["weight_decay"] == 0.0
    assert by_param[id(named["patch_embed.proj.weight"])]["weight_decay"] == 0.05
    assert by_param[id(named["blocks.1.attn.qkv.weight"])]["lr_scale"] == 0.5 ** 2
    assert by_param[id(named["blocks.1.attn.qkv.bias"])]["weight_decay"] == 0.0
    assert by_param[id(named["head.weight"])]["lr_scale"] == 1.0


def test_load_encoder_resamples_position_embedding_and_names_bad_keys():
    from zoo.models.tinymim.finetune import load_encoder

    enc = small_vit(img_size=16, fixed_pos_embed=True)  # grid 2
    clf = small_vit(num_classes=10, global_pool="avg")  # grid 4
    load_encoder(clf, enc.state_dict())
    assert torch.equal(clf.blocks[0].attn.qkv.weight, enc.blocks[0].attn.qkv.weight)
    assert clf.pos_embed.shape == (1, 17, 32) and clf.pos_embed.requires_grad
    bad = dict(enc.state_dict())
    bad["blocks.0.mlp.fc1.weight"] = torch.zeros(3, 3)
    with pytest.raises(ZooError, match="blocks.0.mlp.fc1.weight"):
        load_encoder(clf, bad)


def test_teacher_and_encoder_sources_share_one_resolver(tmp_path):
    from zoo.models.tinymim.distill import load_frozen
    from zoo.models.tinymim.finetune import encoder_weights

    folder = zoo.save_pretrained(small_vit(), tmp_path / "vit")
    assert torch.equal(encoder_weights(str(folder))["cls_token"], load_frozen(str(folder)).cls_token)
    assert set(encoder_weights(str(folder / "model.safetensors"))) == set(encoder_weights(str(folder)))
    for load, what in ((load_frozen, "teacher"), (encoder_weights, "pretrained encoder")):
        with pytest.raises(ZooError, match=f"{what} .* is not a zoo model folder .*zoo convert tinymim"):
            load(str(tmp_path / "missing" / "dir"))
    with pytest.raises(ZooError, match="not a zoo model folder"):  # a weights file is no teacher: no config
        load_frozen(str(folder / "model.safetensors"))


@pytest.mark.parametrize("batch_size, steps", [(1, False), (2, True), (3, True)])
def test_mixup_skips_a_batch_left_with_fewer_than_two_images(batch_size, steps):
    from zoo.models.tinymim.finetune import FineTuneModule

    module = FineTuneModule("tinymim_vit", {**SMALL, "num_classes": 10, "global_pool": "avg"})
    module.log = lambda *a, **k: None  # no trainer attached
    torch.manual_seed(0)
    loss = module.training_step((torch.randn(batch_size, 3, 32, 32), torch.arange(batch_size)), 0)
    assert (loss is not None) == steps and (loss is None or torch.isfinite(loss))


def test_bench_adapter_train_steps():
    from zoo.bench.harness import benchmark

    r = benchmark(model=small_vit(), mode="train", batch_size=2, warmup=1, iters=1)
    assert r["samples_per_s"] > 0 and "relation distillation" in r["input"]
    r = benchmark(model=small_vit(num_classes=10, global_pool="avg"), mode="infer", batch_size=2, warmup=1, iters=1)
    assert r["flops_per_sample"] > 0


@pytest.mark.parametrize("kwargs, needle", [
    (dict(global_pool="max"), "global_pool"),
    (dict(img_size=30), "multiple of patch_size"),
    (dict(num_heads=3), "not divisible"),
    (dict(drop_path_mode="cosine"), "drop_path_mode"),
])
def test_bad_model_arguments(kwargs, needle):
    with pytest.raises(ZooError, match=needle):
        small_vit(**kwargs)


def test_bad_layer_and_module_arguments(tmp_path):
    from zoo.models.tinymim.data import TinyMIMDataModule
    from zoo.models.tinymim.distill import DistillModule
    from zoo.models.tinymim.mae import MAEModule

    with pytest.raises(ZooError, match="blocks 1..3"):
        small_vit().block_qkv(torch.zeros(1, 3, 32, 32), 4)
    teacher = zoo.save_pretrained(small_vit(embed_dim=64, num_heads=4), tmp_path / "teacher")
    with pytest.raises(ZooError, match="last_block_heads: 4"):
        DistillModule("tinymim_vit", SMALL, teacher=str(teacher))
    with pytest.raises(ZooError, match="needs a teacher"):
        DistillModule("tinymim_vit", SMALL)
    with pytest.raises(ZooError, match="target"):
        DistillModule("tinymim_vit", SMALL, teacher=str(teacher), target="logits")
    with pytest.raises(ZooError, match="same tokens"):
        DistillModule("tinymim_vit", {**SMALL, "patch_size": 4}, teacher=str(teacher), target="feature")
    with pytest.raises(ZooError, match="not a zoo model folder"):
        DistillModule("tinymim_vit", SMALL, teacher=str(tmp_path / "missing" / "dir"))
    with pytest.raises(ZooError, match="num_heads: 4 .*student_layer is 2 of 3"):
        DistillModule("tinymim_vit", {**SMALL, "last_block_heads": 4}, teacher=str(teacher), student_layer=2)
    for layer in ("teacher_layer", "student_layer"):  # 0 is no block (1-based), not "the last"
        with pytest.raises(ZooError, match=r"layer 0 does not exist: this ViT has blocks 1\.\.3"):
            DistillModule("tinymim_vit", {**SMALL, "last_block_heads": 4}, teacher=str(teacher), **{layer: 0})
    with pytest.raises(ZooError, match=r"the teacher reads images normalised with mean \[0\.485.*student_args: "
                                       r"\{mean: \[0\.485"):
        DistillModule("tinymim_vit", {**SMALL, "last_block_heads": 4, "mean": (0.5,) * 3, "std": (0.5,) * 3},
                      teacher=str(teacher))
    resnet = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "resnet")
    with pytest.raises(ZooError, match="is a knn_ood_resnet20 model .*must be a TinyMIM/MAE ViT.*zoo convert tinymim"):
        DistillModule("tinymim_vit", SMALL, teacher=str(resnet))
    with pytest.raises(ZooError, match="mask_ratio"):
        MAEModule("tinymim_vit", SMALL, mask_ratio=1.0)
    with pytest.raises(ZooError, match="views"):
        TinyMIMDataModule(views="both")


def test_other_image_sizes_and_bad_block_qkv_images_are_user_errors():
    """The ViT takes img_size only (timm's patch and position embeddings, no dynamic size): another size is the zoo's
    input error, not timm's AssertionError. block_qkv and block_tokens skip ``forward`` and its input hook, and check
    their images as it does (were "not enough values to unpack" for [C, H, W], a convolution's error for uint8)."""
    m = small_vit().eval()
    with pytest.raises(ZooError, match="takes 32x32 images .* got 64x64"):
        m(torch.randn(2, 3, 64, 64))
    for read in (m.block_qkv, m.block_tokens):
        with pytest.raises(ZooError, match=r"got shape \[3, 32, 32\] \(one image: add the batch dimension"):
            read(torch.randn(3, 32, 32), 2)
        with pytest.raises(ZooError, match="takes float images normalised .* got torch.uint8"):
            read(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 2)
        with pytest.raises(ZooError, match="takes 32x32 images .* got 64x64"):
            read(torch.randn(1, 3, 64, 64), 2)


def test_compare_script_paths_agree_and_save(tmp_path, monkeypatch):
    """benchmarks/compare_tinymim.py at a toy size: the zoo step and the re-stated authors' step give the same loss,
    and the result is saved with both rows."""
    import importlib.util
    import json

    path = zoo.hub.repo_root() / "benchmarks" / "compare_tinymim.py"
    spec = importlib.util.spec_from_file_location("compare_tinymim", path)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    monkeypatch.setattr(compare, "peak_for", lambda device, precision: (1.0, "fixed for the test", "fp32"))

    def build_small(img_size, device):  # the script's ViT-B -> ViT-T pair, narrowed and shortened
        teacher = small_vit(img_size=img_size, embed_dim=64, num_heads=4, fixed_pos_embed=True).eval()
        student = small_vit(img_size=img_size, last_block_heads=4, drop_path_rate=0.1, drop_path_mode="uniform",
                            fixed_pos_embed=True)
        return teacher.requires_grad_(False), student

    monkeypatch.setattr(compare, "build", build_small)
    compare.main(["--device", "cpu", "--img-size", "32", "--batch-size", "2", "--iters", "2", "--warmup", "0",
                  "--out-dir", str(tmp_path)])
    (result,) = tmp_path.glob("compare_tinymim__*.json")
    rows = json.loads(result.read_text())["rows"]
    assert [r["path"] for r in rows] == ["reference", "zoo"]
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], abs=1e-5) and rows[0]["loss"] > 0
    assert all(r["images_per_s"] > 0 and r["zoo_step_gflop"] > 0 for r in rows)
