"""Gradient matching (DC, Zhao et al. 2021) as run in DOORPING's code.

The authors loop over classes: for each class ``c`` a forward and ``autograd.grad`` on 256 real images, another on
the ``ipc`` synthetic images with ``create_graph=True``, and the layer-wise distance summed into one loss. The zoo
keeps that loop (`class_gradients`) and computes the distance of all classes and layers at once (`match_loss`); it
gains its speed elsewhere: channels-last convolutions and, with ``compile``, the real images' forward and backward
through ``torch.compile`` (the synthetic images' double backward stays eager: compiled autograd does not do it).
Batching the classes with ``torch.func.vmap`` instead was measured 2 to 3 times slower on a CPU (per-class weight
gradients become grouped convolutions). The loss is the authors' sum (checked to 1e-5 in the tests and in
``benchmarks/compare_doorping.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ZooError
from .evaluate import cross_entropy_fn

# (outer_loop, inner_loop) by images per class: the DC paper's schedule, kept by DOORPING's code.
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
METRICS = ("ours", "mse", "cos")


def dc_loops(ipc: int) -> tuple[int, int]:
    """``(outer_loop, inner_loop)`` for ``ipc`` images per class (1, 10, 20, 30, 40 or 50)."""
    if ipc not in LOOPS:
        raise ZooError(f"DC has no (outer, inner) loop schedule for ipc={ipc}; use one of {sorted(LOOPS)} or set "
                       f"outer_loop and inner_loop explicitly")
    return LOOPS[ipc]


def layer_distance(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    """The DC "ours" distance of one parameter's gradients, per leading batch element.

    Args:
        g_real, g_syn: [K, *param_shape] gradients of K classes.
    Returns:
        [K]: sum over output units (rows of the weight reshaped to [out, -1]) of 1 - cosine(g_real, g_syn), with
        1e-6 added to the product of norms as in the DC code. 1-D parameters (biases, norm scales) give 0.
    """
    if g_real.dim() <= 2:  # [K, out]: a bias or a norm parameter
        return g_real.new_zeros(g_real.shape[0])
    a = g_real.flatten(2)
    b = g_syn.flatten(2)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-6)
    return (1 - cos).sum(-1)


def match_loss(g_real: list[torch.Tensor], g_syn: list[torch.Tensor], metric: str = "ours") -> torch.Tensor:
    """Matching loss summed over classes.

    Args:
        g_real, g_syn: per parameter, [K, *param_shape] gradients of K classes (same order).
        metric: ``ours`` (layer-wise, `layer_distance`), ``mse`` (squared L2 of the concatenated gradients) or
            ``cos`` (1 - cosine of the concatenated gradients), as the DC code's ``dis_metric``.
    Returns:
        scalar: the sum over classes of the per-class distance.
    """
    if metric == "ours":
        return sum(layer_distance(r, s) for r, s in zip(g_real, g_syn)).sum()
    r = torch.cat([g.flatten(1) for g in g_real], 1)
    s = torch.cat([g.flatten(1) for g in g_syn], 1)
    if metric == "mse":
        return ((s - r) ** 2).sum()
    if metric == "cos":
        return (1 - (r * s).sum(1) / (r.norm(dim=1) * s.norm(dim=1) + 1e-6)).sum()
    raise ZooError(f"unknown matching metric {metric!r}; choose {', '.join(METRICS)}")


def class_gradients(net: nn.Module, images: torch.Tensor, create_graph: bool,
                    compile: bool = False) -> list[torch.Tensor]:
    """Gradients of the mean cross-entropy of each class's images, for every parameter of ``net``.

    Args:
        net: the network (gradients are taken with respect to its parameters).
        images: [K, n, C, H, W]: ``n`` images of each class k = 0..K-1 (class k has label k).
        create_graph: keep the graph to ``images`` (synthetic images) or not (real images).
        compile: run the forward and backward through ``torch.compile`` (ignored with ``create_graph``).
    Returns:
        per parameter (``net.parameters()`` order), [K, *param_shape].
    """
    params = list(net.parameters())
    loss_fn = cross_entropy_fn(compile and not create_graph)
    k, n = images.shape[:2]
    per_class = []
    with torch.set_grad_enabled(True):
        for c in range(k):
            y = torch.full((n,), c, dtype=torch.long, device=images.device)
            per_class.append(torch.autograd.grad(loss_fn(net, images[c], y), params, create_graph=create_graph))
    return [torch.stack(g) for g in zip(*per_class)]
