"""How a labelled dataset's classes meet a model's outputs (`to_model_labels`), and how a result says where its
labels came from (`labels_note`). Lightning-free, so that evaluation does not import the trainer."""

from __future__ import annotations

from ..errors import ZooError
from .images import relabel


def model_classes(model) -> list[str] | None:
    """The names of ``model``'s output classes in order, as its config records them (``model.zoo_cfg["classes"]``,
    which `zoo.save_pretrained` keeps), or None when it does not."""
    classes = (getattr(model, "zoo_cfg", None) or {}).get("classes")
    return [str(c) for c in classes] if classes else None


def num_outputs(model) -> int | None:
    """How many classes ``model`` scores (``get_classifier().out_features``), or None when that is not known."""
    get_classifier = getattr(model, "get_classifier", None)
    return getattr(get_classifier(), "out_features", None) if callable(get_classifier) else None


UNMATCHED = "folder names that are not the model's classes"


def to_model_labels(model, *datasets, unmatched_ok: bool = False) -> str:
    """Give the labelled ``datasets`` ``model``'s label indices, in place; returns where the labels come from,
    ``"model class names"`` or ``"sorted folder names"`` (a result's ``labels_from``).

    When the model records its class names (`model_classes`), each dataset's class (folder) names are matched to
    them: a name the model does not know is a `ZooError` naming it and the model's classes. Otherwise the labels stay
    the indices of the sorted folder names, and a dataset with more classes than the model has outputs is a
    `ZooError`. With ``unmatched_ok`` (a task that needs the labels only among the datasets, as kNN-OOD's ID data)
    those two cases leave the labels as they are and return `UNMATCHED` instead."""
    known, outputs = model_classes(model), num_outputs(model)
    arch = (getattr(model, "zoo_cfg", None) or {}).get("architecture", type(model).__name__)
    unfit = [ds for ds in datasets if (known is not None and not set(ds.classes) <= set(known))
             or (known is None and outputs is not None and len(ds.classes) > outputs)]
    if unfit and unmatched_ok:
        return UNMATCHED
    for ds in datasets:
        if known is not None:
            unknown = [c for c in ds.classes if c not in known]
            if unknown:
                raise ZooError(f"{ds.name} has classes {arch} was not trained on: {', '.join(unknown)} (its classes: "
                               f"{', '.join(known)}); name the class folders as those, or fine-tune the model on "
                               f"{ds.name} first")
            relabel(ds, known)
        elif outputs is not None and len(ds.classes) > outputs:
            raise ZooError(f"{ds.name} has {len(ds.classes)} classes ({', '.join(ds.classes)}) but {arch} has "
                           f"{outputs} outputs: use a model with one output per class, or fine-tune it on {ds.name} "
                           f"first")
    return "model class names" if known is not None else "sorted folder names"


def labels_note(result: dict) -> str:
    """A phrase for a printed result whose labels were not matched to the model's class names, else ``""``."""
    if result.get("labels_from") == "sorted folder names":
        return "; labels: the sorted folder names, as the model records no class names"
    if result.get("labels_from") == UNMATCHED:
        return "; not scored: its classes are not the model's"
    return ""
