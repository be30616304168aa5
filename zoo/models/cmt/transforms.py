"""CMT's data augmentations, with every geometric change folded into the camera matrices.

A sample is a dict of numpy arrays: ``images`` (list of N [H, W, 3] uint8 BGR), ``cam2img`` [N, 3, 3],
``lidar2cam`` [N, 4, 4], ``points`` [P, 5], ``boxes`` [n, 7] (gravity centre, l, w, h, yaw), ``velocity``
[n, 2], ``labels`` [n]. 3D transforms T of the LiDAR frame update ``lidar2cam <- lidar2cam @ T^-1``; image
transforms A (resize, crop, flip) update ``cam2img <- A @ cam2img``, so ``lidar2img`` keeps projecting every
augmented point onto the same augmented pixel (tested in tests/test_cmt_data.py).
"""

from __future__ import annotations

import numpy as np

from ...errors import require
from .image_branch import CMT_MEAN, CMT_STD

cv2 = require("cv2", "det3d")  # OpenCV, which nuscenes-devkit installs

BGR_MEAN, BGR_STD = np.array(CMT_MEAN, np.float32), np.array(CMT_STD, np.float32)


def apply_3d(sample: dict, matrix: np.ndarray, yaw_delta: float = 0.0, mirror: str | None = None) -> None:
    """Apply a 4x4 similarity ``matrix`` (rotation about z, uniform scale, translation, or a mirror) in place."""
    pts = sample["points"]
    pts[:, :3] = pts[:, :3] @ matrix[:3, :3].T + matrix[:3, 3]
    b = sample["boxes"]
    if len(b):
        scale = float(np.cbrt(abs(np.linalg.det(matrix[:3, :3]))))
        b[:, :3] = b[:, :3] @ matrix[:3, :3].T + matrix[:3, 3]
        b[:, 3:6] *= scale
        if mirror == "y":  # y -> -y
            b[:, 6] = -b[:, 6]
        elif mirror == "x":  # x -> -x
            b[:, 6] = np.pi - b[:, 6]
        else:
            b[:, 6] += yaw_delta
        sample["velocity"] = sample["velocity"] @ matrix[:2, :2].T
    sample["lidar2cam"] = sample["lidar2cam"] @ np.linalg.inv(matrix)


class GlobalRotScaleTrans:
    """Random rotation about z (U(rot_range)), uniform scale (U(scale_range)), translation (N(0, std)) of the
    whole scene (the authors' ``GlobalRotScaleTransAll``)."""

    def __init__(self, rot_range=(-0.785, 0.785), scale_range=(0.9, 1.1), translation_std=(0.5, 0.5, 0.5)):
        self.rot_range, self.scale_range, self.translation_std = rot_range, scale_range, np.asarray(translation_std)

    def __call__(self, sample: dict, rng: np.random.Generator) -> None:
        angle = rng.uniform(*self.rot_range)
        scale = rng.uniform(*self.scale_range)
        c, s = np.cos(angle), np.sin(angle)
        m = np.eye(4)
        m[:3, :3] = scale * np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        m[:3, 3] = rng.normal(0, 1, 3) * self.translation_std
        apply_3d(sample, m, yaw_delta=angle)


class RandomFlip3D:
    """BEV flips: ``horizontal`` mirrors y (probability p_h), ``vertical`` mirrors x (p_v)."""

    def __init__(self, p_horizontal: float = 0.5, p_vertical: float = 0.5):
        self.p_h, self.p_v = p_horizontal, p_vertical

    def __call__(self, sample: dict, rng: np.random.Generator) -> None:
        if rng.random() < self.p_h:
            apply_3d(sample, np.diag([1.0, -1.0, 1.0, 1.0]), mirror="y")
        if rng.random() < self.p_v:
            apply_3d(sample, np.diag([-1.0, 1.0, 1.0, 1.0]), mirror="x")


class ModalMask3D:
    """Masked-modal training (the authors' ``ModalMask3D``): per sample u ~ U(0, 1); u > 1 - p_camera zeroes all
    images (before normalisation), 1 - p_camera - p_lidar < u <= 1 - p_camera zeroes all points (they collapse to
    the origin, none is removed; the global augmentation after it moves them as one). The authors' rates are 0.25
    and 0.25. ``mask`` forces one modality off at test time: ``"lidar"`` or ``"camera"``."""

    def __init__(self, mask: str | None = None, p_camera: float = 0.25, p_lidar: float = 0.25):
        if mask not in (None, "lidar", "camera"):
            raise ValueError(f"mask must be None, 'lidar' or 'camera', got {mask!r}")
        if min(p_camera, p_lidar) < 0 or p_camera + p_lidar > 1:
            raise ValueError(f"modality drop rates must be >= 0 with a sum <= 1, got camera {p_camera}, "
                             f"LiDAR {p_lidar}")
        self.mask, self.p_camera, self.p_lidar = mask, p_camera, p_lidar

    def __call__(self, sample: dict, rng: np.random.Generator) -> None:
        drop = self.mask
        if drop is None:
            u = rng.random()
            drop = ("camera" if u > 1 - self.p_camera else
                    "lidar" if u > 1 - self.p_camera - self.p_lidar else None)
        if drop == "camera":
            sample["images"] = [np.zeros_like(im) for im in sample["images"]]
        elif drop == "lidar":
            sample["points"] = sample["points"] * 0


def filter_range(sample: dict, pc_range) -> None:
    """Points inside the 3D range, boxes whose centre is inside the BEV range (mmdet3d's range filters)."""
    p = sample["points"]
    lo, hi = np.asarray(pc_range[:3]), np.asarray(pc_range[3:])
    sample["points"] = p[((p[:, :3] >= lo) & (p[:, :3] < hi)).all(1)]
    b = sample["boxes"]
    keep = ((b[:, :2] >= lo[:2]) & (b[:, :2] <= hi[:2])).all(1)
    for k in ("boxes", "velocity", "labels"):
        sample[k] = sample[k][keep]


class ImageAug:
    """Resize, bottom crop and horizontal flip of all views alike (the authors' ``ResizeCropFlipImage``).

    Training: scale r ~ U(resize_lim) of the source image, crop ``final_dim`` (H, W) with its bottom
    ``bot_pct`` above the image bottom and a random horizontal offset (zero padding where the resized image is
    narrower), flip with probability 0.5. Test: r = max(H / H_src, W / W_src), centred horizontally.
    """

    def __init__(self, final_dim=(320, 800), resize_lim=(0.47, 0.625), bot_pct_lim=(0.0, 0.0), rand_flip=True,
                 training=True):
        self.final_dim, self.resize_lim, self.bot_pct_lim = tuple(final_dim), tuple(resize_lim), tuple(bot_pct_lim)
        self.rand_flip, self.training = rand_flip, training

    def params(self, src_hw, rng: np.random.Generator):
        h, w = src_hw
        fh, fw = self.final_dim
        if self.training:
            r = rng.uniform(*self.resize_lim)
            nw, nh = int(w * r), int(h * r)
            crop_h = int((1 - rng.uniform(*self.bot_pct_lim)) * nh) - fh
            crop_w = int(rng.uniform(0, max(0, nw - fw)))
            flip = bool(self.rand_flip and rng.random() < 0.5)
        else:
            r = max(fh / h, fw / w)
            nw, nh = int(w * r), int(h * r)
            crop_h = int((1 - np.mean(self.bot_pct_lim)) * nh) - fh
            crop_w = int(max(0, nw - fw) / 2)
            flip = False
        return (nw, nh), (crop_w, crop_h), flip

    def __call__(self, sample: dict, rng: np.random.Generator) -> None:
        (nw, nh), (cx, cy), flip = self.params(sample["images"][0].shape[:2], rng)
        fh, fw = self.final_dim
        images, mats = [], []
        for img, k in zip(sample["images"], sample["cam2img"]):
            sx, sy = nw / img.shape[1], nh / img.shape[0]
            resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
            out = np.zeros((fh, fw, 3), img.dtype)
            y0, x0 = max(cy, 0), max(cx, 0)
            y1, x1 = min(cy + fh, nh), min(cx + fw, nw)
            out[y0 - cy:y1 - cy, x0 - cx:x1 - cx] = resized[y0:y1, x0:x1]
            a = np.array([[sx, 0.0, -cx], [0.0, sy, -cy], [0.0, 0.0, 1.0]])
            if flip:
                out = out[:, ::-1].copy()
                a = np.array([[-1.0, 0.0, fw], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ a
            images.append(out)
            mats.append(a @ k)
        sample["images"], sample["cam2img"] = images, np.stack(mats)


def normalise_images(images: list[np.ndarray], divisor: int = 32) -> np.ndarray:
    """BGR uint8 images -> [N, 3, H', W'] float32, (x - mean) / std, zero-padded to multiples of ``divisor``."""
    h, w = images[0].shape[:2]
    ph, pw = -(-h // divisor) * divisor, -(-w // divisor) * divisor
    out = np.zeros((len(images), 3, ph, pw), np.float32)
    for i, im in enumerate(images):
        out[i, :, :h, :w] = ((im.astype(np.float32) - BGR_MEAN) / BGR_STD).transpose(2, 0, 1)
    return out
