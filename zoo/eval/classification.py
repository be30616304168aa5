"""``zoo eval MODEL --task classification --data PATH``: top-1 / top-5 accuracy of an image classifier.

Class folders are matched to the model's outputs by name when the model records its class names; otherwise the
labels are the sorted folder names, and the result says so (``labels_from``). A folder without train/ and test/
splits is scored whole, as split ``test`` (the default); another split of it is refused."""

from __future__ import annotations

import numpy as np
import torch

from ..data.images import open_split
from ..data.labels import labels_note, to_model_labels
from ..data.transforms import eval_transform
from ..data.views import TransformView
from ..errors import ZooError
from ..registry import paper_of
from .base import EvalTask


DEFAULT_SPLIT = "test"


class ClassificationTask(EvalTask):
    name = "classification"

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--data", required=True, help="catalogue name, folder or archive of labelled images "
                                                          "(<class>/ folders, or train/<class>/ and test/<class>/)")
        parser.add_argument("--split", default=DEFAULT_SPLIT, help=f"split to evaluate (default: {DEFAULT_SPLIT})")

    def setup(self, model, ctx) -> None:
        super().setup(model, ctx)
        self._check_classifier(model)
        ds = open_split(self.options.data, self.options.split, whole=DEFAULT_SPLIT)
        self.dataset_name = ds.name
        if getattr(model, "num_classes", None) == 0:
            name = getattr(model, "zoo_cfg", {}).get("architecture", "the model")
            raise ZooError(f"{name} is an encoder without a classifier (num_classes 0): it must be fine-tuned on "
                           f"{ds.name} first, then evaluate the fine-tuned model")
        self.labels_from = to_model_labels(model, ds)
        self.num_classes = len(ds.classes)  # the model's classes when matched by name
        view = TransformView(ds, np.arange(len(ds)), eval_transform(model.input_spec))
        self.loader = ctx.loader(view)
        model.eval().to(ctx.device)

    def _check_classifier(self, model) -> None:
        """Raise a `ZooError` naming the tasks that fit ``model`` unless it is an image classifier as zoo (and timm)
        models declare one: ``get_classifier()`` (the layer giving logits [B, num_classes]) and
        ``input_spec["input_size"]`` ([C, H, W]). Structural, so nothing runs before the dataset is scored."""
        spec = getattr(model, "input_spec", None)
        if callable(getattr(model, "get_classifier", None)) and isinstance(spec, dict) and "input_size" in spec:
            return
        arch = getattr(model, "zoo_cfg", {}).get("architecture")
        tasks = sorted(set(paper_of(arch).tasks) - {self.name}) if arch else []
        fits = f"; evaluate it with --task {' or --task '.join(tasks)}" if tasks else ""
        raise ZooError(f"{arch or type(model).__name__} cannot classify images: the classification task needs an "
                       f"image classifier (logits [B, num_classes], get_classifier() and input_spec['input_size'], "
                       f"e.g. knn_ood_resnet20.cifar10){fits}")

    def inputs(self):
        yield self.options.split, self.loader

    def score(self, batch):
        x, y = batch
        logits = self.model(x.to(self.ctx.device))
        if logits.ndim != 2 or logits.shape[1] < self.num_classes:
            raise ZooError(f"the model returns outputs of shape {tuple(logits.shape)} but {self.dataset_name} has "
                           f"{self.num_classes} classes: evaluate a classifier with {self.num_classes} outputs "
                           "(an encoder must be fine-tuned on the dataset first)")
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
        y = torch.as_tensor(y)
        return {"top1": (top5[:, 0] == y).float(), "top5": (top5 == y[:, None]).any(1).float()}

    def finalize(self, scores):
        s = scores[self.options.split]
        return {"dataset": self.dataset_name, "split": self.options.split, "n": int(s["top1"].size),
                "top1": float(s["top1"].mean()), "top5": float(s["top5"].mean()), "labels_from": self.labels_from}

    def table(self, r) -> str:
        return (f"{r['dataset']} {r['split']} (n={r['n']}): top-1 {100 * r['top1']:.2f} %, "
                f"top-5 {100 * r['top5']:.2f} %{labels_note(r)}")
