"""Degenerate size arguments (0 blocks, a classifier with no outputs, a width its heads do not divide, ...), flags
that are not bools and malformed input normalisation are refused when the model is built, with one `ZooError` naming
the argument and its value (`zoo.models.sizes`); before, each of these built a useless model without a word, or
failed with an error about tensors that named no argument."""

from __future__ import annotations

import pytest

import zoo
from zoo.errors import ZooError

VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
LIDAR = dict(modalities=["lidar"])  # cmt_tiny without its image branch: the checks come first either way
SMOL = dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1)

CASES = [
    # TinyMIM
    ("tinymim_vit", dict(VIT, depth=0), "depth must be at least 1, got 0"),
    ("tinymim_vit_tiny", dict(img_size=32, patch_size=8, depth=-1), "depth must be at least 1, got -1"),
    ("tinymim_vit", dict(VIT, embed_dim=0), "embed_dim must be at least 1, got 0"),
    ("tinymim_vit", dict(VIT, num_heads=-2), "num_heads must be at least 1, got -2"),
    ("tinymim_vit", dict(VIT, last_block_heads=0), "last_block_heads must be at least 1, got 0"),
    ("tinymim_vit", dict(VIT, mlp_ratio=0), "mlp_ratio must be a number above 0, got 0"),
    ("tinymim_vit", dict(VIT, mlp_ratio=0.01), "mlp_ratio 0.01 leaves the MLP of a width-32 block no hidden units: "
                                               "give at least 1/32"),
    ("tinymim_vit", dict(VIT, patch_size=0), "patch_size must be at least 1, got 0"),
    ("tinymim_vit", dict(VIT, drop_path_rate=-0.1), "drop_path_rate must be a probability in [0, 1), got -0.1"),
    ("tinymim_vit", dict(VIT, drop_path_rate=1.5), "drop_path_rate must be a probability in [0, 1), got 1.5"),
    ("tinymim_vit", dict(VIT, crop_pct=0), "crop_pct must be a number above 0, got 0"),
    # flags, names and input normalisation
    ("tinymim_vit", dict(VIT, fixed_pos_embed="false"), "fixed_pos_embed must be True or False, got 'false'"),
    ("tinymim_vit", dict(VIT, std=(0.2, 0.0, 0.2)),
     "std must be 3 numbers above 0 (one per input channel), got (0.2, 0.0, 0.2)"),
    ("tinymim_vit", dict(VIT, interpolation="lanczos"),
     "interpolation must be one of bilinear, bicubic, nearest, got 'lanczos'"),
    ("knn_ood_resnet20", dict(mean="cifar"), "mean must be 3 numbers (one per input channel), got 'cifar'"),
    ("knn_ood_timm", dict(model_name=["resnet18"]),
     "model_name must be a timm model name (a string), got ['resnet18']"),
    ("pmt_iqa_efficientnet_lite0", dict(multi_scale="no"), "multi_scale must be True or False, got 'no'"),
    ("doorping_convnet", dict(channels=1, mean=(0.5, 0.5, 0.5)),
     "mean must be 1 number (one per input channel), got (0.5, 0.5, 0.5)"),
    ("cmt_tiny", dict(LIDAR, bev_skip_empty="yes"), "bev_skip_empty must be True or False, got 'yes'"),
    ("cmt_tiny", dict(LIDAR, img_backbone=None), "img_backbone must be a backbone name (a string), got None"),
    ("tinymim_vit", dict(VIT, img_size=0), "img_size must be at least 1, got 0"),
    ("tinymim_vit", dict(VIT, in_chans=0), "in_chans must be at least 1, got 0"),
    ("tinymim_vit", dict(VIT, num_classes=-1), "num_classes must be at least 0, got -1"),
    # kNN-OOD
    ("knn_ood_resnet18", dict(num_classes=0), "num_classes must be at least 1, got 0"),
    ("knn_ood_resnet20", dict(num_classes=-1), "num_classes must be at least 1, got -1"),
    ("knn_ood_timm", dict(model_name="resnet18", num_classes=0), "num_classes must be at least 1, got 0"),
    ("knn_ood_timm", dict(model_name="resnet18", image_size=0), "image_size must be at least 1, got 0"),
    # PMT-IQA
    ("pmt_iqa_imagenet_backbone", dict(num_classes=-1), "num_classes must be at least 1, got -1"),
    ("pmt_iqa_imagenet_backbone", dict(num_classes=0), "num_classes must be at least 1, got 0"),
    ("pmt_iqa_efficientnet_lite0", dict(num_levels=1), "num_levels must be at least 2, got 1"),
    ("pmt_iqa_efficientnet_lite0", dict(lda_out=0), "lda_out must be at least 1, got 0"),
    ("pmt_iqa_efficientnet_lite0", dict(in_size=0, multi_scale=False), "in_size must be at least 1, got 0"),
    ("pmt_iqa_efficientnet_lite0", dict(hidden=(112, 0)), "hidden must be 2 integers of at least 1, got (112, 0)"),
    ("pmt_iqa_efficientnet_lite0", dict(hidden=112), "hidden must be 2 integers of at least 1, got 112"),
    # DOORPING
    ("doorping_convnet", dict(width=0), "width must be at least 1, got 0"),
    ("doorping_convnet_in", dict(width=0), "width must be at least 1, got 0"),
    ("doorping_convnet", dict(depth=0), "depth must be at least 1, got 0"),
    ("doorping_convnet", dict(channels=0), "channels must be at least 1, got 0"),
    ("doorping_convnet_in", dict(num_classes=0), "num_classes must be at least 1, got 0"),
    ("doorping_alexnet", dict(image_size=0), "image_size must be at least 1, got 0"),
    ("doorping_alexnet", dict(num_classes=0), "num_classes must be at least 1, got 0"),
    ("doorping_vgg11", dict(channels=0), "channels must be at least 1, got 0"),
    ("doorping_resnet18", dict(num_classes=0), "num_classes must be at least 1, got 0"),
    ("doorping_resnet18", dict(hidden=-1), "hidden must be at least 0, got -1"),
    # drum LMs: GPT-2 fields under GPT-2's names, Llama's (SmolLM2) under theirs
    ("drums_gpt2_tiny", dict(config={"n_layer": 0}), "config n_layer must be at least 1, got 0"),
    ("drums_gpt2_tiny", dict(config={"n_head": -2}), "config n_head must be at least 1, got -2"),
    ("drums_gpt2_tiny", dict(config={"n_embd": 63}), "config n_embd 63 must be divisible by config n_head 2"),
    ("drums_gpt2_tiny", dict(config={"n_positions": 0}), "config n_positions must be at least 1, got 0"),
    ("drums_gpt2_tiny", dict(config={"n_inner": 0}), "config n_inner must be at least 1, got 0"),
    ("drums_gpt2_tiny", dict(max_length=0), "max_length must be at least 1, got 0"),
    ("drums_smollm2_scratch", dict(config=dict(SMOL, num_hidden_layers=0)),
     "config num_hidden_layers must be at least 1, got 0"),
    ("drums_smollm2_scratch", dict(config=dict(SMOL, hidden_size=0)), "config hidden_size must be at least 1, got 0"),
    ("drums_smollm2_scratch", dict(config=dict(SMOL, intermediate_size=0)),
     "config intermediate_size must be at least 1, got 0"),
    ("drums_smollm2_scratch", dict(config=dict(SMOL, num_key_value_heads=None)),
     "config num_key_value_heads must be an integer of at least 1, got None: leave it out to keep the base's value"),
    ("drums_smollm2_scratch", dict(config=dict(SMOL, num_attention_heads=4, num_key_value_heads=3)),
     "config num_attention_heads 4 must be divisible by config num_key_value_heads 3"),
    # CMT
    ("cmt_tiny", dict(LIDAR, num_classes=0), "num_classes must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, num_heads=0), "num_heads must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, hidden_dim=130), "hidden_dim 130 must be divisible by num_heads 4"),
    ("cmt_tiny", dict(LIDAR, hidden_dim=129, num_heads=3),
     "hidden_dim must be even (the BEV sine embedding pairs its channels), got 129"),
    ("cmt_tiny", dict(LIDAR, num_layers=0), "num_layers must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, num_query=0), "num_query must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, depth_num=0), "depth_num must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, ffn_dim=0), "ffn_dim must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, head_conv=0), "head_conv must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, head_kernel=2),
     "head_kernel must be odd (the head's convolutions keep the query count), got 2"),
    ("cmt_tiny", dict(LIDAR, max_num=0), "max_num must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, dn_groups=-1), "dn_groups must be at least 0, got -1"),
    ("cmt_tiny", dict(LIDAR, sweeps=-1), "sweeps must be at least 0, got -1"),
    ("cmt_tiny", dict(LIDAR, max_points_per_voxel=0), "max_points_per_voxel must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, max_voxels=(0, 0)), "max_voxels must be 2 integers of at least 1, got (0, 0)"),
    ("cmt_tiny", dict(LIDAR, pillar_max_points=0), "pillar_max_points must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, lidar_channels=0), "lidar_channels must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, lidar_channels=1), "lidar_channels must be at least 2 for downsample_scale 8 (the "
                                                "pillar encoder halves it for each stage before the last), got 1"),
    ("cmt_tiny", dict(LIDAR, downsample_scale=0), "downsample_scale must be at least 1, got 0"),
    ("cmt_tiny", dict(LIDAR, downsample_scale=3),
     "downsample_scale must be a power of 2 of at least 2 (the pillar encoder's BEV stride in voxels), got 3"),
    ("cmt_tiny", dict(LIDAR, voxel_size=(-0.2, 0.2, 0.2)),
     "voxel_size must be 3 numbers above 0, got (-0.2, 0.2, 0.2)"),
    ("cmt_tiny", dict(LIDAR, grid_size=(0, 320, 30)), "grid_size must be 3 integers of at least 1, got (0, 320, 30)"),
    ("cmt_tiny", dict(LIDAR, point_cloud_range=(32, -32, -3, -32, 32, 3)),
     "point_cloud_range must be (x0, y0, z0, x1, y1, z1) with x0 < x1, y0 < y1 and z0 < z1, got "
     "(32, -32, -3, -32, 32, 3)"),
    ("cmt_tiny", dict(LIDAR, bev_channels=(0, 128)), "bev_channels must be a list of integers of at least 1, got "
                                                     "(0, 128)"),
    ("cmt_tiny", dict(LIDAR, bev_layer_nums=(-1, 2)), "bev_layer_nums must be a list of integers of at least 0, got "
                                                      "(-1, 2)"),
    ("cmt_tiny", dict(LIDAR, bev_up_strides=(0, 2)), "bev_up_strides must be a list of integers of at least 1, got "
                                                     "(0, 2)"),
    ("cmt_tiny", dict(LIDAR, bev_channels=(64,)),
     "bev_channels, bev_layer_nums, bev_layer_strides, bev_up_channels, bev_up_strides must have one entry per SECOND "
     "stage each, got bev_channels=(64,), bev_layer_nums=(2, 2), bev_layer_strides=(1, 2), "
     "bev_up_channels=(128, 128), bev_up_strides=(1, 2)"),
    ("cmt_tiny", dict(modalities=["camera"], image_size=(0, 0)),
     "image_size must be 2 integers of at least 1, got (0, 0)"),
]


def _id(case) -> str:
    """``arch-arg=value``: what the case changes, without the small ViT's and SmolLM2's shared sizes and cmt_tiny's
    modalities."""
    arch, kwargs, _ = case
    shown = {k: v for k, v in kwargs.items() if k not in VIT or v != VIT[k]}
    shown = {k: ({c: x for c, x in v.items() if SMOL.get(c) != x} if k == "config" else v) for k, v in shown.items()}
    return f"{arch}-" + ",".join(f"{k}={v}" for k, v in shown.items() if k != "modalities" or arch != "cmt_tiny")


@pytest.mark.parametrize("arch, kwargs, message", CASES, ids=[_id(c) for c in CASES])
def test_a_degenerate_size_is_one_error_naming_the_argument_and_value(arch, kwargs, message):
    given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    with pytest.raises(ZooError) as err:
        zoo.create_model(arch, **kwargs)
    assert str(err.value) == f"bad arguments for model {arch!r} ({given}): ValueError: {message}"


def test_a_size_only_the_other_encoder_reads_is_not_checked():
    """downsample_scale sets the pillar encoder's stride; the sparse encoder's is fixed, and it ignores the value."""
    model = zoo.create_model("cmt_tiny", modalities=["lidar"], lidar_encoder="sparse", downsample_scale=3)
    assert model.lidar_encoder_kind == "sparse"


@pytest.mark.parametrize("arch, config, field, given", [("drums_gpt2_tiny", {"n_layer": "two"}, "n_layer", "str"),
                                                        ("drums_smollm2_scratch", dict(SMOL, hidden_size=64.0),
                                                         "hidden_size", "float")])
def test_a_drum_lm_config_field_of_the_wrong_type_is_one_line(arch, config, field, given):
    """transformers' config classes validate their fields' types; the multi-line error is one ZooError naming it."""
    with pytest.raises(ZooError) as err:
        zoo.create_model(arch, config=config)
    expected = f"Validation error for field '{field}': TypeError: Field '{field}' expected int, got {given}"
    assert expected in str(err.value)
    assert "\n" not in str(err.value) and str(err.value).startswith("config for base ")
