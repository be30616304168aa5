"""OOD scorers behind one interface (OpenOOD's contract): ``setup`` on ID training features, then ``score``;
higher always means more in-distribution.

* `KNNScorer` (the paper): negative squared L2 distance from the L2-normalised feature to its k-th nearest
  neighbour among the (optionally alpha-subsampled) normalised training features.
* `MSPScorer`: maximum softmax probability (Hendrycks & Gimpel 2017).
* `EnergyScorer`: ``T * logsumexp(logits / T)`` (Liu et al. 2020), the negative free energy.
* `MahalanobisScorer`: negative minimum Mahalanobis distance to the class means under one shared covariance,
  on the penultimate features (Lee et al. 2018 without input pre-processing or feature ensembles).

Each scorer's fitted state is a dict of tensors plus JSON-able settings, so it can be saved with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import ZooError
from .index import KNNIndex, resolve_backend


@dataclass
class Features:
    """Network outputs for one dataset: ``features`` [N, D] (penultimate, raw), ``logits`` [N, C], ``labels`` [N]
    (-1 where unknown)."""

    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.features.shape[0]


class Scorer:
    """One OOD score: `setup` on ID training features, then `score`; `settings` and `state` save it, `load_state`
    restores it."""

    name = "base"

    def setup(self, train: Features) -> "Scorer":
        """Fit on ID training `Features` (``features`` [N, D], ``logits`` [N, C], ``labels`` [N]); returns self."""
        return self

    def score(self, x: Features) -> torch.Tensor:
        """Scores [N] of `Features` ``x`` (``features`` [N, D], ``logits`` [N, C]); higher = more ID."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The JSON-able constructor arguments, so ``type(self)(**settings())`` rebuilds the scorer."""
        return {}

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted tensors by name (empty before `setup`, or for a scorer with nothing to fit)."""
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> "Scorer":
        """Restore what `state` returned; returns self, ready to `score`."""
        return self


class KNNScorer(Scorer):
    """Deep nearest neighbours (Sun et al. 2022, Algorithm 1).

    Args:
        k: neighbour rank used as the score (paper: 50 for CIFAR-10, 200 for CIFAR-100, 1000 for ImageNet).
        alpha: share of training features kept in the bank (uniform, without replacement, seeded).
        backend: index backend (see `KNNIndex`); seed: sub-sampling seed.
    """

    name = "knn"

    def __init__(self, k: int = 50, alpha: float = 1.0, backend: str = "auto", seed: int = 0, nprobe: int = 16):
        if k < 1:
            raise ZooError(f"k must be >= 1, got {k}")
        if not 0.0 < alpha <= 1.0:
            raise ZooError(f"alpha must be in (0, 1], got {alpha}")
        self.k, self.alpha, self.backend, self.seed, self.nprobe = k, alpha, backend, seed, nprobe
        self.index: KNNIndex | None = None

    def setup(self, train: Features) -> "KNNScorer":
        """Build the bank from ``train.features`` [N, D]: L2-normalised, an ``alpha`` share kept; returns self."""
        bank = F.normalize(train.features.float(), dim=1)
        if self.alpha < 1.0:
            n = max(1, int(self.alpha * len(bank)))
            g = torch.Generator().manual_seed(self.seed)
            bank = bank[torch.randperm(len(bank), generator=g)[:n].sort().values.to(bank.device)]
        return self._build(bank)

    def _build(self, bank: torch.Tensor) -> "KNNScorer":
        if self.k > len(bank):
            raise ZooError(f"k={self.k} is larger than the kNN bank ({len(bank)} training features"
                           f"{f' after alpha={self.alpha} sub-sampling' if self.alpha < 1 else ''}); lower --k")
        self.index = KNNIndex(bank, backend=self.backend, nprobe=self.nprobe)
        return self

    def score(self, x: Features) -> torch.Tensor:
        """Negative squared L2 distance [N] from each normalised ``x.features`` [N, D] to its k-th nearest neighbour
        in the bank."""
        if self.index is None:
            raise ZooError("KNNScorer.score called before setup")
        dist, _ = self.index.search(F.normalize(x.features.float(), dim=1), self.k)
        return -dist[:, -1]

    def settings(self) -> dict:
        """``k``, ``alpha``, ``backend``, ``seed`` and ``nprobe``."""
        return {"k": self.k, "alpha": self.alpha, "backend": self.backend, "seed": self.seed, "nprobe": self.nprobe}

    def state(self) -> dict[str, torch.Tensor]:
        """``{"bank": normalised training features [M, D]}`` (M after ``alpha`` sub-sampling)."""
        return {"bank": self.index.bank} if self.index is not None else {}

    def load_state(self, state: dict[str, torch.Tensor]) -> "KNNScorer":
        """Rebuild the index from a saved ``state["bank"]`` [M, D]; returns self."""
        if "bank" not in state:
            raise ZooError("the saved kNN scorer has no bank (knn.bank); the detector was saved before setup: "
                           "fit it on ID training data and save it again")
        return self._build(state["bank"])


class MSPScorer(Scorer):
    """Maximum softmax probability; nothing to fit."""

    name = "msp"

    def score(self, x: Features) -> torch.Tensor:
        """``max softmax(x.logits)`` [N] of ``x.logits`` [N, C]."""
        return x.logits.float().softmax(dim=1).max(dim=1).values


class EnergyScorer(Scorer):
    """Negative free energy at ``temperature`` T; nothing to fit."""

    name = "energy"

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def score(self, x: Features) -> torch.Tensor:
        """``T * logsumexp(logits / T)`` [N] of ``x.logits`` [N, C]."""
        t = self.temperature
        return t * torch.logsumexp(x.logits.float() / t, dim=1)

    def settings(self) -> dict:
        """``temperature``."""
        return {"temperature": self.temperature}


class MahalanobisScorer(Scorer):
    """Class-conditional Gaussians with a shared (tied) covariance, fitted in float64."""

    name = "mahalanobis"

    def __init__(self):
        self.means: torch.Tensor | None = None  # [C, D]
        self.precision: torch.Tensor | None = None  # [D, D]

    def setup(self, train: Features) -> "MahalanobisScorer":
        """Class means [C, D] and the shared covariance's pseudo-inverse [D, D] of ``train.features`` [N, D], grouped
        by ``train.labels`` [N] (all labelled); returns self."""
        f, y = train.features.double(), train.labels
        if (y < 0).any():
            raise ZooError("Mahalanobis needs labelled ID training features")
        classes = torch.unique(y)
        self.means = torch.stack([f[y == c].mean(0) for c in classes])
        centred = f - self.means[torch.searchsorted(classes, y)]
        cov = centred.T @ centred / len(f)
        self.precision = torch.linalg.pinv(cov, hermitian=True)
        return self

    def score(self, x: Features) -> torch.Tensor:
        """Negative minimum Mahalanobis distance [N] of ``x.features`` [N, D] to the class means."""
        if self.means is None:
            raise ZooError("MahalanobisScorer.score called before setup")
        f = x.features.to(self.means)
        fp = f @ self.precision  # (f - mu)^T P (f - mu) expanded, without a [B, C, D] intermediate
        m = (fp * f).sum(1, keepdim=True) - 2 * fp @ self.means.T + ((self.means @ self.precision) * self.means).sum(1)
        return -m.min(dim=1).values.float()

    def state(self) -> dict[str, torch.Tensor]:
        """``{"means": [C, D], "precision": [D, D]}``."""
        return {"means": self.means, "precision": self.precision} if self.means is not None else {}

    def load_state(self, state: dict[str, torch.Tensor]) -> "MahalanobisScorer":
        """Restore saved ``means`` [C, D] and ``precision`` [D, D]; returns self."""
        if not {"means", "precision"} <= state.keys():
            raise ZooError("the saved Mahalanobis scorer has no class means or precision; the detector was saved "
                           "before setup: fit it on ID training data and save it again")
        self.means, self.precision = state["means"].double(), state["precision"].double()
        return self


SCORERS = {cls.name: cls for cls in (KNNScorer, MSPScorer, EnergyScorer, MahalanobisScorer)}


def build_scorers(names, k: int = 50, alpha: float = 1.0, backend: str = "auto") -> list[Scorer]:
    """Scorers by name (``knn``, ``msp``, ``energy``, ``mahalanobis``); the kNN ``backend`` is checked here, so an
    unknown one or a faiss that is not installed fails before any feature is computed."""
    if not names:
        raise ZooError(f"no scorer named; choose one or more of {', '.join(SCORERS)}")
    if "knn" in names:
        resolve_backend(backend)
    out = []
    for name in names:
        if name not in SCORERS:
            raise ZooError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
        out.append(KNNScorer(k=k, alpha=alpha, backend=backend) if name == "knn" else SCORERS[name]())
    return out
