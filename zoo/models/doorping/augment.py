"""Differentiable Siamese augmentation (DSA, Zhao & Bilen 2021) with the DC code's parameters.

One *family* is drawn per group of images (the DC code's single mode: ``color``, ``crop``, ``cutout``, ``flip``,
``scale`` or ``rotate``), with its random parameters. A group is what shares parameters: in distillation one group
per class, applied to that class's real *and* synthetic images (the Siamese part); when a network trains on a
synthetic set, one family per batch and parameters per image. All operations are differentiable in the images.

The DC code reseeds torch's global generator inside every augmentation call (from the wall clock in training);
here the parameters come from the global generator without reseeding it, so a seeded run is reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import ZooError

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"


class DSA:
    """Differentiable Siamese augmentation.

    Args:
        strategy: families joined by ``_`` (``color_crop_cutout_flip_scale_rotate``); ``none`` disables it.
        prob_flip, ratio_scale, ratio_rotate, ratio_crop_pad, ratio_cutout, brightness, saturation, contrast:
            the DC code's ``ParamDiffAug`` values.
    """

    def __init__(self, strategy: str = DEFAULT_STRATEGY, prob_flip: float = 0.5, ratio_scale: float = 1.2,
                 ratio_rotate: float = 15.0, ratio_crop_pad: float = 0.125, ratio_cutout: float = 0.5,
                 brightness: float = 1.0, saturation: float = 2.0, contrast: float = 0.5):
        self.families = [] if strategy.lower() in ("", "none") else strategy.split("_")
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ZooError(f"unknown DSA families {unknown} in strategy {strategy!r}; choose from {', '.join(FAMILIES)}")
        self.prob_flip, self.ratio_scale, self.ratio_rotate = prob_flip, ratio_scale, ratio_rotate
        self.ratio_crop_pad, self.ratio_cutout = ratio_crop_pad, ratio_cutout
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast

    @property
    def enabled(self) -> bool:
        return bool(self.families)

    def sample(self, groups: int, image_size: int, device, shared_family: bool = False) -> dict:
        """Random parameters for ``groups`` groups: a family index each (one for all if ``shared_family``) and
        every family's parameters, each [groups] (crop and cutout offsets in pixels)."""
        u = lambda: torch.rand(groups, device=device)
        n_fam = len(self.families)
        fam = torch.randint(0, n_fam, (1 if shared_family else groups,), device=device).expand(groups)
        shift = int(image_size * self.ratio_crop_pad + 0.5)
        cut = int(image_size * self.ratio_cutout + 0.5)
        r = self.ratio_scale
        return {
            "family": fam,
            "brightness": u(), "saturation": u(), "contrast": u(),
            "tx": torch.randint(-shift, shift + 1, (groups,), device=device),
            "ty": torch.randint(-shift, shift + 1, (groups,), device=device),
            "cx": torch.randint(0, image_size + (1 - cut % 2), (groups,), device=device),
            "cy": torch.randint(0, image_size + (1 - cut % 2), (groups,), device=device),
            "flip": u(),
            "sx": u() * (r - 1.0 / r) + 1.0 / r, "sy": u() * (r - 1.0 / r) + 1.0 / r,
            "theta": (u() - 0.5) * 2 * self.ratio_rotate / 180 * math.pi,
        }

    def __call__(self, x: torch.Tensor, params: dict, group: torch.Tensor) -> torch.Tensor:
        """Augment ``x`` [N, C, H, W]; image i uses the parameters of group ``group[i]`` ([N] long)."""
        if not self.enabled:
            return x
        fam = params["family"][group]
        out = x
        for f, name in enumerate(self.families):
            idx = (fam == f).nonzero().squeeze(1)
            if idx.numel():
                p = {k: v[group[idx]] for k, v in params.items()}
                out = out.index_put((idx,), getattr(self, f"_{name}")(x[idx], p))
        return out

    def random(self, x: torch.Tensor, shared_family: bool = True) -> torch.Tensor:
        """Non-Siamese augmentation (training on a synthetic set): parameters per image, one family per call."""
        if not self.enabled:
            return x
        params = self.sample(len(x), x.shape[-1], x.device, shared_family=shared_family)
        return self(x, params, torch.arange(len(x), device=x.device))

    def _color(self, x, p):
        x = x + (p["brightness"] - 0.5)[:, None, None, None] * self.brightness
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (p["saturation"] * self.saturation)[:, None, None, None] + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * (p["contrast"] + self.contrast)[:, None, None, None] + m

    def _crop(self, x, p):
        """Integer translation by (tx, ty) pixels; vacated pixels are 0 (the DC code pads 1 px and clamps)."""
        n, _, h, w = x.shape
        rows = (torch.arange(h, device=x.device)[None] + p["tx"][:, None] + 1).clamp(0, h + 1)  # [n, h]
        cols = (torch.arange(w, device=x.device)[None] + p["ty"][:, None] + 1).clamp(0, w + 1)  # [n, w]
        xp = F.pad(x, [1, 1, 1, 1])
        b = torch.arange(n, device=x.device)[:, None, None]
        return xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def _cutout(self, x, p):
        h, w = x.shape[-2:]
        ch, cw = int(h * self.ratio_cutout + 0.5), int(w * self.ratio_cutout + 0.5)
        rows = torch.arange(h, device=x.device)[None]
        cols = torch.arange(w, device=x.device)[None]
        lo_r, lo_c = (p["cx"] - ch // 2)[:, None], (p["cy"] - cw // 2)[:, None]
        in_r = (rows >= lo_r.clamp(min=0)) & (rows <= (lo_r + ch - 1).clamp(max=h - 1))  # [n, h]
        in_c = (cols >= lo_c.clamp(min=0)) & (cols <= (lo_c + cw - 1).clamp(max=w - 1))
        keep = ~(in_r[:, :, None] & in_c[:, None, :])
        return x * keep[:, None].to(x.dtype)

    def _flip(self, x, p):
        return torch.where((p["flip"] < self.prob_flip)[:, None, None, None], x.flip(3), x)

    def _affine(self, x, theta):
        """``grid_sample`` of ``x`` [N, C, H, W] on the grid of ``theta`` [N, 2, 3]. The DC code calls both without
        ``align_corners``: PyTorch's default since 1.3, False (True differs only for rotations of non-square x)."""
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    def _scale(self, x, p):
        z = torch.zeros_like(p["sx"])
        theta = torch.stack([torch.stack([p["sx"], z, z], 1), torch.stack([z, p["sy"], z], 1)], 1)
        return self._affine(x, theta)

    def _rotate(self, x, p):
        t, z = p["theta"], torch.zeros_like(p["theta"])
        theta = torch.stack([torch.stack([t.cos(), -t.sin(), z], 1), torch.stack([t.sin(), t.cos(), z], 1)], 1)
        return self._affine(x, theta)
