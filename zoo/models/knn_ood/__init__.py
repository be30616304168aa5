"""kNN-OOD: Out-of-Distribution Detection with Deep Nearest Neighbors (Sun, Ming, Zhu, Li, ICML 2022)."""

from zoo.registry import Paper

_M = "zoo.models.knn_ood.model"

PAPER = Paper(
    id="knn_ood",
    title="Out-of-Distribution Detection with Deep Nearest Neighbors",
    authors="Sun, Ming, Zhu, Li",
    venue="ICML 2022",
    arxiv="2204.06507",
    code="https://github.com/deeplearning-wisc/knn-ood",
    license="knn-ood code: no licence file published by the authors; converted CIFAR ResNets: BSD-2-Clause (akamaster)",
    models={
        "knn_ood_resnet18": f"{_M}:knn_ood_resnet18",
        "knn_ood_resnet20": f"{_M}:knn_ood_resnet20",
        "knn_ood_resnet56": f"{_M}:knn_ood_resnet56",
        "knn_ood_cifar_resnet": f"{_M}:knn_ood_cifar_resnet",
        "knn_ood_timm": f"{_M}:knn_ood_timm",
    },
    tasks={"ood": "zoo.models.knn_ood.ood_task:OODTask"},
    converter="zoo.models.knn_ood.convert:convert",
    bench="zoo.bench.adapters:image_classifier",
    demo="zoo.models.knn_ood.demo:run",
    card="zoo/models/knn_ood/README.md",
    extra="ood",
)
