"""LoRA adapters folded into the base weights for the length of a generation, the base weights restored exactly after.

A LoRA projection computes ``W x + s * B (A x)``: besides the projection, two thin matmuls, the dropout module and
an add per adapted layer, at every decoding step. Folded, the same projection is ``(W + s * B A) x``: one matmul.
`folded_lora` builds the folded weights as new tensors (the adapted layers' weights once more in memory: 35.4M
parameters for the published adapter on 10 of SmolLM2-135M's 30 blocks), points the base layers at them, turns the
adapters off (peft's ``disable_adapter``), and on exit points the base layers back at their original tensors,
untouched, so training after a generation sees bit-identical weights (peft's own ``merge``/``unmerge`` subtracts
the delta again, which is not exact in floating point).

Only what folding reproduces exactly is folded: plain LoRA on linear layers (peft's ``lora.Linear``, no variant
such as DoRA, no ``lora_bias``), active and not merged already, on base weights that no other module shares (a
tied ``lm_head`` would change the embedding too), in a model without peft's ``modules_to_save`` / trainable-token
wrappers (``disable_adapter`` would switch those off as well). Anything else runs unfolded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _lora_layers(lm: nn.Module) -> list[nn.Module] | None:
    """The peft LoRA layers of ``lm`` when every one of them can be folded; None when there is nothing to fold or
    a layer is of a kind this module does not fold."""
    if not hasattr(lm, "disable_adapter"):
        return None
    from peft.tuners.lora.layer import Linear, LoraLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    modules = list(lm.modules())
    layers = [m for m in modules if isinstance(m, LoraLayer)]
    uses = Counter(id(p) for _, p in lm.named_parameters(remove_duplicate=False))
    foldable = (not any(isinstance(m, AuxiliaryTrainingWrapper) for m in modules)
                and all(type(m) is Linear and not m.lora_variant and not any(m.lora_bias.values())
                        and not m.merged and not m.disable_adapters  # merged by peft, or folded already (nested)
                        and uses[id(m.get_base_layer().weight)] == 1 for m in layers))
    return layers if layers and foldable else None


@contextmanager
def folded_lora(lm: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``lm`` (a peft-wrapped causal LM, or any module: then nothing changes) computes with
    ``W + scaling * B @ A`` in every LoRA layer and no adapter branch; on exit the original weight tensors are back.

    Use it for inference only (the folded weights receive no gradients meant for the adapters)."""
    layers = _lora_layers(lm)
    if layers is None:
        yield lm
        return
    originals: list[tuple[nn.Parameter, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer in layers:
                deltas = [layer.get_delta_weight(name) for name in layer.active_adapters if name in layer.lora_A]
                if deltas:
                    weight = layer.get_base_layer().weight
                    originals.append((weight, weight.data))
                    weight.data = weight.data + sum(deltas).to(weight.dtype)
        with lm.disable_adapter():
            yield lm
    finally:
        for weight, data in originals:
            weight.data = data
