"""Tokenizers for drum text: any transformers tokenizer, optionally restricted to the drum alphabet's tokens, and a
built-in one-symbol-per-token tokenizer for tiny test models.

Drum text has a tiny alphabet (``o``, ``-``, newline, ``SEP``, ``END``). With a byte-level BPE tokenizer such as
SmolLM2's, its pre-tokens are runs of ``-``, runs of ``o``, newlines, ``SEP`` and ``END`` (13 token ids in all for
SmolLM2). `SubsetTokenizer` keeps exactly those ids, renumbered 0..n-1, so a model trained from scratch on the
same token stream as the pre-trained LM needs an embedding of n rows instead of 49 152.
"""

from __future__ import annotations

import itertools
import re

from ...errors import ZooError
from .encoding import COLUMNS, END, HIT, REST, SEP


def alphabet_text() -> str:
    """Every drum line (all 64), a ``SEP`` line and ``END``: tokenising it yields every token drum text uses."""
    lines = ["".join(cells) for cells in itertools.product(REST + HIT, repeat=len(COLUMNS))]
    return "".join(f"{line}\n" for line in lines) + f"{SEP}\n{END}"


class DrumTokenizer:
    """The interface the drum LM uses: ``encode(text) -> list[int]``, ``decode(ids) -> str``, ``vocab_size``,
    ``pad_id`` and ``stop_ids`` (the ids of ``END`` as it follows a newline). Sampling finds a row's ``END`` and
    newlines in its decoded text (`generate.RowEnds`), so it needs no token of theirs: a BPE may merge ``END``, or a
    line's newline, with other characters."""

    vocab_size: int
    pad_id: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    @property
    def stop_ids(self) -> list[int]:
        """The usual spelling of ``END`` (after a newline) in ids, for callers that stop on ids, as transformers'
        ``generate`` in ``benchmarks/compare_drums.py``."""
        tail = self._after("\n", END)
        return tail if tail is not None else self.encode(f"\n{END}")

    def _after(self, prefix: str, text: str) -> list[int] | None:
        """The ids ``text`` adds after ``prefix``: ``encode(prefix + text)`` less ``encode(prefix)``; None when the
        two do not share that beginning (the tokenizer merged across the boundary)."""
        ids, head = self.encode(prefix + text), self.encode(prefix)
        return ids[len(head):] if ids[:len(head)] == head else None


class HFTokenizer(DrumTokenizer):
    """A transformers tokenizer, without special tokens (the drum text is the whole input, as in the paper's
    prompt-completion fine-tuning)."""

    def __init__(self, tokenizer):
        self.hf = tokenizer
        self.vocab_size = len(tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)

    def encode(self, text: str) -> list[int]:
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


class SubsetTokenizer(DrumTokenizer):
    """``base`` restricted to the token ids of drum text, renumbered 0..n-1 (in the base's id order)."""

    def __init__(self, base: DrumTokenizer):
        self.base = base
        self.base_ids = sorted(set(base.encode(alphabet_text())))
        self.index = {b: i for i, b in enumerate(self.base_ids)}
        self.vocab_size = len(self.base_ids)
        self.pad_id = 0

    def encode(self, text: str) -> list[int]:
        ids = self.base.encode(text)
        try:
            return [self.index[i] for i in ids]
        except KeyError as exc:
            raise ZooError(f"text holds {self.base.decode([exc.args[0]])!r}, which is not drum text (lines of "
                           f"'o'/'-', SEP, END); this model's vocabulary has only drum tokens") from None

    def decode(self, ids) -> str:
        return self.base.decode([self.base_ids[int(i)] for i in ids])


class SymbolTokenizer(DrumTokenizer):
    """One token per symbol: ``<pad>``, ``-``, ``o``, newline, ``SEP``, ``END``. No files needed (tiny test models)."""

    SYMBOLS = ("<pad>", REST, HIT, "\n", SEP, END)
    _SPLIT = re.compile(f"{SEP}|{END}|.", re.DOTALL)

    def __init__(self):
        self.index = {s: i for i, s in enumerate(self.SYMBOLS)}
        self.vocab_size = len(self.SYMBOLS)
        self.pad_id = 0

    def encode(self, text: str) -> list[int]:
        out = []
        for piece in self._SPLIT.findall(text):
            if piece not in self.index or piece == "<pad>":
                raise ZooError(f"text holds {piece!r}, which is not drum text (lines of 'o'/'-', SEP, END)")
            out.append(self.index[piece])
        return out

    def decode(self, ids) -> str:
        return "".join(self.SYMBOLS[int(i)] for i in ids if int(i) != self.pad_id)
