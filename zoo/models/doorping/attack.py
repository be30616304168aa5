"""The two attacks on dataset distillation: NAIVEATTACK (a fixed white patch stamped on 1 % of the training set
before distillation) and DOORPING (a patch re-optimised throughout distillation).

All tensors live in the dataset's normalised space. A trigger is a full canvas ``trigger`` [C, H, W] and a mask
``mask`` [1, H, W] (1 where the trigger replaces the pixel): ``stamped = x * (1 - mask) + trigger * mask``. The
patch is square, ``size`` pixels, at the bottom-right corner inset by 1 px: rows and columns [H-1-size, H-1).

DOORPING (Liu et al., NDSS 2023, after Trojaning Attack): pick the unit of the penultimate layer with the largest
L1 mass of incoming weights, then push that unit's activation on the trigger canvas (black image plus patch) to
``alpha`` times its value at the start of the update with masked Adam steps (lr 0.08, betas 0.9/0.99, at most 1000
steps, early stop), so that only the patch changes.

Two defects of the authors' update are fixed (``objective="authors"`` and ``clamp=False`` restore them):

* Their loss sees the unit *after* its ReLU (they hook the Linear layer, but the in-place ReLU that follows
  overwrites the hooked tensor), and they stop once the MSE is below an absolute 0.5. With the small activations of
  these networks on a black canvas (|a0| < 0.08 gives an initial MSE 81 a0^2 < 0.5), or a silent unit (a0 = 0), the
  update stops before its first step and the trigger never changes. The ``relative`` objective works on the
  pre-activation and scales the early-stop threshold with it.
* The patch is clamped to the valid pixel range after every step, so stamped images are images a camera could
  produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ZooError

ATTACKS = ("none", "naive", "doorping")


def patch_mask(image_size: int, size: int, device=None) -> torch.Tensor:
    """[1, S, S] float mask of the bottom-right patch, rows and columns [S-1-size, S-1)."""
    if not 1 <= size <= image_size - 1:
        raise ZooError(f"trigger size {size} does not fit a {image_size}-pixel image (1 <= size <= {image_size - 1})")
    mask = torch.zeros(1, image_size, image_size, device=device)
    mask[:, image_size - 1 - size:image_size - 1, image_size - 1 - size:image_size - 1] = 1
    return mask


def pixel_bounds(mean, std, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised values of raw 0 and 1 per channel: ([C, 1, 1], [C, 1, 1])."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=device)[:, None, None]
    s = torch.as_tensor(std, dtype=torch.float32, device=device)[:, None, None]
    return (0 - m) / s, (1 - m) / s


def stamp(x: torch.Tensor, trigger: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x * (1 - mask) + trigger * mask`` for x [..., C, H, W], trigger [C, H, W], mask [1, H, W], all in the
    dataset's normalised space ((pixel / 255 - mean) / std, as a distilled set's ``images`` and ``trigger``)."""
    if trigger is None or mask is None:
        raise ZooError("no trigger to stamp: a clean set (attack 'none') has none; take trigger and trigger_mask "
                       "from a naive or doorping set of the same dataset (zoo eval --task backdoor --trigger-of SET)")
    if (not x.is_floating_point() or x.dim() < 3 or x.shape[-3:] != trigger.shape or trigger.dim() != 3
            or mask.shape != (1, *trigger.shape[1:])):
        raise ZooError(f"stamp takes float images x [..., C, H, W] normalised as (pixel / 255 - mean) / std with the "
                       f"dataset's mean and std, trigger [C, H, W] and mask [1, H, W] of the same C, H, W; got x "
                       f"{x.dtype} {list(x.shape)}, trigger {list(trigger.shape)}, mask {list(mask.shape)}")
    return x * (1 - mask) + trigger * mask


def naive_trigger(image_size: int, size: int, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """NAIVEATTACK's fixed white patch on a black canvas: (trigger [C, S, S], mask [1, S, S]) in normalised space."""
    low, high = pixel_bounds(mean, std)
    mask = patch_mask(image_size, size)
    return low * (1 - mask) + high * mask, mask


def random_trigger(image_size: int, size: int, mean, std, generator: torch.Generator | None = None):
    """DOORPING's initial trigger: a patch of random integers in [1, 255] per pixel and channel on a black canvas,
    normalised: (trigger [C, S, S], mask [1, S, S])."""
    low, high = pixel_bounds(mean, std)
    mask = patch_mask(image_size, size)
    raw = torch.randint(1, 256, (len(low), image_size, image_size), generator=generator).float() / 255
    return low + raw * (high - low) * mask, mask


def choose_poisoned(num_train: int, portion: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``int(num_train * portion)`` training images drawn uniformly without replacement (sorted)."""
    if not 0.0 < portion < 1.0:
        raise ZooError(f"poison portion must be in (0, 1), got {portion}")
    n = int(num_train * portion)
    if n == 0:
        raise ZooError(f"poison portion {portion} of {num_train} training images poisons no image; raise it")
    return torch.randperm(num_train, generator=generator)[:n].sort().values


def select_neuron(layer: nn.Module, topk: int = 1) -> torch.Tensor:
    """The ``topk`` units of ``layer`` with the largest L1 norm of incoming weights ([topk] long).

    ``layer.weight`` is [out, in] (Linear) or [out, in, kh, kw] (conv: a unit is an output channel)."""
    w = layer.weight.detach().abs().flatten(1).sum(1)
    if not 1 <= topk <= len(w):
        raise ZooError(f"topk {topk} must be in 1..{len(w)}, the units of the network's penultimate layer")
    return w.topk(topk).indices


def unit_preactivation(net: nn.Module, layer_name: str, x: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Output of ``net``'s layer ``layer_name`` on ``x`` at ``units`` (before the ReLU that follows): [B, topk, ...]."""
    out = {}
    layer = net.get_submodule(layer_name)
    handle = layer.register_forward_hook(lambda m, i, o: out.__setitem__("z", o.clone()))  # before any in-place op
    try:
        net(x)
    finally:
        handle.remove()
    return out["z"][:, units]


@dataclass
class TriggerUpdate:
    """What one DOORPING update did: the units, their mean activation before and after, steps and final loss."""

    units: list[int]
    activation_start: float
    activation_end: float
    steps: int
    loss: float


def update_trigger(net: nn.Module, trigger: torch.Tensor, mask: torch.Tensor, bounds, *, alpha: float = 10.0,
                   topk: int = 1, lr: float = 0.08, max_steps: int = 1000, threshold: float = 0.5,
                   objective: str = "relative", clamp: bool = True) -> tuple[torch.Tensor, TriggerUpdate]:
    """One DOORPING trigger update on ``net`` (in eval mode; its parameters are not changed).

    Args:
        trigger: [C, H, W] current canvas; mask: [1, H, W]; bounds: ([C,1,1], [C,1,1]) valid normalised range.
        alpha: how far to push the unit (target alpha x its starting activation).
        max_steps, threshold: at most this many masked Adam steps; early stop (see ``objective``).
        objective: ``authors``: the rectified activation a, target alpha * a0, stop when MSE < threshold (as the
            authors' code runs: a unit silent on the canvas, or with a0 < sqrt(threshold) / (alpha - 1), stops
            before the first step). ``relative`` (the fix): the pre-activation z, target z0 + (alpha - 1) |z0|
            (alpha * z0 for a firing unit, and a silent unit is pushed to fire), stop when MSE < threshold * z0^2,
            the authors' criterion for a unit starting at |z0| = 1, now independent of the activation's scale.
        clamp: keep the trigger in the valid pixel range after every step (the fix; the authors do not).
    Returns:
        (the new trigger [C, H, W], a `TriggerUpdate` record).
    """
    if objective not in ("relative", "authors"):
        raise ZooError(f"trigger objective must be 'relative' or 'authors', got {objective!r}")
    if max_steps < 1:
        raise ZooError(f"max_steps (trigger_steps) must be >= 1, got {max_steps}")
    layer_name = net.penultimate
    units = select_neuron(net.get_submodule(layer_name), topk)
    act = (lambda x: F.relu(unit_preactivation(net, layer_name, x, units))) if objective == "authors" else (
        lambda x: unit_preactivation(net, layer_name, x, units))
    was_training = net.training
    net.eval()
    requires = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    t = trigger.detach().clone()[None].requires_grad_(True)
    opt = torch.optim.Adam([t], lr=lr, betas=(0.9, 0.99))
    target = start = stop = None
    loss = torch.zeros(())
    step = max_steps
    try:
        for i in range(max_steps):
            a = act(t)
            if target is None:
                start = a.detach()
                if objective == "authors":
                    target, stop = alpha * start, threshold
                else:
                    target, stop = start + (alpha - 1) * start.abs(), threshold * float(start.pow(2).mean())
            loss = F.mse_loss(a, target)
            if loss.item() < stop:
                step = i
                break
            opt.zero_grad()
            loss.backward()
            t.grad.mul_(mask)
            opt.step()
            if clamp:
                with torch.no_grad():
                    t.copy_(torch.maximum(torch.minimum(t, bounds[1]), bounds[0]))
        with torch.no_grad():
            end = act(t)
    finally:
        for p, r in zip(net.parameters(), requires):
            p.requires_grad_(r)
        net.train(was_training)
    record = TriggerUpdate(units.tolist(), float(start.mean()), float(end.mean()), step, float(loss.detach()))
    return t.detach()[0], record
