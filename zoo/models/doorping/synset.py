"""The distilled-set artifact: one safetensors file, loaded by path or by manifest key (sha256-verified).

Tensors: ``images`` [N, C, H, W] float32 in the dataset's normalised space, ``labels`` [N] int64 and, for attacked
sets, ``trigger`` [C, H, W] and ``trigger_mask`` [1, H, W] (stamped = x * (1 - mask) + trigger * mask).
Metadata (strings): ``dataset``, ``mean`` and ``std`` (JSON lists), ``target_class``, ``attack`` (none, naive,
doorping), ``method`` (dc, dsa, dm), ``ipc``, ``arch`` (the registry name of the distillation network).

`DistilledSet.validate` (run on every construction and load) refuses, with one `ZooError` naming the field and the
fix: an empty set; images that are not finite float32; labels that are not int64 class indices >= 0; a
``target_class`` outside the labels' classes; ``mean``/``std`` that are not lists of finite numbers, one per
channel, with std > 0; an ``ipc`` that is not every class's image count (the target class may hold more: a positive
control appends stamped copies to it, `zoo.models.doorping.control`); a ``dataset`` not written as
`real_images.dataset_name` writes it; an unknown ``method``, ``attack`` or ``arch``; a trigger that is not finite
float32 [C, H, W], or a ``trigger_mask`` that is not a binary float32 [1, H, W] marking at least one pixel. The
dataset name may be one the zoo has no constants for (a set distilled from one's own image tree is named after the
tree); `zoo eval --task backdoor` refuses ``--data`` of another known dataset.

A distilled set is data, not an ``nn.Module``: `zoo.create_model` does not load it. Manifest entries of sets are
keyed ``doorping_distilled.<tag>`` (not a model name, so ``zoo list --pretrained`` does not offer them as weights)
and are fetched through `zoo.hub.fetch`, which verifies size and sha256.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import ZooError
from . import KEY_PREFIX, PAPER
from .attack import ATTACKS
from .real_images import STATS, dataset_name

METHODS = ("dc", "dsa", "dm")
METADATA = ("dataset", "mean", "std", "target_class", "attack", "method", "ipc", "arch")


def _describe(t) -> str:
    return f"{t.dtype} {list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def _known_stats(dataset: str, field: str) -> str:
    """`` (fashion_mnist: [0.353])``: the authors' constant for a dataset they normalise, else nothing."""
    if dataset not in STATS:
        return ""
    return f" ({dataset}: {STATS[dataset][0 if field == 'mean' else 1]})"


@dataclass
class DistilledSet:
    """A distilled (possibly backdoored) set: ``images`` [N, C, H, W], ``labels`` [N]; ``trigger`` [C, H, W] and
    ``trigger_mask`` [1, H, W] when ``attack`` is not ``none``."""

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str
    mean: list[float]
    std: list[float]
    method: str
    attack: str
    ipc: int
    arch: str
    target_class: int = 0
    trigger: torch.Tensor | None = None
    trigger_mask: torch.Tensor | None = None

    def __post_init__(self):
        self.validate()

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    def validate(self, source: str = "distilled set") -> None:
        """Raise `ZooError` naming the first inconsistency (the field, and the fix) of the tensors and metadata."""
        remake = "make the set again (zoo fit --config configs/doorping/...) or fetch a published one"
        x, y = self.images, self.labels
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.dtype != torch.float32:
            raise ZooError(f"{source}: 'images' must be float32 [N, C, H, W], got {_describe(x)}; {remake}")
        if len(x) == 0:
            raise ZooError(f"{source}: 'images' is empty (0 images); a distilled set needs ipc images of every "
                           f"class: {remake}")
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype != torch.int64 or len(y) != len(x):
            raise ZooError(f"{source}: 'labels' must be int64 [{len(x)}] (one per image), got {_describe(y)}; "
                           f"{remake}")
        if not torch.isfinite(x).all():
            raise ZooError(f"{source}: 'images' holds {int((~torch.isfinite(x)).sum())} NaN or infinite values; "
                           f"{remake}")
        if int(y.min()) < 0:
            raise ZooError(f"{source}: 'labels' must be class indices in [0, {int(y.max()) + 1}), got "
                           f"{int(y.min())}; {remake}")
        c, h, w = x.shape[1:]
        if self.method not in METHODS:
            raise ZooError(f"{source}: metadata 'method' {self.method!r} is not one of {', '.join(METHODS)}; "
                           f"write one of them")
        if self.attack not in ATTACKS:
            raise ZooError(f"{source}: metadata 'attack' {self.attack!r} is not one of {', '.join(ATTACKS)}; "
                           f"write one of them")
        if self.arch not in PAPER.models:
            raise ZooError(f"{source}: metadata 'arch' {self.arch!r} is not a DOORPING network; write the "
                           f"distillation network, one of {', '.join(PAPER.models)}")
        if not isinstance(self.dataset, str) or not self.dataset or dataset_name(self.dataset) != self.dataset:
            named = isinstance(self.dataset, str) and self.dataset
            hint = repr(dataset_name(self.dataset)) if named else f"the dataset's name (known: {', '.join(STATS)})"
            raise ZooError(f"{source}: metadata 'dataset' {self.dataset!r} is not a dataset name as the zoo writes "
                           f"it; write {hint}")
        for field in ("mean", "std"):
            v = getattr(self, field)
            if (not isinstance(v, (list, tuple)) or len(v) != c
                    or not all(isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e)
                               for e in v)):
                raise ZooError(f"{source}: metadata {field!r} must be a JSON list of finite numbers, one per "
                               f"channel of the {c}-channel images, got {json.dumps(v, default=str)}; write the "
                               f"dataset's normalisation{_known_stats(self.dataset, field)}")
        if not all(v > 0 for v in self.std):
            raise ZooError(f"{source}: metadata 'std' {list(self.std)} has a value that is not > 0 (the images "
                           f"are divided by it); write the dataset's std{_known_stats(self.dataset, 'std')}")
        k = int(y.max()) + 1
        t = self.target_class
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < k:
            raise ZooError(f"{source}: metadata 'target_class' {t!r} is not a class of the set (0 to {k - 1}, "
                           f"from its labels); write the class the attack relabels to (the authors': 0)")
        counts, ipc = torch.bincount(y, minlength=k).tolist(), self.ipc
        whole = isinstance(ipc, int) and not isinstance(ipc, bool) and ipc >= 1
        if not whole or any(n < ipc if i == t else n != ipc for i, n in enumerate(counts)):
            raise ZooError(f"{source}: metadata 'ipc' {ipc!r} does not match the labels: images per class "
                           f"{counts} (classes 0 to {k - 1}; every class needs exactly ipc images, the target "
                           f"class {t} at least ipc); write the per-class count, or relabel the images")
        if (self.attack == "none") != (self.trigger is None) or (self.trigger is None) != (self.trigger_mask is None):
            raise ZooError(f"{source}: attack {self.attack!r} needs 'trigger' and 'trigger_mask' exactly when it "
                           f"is not 'none'; write both tensors, or metadata attack 'none' and neither")
        if self.trigger is None:
            return
        trigger, mask = self.trigger, self.trigger_mask
        if (not isinstance(trigger, torch.Tensor) or trigger.dtype != torch.float32
                or tuple(trigger.shape) != (c, h, w)):
            raise ZooError(f"{source}: 'trigger' must be float32 [{c}, {h}, {w}] (the images' shape), got "
                           f"{_describe(trigger)}; write it as float32 of that shape")
        if not torch.isfinite(trigger).all():
            raise ZooError(f"{source}: 'trigger' holds NaN or infinite values; {remake}")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.float32 or tuple(mask.shape) != (1, h, w):
            raise ZooError(f"{source}: 'trigger_mask' must be float32 [1, {h}, {w}], got {_describe(mask)}; write "
                           f"it as float32 of that shape")
        if not ((mask == 0) | (mask == 1)).all() or not mask.any():
            raise ZooError(f"{source}: 'trigger_mask' must be binary (0, and 1 on the trigger's pixels) and mark "
                           f"at least one pixel, got values {mask.unique().tolist()[:6]}; write the patch mask "
                           f"(zoo.models.doorping.attack.patch_mask)")

    def metadata(self) -> dict[str, str]:
        return {"dataset": self.dataset, "mean": json.dumps(self.mean), "std": json.dumps(self.std),
                "target_class": str(self.target_class), "attack": self.attack, "method": self.method,
                "ipc": str(self.ipc), "arch": self.arch}

    def save(self, path: str | Path) -> Path:
        """Write the safetensors file atomically; returns ``path``."""
        from ...checkpoint import save_safetensors

        tensors = {"images": self.images.detach().float().cpu().contiguous(),
                   "labels": self.labels.detach().long().cpu().contiguous()}
        if self.trigger is not None:
            tensors["trigger"] = self.trigger.detach().float().cpu().contiguous()
            tensors["trigger_mask"] = self.trigger_mask.detach().float().cpu().contiguous()
        path = Path(path)
        save_safetensors(tensors, path, metadata=self.metadata())
        return path

    @classmethod
    def load(cls, path: str | Path) -> DistilledSet:
        """Read and validate a distilled-set file."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise ZooError(f"distilled set {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        except (SafetensorError, OSError) as exc:
            raise ZooError(f"cannot read distilled set {path}: corrupt or not a safetensors file ({exc})") from None
        missing = [k for k in METADATA if k not in meta] + [k for k in ("images", "labels") if k not in tensors]
        if missing:
            raise ZooError(f"{path} is not a DOORPING distilled set: it lacks {', '.join(missing)} (write it with "
                           f"DistilledSet.save or zoo fit --config configs/doorping/...)")
        fields = {k: meta[k] for k in ("dataset", "attack", "method", "arch")}
        for key, what in (("mean", "[0.2861]"), ("std", "[0.353]")):
            try:
                fields[key] = json.loads(meta[key])
            except ValueError:
                raise ZooError(f"{path}: metadata {key!r} {meta[key]!r} is not JSON; write a JSON list of numbers, "
                               f"one per channel (e.g. {what})") from None
        for key, what in (("target_class", "the class the attack relabels to, e.g. 0"),
                          ("ipc", "the number of images per class")):
            try:
                fields[key] = int(meta[key])
            except ValueError:
                raise ZooError(f"{path}: metadata {key!r} {meta[key]!r} is not an integer; write {what}") from None
        try:
            return cls(tensors["images"], tensors["labels"], trigger=tensors.get("trigger"),
                       trigger_mask=tensors.get("trigger_mask"), **fields)
        except ZooError as exc:
            raise ZooError(f"{path}: {str(exc).removeprefix('distilled set: ')}") from None
        except (TypeError, ValueError, RuntimeError, IndexError) as exc:  # a check above let a malformed file by
            raise ZooError(f"{path}: malformed distilled set ({type(exc).__name__}: {exc}); make the set again "
                           f"(zoo fit --config configs/doorping/...) or fetch a published one") from None

    def grid(self, path: str | Path) -> Path:
        """A PNG of the images (rows: classes, columns: images of the class) and, for attacked sets, the
        trigger canvas beside them with the patch outlined; written atomically."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        from ...io import atomic_path

        m = torch.tensor(self.mean)[:, None, None]
        s = torch.tensor(self.std)[:, None, None]

        def show(t):
            return (t.detach().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()

        k = self.num_classes
        per = max(int((self.labels == c).sum()) for c in range(k))
        extra = 1 if self.trigger is not None else 0
        fig, axes = plt.subplots(k, per + extra, figsize=(0.9 * (per + extra), 0.9 * k), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for c in range(k):
            for j, img in enumerate(self.images[self.labels == c]):
                axes[c, j].imshow(show(img), cmap="gray", vmin=0, vmax=1)
            axes[c, 0].set_title(f"class {c}", fontsize=6, loc="left")
        if self.trigger is not None:
            ax = axes[0, per]
            ax.imshow(show(self.trigger), cmap="gray", vmin=0, vmax=1)
            rows = self.trigger_mask[0].nonzero()
            (r0, c0), (r1, c1) = rows.min(0).values.tolist(), rows.max(0).values.tolist()
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, color="red", lw=0.8))
            ax.set_title(f"{self.attack} trigger", fontsize=6)
        fig.suptitle(f"{self.dataset} {self.method.upper()} ipc {self.ipc} ({self.arch}), attack: {self.attack}, "
                     f"target class {self.target_class}", fontsize=7)
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        return path


def load_distilled(source: str | Path, *, use: str = "a DOORPING distilled set is needed here") -> DistilledSet:
    """A distilled set from a ``.safetensors`` path or a manifest key ``doorping_distilled.<tag>`` (fetched and
    sha256-verified by `zoo.hub.fetch`). ``use`` ends the error for a model (its name, weights key or folder) given
    instead of a set, saying what needs the set (``--task backdoor evaluates a DOORPING distilled set``)."""
    from ...checkpoint import CONFIG_NAME
    from ...hub import fetch, load_manifest
    from ...registry import paper_of, split_name

    not_a_set = f"not a distilled set: {use} (see `zoo info {KEY_PREFIX}`)"
    path = Path(source)
    if path.is_dir():
        what = "model weights (a zoo model folder)" if (path / CONFIG_NAME).is_file() else "a folder"
        raise ZooError(f"{source} is {what}, {not_a_set}")
    if path.exists():
        return DistilledSet.load(path)
    key = str(source)
    if key in load_manifest():
        if not key.startswith(KEY_PREFIX + "."):
            raise ZooError(f"{source} is model weights, {not_a_set}")
        return DistilledSet.load(fetch(key))
    try:
        paper_of(split_name(key)[0])
    except ZooError:
        known = [k for k in load_manifest() if k.startswith(KEY_PREFIX + ".")]
        raise ZooError(f"{source} is neither a distilled-set file nor a manifest key; published sets: "
                       f"{', '.join(known) if known else 'none'}") from None
    raise ZooError(f"{source} names a model, {not_a_set}")
