"""`zoo bench` for drum LMs: synthetic drum text, the forward pass, the real training loss and the zoo's sampler.

One sample is one sequence of `TOKENS` tokens: ``infer`` and ``train`` process a random 16-bar groove cut to
`TOKENS` tokens; ``generate`` continues the first `PROMPT_TOKENS` tokens of it by exactly `TOKENS` new tokens
(temperature 0.9, no stop at ``END``, so every run does the same work). ``tokens_per_s`` is therefore processed
tokens per second in ``infer``/``train`` and generated tokens per second in ``generate``.
"""

from __future__ import annotations

import torch

from ...bench.adapters import BenchAdapter
from ...metrics.drums import random_grooves
from .encoding import make_example
from .generate import PAPER_TEMPERATURE, sample_ids

TOKENS = 128
PROMPT_TOKENS = 64


def synthetic_ids(model, batch_size: int) -> torch.Tensor:
    """[B, TOKENS] token ids of random drum grooves (seeded), in the model's tokenizer."""
    rows = []
    for i, lines in enumerate(random_grooves(batch_size, seed=1)):
        e = make_example(f"random{i}", lines)
        rows.append(model.tokenizer.encode(e.prompt + e.completion)[:TOKENS])
    return torch.tensor(rows)


def drum_lm(model) -> BenchAdapter:
    def make_batch(b: int, device: torch.device):
        ids = synthetic_ids(model, b).to(device)
        weight = torch.ones(ids.shape, device=device)
        weight[:, 0] = 0
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "loss_weight": weight}

    def generate(m, batch):
        generator = torch.Generator(device=batch["input_ids"].device).manual_seed(0)
        return sample_ids(m, batch["input_ids"][:, :PROMPT_TOKENS].tolist(), temperature=PAPER_TEMPERATURE,
                          max_new_tokens=TOKENS, stop_at_end=False, generator=generator)

    return BenchAdapter(
        make_batch=make_batch,
        forward=lambda m, batch: m(batch["input_ids"], batch["attention_mask"]),
        loss=lambda m, batch: m.loss(batch),
        generate=generate,
        unit="sequences",
        extra_units={"tokens": TOKENS},
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-4),
        input_desc=f"random 16-bar drum text, {TOKENS} tokens per sequence; generate: {PROMPT_TOKENS}-token "
                   f"prompts + {TOKENS} sampled tokens (temperature 0.9, no stop)",
    )
