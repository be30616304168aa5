"""The structural numbers of the authors' released GPT-3 outputs, from a checkout of their repository.

The paper's stability figures are plots; the numbers the zoo compares with are recomputed here from the released
test outputs (``output_text_{davinci,ada}/test/<name>.txt``, 37 grooves each) with `zoo.metrics.drums`, the
copied-bar fraction against the training bars of their ``gpt3_train.jsonl`` (`copied_bar_fractions`, as ``zoo eval
--task drums``; the human grooves there are the prompt + completion of their ``gpt3_test.jsonl``), and the
malformed lines (not six
``o``/``-`` characters) among all lines after the 2-bar prompt, as ``zoo eval --task drums`` counts them::

    python -m zoo.models.drums.authors PATH/TO/drums-with-llm [--names-from EVAL_DIR] [--json OUT]

``--names-from`` restricts the numbers to the grooves a ``zoo eval --task drums`` run wrote to ``EVAL_DIR`` (e.g.
with ``--samples N``), so a subset is compared like for like.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import ZooError
from ...metrics.drums import copied_bar_fractions, structure_stats
from .encoding import BAR_LINES, PROMPT_BARS, is_drum_line
from .examples import open_examples

SYSTEMS = ("davinci", "ada")


def released_grooves(root: Path, folder: str, names: list[str] | None = None) -> list[list[str]]:
    """The 37 test grooves of ``<folder>/test`` (``data_text``: the human 16-bar windows, unstripped;
    ``output_text_davinci``: what a GPT-3 model wrote, prompt included, ``SEP`` removed) as lists of text lines,
    in name order (only ``names`` when given)."""
    names = sorted(names or (p.stem for p in (root / "data_text" / "test").iterdir()))
    return [(root / folder / "test" / f"{n}.txt").read_text().splitlines() for n in names]


def authors_stats(root: str | Path, names: list[str] | None = None) -> dict:
    """``{system: {"mean_stability", "centre_gap", "within_dev", "copied_bar_fraction", "malformed_lines",
    "lines_after_prompt", "malformed_line_fraction"}}`` for human (the test windows of ``data_text/test``, as the
    authors' analysis reads them; the copied bars of the test examples' completions, see `copied_bar_fractions`),
    davinci and ada; ``names`` restricts them to some test grooves. The line counts
    cover every line after the prompt's 32 (the released GPT-3 outputs run past the 16-bar window)."""
    root = Path(root)
    if not (root / "gpt3_train.jsonl").is_file() or not (root / "output_text_davinci").is_dir():
        raise ZooError(f"{root} is not a checkout of github.com/zharry29/drums-with-llm (no gpt3_train.jsonl or "
                       f"output_text_davinci/)")
    grooves = {"human": released_grooves(root, "data_text", names)}
    grooves.update({s: released_grooves(root, f"output_text_{s}", names) for s in SYSTEMS})
    test = {e.name: e.lines for e in open_examples(root, "test")}
    human = [test[n] for n in sorted(names or test)]
    copied = copied_bar_fractions([e.lines for e in open_examples(root, "train")],
                                  {"human": human, **{s: grooves[s] for s in SYSTEMS}})
    out = {}
    for system, g in grooves.items():
        stats = structure_stats(g)
        out[system] = {k: stats[k] for k in ("mean_stability", "centre_gap", "within_dev")}
        out[system]["copied_bar_fraction"] = copied[system]
        after = [line for groove in g for line in groove[PROMPT_BARS * BAR_LINES:]]
        malformed = sum(not is_drum_line(line) for line in after)
        out[system].update(malformed_lines=malformed, lines_after_prompt=len(after),
                           malformed_line_fraction=malformed / len(after) if after else float("nan"))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="a checkout of github.com/zharry29/drums-with-llm")
    p.add_argument("--names-from", help="a zoo eval output folder: only its grooves (<name>.human.mid)")
    p.add_argument("--json", help="write the numbers here")
    a = p.parse_args(argv)
    names = None
    if a.names_from:
        names = [f.name.removesuffix(".human.mid") for f in Path(a.names_from).glob("*.human.mid")]
        if not names:
            raise ZooError(f"{a.names_from} has no <name>.human.mid files; give the --out folder of a zoo eval run")
    stats = authors_stats(a.root, names)
    for system, s in stats.items():
        print(f"{system:<8} " + "  ".join(f"{k} {v}" if isinstance(v, int) else f"{k} {v:.4f}"
                                         for k, v in s.items()))
    if a.json:
        from ...io import write_json

        write_json(Path(a.json), stats)


if __name__ == "__main__":
    main()
