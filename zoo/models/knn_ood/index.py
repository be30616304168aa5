"""Nearest-neighbour search over L2-normalised features: faiss (exact flat or IVF, GPU when faiss sees one)
and a pure-torch chunked matmul + top-k that returns the same neighbours on any device.

All backends return *squared* L2 distances, ascending, as ``faiss.IndexFlatL2`` does (the paper's index). For
unit vectors ``||a - b||^2 = 2 - 2 a.b``, so the torch path ranks by inner product and converts.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import ZooError, require

BACKENDS = ("auto", "faiss", "faiss-ivf", "torch")


def _faiss():
    return require("faiss", "ood", package="faiss-cpu")


def resolve_backend(backend: str) -> str:
    """``auto`` is the torch path on every device: it returns the same neighbours as ``IndexFlatL2`` and measured
    1.02-1.20x the throughput of the authors' faiss flat-index path on the project's CPU, and needs no faiss-gpu
    on a GPU (``benchmarks/compare_knn_ood.py``; numbers in the model card). ``faiss`` is the paper's exact index;
    ``faiss-ivf`` the approximate one; either needs faiss installed (checked here, before any feature is computed)."""
    if backend not in BACKENDS:
        raise ZooError(f"unknown kNN backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend.startswith("faiss"):
        _faiss()
    return "torch" if backend == "auto" else backend


class KNNIndex:
    """k-NN index over a bank of L2-normalised features.

    Args:
        bank: [N, D] float tensor, rows L2-normalised.
        backend: ``auto`` (= ``torch``), ``faiss`` (exact IndexFlatL2), ``faiss-ivf`` (approximate IndexIVFFlat) or
            ``torch`` (chunked matmul + top-k on the bank's device).
        nlist: IVF cells (default ``sqrt(N)``); nprobe: IVF cells visited per query.
        chunk: torch path, bank rows per matmul block (bounds memory at ``B * chunk`` scores).
    """

    def __init__(self, bank: torch.Tensor, backend: str = "auto", nlist: int | None = None, nprobe: int = 16,
                 chunk: int = 65536):
        if bank.ndim != 2 or bank.shape[0] == 0:
            raise ZooError(f"kNN bank must be a non-empty [N, D] tensor, got shape {tuple(bank.shape)}")
        self.bank = bank
        self.backend = resolve_backend(backend)
        self.nprobe, self.chunk = nprobe, chunk
        self._faiss_index = None
        if self.backend.startswith("faiss"):
            faiss = _faiss()
            x = np.ascontiguousarray(bank.detach().float().cpu().numpy())
            d = x.shape[1]
            if self.backend == "faiss":
                index = faiss.IndexFlatL2(d)
            else:
                nlist = nlist or max(1, int(math.sqrt(len(x))))
                index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, min(nlist, len(x)), faiss.METRIC_L2)
                index.train(x)
                index.nprobe = nprobe
            if faiss.get_num_gpus() > 0 and bank.device.type == "cuda":
                index = faiss.index_cpu_to_all_gpus(index)
            index.add(x)
            self._faiss_index = index

    def __len__(self) -> int:
        return self.bank.shape[0]

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """k nearest bank rows of each query.

        Args:
            queries: [B, D] L2-normalised.
        Returns:
            (squared distances [B, k] ascending, bank indices [B, k] int64), on the queries' device.
        """
        if not 1 <= k <= len(self):
            raise ZooError(f"k={k} must be between 1 and the bank size {len(self)}")
        if queries.shape[-1] != self.bank.shape[1]:
            raise ZooError(f"query dim {queries.shape[-1]} != bank dim {self.bank.shape[1]}: features come from "
                           f"a different backbone than the index")
        if self._faiss_index is not None:
            q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
            dist, idx = self._faiss_index.search(q, k)
            short = int((idx < 0).any(axis=1).sum())  # faiss pads with -1 (and FLT_MAX) where too few were found
            if short:
                raise ZooError(f"the IVF index found fewer than k={k} neighbours for {short} of {len(q)} queries: "
                               f"its {self.nprobe} probed cells hold fewer bank rows; raise nprobe, lower k, or use "
                               f"the exact search (backend faiss or torch)")
            return torch.from_numpy(dist).to(queries.device), torch.from_numpy(idx).to(queries.device)
        return self._torch_search(queries, k)

    @torch.no_grad()
    def _torch_search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        q = queries.to(self.bank.device, self.bank.dtype)
        best_sim, best_idx = None, None
        for start in range(0, len(self), self.chunk):
            with torch.autocast(q.device.type, enabled=False):  # in the bank's dtype even under an evaluation's
                sim = q @ self.bank[start:start + self.chunk].T  # bf16 autocast, as faiss searches in fp32: [B, chunk]
            s, i = sim.topk(min(k, sim.shape[1]), dim=1)
            i = i + start
            if best_sim is not None:
                s = torch.cat([best_sim, s], 1)
                s, j = s.topk(min(k, s.shape[1]), dim=1)  # chunks smaller than k fill up over several
                i = torch.cat([best_idx, i], 1).gather(1, j)
            best_sim, best_idx = s, i
        dist = (2.0 - 2.0 * best_sim.float()).clamp_min_(0.0)
        return dist.to(queries.device), best_idx.to(queries.device)
