"""TinyMIM: An Empirical Study of Distilling MIM Pre-trained Models (Ren, Wei, Zhang, Hu, CVPR 2023)."""

from zoo.registry import Paper

_M = "zoo.models.tinymim.model"

PAPER = Paper(
    id="tinymim",
    title="TinyMIM: An Empirical Study of Distilling MIM Pre-trained Models",
    authors="Ren, Wei, Zhang, Hu",
    venue="CVPR 2023",
    arxiv="2301.01296",
    code="https://github.com/OliverRensu/TinyMIM",
    license="TinyMIM code: no licence file published (built on MAE, CC BY-NC 4.0); MAE weights: CC BY-NC 4.0; "
            "CIFAR-10 weights trained by the zoo: Apache-2.0",
    models={
        "tinymim_vit": f"{_M}:tinymim_vit",
        "tinymim_vit_tiny": f"{_M}:tinymim_vit_tiny",
        "tinymim_vit_small": f"{_M}:tinymim_vit_small",
        "tinymim_vit_base": f"{_M}:tinymim_vit_base",
        "tinymim_vit_large": f"{_M}:tinymim_vit_large",
    },
    converter="zoo.models.tinymim.convert:convert",
    bench="zoo.models.tinymim.bench:adapter",
    demo="zoo.models.tinymim.demo:run",
    card="zoo/models/tinymim/README.md",
    extra="tinymim",
)
