"""`OODDetector`: a backbone plus fitted scorers, saved and reloaded together as one zoo folder.

The folder is what `zoo.save_pretrained` writes (``config.json``, ``model.safetensors``, ``README.md``) plus
``ood_scorers.safetensors``: the kNN bank (normalised training features), the Mahalanobis statistics, and the
scorer settings and the backbone weights' sha256 (checked on load) in the file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ...checkpoint import from_pretrained, save_pretrained, save_safetensors
from ...errors import ZooError
from ...registry import check_image_input
from .features import extract
from .scorers import SCORERS, Features, Scorer

SCORERS_FILE = "ood_scorers.safetensors"


def _check_input(model, images: torch.Tensor) -> None:
    """The input check a zoo image model's ``forward`` runs (`check_image_input`, a forward pre-hook that `score`
    bypasses by calling ``forward_features``): one `ZooError` for a wrong dtype or channel count."""
    if getattr(model, "zoo_cfg", None) and len((getattr(model, "input_spec", None) or {}).get("input_size", ())) == 3:
        check_image_input(model, (images,))


class OODDetector:
    """Scores images with several OOD scorers at once (higher = more in-distribution).

    Args:
        model: backbone with ``forward_features`` / ``forward_head``.
        scorers: scorer instances; `setup` fits them on ID training data.
    """

    def __init__(self, model, scorers: list[Scorer]):
        self.model, self.scorers = model, scorers

    def setup(self, train: Features | DataLoader, **extract_kwargs) -> "OODDetector":
        """Fit every scorer on ID training data; returns ``self``.

        Args:
            train: a `DataLoader` yielding ``(images [B, C, H, W], labels [B])`` (normalised as
                ``model.input_spec``; labels are needed by Mahalanobis), or precomputed `Features`
                (``features`` [N, D], ``logits`` [N, C], ``labels`` [N]).
            **extract_kwargs: ``device``, ``amp_dtype``, ``progress`` of `extract`, for a `DataLoader`.
        """
        if not isinstance(train, (Features, DataLoader)):
            raise ZooError(f"OODDetector.setup takes a torch DataLoader of (images, labels) batches or the Features "
                           f"of zoo.models.knn_ood.features.extract, got a {type(train).__name__}: wrap the images "
                           f"in a Dataset and pass DataLoader(dataset, batch_size=...)")
        if isinstance(train, DataLoader):
            train = extract(self.model, train, **extract_kwargs)
        for s in self.scorers:
            s.setup(train)
        return self

    def score_features(self, x: Features) -> dict[str, torch.Tensor]:
        """``{scorer name: scores [N]}`` for precomputed `Features` (``features`` [N, D], ``logits`` [N, C])."""
        if not isinstance(x, Features):
            raise ZooError(f"OODDetector.score_features takes the Features of zoo.models.knn_ood.features.extract, "
                           f"got {type(x).__name__}: score a batch of images [B, C, H, W] with score")
        return {s.name: s.score(x) for s in self.scorers}

    @torch.inference_mode()
    def score(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images [B, C, H, W] (normalised as ``model.input_spec``) -> ``{scorer name: scores [B]}``."""
        if not (isinstance(images, torch.Tensor) and images.ndim == 4):
            got = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ZooError(f"OODDetector.score takes one batch of images, a tensor [B, C, H, W], got {got}: stack "
                           f"the images (torch.stack) or score precomputed Features with score_features")
        self.model.eval()
        _check_input(self.model, images)
        f = self.model.forward_features(images)
        return self.score_features(Features(f, self.model.forward_head(f), torch.full((len(f),), -1)))

    def save(self, directory: str | Path) -> Path:
        """Write the backbone (`zoo.save_pretrained`) and the fitted scorers (``ood_scorers.safetensors``: the kNN
        bank [N, D], the Mahalanobis means [C, D] and precision [D, D], the settings as metadata) into
        ``directory``; returns it. Call `setup` first."""
        directory = save_pretrained(self.model, directory)
        tensors, settings = {}, []
        for s in self.scorers:
            settings.append({"name": s.name, **s.settings()})
            tensors.update({f"{s.name}.{k}": v.detach().cpu().contiguous() for k, v in s.state().items()})
        backbone = json.loads((directory / "config.json").read_text())["weights_sha256"]
        save_safetensors(tensors, directory / SCORERS_FILE, metadata={"scorers": json.dumps(settings),
                                                                      "backbone_sha256": backbone})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "OODDetector":
        """The detector `save` wrote into ``directory``, its scorers fitted and ready to `score` (on the CPU)."""
        from safetensors import SafetensorError, safe_open

        directory = Path(directory)
        path = directory / SCORERS_FILE
        if not path.exists():
            raise ZooError(f"{directory} has no {SCORERS_FILE}: save it with OODDetector.save")
        model = from_pretrained(directory)
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                settings = json.loads(meta["scorers"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise ZooError(f"cannot read {path}: truncated, corrupt or not written by OODDetector.save "
                           f"({type(exc).__name__}: {exc}); fit the detector and save it again") from None
        backbone = json.loads((directory / "config.json").read_text()).get("weights_sha256")
        if meta.get("backbone_sha256") not in (None, backbone):  # files saved before the sum was kept: None
            raise ZooError(f"{path} was fitted on the features of another backbone than {directory}'s weights (its "
                           f"sha256 {meta['backbone_sha256'][:12]}..., the folder's {str(backbone)[:12]}...): the "
                           f"folder's model was replaced after the detector was saved; fit the detector on this "
                           f"backbone and save it again")
        scorers = []
        for cfg in settings:
            name = cfg.pop("name")
            if name not in SCORERS:
                raise ZooError(f"{path} holds a scorer {name!r} this zoo does not know (it knows "
                               f"{', '.join(SCORERS)}); refit the detector and save it again")
            scorer = SCORERS[name](**cfg)
            prefix = f"{name}."
            scorer.load_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            scorers.append(scorer)
        return cls(model, scorers)
