"""``zoo eval MODEL --task drums``: continue every 2-bar prompt of a split, then the paper's structural evaluation.

For each example of the split the model samples a continuation (temperature 0.9, stop at ``END``, at most 1000
tokens, and at most the rest of the 16-bar window, which is all the evaluation reads, plus one line: room for the
``END`` after a full-length completion). The groove is the prompt
plus the continuation with ``SEP`` lines removed, as the authors' ``evaluate.py`` builds it. JSON::

    {"n": int, "human": {"mean_stability": f, "centre_gap": f, "within_dev": f}, "generated": {...},
     "random": {...}, "repeat": {...}, "copied_bar_fraction": f, "human_copied_bar_fraction": f,
     "finished_fraction": f, "malformed_line_fraction": f, "mean_bars": f, "paper": {...}, "settings": {...}}

``human`` is the test grooves themselves (5.08, as the zoo computes it from the authors' released windows),
``random`` and ``repeat`` the paper's baselines, ``paper`` the fact sheet's numbers for the authors' release;
``copied_bar_fraction`` is the share of generated non-empty bars (after the prompt) found verbatim in the training
split's bars (``human_copied_bar_fraction``: the same for the human completions; see
`zoo.metrics.drums.copied_bar_fractions`). The drum text is the model's (``model.encoding``) unless ``--encoding``
names it, which must then agree.
With ``--out DIR`` (the harness's ``--out-dir``; or beside ``--json``) each groove is written as ``<name>.mid``
(generated), ``<name>.human.mid``, ``<name>.txt`` and ``<name>.png`` (human and generated piano rolls), plus
``stability.png``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import ZooError
from ...eval.base import EvalTask
from ...io import write_text
from ...metrics.drums import (
    copied_bar_fractions,
    random_grooves,
    repeat_groove,
    stabilities,
    structure_stats,
)
from .encoding import (
    BAR_LINES,
    ENCODINGS,
    PROMPT_BARS,
    WINDOW_BARS,
    groove_lines,
    is_drum_line,
    lines_to_onsets,
)
from .events import event_lines_to_paper_lines, events_to_onsets, lines_to_events
from .examples import open_examples, why_no_examples
from .generate import (
    PAPER_MAX_NEW_TOKENS,
    PAPER_TEMPERATURE,
    continue_grooves,
    finished,
)
from .lm import DrumLM
from .midi import write_drum_midi

# The structural numbers of the authors' released test grooves (37, human and GPT-3) as the project's fact sheet
# gives them (the paper's figures are plots, so these are derived, not printed in the paper); the zoo's own scoring of
# that release (`python -m zoo.models.drums.authors`, results/authors_release.json) rounds to them, e.g. davinci's
# centre gap 6.856. The random and repeat rows are the fact sheet's computation of the paper's definitions.
PAPER = {
    "human": {"mean_stability": 5.08, "centre_gap": 10.0, "within_dev": 1.41},
    "davinci": {"mean_stability": 3.04, "centre_gap": 6.9, "within_dev": 0.61},
    "ada": {"mean_stability": 3.45, "centre_gap": 7.2, "within_dev": 0.77},
    "random": {"mean_stability": 40.4, "centre_gap": 5.7, "within_dev": 1.24},
    "repeat": {"mean_stability": 0.0, "centre_gap": 0.0, "within_dev": 0.0},
}
STATS = ("mean_stability", "centre_gap", "within_dev")
# the rest of the 16-bar window after a 2-bar prompt: 14 bars of 16 lines and the 13 SEP lines between them (237);
# a full-length completion writes END after them, so the line budget is one more
WINDOW_LINES = (WINDOW_BARS - PROMPT_BARS) * (BAR_LINES + 1) - 1
MAX_NEW_LINES = WINDOW_LINES + 1


def _fmt(x: float | None, width: int, scale: float = 1.0) -> str:
    return f"{'-':>{width}}" if x is None else f"{scale * x:{width}.2f}"


def _pick(stats: dict) -> dict:
    """The three summary numbers of `structure_stats`, NaN as null."""
    return {k: _finite(stats[k]) for k in STATS}


def _finite(x: float) -> float | None:
    """NaN (nothing to measure, e.g. no groove long enough to cluster) becomes JSON null."""
    return None if math.isnan(x) else x


class DrumsTask(EvalTask):
    name = "drums"

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--data", default="groove_midi",
                            help="groove_midi (catalogue), a Groove MIDI folder or archive, or a folder of "
                                 "<split>.jsonl prompt-completion files (default: groove_midi)")
        parser.add_argument("--split", default="test", help="split to continue (default: test)")
        parser.add_argument("--samples", type=int, default=None, help="continue only the first N prompts")
        parser.add_argument("--temperature", type=float, default=PAPER_TEMPERATURE, help="sampling temperature")
        parser.add_argument("--max-new-tokens", type=int, default=PAPER_MAX_NEW_TOKENS,
                            help="cap on generated tokens per groove (paper: 1000)")
        parser.add_argument("--seed", type=int, default=0, help="sampling seed")
        parser.add_argument("--encoding", default=None, choices=ENCODINGS,
                            help="drum text of the model: paper (six o/- columns) or events (velocity, timing); "
                                 "events grooves are mapped to the six columns for the structural metrics "
                                 "(default: the encoding saved with the model)")

    def setup(self, model, ctx) -> None:
        if not isinstance(model, DrumLM):
            raise ZooError(f"{type(model).__name__} is not a drum language model: the drums task needs one of "
                           f"drums_smollm2_135m, drums_smollm2_scratch, drums_gpt2_tiny, drums_lm")
        super().setup(model, ctx)
        o = self.options
        if o.temperature <= 0:
            raise ZooError(f"--temperature must be > 0, got {o.temperature}")
        if o.samples is not None and o.samples < 1:
            raise ZooError(f"--samples must be >= 1, got {o.samples}")
        if o.max_new_tokens < 1:
            raise ZooError(f"--max-new-tokens must be >= 1 (paper: {PAPER_MAX_NEW_TOKENS}), got {o.max_new_tokens}")
        if o.encoding not in (None, model.encoding):
            raise ZooError(f"--encoding {o.encoding} but the model writes {model.encoding} text (the encoding saved "
                           f"in its model_args); leave --encoding out")
        o.encoding = model.encoding
        examples = open_examples(o.data, o.split, o.encoding)
        self.examples = examples[: o.samples] if o.samples else examples
        if not self.examples:
            raise ZooError(f"split {o.split!r} of {o.data} has no examples: {why_no_examples(o.data, o.split)}")
        self.train = [self._paper(e.lines) for e in open_examples(o.data, "train", o.encoding)]
        self.generated: dict[str, str] = {}
        model.eval().to(ctx.device)

    def inputs(self):
        size = self.ctx.batch_size
        yield self.options.split, [self.examples[i:i + size] for i in range(0, len(self.examples), size)]

    def score(self, batch):
        first = len(self.generated)  # the batch's first example's position in the split: its stream key
        texts = continue_grooves(self.model, [e.prompt for e in batch], batch_size=len(batch),
                                 seed=self.options.seed, keys=range(first, first + len(batch)),
                                 temperature=self.options.temperature,
                                 max_new_tokens=self.options.max_new_tokens, max_new_lines=MAX_NEW_LINES)
        for e, t in zip(batch, texts):
            self.generated[e.name] = t
        return {"generated_bars": torch.tensor([len(groove_lines(e.prompt + t)) / BAR_LINES
                                                for e, t in zip(batch, texts)])}

    def _paper(self, lines: list[str]) -> list[str]:
        return event_lines_to_paper_lines(lines) if self.options.encoding == "events" else lines

    def _onsets(self, lines: list[str]):
        if self.options.encoding == "events":
            return events_to_onsets(lines_to_events(lines, strict=False))
        return lines_to_onsets(lines)

    def raw_grooves(self) -> tuple[list[list[str]], list[list[str]]]:
        """(human grooves, generated grooves) as lines of the model's text, in example order. The human groove is
        the unstripped 16-bar window, as the paper's analysis reads it."""
        human = [e.human_lines for e in self.examples]
        generated = [groove_lines(e.prompt + self.generated[e.name]) for e in self.examples]
        return human, generated

    def grooves(self) -> tuple[list[list[str]], list[list[str]]]:
        """(human grooves, generated grooves) as the paper's six-column lines, in example order."""
        human, generated = self.raw_grooves()
        return [self._paper(g) for g in human], [self._paper(g) for g in generated]

    def finalize(self, scores):
        human, generated = self.grooves()
        gen_lines = [line for g in generated for line in g[PROMPT_BARS * BAR_LINES:]]
        copied = copied_bar_fractions(self.train, {"generated": generated,
                                                   "human": [self._paper(e.lines) for e in self.examples]})
        o = self.options
        return {
            "n": len(self.examples),
            "human": _pick(structure_stats(human)),
            "generated": _pick(structure_stats(generated)),
            "random": _pick(structure_stats(random_grooves(len(human)))),
            "repeat": _pick(structure_stats([repeat_groove(g) for g in human])),
            "copied_bar_fraction": _finite(copied["generated"]),
            "human_copied_bar_fraction": _finite(copied["human"]),
            "finished_fraction": float(np.mean([finished(self.generated[e.name]) for e in self.examples])),
            "malformed_line_fraction": float(np.mean([not is_drum_line(x) for x in gen_lines])) if gen_lines
            else None,
            "mean_bars": float(scores[o.split]["generated_bars"].mean()),
            **({"paper": PAPER} if o.split == "test" else {}),  # the fact sheet's numbers are the test split's
            "settings": {"data": str(o.data), "split": o.split, "encoding": o.encoding,
                         "temperature": o.temperature, "max_new_tokens": o.max_new_tokens,
                         "max_new_lines": MAX_NEW_LINES, "seed": o.seed,
                         "model": self.model.zoo_cfg.get("architecture"), "tag": self.model.zoo_cfg.get("tag")},
        }

    def table(self, r) -> str:
        paper = r.get("paper", {})
        lines = [f"drums structural evaluation, {r['settings']['split']} split, n={r['n']}"
                 + (" (paper davinci / ada: the authors' released GPT-3 outputs for the 37 test prompts, as the "
                    "fact sheet gives them, to its precision)" if paper else ""),
                 f"{'system':<12} {'mean stability':>15} {'centre gap':>11} {'within dev':>11}"]
        for name in ("human", "generated", "random", "repeat"):
            lines.append(f"{name:<12} " + " ".join(_fmt(r[name][k], w) for k, w in zip(STATS, (15, 11, 11))))
        for name in ("davinci", "ada") if paper else ():  # as given: 6.9 is not 6.90
            lines.append(f"{'paper ' + name:<12} " + " ".join(f"{paper[name][k]:>{w}}" for k, w in
                                                              zip(STATS, (15, 11, 11))))
        lines.append(f"copied bars: generated {_fmt(r['copied_bar_fraction'], 0, 100)} %, human "
                     f"{_fmt(r['human_copied_bar_fraction'], 0, 100)} % (of non-empty bars after the prompt); "
                     f"ended with END: {100 * r['finished_fraction']:.0f} %; malformed lines: "
                     f"{_fmt(r['malformed_line_fraction'], 0, 100)} %; mean length {r['mean_bars']:.1f} bars")
        return "\n".join(lines)

    def artifacts(self, result, scores, out_dir):
        from .plots import piano_roll, stability_figure

        _, generated = self.grooves()
        _, raw_generated = self.raw_grooves()
        paths = []
        for e, g_raw, g in zip(self.examples, raw_generated, generated):
            # the drummer's groove from the same prompt on (the metrics read the unstripped window, see
            # `raw_grooves`), so that its MIDI and panel line up with the generated ones bar for bar
            h_raw, h = e.lines, self._paper(e.lines)
            signature = (e.numerator, 4)
            paths.append(write_drum_midi(self._onsets(g_raw), out_dir / f"{e.name}.mid", time_signature=signature))
            paths.append(write_drum_midi(self._onsets(h_raw), out_dir / f"{e.name}.human.mid",
                                         time_signature=signature))
            write_text(out_dir / f"{e.name}.txt", e.prompt + self.generated[e.name] + "\n")
            paths.append(piano_roll({"human": h, "generated": g}, out_dir / f"{e.name}.png", e.name))
        curves = {"human": [stabilities(h) for h in self.grooves()[0]],
                  "generated": [stabilities(g) for g in generated]}
        paths.append(stability_figure(curves, out_dir / "stability.png"))
        return paths
