"""The documentation's commands stay true: every ``zoo ...`` command written in the README, the model cards, the
other project documents and the manifest's recipes and result commands names a verb, options, tasks, papers,
models, weights, datasets (catalogue names, the embedded names of `zoo.data.embedded.EMBEDDED`, paths) and files
that exist, and parses as written (``zoo fit``-style commands through LightningCLI's ``--print_config``, the others
through the CLI's own parsers); every ``python benchmarks/X.py ...`` and ``python -m zoo.X ...`` command parses with
its script's own argument parser, stopped right after parsing. Nothing is run. Every training recipe and benchmark
suite under ``configs/`` loads too.

Placeholders (``MODEL``, ``RUN/model``, ``<recipe>``, ``...``, shell variables) stand for values the reader picks:
they are parsed as given but not looked up. A fragment in prose that leaves out what its verb requires
(``zoo eval RUN/model``, ``zoo bench``, ``zoo eval MODEL --task ood``) is a reference to the verb, and only the
verb (and the task) is checked.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from zoo.cli import LIGHTNING_VERBS, VERBS, main, parse_args
from zoo.data.embedded import EMBEDDED

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md",
        *sorted((ROOT / "zoo" / "models").glob("*/*.md"))]
COMMAND = re.compile(r"^(?:OMP_NUM_THREADS=\d+ )?(?:\.venv/bin/)?zoo (\w+)")
SCRIPT = re.compile(r"^(?:OMP_NUM_THREADS=\d+ )?(?:\.venv/bin/)?python3? (?:-m (zoo[\w.]*)|(benchmarks/\S+\.py))")
PLACEHOLDER = re.compile(r"[A-Z]{2,}|<|\.\.\.|\$|(?:^|[/_])X(?:[/_.]|$)")
DATA_OPTIONS = ("--data", "--id-data", "--ood", "--data.init_args.data")


def documented_commands(pattern: re.Pattern = COMMAND) -> list[tuple[str, str]]:
    """(where, command) for every command line matching ``pattern`` in a fenced block or an inline code span of the
    docs."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        where = str(doc.relative_to(ROOT))
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = re.split(r"\s#", line)[0].strip()
                if pattern.match(line):
                    found.append((where, line))
        for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
            if pattern.match(span.strip()):
                found.append((where, span.strip()))
    return found + manifest_commands(pattern)


def manifest_commands(pattern: re.Pattern) -> list[tuple[str, str]]:
    """(``manifest:KEY``, command) for each command in an entry's ``recipe`` and its results' ``command``; a
    shell line (``for s in 0 1 2; do zoo eval ...; done``) gives each of its commands."""
    from zoo.hub import load_manifest

    found = []
    for key, entry in load_manifest().items():
        lines = [entry.get("recipe") or "", *(r.get("command") or "" for r in entry.get("results", []))]
        for line in lines:
            for part in re.split(r";\s*|\s&&\s|\bdo\s", line):
                if pattern.match(part.strip()) and (f"manifest:{key}", part.strip()) not in found:
                    found.append((f"manifest:{key}", part.strip()))
    return found


def argv_of(command: str, program: str = "zoo") -> list[str]:
    """The arguments after ``program`` as a shell would pass them, with the docs' usage notation read: ``[--opt X]``
    is the option given, ``a|b`` the first choice, a standalone ``$VAR`` in option position dropped, any other shell
    variable a 0, ``...`` a placeholder."""
    words = shlex.split(command.replace("\\|", "|"))
    words = words[words.index(program) + 1:]
    argv = []
    for i, w in enumerate(words):
        w = w.strip("[]").split("|")[0]
        if w.startswith("$") and not (i and words[i - 1].startswith("--")):
            continue
        w = re.sub(r"\$\w+", "0", w)
        argv.append("MODEL" if w == "..." else w)
    return argv


def is_placeholder(value: str) -> bool:
    return bool(PLACEHOLDER.search(value))


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, w in enumerate(argv[:-1]) if w == option]


COMMANDS = documented_commands()


def test_the_docs_hold_commands():
    """The extraction itself: the docs hold over a hundred commands, and each verb is written somewhere."""
    assert len(COMMANDS) > 100
    assert {COMMAND.match(c).group(1) for _, c in COMMANDS} >= {"list", "info", "convert", "fit", "eval", "bench",
                                                               "demo", "validate", "download", "verify"}


def _check_names(verb: str, a) -> None:
    """The models, weights, papers, tasks and suites a parsed command names exist."""
    from zoo.registry import get_paper, paper_of, resolve_entry, split_name

    if verb in ("eval", "bench") and a.model and not is_placeholder(a.model):
        arch, tag = split_name(a.model)
        if not (ROOT / a.model).exists():
            resolve_entry(a.model) if tag else paper_of(arch)
    if verb in ("info", "download", "verify"):
        for name in a.names if hasattr(a, "names") else [a.name]:
            if not is_placeholder(name):
                resolve_entry(name) if split_name(name)[1] else paper_of(name)
    if verb == "convert" and not is_placeholder(a.paper):
        assert get_paper(a.paper).converter, f"paper {a.paper} has no converter"
    if verb == "demo" and a.only:
        for paper in a.only.split(","):
            get_paper(paper)
    if verb == "bench" and a.suite and not is_placeholder(a.suite):
        assert (ROOT / a.suite).is_file(), a.suite


def _complete(verb: str, argv: list[str]) -> bool:
    """Whether the command gives what its verb requires (else it is a prose reference to the verb)."""
    given = set(argv)
    return {
        "eval": "--task" in given and argv[:1] != ["--task"] and len(argv) > 3,
        "convert": {"--src", "--out"} <= given,
        "bench": bool(argv) and argv != ["--suite"],
        "info": bool(argv),
    }.get(verb, verb not in LIGHTNING_VERBS or "--config" in given)


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_documented_command_parses_and_names_what_exists(where, command, capsys):
    from zoo.data.catalog import catalog

    argv = argv_of(command)
    verb, rest = argv[0], argv[1:]
    assert verb in VERBS, f"{where}: unknown verb in {command!r}"
    task = option_values(rest, "--task")
    if verb == "eval" and task and task[0] != "T":  # `zoo eval --task T --help`
        from zoo.eval import get_task

        get_task(task[0])
    if not _complete(verb, rest):
        return
    for option in DATA_OPTIONS:
        for value in option_values(rest, option):
            known = is_placeholder(value) or "/" in value or value in {*catalog(), *EMBEDDED}
            assert known, f"{where}: no dataset {value!r}"
    if verb in LIGHTNING_VERBS:
        config = option_values(rest, "--config")[0]
        if is_placeholder(config):
            return
        assert (ROOT / config).is_file(), f"{where}: no config {config}"
        with pytest.raises(SystemExit) as exc:
            main([verb, *rest, "--print_config"])  # exits 0 after printing; a usage error returns 2
            pytest.fail(f"{where}: {command!r} did not parse: {capsys.readouterr().err}")
        assert exc.value.code == 0
        return
    _check_names(verb, parse_args(argv)[1])


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_every_embedded_name_a_command_may_give_opens(name):
    """The embedded names accepted above open through the image loaders: as an OOD set (unlabelled, named ``name``)
    and as labelled data (a split of it, or all of it when it has none)."""
    from zoo.data.images import open_ood, open_split

    ood = open_ood(name)
    assert len(ood) > 0 and ood.name == name and set(ood.labels) == {-1}
    data = open_split(name, "test")
    assert len(data) > 0 and len(data.classes) > 1 and data.name == name


RECIPES = sorted(p for p in (ROOT / "configs").glob("*/*.yaml")
                 if p.parent.name != "bench" and not p.stem.startswith("bench"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(ROOT / "configs")) for p in RECIPES])
def test_every_training_recipe_parses_against_the_module_signatures(recipe):
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert exc.value.code == 0
    assert "class_path: zoo." in out.getvalue()


SUITES = sorted([*(ROOT / "configs" / "bench").glob("*.yaml"), *(ROOT / "configs").glob("*/bench*.yaml")])


@pytest.mark.parametrize("suite", SUITES, ids=[str(p.relative_to(ROOT / "configs")) for p in SUITES])
def test_every_benchmark_suite_names_registered_models_and_their_arguments(suite):
    import inspect

    from zoo.bench.suite import expand, load_suite
    from zoo.precision import PRECISIONS
    from zoo.registry import _builder, resolve_entry, split_name

    jobs = expand(load_suite(suite), "cuda")
    assert jobs
    for job in jobs:
        arch, tag = split_name(job["source"])
        if tag:
            resolve_entry(job["source"])
        accepted = inspect.signature(_builder(arch)).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        assert takes_any or set(job["model_args"]) <= set(accepted), f"{job['source']}: {job['model_args']}"
        assert job["mode"] in ("infer", "train", "generate") and job["precision"] in PRECISIONS


SCRIPTS = documented_commands(SCRIPT)


class _Parsed(Exception):
    """Raised in place of running a script once its arguments parsed."""


def test_the_docs_hold_script_commands():
    assert len(SCRIPTS) > 30


@pytest.mark.parametrize("where,command", SCRIPTS, ids=[f"{w}:{c[:60]}" for w, c in SCRIPTS])
def test_documented_script_command_parses(where, command, monkeypatch, capsys):
    """The script runs up to its ``parse_args``, which parses the documented arguments and then stops it."""
    import argparse
    import runpy

    module, script = SCRIPT.match(command).groups()
    argv = argv_of(command, module or script)
    if script:
        assert (ROOT / script).is_file(), f"{where}: no script {script}"
        monkeypatch.syspath_prepend(str((ROOT / script).parent))  # a script's sibling imports
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        parse(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr("sys.argv", [module or script, *argv])
    monkeypatch.chdir(ROOT)
    with pytest.raises(_Parsed):
        try:
            if script:
                runpy.run_path(str(ROOT / script), run_name="__main__")
            else:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            err = capsys.readouterr().err
            if not argv and "required" in err:  # a bare name in prose: the script exists and has a parser
                raise _Parsed from exc
            pytest.fail(f"{where}: {command!r} did not parse (exit {exc.code}): {err}")
