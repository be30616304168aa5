"""kNN-OOD scoring throughput: the zoo's scorer vs the original scripts' way vs the torch path.

For each bank size N (normalised training features) and feature dim D, the same queries are scored three ways in
this process:

* ``original``: what knn-ood's run_cifar.py / run_imagenet.py do: a numpy bank in ``faiss.IndexFlatL2``, one
  ``index.search(batch, k)`` per query batch, then ``-D[:, -1]``.
* ``zoo``: ``KNNScorer(k).score(...)`` with its default backend (``auto``, which is the torch path).
* ``torch``: the zoo's chunked matmul + top-k path, on the bank's device.

All three must give the same scores (checked to 1e-4). Reported: queries/s, the ratio to ``original``, and the
fraction of the bound set by reading the bank once per query batch (memory bandwidth, measured here by a sum over
a large tensor) or by the matmul FLOPs (measured matmul peak), whichever is slower.

    python benchmarks/compare_knn_ood.py                      # CPU: N up to 1M at D=512, up to 100k at D=2048
    python benchmarks/compare_knn_ood.py --device cuda --full # GPU: N 10k-1M, D 512 and 2048
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from zoo.bench.compare import save, timeit, timeit_alternating
from zoo.bench.peaks import measured_peak
from zoo.models.knn_ood.scorers import Features, KNNScorer


def read_bandwidth(device: torch.device, gib: float = 1.0) -> float:
    """Bytes/s of one full read (``x.sum()``) of a ``gib`` GiB float32 tensor, best of 5."""
    x = torch.ones(int(gib * 2**30 / 4), device=device)
    return x.numel() * 4 / (timeit(lambda: x.sum(), device=device, warmup=1, iters=5)["min"] / 1e3)


def original_scores(index, queries: np.ndarray, k: int, batch: int) -> np.ndarray:
    out = []
    for s in range(0, len(queries), batch):
        dist, _ = index.search(queries[s:s + batch], k)
        out.append(-dist[:, -1])
    return np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--full", action="store_true", help="all sizes (N up to 1M at D=2048: 8 GiB of bank)")
    p.add_argument("--queries", type=int, default=2048)
    p.add_argument("--batch", type=int, default=512, help="query batch (the feature extractor's batch)")
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--max-n", type=int, default=None, help="skip banks larger than this (a quick check)")
    a = p.parse_args()
    device = torch.device(a.device)
    sizes = [(10_000, 512), (100_000, 512), (1_000_000, 512), (10_000, 2048), (100_000, 2048)]
    if a.full:
        sizes += [(1_000_000, 2048)]
    sizes = [(n, d) for n, d in sizes if a.max_n is None or n <= a.max_n]
    bw = read_bandwidth(device)
    peak_tflops, peak_src = measured_peak(device, "fp32")
    rows = []
    g = torch.Generator().manual_seed(0)
    for n, d in sizes:
        bank = F.normalize(torch.randn(n, d, generator=g), dim=1)
        queries = F.normalize(torch.randn(a.queries, d, generator=g), dim=1)
        q_np = queries.numpy()
        index = faiss.IndexFlatL2(d)
        index.add(bank.numpy())
        train = Features(bank.to(device), torch.zeros(n, 1), torch.zeros(n, dtype=torch.long))
        zoo_scorer = KNNScorer(k=a.k).setup(train)
        torch_scorer = KNNScorer(k=a.k, backend="torch").setup(train)
        batches = [queries[s:s + a.batch].to(device) for s in range(0, a.queries, a.batch)]

        def run(scorer):
            return torch.cat([scorer.score(Features(b, b[:, :1], b[:, 0].long())) for b in batches])

        ref = original_scores(index, q_np, a.k, a.batch)
        for name, scorer in (("zoo", zoo_scorer), ("torch", torch_scorer)):
            got = run(scorer).cpu().numpy()
            assert np.allclose(got, ref, atol=1e-4), f"{name} disagrees with the original at N={n}, D={d}"
        t = timeit_alternating({"original": lambda: original_scores(index, q_np, a.k, a.batch),
                                "zoo": lambda: run(zoo_scorer), "torch": lambda: run(torch_scorer)},
                               device=device, warmup=1, iters=a.iters)
        t_orig = t["original"]
        n_batches = len(batches)
        bound_s = max(n_batches * n * d * 4 / bw, 2 * a.queries * n * d / (peak_tflops * 1e12))
        for name, tm in t.items():
            rows.append({"N": n, "D": d, "method": name, "queries_per_s": a.queries / (tm["p50"] / 1e3),
                         "ratio_vs_original": t_orig["p50"] / tm["p50"],
                         "fraction_of_bound": bound_s / (tm["p50"] / 1e3), "p50_ms": tm["p50"]})
        print(rows[-3:], flush=True)
        summary, path = write(rows, bw, peak_tflops, peak_src, a, device)  # after each size: a cut-off run keeps it
    print(summary, "\nwrote", path)


def write(rows: list[dict], bw: float, peak_tflops: float, peak_src: str, a, device) -> tuple[str, str]:
    worst = min(r["ratio_vs_original"] for r in rows if r["method"] == "zoo")
    summary = (f"Device read bandwidth (measured, x.sum over 1 GiB): {bw / 1e9:.1f} GB/s; matmul peak {peak_tflops:.3f} "
               f"TFLOP/s ({peak_src}). The zoo's default is at worst {worst:.2f}x the original's throughput "
               f"(ratio > 1 = faster). k={a.k}, {a.queries} queries in batches of {a.batch}.")
    path = save("knn_ood", {"description": "kNN scoring throughput (queries/s) vs bank size: original (faiss "
                                           "IndexFlatL2 on numpy, one search per batch), zoo default, torch path.",
                            "rows": rows, "summary": summary}, device=device)
    return summary, path


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"total {time.time() - t0:.0f} s")
