"""DOORPING: Backdoor Attacks Against Dataset Distillation (Liu, Li, Backes, Shen, Zhang, NDSS 2023)."""

from zoo.registry import Paper

_M = "zoo.models.doorping.model"
KEY_PREFIX = "doorping_distilled"  # manifest keys of the distilled sets: doorping_distilled.TAG

PAPER = Paper(
    id="doorping",
    title="Backdoor Attacks Against Dataset Distillation",
    authors="Liu, Li, Backes, Shen, Zhang",
    venue="NDSS 2023",
    arxiv="2301.01197",
    code="https://github.com/liuyugeng/baadd",
    license="baadd code: Apache-2.0; distilled sets made by the zoo: Apache-2.0, derived from Fashion-MNIST (MIT) "
            "and CIFAR-10 (research use)",
    models={
        "doorping_convnet": f"{_M}:doorping_convnet",
        "doorping_convnet_in": f"{_M}:doorping_convnet_in",
        "doorping_alexnet": f"{_M}:doorping_alexnet",
        # the authors' cross-architecture evaluation pool (baadd DC/utils.py get_eval_pool, eval_mode 'M')
        "doorping_vgg11": f"{_M}:doorping_vgg11",
        "doorping_resnet18": f"{_M}:doorping_resnet18",
    },
    tasks={"backdoor": "zoo.models.doorping.backdoor_task:BackdoorTask"},
    converter="zoo.models.doorping.convert:convert",
    bench="zoo.bench.adapters:image_classifier",
    demo="zoo.models.doorping.demo:run",
    card="zoo/models/doorping/README.md",
    data=(KEY_PREFIX,),
    extra=None,  # the core suffices: setup.cfg's doorping extra is scipy, which scikit-image installs
)
