"""The distilled-set artifact: one safetensors file, loaded by path or by manifest key (sha256-verified).

Tensors: ``images`` [N, C, H, W] float32 in the dataset's normalised space, ``labels`` [N] int64 and, for attacked
sets, ``trigger`` [C, H, W] and ``trigger_mask`` [1, H, W] (stamped = x * (1 - mask) + trigger * mask).
Metadata (strings): ``dataset``, ``mean`` and ``std`` (JSON lists), ``target_class``, ``attack`` (none, naive,
doorping), ``method`` (dc, dsa, dm), ``ipc``, ``arch`` (the registry name of the distillation network).

A distilled set is data, not an ``nn.Module``: `zoo.create_model` does not load it. Manifest entries of sets are
keyed ``doorping_distilled.<tag>`` (not a model name, so ``zoo list --pretrained`` does not offer them as weights)
and are fetched through `zoo.hub.fetch`, which verifies size and sha256.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import ZooError
from . import KEY_PREFIX
from .attack import ATTACKS

METHODS = ("dc", "dsa", "dm")
METADATA = ("dataset", "mean", "std", "target_class", "attack", "method", "ipc", "arch")


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
        """Raise `ZooError` naming the first inconsistency."""
        x, y = self.images, self.labels
        if x.dim() != 4 or x.dtype != torch.float32:
            raise ZooError(f"{source}: 'images' must be float32 [N, C, H, W], got {x.dtype} {list(x.shape)}")
        if y.dim() != 1 or y.dtype != torch.int64 or len(y) != len(x):
            raise ZooError(f"{source}: 'labels' must be int64 [{len(x)}], got {y.dtype} {list(y.shape)}")
        c, h, w = x.shape[1:]
        if self.method not in METHODS:
            raise ZooError(f"{source}: method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.attack not in ATTACKS:
            raise ZooError(f"{source}: attack {self.attack!r} is not one of {', '.join(ATTACKS)}")
        if len(self.mean) != c or len(self.std) != c:
            raise ZooError(f"{source}: mean/std need {c} values (one per channel), got {self.mean}/{self.std}")
        if (self.attack == "none") != (self.trigger is None) or (self.trigger is None) != (self.trigger_mask is None):
            raise ZooError(f"{source}: attack {self.attack!r} needs 'trigger' and 'trigger_mask' exactly when it "
                           f"is not 'none'")
        if self.trigger is not None and (tuple(self.trigger.shape) != (c, h, w)
                                         or tuple(self.trigger_mask.shape) != (1, h, w)):
            raise ZooError(f"{source}: trigger {list(self.trigger.shape)} / trigger_mask "
                           f"{list(self.trigger_mask.shape)} must be [{c}, {h}, {w}] / [1, {h}, {w}]")

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
        try:
            fields = {"dataset": meta["dataset"], "mean": json.loads(meta["mean"]), "std": json.loads(meta["std"]),
                      "target_class": int(meta["target_class"]), "attack": meta["attack"], "method": meta["method"],
                      "ipc": int(meta["ipc"]), "arch": meta["arch"]}
        except (ValueError, TypeError) as exc:
            raise ZooError(f"{path}: malformed metadata ({exc})") from None
        try:
            return cls(tensors["images"], tensors["labels"], trigger=tensors.get("trigger"),
                       trigger_mask=tensors.get("trigger_mask"), **fields)
        except ZooError as exc:
            raise ZooError(f"{path}: {exc}") from None

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
        show = lambda t: (t.detach().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
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


def load_distilled(source: str | Path) -> DistilledSet:
    """A distilled set from a ``.safetensors`` path or a manifest key ``doorping_distilled.<tag>`` (fetched and
    sha256-verified by `zoo.hub.fetch`)."""
    path = Path(source)
    if path.exists():
        return DistilledSet.load(path)
    from ...hub import fetch, load_manifest

    key = str(source)
    if key in load_manifest():
        return DistilledSet.load(fetch(key))
    known = [k for k in load_manifest() if k.startswith(KEY_PREFIX + ".")]
    raise ZooError(f"{source} is neither a distilled-set file nor a manifest key; published sets: "
                   f"{', '.join(known) if known else 'none'}")
