"""A KV cache allocated once per generation, for `generate.sample_ids`.

transformers' default ``DynamicCache`` appends each step's keys and values with ``torch.cat``, which copies the whole
cache of every layer on every decoding step: O(L) memory traffic per token, O(L^2) per sequence. At the lengths the
paper generates (a 2-bar prompt of about 300 tokens plus up to 1000 new ones) that copy is the largest single cost
of a CPU decoding step (measured on SmolLM2-135M, batch 16, 800 cached tokens: 37 % of the step). Here each layer's
buffers hold ``capacity`` positions from the start; a step writes only the new positions and hands attention a view
of the filled prefix, so attention still reads only the tokens generated so far (unlike transformers'
``StaticCache``, whose attention always spans the whole buffer behind a mask).
"""

from __future__ import annotations

import torch

from ...errors import ZooError, require

require("transformers", "drums")  # a clear error naming the extra before the import below
from transformers.cache_utils import Cache, DynamicLayer  # noqa: E402


class PreallocatedLayer(DynamicLayer):
    """One attention layer's keys and values in buffers of ``capacity`` positions.

    ``keys`` / ``values`` (what attention reads) are views ``[B, H_kv, length, D]`` of the buffers
    ``[B, H_kv, capacity, D]``; dropping batch rows (`batch_select_indices`) copies the buffers once.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        b, h, _, _ = key_states.shape
        self._keys = key_states.new_empty(b, h, self.capacity, key_states.shape[-1])
        self._values = value_states.new_empty(b, h, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Write ``[B, H_kv, n, D]`` new keys / values after the cached ones; returns the filled prefix."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self.length + n > self.capacity:
            raise ZooError(f"the KV cache holds {self.capacity} positions; {self.length} are used and {n} more "
                           f"were written (allocate it with the prompt width plus the new-token budget)")
        self._keys[:, :, self.length:self.length + n] = key_states
        self._values[:, :, self.length:self.length + n] = value_states
        self.length += n
        self._view()
        return self.keys, self.values

    def _view(self) -> None:
        self.keys = self._keys[:, :, :self.length]
        self.values = self._values[:, :, :self.length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the batch rows ``indices`` ([B'] long)."""
        if self.is_initialized:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._view()


def preallocated_cache(num_layers: int, capacity: int) -> Cache:
    """A transformers ``Cache`` of ``num_layers`` `PreallocatedLayer` s of ``capacity`` positions each."""
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])
