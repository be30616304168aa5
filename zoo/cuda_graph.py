"""Capturing one step of work as a CUDA graph, for loops whose steps keep their shapes and tensor addresses.

A graph replays all of a step's kernels with one launch, which is what small-kernel loops on a GPU need (the drum
LM's decode step, DOORPING's inner-loop training step). The warm-up calls run eagerly on a side stream first, as
PyTorch's CUDA-graph notes ask: they settle the caching allocator, library handles and optimiser state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def capture(step: Callable[[], Any], warmup: int) -> tuple[torch.cuda.CUDAGraph, Any]:
    """Call ``step()`` ``warmup`` times eagerly on a side stream, then capture one call.

    Returns (graph, what the captured call returned): ``graph.replay()`` redoes the step and rewrites that output
    in place. ``step`` must read and write only tensors that outlive the graph, and must not synchronise with the
    host. The warm-up calls really run: a step that changes state (an optimiser step) has taken ``warmup`` steps.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    return graph, out
