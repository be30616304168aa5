"""CMT's transformer decoder (the PETR decoder, post-norm), with attention through
``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPUs) in place of the
authors' flash-attn 0.2 cross-attention.

Layer order: self-attention -> LayerNorm -> cross-attention -> LayerNorm -> FFN -> LayerNorm; the decoder applies
one shared final LayerNorm to every layer's output and returns all of them. Queries and keys carry their
positional encodings (q = k = content + PE for self-attention; cross-attention keys = memory + PE); values do not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiheadAttention(nn.Module):
    """Batch-first multi-head attention with a packed input projection (``in_proj_weight`` [3C, C], as
    ``nn.MultiheadAttention`` and the authors' flash module) and SDPA.

    Args:
        dropout: attention-probability dropout (training only).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """query [B, Lq, C], key/value [B, Lk, C], attn_mask [Lq, Lk] bool (True = may attend) -> [B, Lq, C]."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        b, lq, c = q.shape
        h = self.num_heads
        q, k, v = (t.view(b, -1, h, c // h).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, lq, c))


class DecoderLayer(nn.Module):
    """One post-norm decoder layer (self-attn with attention dropout, cross-attn, ReLU FFN; residual dropout)."""

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, ffn_dim: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.self_attn = MultiheadAttention(embed_dim, num_heads, dropout)
        self.cross_attn = MultiheadAttention(embed_dim, num_heads, 0.0)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, embed_dim))
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(embed_dim) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, query, query_pos, memory, memory_pos, self_attn_mask=None):
        """query/query_pos [B, Q, C]; memory/memory_pos [B, S, C]; self_attn_mask [Q, Q] bool -> [B, Q, C]."""
        q = query + query_pos
        query = self.norm1(query + self.drop(self.self_attn(q, q, query, self_attn_mask)))
        query = self.norm2(query + self.drop(self.cross_attn(query + query_pos, memory + memory_pos, memory)))
        return self.norm3(query + self.ffn(query))


class Decoder(nn.Module):
    """``num_layers`` `DecoderLayer` and the shared final LayerNorm ``post_norm``."""

    def __init__(self, num_layers: int = 6, embed_dim: int = 256, num_heads: int = 8, ffn_dim: int = 1024,
                 dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(embed_dim, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.post_norm = nn.LayerNorm(embed_dim)

    def forward(self, query_pos, memory, memory_pos, self_attn_mask=None) -> torch.Tensor:
        """The content queries start at zero (only their PE carries the anchors). -> [L, B, Q, C]."""
        query = torch.zeros_like(query_pos)
        outs = []
        for layer in self.layers:
            query = layer(query, query_pos, memory, memory_pos, self_attn_mask)
            outs.append(self.post_norm(query))
        return torch.stack(outs)
