"""Batched sampling of drum continuations with a KV cache: the paper's decoding (temperature 0.9, stop at ``END``,
at most 1000 new tokens), written for throughput.

Per batch of prompts: one left-padded prefill (logits of the last position only), then one token per step for every
unfinished row. The KV cache is allocated once for the whole generation (`kv_cache`), so a step writes only the new
token's keys and values where transformers' default cache copies all of them. A row that writes ``END`` (or fills
its line budget) leaves the batch at once: its KV-cache rows are dropped, so the remaining steps cost only what the
unfinished rows need, where transformers' default ``generate`` keeps computing padded rows until the longest one
ends. Where a row ends is read from its text, not from token ids (`RowEnds`, `text_end`): ``END`` however the tokens
spell it ("END", "E" + "ND", "\\nEN" + "D", "ENDo"), and newlines wherever a token holds them (a BPE may merge a
line's last cell, or a blank line, with its newline). Sampling is plain temperature sampling from the full softmax
(no top-k, no top-p), as the OpenAI completions API the authors called. LoRA adapters are folded into the base
weights for the length of a generation (`lora_fold.folded_lora`: one matmul per projection instead of three, the
original weights restored bit-exactly after).

On a GPU the per-step cost is kernel launches, not arithmetic, which ``decoder="graph"`` addresses: a static-shape
step (`static_decode.StaticDecoder`) replayed as one CUDA graph. Static shapes mean finished rows stay in the batch
(their tokens after the end are cut off), and the host checks for the end of every row only every ``check_every``
steps, so that steps are not synchronised with the host one by one. The default, ``decoder="auto"``, is still the
dynamic loop on every device: it is the only decoder that has run on a GPU (an H200, 2026-12-04, where it decoded
the same greedy tokens as transformers and sampled 1.26x as fast as its ``generate``, batch 37, 256 tokens a row),
while the static and graph decoders have been tested on the CPU only (their CUDA test,
`test_graphed_steps_match_eager_steps_on_cuda`, has not run yet). ``auto`` should pick ``graph`` on CUDA once that
test has passed on a GPU and the graph decoder has been timed there. On the CPU the dynamic loop is also the faster
at the evaluation's lengths (37 rows, up to 1 000 tokens: 1.56x transformers' ``generate`` against the static
decoder's 1.12x with the scratch model; the model card's Performance section).
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from ...data.sampling import mixed_seed_table
from ...errors import ZooError
from .encoding import END, Example
from .kv_cache import preallocated_cache
from .lm import DrumLM
from .lora_fold import folded_lora
from .static_decode import GraphedStep, StaticDecoder
from .tokenizer import DrumTokenizer

PAPER_TEMPERATURE = 0.9
PAPER_MAX_NEW_TOKENS = 1000
DECODERS = ("auto", "dynamic", "static", "graph")


def _left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def sample_ids(model: DrumLM, prompt_ids: list[list[int]], *, temperature: float = PAPER_TEMPERATURE,
               max_new_tokens: int = PAPER_MAX_NEW_TOKENS, max_new_lines: int | None = None,
               stop_at_end: bool = True, generator: torch.Generator | PromptStreams | None = None,
               decoder: str = "auto", check_every: int = 16) -> list[list[int]]:
    """Continue each prompt (one batch); returns the new token ids of every row, up to and including the token that
    ends it (`RowEnds`: the one whose text completes the first ``END``, or holds the ``max_new_lines``-th newline).
    That token's text may go on past the end ("ENDo", "\\n\\n"); `continue_grooves` cuts the text there.

    Args:
        prompt_ids: B token-id lists (any lengths >= 1, ids below the tokenizer's ``vocab_size``).
        temperature: softmax temperature (> 0).
        max_new_tokens: hard cap per row (>= 1); the longest prompt plus this must fit the model's context
            (`DrumLM.context_length`): no window slides over longer text.
        max_new_lines: stop a row at its this-many-th newline (>= 1), counted in its text (a token may hold a
            newline with other characters, or two); None: no line budget. The rest of a 16-bar window after a 2-bar
            prompt is 237 lines (224 drum lines and 13 SEP lines) and its ``END`` follows the 237th newline, so a
            budget that lets a full-length groove end with ``END`` is 238 (`DrumsTask`).
        stop_at_end: stop a row when its text holds ``END`` (anywhere, in whatever tokens); False generates exactly
            ``max_new_tokens`` per row unless ``max_new_lines`` stops it (benchmarks).
        generator: the random numbers that make sampling reproducible: a ``torch.Generator`` on the model's device
            (one stream for the batch, so a row's tokens depend on the batch it is in), `PromptStreams` (one per
            prompt, as `continue_grooves` uses), or None (torch's global generator).
        decoder: ``dynamic`` (growing cache, finished rows dropped at once), ``static`` (fixed shapes, see the module
            docstring), ``graph`` (static, each step one CUDA graph; CUDA only) or ``auto`` (``dynamic`` on every
            device for now: the only decoder that has run on a GPU; see the module docstring).
        check_every: static decoders: steps between the host's checks whether every row has ended.
    """
    if not temperature > 0:
        raise ZooError(f"temperature must be > 0 (the paper samples at {PAPER_TEMPERATURE}), got {temperature}")
    if max_new_tokens < 1:
        raise ZooError(f"max_new_tokens must be >= 1 (the paper allows {PAPER_MAX_NEW_TOKENS}), got {max_new_tokens}")
    if max_new_lines is not None and max_new_lines < 1:
        raise ZooError(f"max_new_lines must be >= 1 or None (no line budget), got {max_new_lines}")
    vocab = model.tokenizer.vocab_size
    for i, row in enumerate(prompt_ids):
        bad = [t for t in row if not 0 <= t < vocab]
        if not row or bad:
            raise ZooError(f"prompt_ids[{i}] must be a non-empty list of token ids in [0, {vocab}) (the "
                           f"tokenizer's vocabulary), got {f'ids {bad[:5]} outside it' if bad else 'no ids'}")
    _check_context(model, max(map(len, prompt_ids)), max_new_tokens)
    with folded_lora(model.lm) as lm:
        return _sample(model, lm, prompt_ids, temperature=temperature, max_new_tokens=max_new_tokens,
                       max_new_lines=max_new_lines, stop_at_end=stop_at_end, generator=generator, decoder=decoder,
                       check_every=check_every)


def _check_context(model: DrumLM, prompt_tokens: int, max_new_tokens: int) -> None:
    """Refuse a generation whose longest prompt plus ``max_new_tokens`` is more than the model's context: no
    position past it was ever trained (a GPT-2 has no embedding for it and fails, a rotary LM runs on untrained),
    and no window slides over the text."""
    context = model.context_length
    if context is None or prompt_tokens + max_new_tokens <= context:
        return
    if prompt_tokens >= context:
        fix = f"shorten the prompt to fewer than {context} tokens (e.g. its first bars)"
    else:
        fix = f"ask for at most {context - prompt_tokens} new tokens (max_new_tokens)"
        if max_new_tokens < context:  # else no prompt is short enough: the budget alone fills the context
            fix += f", or shorten the prompt to at most {context - max_new_tokens} tokens"
    raise ZooError(f"a prompt of {prompt_tokens} tokens plus max_new_tokens={max_new_tokens} is more than the "
                   f"model's context of {context} tokens (max_position_embeddings): {fix}")


def _sample(model: DrumLM, lm, prompt_ids: list[list[int]], *, temperature: float, max_new_tokens: int,
            max_new_lines: int | None, stop_at_end: bool, generator: torch.Generator | PromptStreams | None,
            decoder: str, check_every: int) -> list[list[int]]:
    """`sample_ids` with ``lm`` (``model.lm``, LoRA adapters folded)."""
    device = next(model.parameters()).device
    vocab = model.tokenizer.vocab_size
    ends = RowEnds(model.tokenizer, len(prompt_ids), stop_at_end=stop_at_end, max_new_lines=max_new_lines)
    ids, mask = _left_pad(prompt_ids, model.tokenizer.pad_id, device)
    decoder = _choose_decoder(decoder, lm, device)
    if decoder != "dynamic":
        return _sample_static(lm, ids, mask, ends, vocab, temperature=temperature, max_new_tokens=max_new_tokens,
                              generator=generator, graph=decoder == "graph", check_every=check_every)
    positions = (mask.cumsum(1) - 1).clamp_min(0)
    cache = preallocated_cache(lm.config.get_text_config().num_hidden_layers, ids.shape[1] + max_new_tokens)
    cache_arg = {_cache_keyword(lm): cache}
    out = lm(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
             **cache_arg)
    logits = out.logits[:, -1]
    rows = list(range(len(prompt_ids)))  # which prompt each live batch row belongs to
    last_pos = positions[:, -1]
    table = _uniform_table(generator, len(prompt_ids), max_new_tokens, device)
    for step in range(max_new_tokens):
        u = _step_uniforms(table, generator, len(rows), step, device)
        token = draw(probabilities(logits, temperature, vocab), u)
        (sampled,) = _checked([token.tolist()], vocab)  # the step's one read-back; the rest on the host
        done = [ends.add(r, t) for r, t in zip(rows, sampled)]
        if step == max_new_tokens - 1 or all(done):
            break
        if any(done):
            live = [i for i, d in enumerate(done) if not d]
            keep = torch.tensor(live, device=device)
            cache.batch_select_indices(keep)
            rows = [rows[i] for i in live]
            token, mask, last_pos = token[keep], mask[keep], last_pos[keep]
            table = table[keep] if table is not None else None
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        last_pos = last_pos + 1
        out = lm(input_ids=token[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                 use_cache=True, **cache_arg)
        logits = out.logits[:, -1]
    return ends.ids


def _cache_keyword(lm) -> str:
    """The name under which ``lm``'s transformers model (under a peft wrapper, whose forward passes it on) takes
    its KV cache: ``cache`` (transformers 5.24 on, which warns that ``past_key_values`` goes in 5.40) or
    ``past_key_values`` (earlier 5.x)."""
    model = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def text_end(text: str, *, stop_at_end: bool = True, max_new_lines: int | None = None) -> int | None:
    """Where sampling ends a continuation's ``text``: right after its first ``END`` (when ``stop_at_end``) or its
    ``max_new_lines``-th newline, whichever comes first; None when it holds neither.

    ``END`` counts anywhere, not only at a line's start: `encoding.groove_lines` (what the evaluation reads) drops
    everything from the first ``END`` on, wherever it is, and so must sampling, or a continuation would hold text
    after an ``END`` that nothing reads. In the paper's text ``END`` always starts a line."""
    ends = []
    if stop_at_end and END in text:
        ends.append(text.index(END) + len(END))
    if max_new_lines is not None and text.count("\n") >= max_new_lines:
        ends.append(len("\n".join(text.split("\n", max_new_lines)[:max_new_lines])) + 1)
    return min(ends, default=None)


class RowEnds:
    """The new tokens of a batch's rows as they are sampled, and where each row ends: at the token after which its
    decoded text has an end under `text_end` (the first ``END``, or the ``max_new_lines``-th newline).

    The check is incremental, O(1) per token: a token's text is its own decoding (cached per id) for the newline
    count, and only a token whose text holds ``D`` (``END``'s last letter, which the token that completes an
    ``END`` must write) is checked in context: the row's last `WINDOW` tokens decoded with and without it, so that
    an ``END`` spelled by several tokens ("E" + "ND", "\\nEN" + "D") or joined by the decoder (WordPiece's
    "##ND") is found. This assumes what holds for byte-level BPE, SentencePiece and the symbol tokenizer: a token
    writes the same newlines and ``D`` in context as alone.

    Attributes:
        ids: B lists, each row's new token ids up to and including the token that ended it.
        ends: B lengths of ``ids`` once the row has ended, None before.
    """

    WINDOW = 8  # tokens of context for an END check: END is 3 characters, a few empty-text tokens may sit between

    def __init__(self, tokenizer: DrumTokenizer, rows: int, *, stop_at_end: bool, max_new_lines: int | None):
        self.tokenizer, self.stop_at_end, self.max_new_lines = tokenizer, stop_at_end, max_new_lines
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.ends: list[int | None] = [None] * rows
        self._lines = [0] * rows
        self._texts: dict[int, str] = {}

    def add(self, row: int, token: int) -> bool:
        """Append ``token`` to ``row``, which has not ended; whether the row ends with it."""
        ids = self.ids[row]
        ids.append(token)
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = self.tokenizer.decode([token])
        if self.max_new_lines is not None:
            self._lines[row] += text.count("\n")
            if self._lines[row] >= self.max_new_lines:
                self.ends[row] = len(ids)
        if self.stop_at_end and END[-1] in text and self._completes_end(ids):
            self.ends[row] = len(ids)
        return self.ends[row] is not None

    def add_columns(self, columns: list[list[int]]) -> bool:
        """Append B rows of new tokens (``columns`` [B][k], the next k tokens of each row) to the rows that have not
        ended, each up to where it ends; whether every row has ended."""
        for row, tokens in enumerate(columns):
            for token in tokens:
                if self.ends[row] is not None or self.add(row, token):
                    break
        return all(e is not None for e in self.ends)

    def _completes_end(self, ids: list[int]) -> bool:
        """Whether the last of ``ids`` completes an ``END`` in the text of the last `WINDOW` ids."""
        window = ids[-self.WINDOW:]
        return self.tokenizer.decode(window).count(END) > self.tokenizer.decode(window[:-1]).count(END)


class PromptStreams:
    """One random stream per prompt: the uniform number that draws the ``step``-th new token of the prompt with key
    ``k`` is a function of (``seed``, k, step) alone, so a prompt's continuation does not depend on the batch it is
    sampled in (its size, the other prompts) nor on a device's generator. The logits themselves can differ in their
    last bits between batch shapes, which moves a draw only when it lands on the boundary between two tokens."""

    def __init__(self, seed: int, keys):
        self.seed, self.keys = seed, list(keys)

    def take(self, rows: list[int]) -> PromptStreams:
        """The streams of prompts ``rows`` (positions in ``keys``), as a batch of their own."""
        return PromptStreams(self.seed, [self.keys[r] for r in rows])

    def table(self, steps: int, device) -> torch.Tensor:
        """[len(keys), steps] float64 in [0, 1): the first ``steps`` numbers of every stream, made at once (one
        copy to the device per batch, not one per token): ``(mixed_seed(seed, key, step) >> 10) / 2**53``, 53
        random bits each."""
        bits = mixed_seed_table(self.seed, self.keys, steps) >> np.uint64(10)
        return torch.from_numpy(bits * 2.0**-53).to(device)


def _uniform_table(generator: torch.Generator | PromptStreams | None, rows: int, steps: int,
                   device: torch.device) -> torch.Tensor | None:
    """The [rows, steps] uniform numbers of a batch when ``generator`` is `PromptStreams`, else None (the loops then
    draw each step's numbers from the torch generator)."""
    return generator.table(steps, device) if isinstance(generator, PromptStreams) else None


def _step_uniforms(table: torch.Tensor | None, generator, rows: int, step: int, device) -> torch.Tensor:
    """[rows, 1] float64 uniform numbers of the live rows at ``step``: a column of ``table``, or fresh draws."""
    if table is not None:
        return table[:, step:step + 1]
    return torch.rand(rows, 1, generator=generator, device=device, dtype=torch.float64)


def probabilities(logits: torch.Tensor, temperature: float, vocab: int) -> torch.Tensor:
    """Next-token logits [B, V'] -> probabilities [B, V'] (float32) at ``temperature``, zero past the tokenizer's
    ``vocab`` ids: an LM whose embedding is padded beyond its tokenizer (Pythia: 50 304 rows for 50 277 tokens)
    must not draw an id the tokenizer cannot decode."""
    logits = logits.float() / temperature
    if logits.shape[-1] > vocab:
        logits[:, vocab:] = float("-inf")
    return torch.softmax(logits, dim=-1)


def draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One token per row from ``probs`` [B, V] (each row sums to 1) and uniform numbers ``u`` [B, 1] in [0, 1)
    -> [B] long: the categorical distribution that ``torch.multinomial(probs, 1)`` samples, drawn by inverting each
    row's cumulative sum (in float64) at its uniform number, where ``multinomial`` draws V exponential numbers per
    row: at V = 49 152, batch 8, on one CPU thread, 7.5 ms per token against 0.3 ms for the cumulative sum
    (``benchmarks/profile_drums_step.py``). A token of probability zero is never drawn. A row without a finite
    positive sum (NaN or infinite logits) gets the out-of-range id V, which the decoding loops turn into an
    error."""
    cdf = probs.double().cumsum(-1)
    total = cdf[:, -1:]
    u = u * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # u < total even after rounding
    return torch.searchsorted(cdf, u, right=True)[:, 0]


def _choose_decoder(decoder: str, lm, device: torch.device) -> str:
    if decoder not in DECODERS:
        raise ZooError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder == "auto":
        # "graph" on CUDA (for LMs `supports_static` covers) once its CUDA test has passed on a GPU; until then
        # the dynamic loop, the one decoder that has run on CUDA
        return "dynamic"
    if decoder == "graph" and device.type != "cuda":
        raise ZooError(f"decoder='graph' replays CUDA graphs; the model is on {device.type} (use 'static' or "
                       f"'dynamic')")
    return decoder


def _sample_static(lm, ids: torch.Tensor, mask: torch.Tensor, ends: RowEnds, vocab: int, *, temperature: float,
                   max_new_tokens: int, generator: torch.Generator | PromptStreams | None, graph: bool,
                   check_every: int) -> list[list[int]]:
    """`sample_ids` with a `StaticDecoder`: ids, mask [B, P] left-padded; ``ends``: the batch's empty `RowEnds`, fed
    the tokens sampled since the last check every ``check_every`` steps (the rows run on past their ends, which
    ``ends`` leaves out); ``vocab``: the tokenizer's size."""
    decoder = StaticDecoder(lm, len(ids), ids.shape[1] + max_new_tokens)
    logits = decoder.prefill(ids, mask)
    table = _uniform_table(generator, len(ids), max_new_tokens, ids.device)
    tokens = torch.empty(len(ids), max_new_tokens, dtype=torch.long, device=ids.device)
    step, seen = None, 0  # seen: the columns of ``tokens`` given to ``ends``
    for n in range(max_new_tokens):
        tokens[:, n] = draw(probabilities(logits, temperature, vocab),
                            _step_uniforms(table, generator, len(ids), n, ids.device))
        decoder.token.copy_(tokens[:, n].clamp_max(logits.shape[-1] - 1))  # an invalid draw fails at the check
        if n == max_new_tokens - 1:
            break
        if (n + 1) % check_every == 0:
            every_row_ended = ends.add_columns(_checked(tokens[:, seen:n + 1].tolist(), vocab))
            seen = n + 1
            if every_row_ended:
                return ends.ids
        if step is None:
            step = GraphedStep(decoder) if graph else decoder.step
        logits = step()
        decoder.advance()
    ends.add_columns(_checked(tokens[:, seen:n + 1].tolist(), vocab))
    return ends.ids


def _checked(rows: list[list[int]], vocab: int) -> list[list[int]]:
    """``rows`` of token ids after checking that every one is below the tokenizer's ``vocab``: `draw` returns the
    logits' width (at least ``vocab``) for a row whose probabilities have no finite positive sum, which NaN or
    infinite logits give."""
    if max(max(r) for r in rows) >= vocab:
        raise ZooError("sampling met logits that are NaN or infinite (no token could be drawn); check the model's "
                       "weights and inputs, or run it in float32")
    return rows


def continue_grooves(model: DrumLM, prompts: list[str], *, batch_size: int = 64, seed: int = 0, keys=None,
                     **sampling) -> list[str]:
    """Prompt texts -> continuation texts (everything after the prompt, up to and including the first ``END`` when the
    model wrote one, or the ``max_new_lines``-th newline: `text_end`, nothing after it). Prompts are processed longest
    first in batches of ``batch_size``; results keep the input order. Each prompt samples from its own stream
    (`PromptStreams`: ``seed`` and its key, by default its position in ``prompts``), so ``batch_size`` changes the
    speed, not the grooves. ``sampling``: see `sample_ids`."""
    if isinstance(prompts, str):
        raise ZooError("continue_grooves takes a list of prompt strings, got one str (wrap it: [prompt])")
    if batch_size < 1:
        raise ZooError(f"batch_size must be >= 1, got {batch_size}")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            hint = " (an Example's prompt text is example.prompt)" if isinstance(p, Example) else ""
            raise ZooError(f"prompts[{i}] is of type {type(p).__name__}, not str: continue_grooves takes a list of "
                           f"prompt texts{hint}")
    encoded = [model.tokenizer.encode(p) for p in prompts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ZooError(f"prompts[{i}] is empty: a prompt needs drum text to continue (e.g. a groove's first bars)")
    streams = PromptStreams(seed, range(len(prompts)) if keys is None else keys)
    if len(streams.keys) != len(prompts):
        raise ZooError(f"keys must give one stream key per prompt: {len(streams.keys)} keys for {len(prompts)} prompts")
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    texts: list[str] = [""] * len(prompts)
    rule = {"stop_at_end": sampling.get("stop_at_end", True), "max_new_lines": sampling.get("max_new_lines")}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, ids in zip(chunk, sample_ids(model, [encoded[i] for i in chunk], generator=streams.take(chunk),
                                                **sampling)):
                text = model.tokenizer.decode(ids)
                texts[i] = text[:text_end(text, **rule)]
    finally:
        model.train(was_training)
    return texts


def finished(text: str) -> bool:
    """Whether a continuation ended at ``END`` (rather than at a token or line budget): whether it holds one, as
    sampling with ``stop_at_end`` (the default) stops at the first (`text_end`)."""
    return END in text
