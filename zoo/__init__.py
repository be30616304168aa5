"""zoo: six research papers as pretrained, trainable and benchmarked PyTorch models.

Public API (everything else is internal)::

    zoo.list_models(pattern="*", pretrained=False)   # names, or name.tag entries with weights
    zoo.create_model("knn_ood_resnet20.cifar10", pretrained=True)
    zoo.save_pretrained(model, "out_dir")              # config.json + model.safetensors + README.md
    zoo.from_pretrained("out_dir" | "name.tag")
    zoo.model_info("name[.tag]")

`import zoo` is cheap: it imports neither torch nor any per-paper dependency. Each function below loads its
implementation module on first use, and per-paper code loads only when a model of that paper is created.
"""

__version__ = "0.1.0"

_LAZY = {
    "list_models": "zoo.registry",
    "list_papers": "zoo.registry",
    "create_model": "zoo.registry",
    "model_info": "zoo.registry",
    "save_pretrained": "zoo.checkpoint",
    "from_pretrained": "zoo.checkpoint",
    "load_state_dict": "zoo.checkpoint",
    "ZooError": "zoo.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
