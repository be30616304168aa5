"""Static-shape decoding of Llama-architecture drum LMs, so that one decoding step can be replayed as a CUDA graph.

On a GPU a decoding step of a 135M-parameter LM is bound by kernel launches and Python, not arithmetic: the H200
run of 2026-12-04 measured about 23 ms per step for both transformers' ``generate`` and the zoo's dynamic loop
(`generate.sample_ids`), at batch 37. A CUDA graph replays all of a step's kernels with one launch, but it needs
every tensor of the step to keep its shape and address from step to step. So here:

* the keys and values of every layer live in buffers ``[B, H_kv, capacity, D]`` allocated once, and each step
  writes its token's keys and values at the slot held by a device tensor (``index_copy_``);
* attention always spans the whole buffer behind a boolean mask ``valid [B, capacity]`` (left padding and
  not-yet-written slots are False), so no shape depends on the step;
* grouped-query attention folds the ``rep = H / H_kv`` query heads of a key head into the query-length dimension
  (``[B, H_kv, rep * T, D]``), so the cached keys are never copied or expanded;
* nothing in a step reads a value back to the host.

The projections, norms, MLPs and rotary tables are the transformers modules themselves (a peft LoRA layer works
unchanged); only the attention around the cache is restated. `StaticDecoder.prefill` runs the prompt through the
same code (T > 1, causal mask); `StaticDecoder.step` is the part a `GraphedStep` captures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...cuda_graph import capture
from ...errors import ZooError

FAMILIES = ("llama",)  # the decoder-layer layout restated in `StaticDecoder._forward` (no sliding windows)


def _base_model(lm: nn.Module) -> nn.Module:
    """The transformers ``*ForCausalLM`` inside a peft wrapper (or ``lm`` itself)."""
    return lm.get_base_model() if hasattr(lm, "get_base_model") else lm


def supports_static(lm: nn.Module) -> bool:
    """Whether `StaticDecoder` can run this transformers causal LM: its ``model_type`` is in `FAMILIES` and its
    rotary embedding does not rescale with the sequence length (transformers' "dynamic" and "longrope" types read
    the largest position back to the host on every call)."""
    base = _base_model(lm)
    rope = getattr(getattr(base, "model", None), "rotary_emb", None)
    return (getattr(base.config, "model_type", None) in FAMILIES
            and not any(t in str(getattr(rope, "rope_type", "")) for t in ("dynamic", "longrope")))


class StaticDecoder:
    """Prefill and single-token steps of a Llama-family causal LM over a fixed-size KV cache.

    Args:
        lm: a transformers ``LlamaForCausalLM`` (SmolLM2, Llama), optionally peft-wrapped, in eval mode.
        batch: B, the number of rows (fixed for the decoder's life).
        capacity: C, cache slots per row (prompt width + new tokens).

    State (device tensors, updated in place): ``token [B]`` the token the next `step` reads, ``position [B]`` its
    position id, ``slot`` (0-d) the cache slot it is written to, ``valid [B, C]`` which slots hold real tokens.
    """

    def __init__(self, lm: nn.Module, batch: int, capacity: int):
        base = _base_model(lm)
        cfg = base.config
        if not supports_static(lm):
            raise ZooError(f"static decoding covers the {', '.join(FAMILIES)} architecture with fixed rotary tables; "
                           f"this LM is {cfg.model_type!r} (use decoder='dynamic')")
        self.model, self.head = base.model, base.lm_head
        p = next(base.parameters())
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.rep = self.heads // self.kv_heads
        shape = (batch, self.kv_heads, capacity, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.model.layers]
        self.values = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.model.layers]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=p.device)
        self.token = torch.zeros(batch, dtype=torch.long, device=p.device)
        self.position = torch.zeros(batch, dtype=torch.long, device=p.device)
        self.slot = torch.zeros((), dtype=torch.long, device=p.device)
        self.capacity = capacity
        self._next_slot = 0  # host copy of ``slot``: checking the capacity must not read the device
        self._all_slots = torch.arange(capacity, device=p.device)

    def _attention(self, attn: nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layer: int,
                   slots: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One self-attention block over the cache: h [B, T, hidden] -> [B, T, hidden]; writes the T new keys and
        values at ``slots`` [T]; mask [B, 1, rep * T, C] (True: attend)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        b, t, _ = h.shape
        q = attn.q_proj(h).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        self.keys[layer].index_copy_(2, slots, k)
        self.values[layer].index_copy_(2, slots, v)
        # query head g * rep + r reads key head g (transformers' repeat_kv order)
        q = q.reshape(b, self.kv_heads, self.rep * t, self.head_dim)
        o = F.scaled_dot_product_attention(q, self.keys[layer], self.values[layer], attn_mask=mask,
                                           scale=self.head_dim ** -0.5)
        return attn.o_proj(o.reshape(b, self.heads, t, self.head_dim).transpose(1, 2).reshape(b, t, -1))

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
        """ids, positions [B, T]; slots [T]; mask [B, 1, rep * T, C] -> logits of the last position [B, V]."""
        x = self.model.embed_tokens(ids)
        cos, sin = self.model.rotary_emb(x, positions)
        for i, layer in enumerate(self.model.layers):
            x = x + self._attention(layer.self_attn, layer.input_layernorm(x), cos, sin, i, slots, mask)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.head(self.model.norm(x[:, -1]))

    def prefill(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Left-padded prompts ids, attention_mask [B, P] -> next-token logits [B, V]; fills slots 0..P-1 and sets
        ``slot`` = P and ``position`` to each row's next position id."""
        b, p = ids.shape
        if p >= self.capacity:
            raise ZooError(f"the prompt width {p} leaves no room in a cache of {self.capacity} slots")
        real = attention_mask.bool()
        positions = (attention_mask.cumsum(1) - 1).clamp_min(0)
        self.valid.zero_()
        self.valid[:, :p] = real
        slots = self._all_slots[:p]
        causal = self._all_slots[None, None, :] <= slots[None, :, None]  # [1, P, C]
        allowed = (self.valid[:, None, :] & causal) | (self._all_slots[None, None, :] == slots[None, :, None])
        # a padding query sees only itself, so its (unused) keys and values stay finite
        mask = allowed[:, None, None].expand(b, 1, self.rep, p, self.capacity).reshape(b, 1, self.rep * p, -1)
        logits = self._forward(ids, positions, slots, mask)
        self.slot.fill_(p)
        self._next_slot = p
        self.position.copy_(positions[:, -1] + 1)
        return logits

    def step(self) -> torch.Tensor:
        """Decode ``token`` at ``position`` into ``slot``: next-token logits [B, V]. Does not advance the state
        (`advance` does), so repeating a step writes the same values: what CUDA-graph warm-up needs."""
        self.valid.index_fill_(1, self.slot.view(1), True)
        return self._forward(self.token[:, None], self.position[:, None], self.slot.view(1),
                             self.valid[:, None, None, :])

    def advance(self) -> None:
        """Move to the next slot and position (after a step)."""
        if self._next_slot + 1 >= self.capacity:
            raise ZooError(f"the KV cache holds {self.capacity} slots and all are used (allocate it with the prompt "
                           f"width plus the new-token budget)")
        self._next_slot += 1
        self.slot += 1
        self.position += 1


class GraphedStep:
    """`StaticDecoder.step` captured once as a CUDA graph; calling it replays the graph and returns the logits
    tensor the graph writes (the same tensor every call: read or copy it before the next call)."""

    def __init__(self, decoder: StaticDecoder, warmup: int = 2):
        self.graph, self.logits = capture(decoder.step, warmup)  # repeating a step rewrites the same values

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        return self.logits
