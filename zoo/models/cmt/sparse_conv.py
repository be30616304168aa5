"""3D sparse convolutions in plain PyTorch (a neighbour table, one gather and one matrix multiply per layer).

Semantics and weight layout follow spconv 2 (``SubMConv3d``, ``SparseConv3d``), so the authors' sparse encoder
weights load unchanged: weights are [C_out, kD, kH, kW, C_in] and output site q receives
sum_k W[:, k, :] @ x[q * stride - padding + k] (cross-correlation, as ``torch.nn.Conv3d``).

* submanifold: output sites are the input sites (the receptive field is centred);
* regular sparse: output sites are every q whose receptive field contains an active input.

Sites are found by hashing (batch, z, y, x) into one int64 key and ``searchsorted`` on the sorted keys. A layer's
*neighbour table* ``[M, K]`` holds, for each of its M output sites and K kernel offsets, the input row that offset
reads (or a zero row where the site is inactive); the convolution is then one gather to ``[M, K * C_in]`` and one
matrix multiply with the weights as ``[K * C_in, C_out]``: no per-offset loop, no scatter, no host synchronisation.
As spconv does with its rulebooks, submanifold layers that share an ``indice_key`` (and so the same sites) share
one table, built by the first of them. Under autograd the gathered matrix is recomputed in the backward pass
instead of being stored (it is K times the size of the features). This runs on any device and needs no compiled
extension. When spconv 2 is installed, `SparseConv3d` can run through spconv instead (its ``SparseConvTensor``
flows through the same modules; the parameters are shared): see ``sparse_backend`` of `zoo.models.cmt.model.CMT`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class SparseTensor:
    """features [N, C]; indices [N, 4] int64 (batch, z, y, x); spatial_shape (D, H, W); batch_size; tables: the
    neighbour tables of these sites, by (indice_key, kernel), shared by every tensor with the same sites."""

    features: torch.Tensor
    indices: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    tables: dict = field(default_factory=dict)

    def replace_feature(self, features: torch.Tensor) -> "SparseTensor":
        """Same sites, new features (the name spconv's ``SparseConvTensor`` uses, so modules accept both)."""
        return SparseTensor(features, self.indices, self.spatial_shape, self.batch_size, self.tables)

    def dense(self) -> torch.Tensor:
        """[B, C, D, H, W] with zeros at inactive sites."""
        d, h, w = self.spatial_shape
        out = self.features.new_zeros(self.batch_size, d, h, w, self.features.shape[1])
        b, z, y, x = self.indices.unbind(1)
        out[b, z, y, x] = self.features
        return out.permute(0, 4, 1, 2, 3).contiguous()


def _keys(indices: torch.Tensor, shape) -> torch.Tensor:
    """[..., 4] (b, z, y, x) -> [...] int64 keys, increasing in the lexicographic order of the sites."""
    d, h, w = shape
    return ((indices[..., 0] * d + indices[..., 1]) * h + indices[..., 2]) * w + indices[..., 3]


def _sites(keys: torch.Tensor, shape) -> torch.Tensor:
    """Inverse of `_keys`: [M] keys -> [M, 4] (b, z, y, x)."""
    d, h, w = shape
    x, rest = keys % w, keys // w
    y, rest = rest % h, rest // h
    return torch.stack([rest // d, rest % d, y, x], 1)


def _offsets(kernel, device) -> torch.Tensor:
    """[K, 3] kernel offsets (kz, ky, kx) in weight order."""
    return torch.tensor(list(product(*(range(k) for k in kernel))), device=device)


def output_sites(x: SparseTensor, kernel, stride: torch.Tensor, padding: torch.Tensor, out_shape) -> torch.Tensor:
    """Sites [M, 4] of a regular sparse convolution: every q with an active input in its receptive field, sorted."""
    q = x.indices[:, None, 1:] + padding - _offsets(kernel, x.indices.device)  # [N, K, 3]
    ok = ((q % stride) == 0).all(-1)
    q = q // stride
    ok &= ((q >= 0) & (q < torch.tensor(out_shape, device=q.device))).all(-1)
    cand = torch.cat([x.indices[:, None, :1].expand(-1, q.shape[1], 1), q], -1)[ok]
    return _sites(torch.unique(_keys(cand, out_shape)), out_shape)


def neighbour_table(x: SparseTensor, out_indices: torch.Tensor, kernel, stride: torch.Tensor,
                    padding: torch.Tensor) -> torch.Tensor:
    """[M, K]: the row of ``x.features`` that output site m reads through kernel offset k, or N (a zero row)."""
    n, device = len(x.indices), x.indices.device
    src = out_indices[:, None, 1:] * stride - padding + _offsets(kernel, device)  # [M, K, 3]
    inside = ((src >= 0) & (src < torch.tensor(x.spatial_shape, device=device))).all(-1)
    keys = _keys(torch.cat([out_indices[:, None, :1].expand(-1, src.shape[1], 1), src], -1), x.spatial_shape)
    sorted_keys, order = torch.sort(_keys(x.indices, x.spatial_shape))
    pos = torch.searchsorted(sorted_keys, keys).clamp_max(n - 1)
    found = inside & (sorted_keys[pos] == keys)
    return torch.where(found, order[pos], torch.full_like(pos, n))


def _gather_matmul(features: torch.Tensor, weight: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """features [N, C_in], weight [K * C_in, C_out], table [M, K] -> [M, C_out]."""
    padded = torch.cat([features, features.new_zeros(1, features.shape[1])])
    return padded.index_select(0, table.view(-1)).view(len(table), -1) @ weight  # index_select: fast on CPUs too


def sparse_conv3d(x: SparseTensor, weight: torch.Tensor, stride=(1, 1, 1), padding=(0, 0, 0),
                  subm: bool = False, bias: torch.Tensor | None = None, indice_key: str | None = None) -> SparseTensor:
    """One sparse 3D convolution.

    Args:
        x: input sparse tensor; weight: [C_out, kD, kH, kW, C_in].
        stride, padding: per axis (z, y, x); ignored (1 and centred) when ``subm``.
        subm: submanifold convolution (output sites = input sites).
        indice_key: submanifold layers with the same key on the same sites share one neighbour table.
    Returns:
        The output sparse tensor ([M, C_out] features).
    """
    kernel = tuple(weight.shape[1:4])
    if subm:
        stride, padding = (1, 1, 1), tuple(k // 2 for k in kernel)
    out_shape = tuple((s + 2 * p - k) // st + 1 for s, p, k, st in zip(x.spatial_shape, padding, kernel, stride))
    stride_t = torch.tensor(stride, device=x.indices.device)
    pad_t = torch.tensor(padding, device=x.indices.device)
    if subm:
        out_indices, tables = x.indices, x.tables
    else:
        out_indices, tables = output_sites(x, kernel, stride_t, pad_t, out_shape), {}
    c_out = weight.shape[0]
    if not len(x.indices) or not len(out_indices):
        out = x.features.new_zeros(len(out_indices), c_out)
    else:
        cache_key = (indice_key, kernel) if subm and indice_key else None
        table = tables.get(cache_key) if cache_key else None
        if table is None:
            table = neighbour_table(x, out_indices, kernel, stride_t, pad_t)
            if cache_key:
                tables[cache_key] = table
        w = weight.permute(1, 2, 3, 4, 0).reshape(-1, c_out)  # [K * C_in, C_out], offsets in weight order
        if torch.is_grad_enabled() and (x.features.requires_grad or weight.requires_grad):
            out = checkpoint(_gather_matmul, x.features, w, table, use_reentrant=False)
        else:
            out = _gather_matmul(x.features, w, table)
    if bias is not None:
        out = out + bias
    return SparseTensor(out, out_indices, out_shape, x.batch_size, tables)


class SparseConv3d(nn.Module):
    """spconv-2-compatible sparse convolution module (``weight`` [C_out, kD, kH, kW, C_in], no bias by default).

    A `SparseTensor` input runs `sparse_conv3d`; an spconv ``SparseConvTensor`` runs spconv's own module, which
    shares this module's parameters (``indice_key`` lets spconv reuse the rulebooks of layers with equal sites).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0,
                 subm: bool = False, bias: bool = False, indice_key: str | None = None):
        super().__init__()
        self.in_channels, self.out_channels, self.indice_key = in_channels, out_channels, indice_key
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        self.padding = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        self.subm = subm
        self.weight = nn.Parameter(torch.empty(out_channels, *k, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight.view(out_channels, -1), a=5 ** 0.5)

    def forward(self, x):
        if isinstance(x, SparseTensor):
            return sparse_conv3d(x, self.weight, self.stride, self.padding, self.subm, self.bias, self.indice_key)
        return self._spconv()(x)

    def _spconv(self):
        """spconv's module for this layer, created once, holding this layer's parameters (not registered as a
        child, so the state dict is unchanged)."""
        if "_spconv_module" not in self.__dict__:
            import spconv.pytorch as sp

            k = tuple(self.weight.shape[1:4])
            if self.subm:
                m = sp.SubMConv3d(self.in_channels, self.out_channels, k, bias=False, indice_key=self.indice_key)
            else:
                m = sp.SparseConv3d(self.in_channels, self.out_channels, k, stride=self.stride, padding=self.padding,
                                    bias=False, indice_key=self.indice_key)
            m.weight = self.weight
            m.bias = self.bias
            self.__dict__["_spconv_module"] = m
        return self.__dict__["_spconv_module"]


class SparseBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the features of a sparse tensor (mmdet3d's sparse encoders: eps 1e-3, momentum 0.01)."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-3, momentum=0.01)

    def forward(self, x):
        return x.replace_feature(super().forward(x.features))


class SparseReLU(nn.Module):
    def forward(self, x):
        return x.replace_feature(torch.relu(x.features))
