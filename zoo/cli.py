"""The ``zoo`` command. User errors print one line and exit 2; ``--debug`` (or ZOO_DEBUG=1) shows tracebacks."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shlex
import sys
from pathlib import Path

from .argtypes import positive_int
from .errors import ZooError
from .precision import PRECISIONS

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")
VERBS = {
    "list": "list models (or pretrained name.tag entries)",
    "info": "paper, weights, results and licence of a model or a saved folder",
    "convert": "convert an authors' checkpoint into a zoo folder",
    "download": "fetch weights into the cache and verify their sha256",
    "verify": "re-hash the weights of every manifest entry",
    "fit": "train with LightningCLI (--config configs/<paper>/<recipe>.yaml)",
    "validate": "LightningCLI validate",
    "test": "LightningCLI test",
    "predict": "LightningCLI predict",
    "eval": "run a paper's evaluation (--task ...) and write JSON",
    "bench": "benchmark a model: throughput, latency percentiles, memory, FLOPs, MFU",
    "demo": "the quick start: fit, evaluate and benchmark every paper briefly",
}


class _Parser(argparse.ArgumentParser):
    """A verb's parser: a usage error is a ZooError, printed as one line like every other user error; an option
    must be spelled out (``--batch`` is not taken for ``--batch-size``), as in the Lightning verbs."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise ZooError(f"{self.prog}: {message} (see `{self.prog} --help`)")

    def parse_args(self, args=None, namespace=None):
        """Unrecognised arguments are reported before missing required ones (a mistyped ``--dta`` is the error,
        not the ``--data`` it leaves missing), with the closest known option."""
        required = [(a, a.required) for a in [*self._actions, *self._mutually_exclusive_groups]]
        try:
            for a, _ in required:
                a.required = False
            _, unknown = self.parse_known_args(args, argparse.Namespace())
        finally:
            for a, was in required:
                a.required = was
        if unknown:
            self._refuse_json_file(args, unknown)
            self.error(f"unrecognized arguments: {' '.join(unknown)}{self._suggest(unknown)}")
        return super().parse_args(args, namespace)

    def _refuse_json_file(self, args: list[str], unknown: list[str]) -> None:
        """Where ``--json`` takes no value (`zoo list`, `zoo info`: it prints JSON to stdout), the argument after it
        is taken for the file it was meant to write when it was left unrecognised, or when others were and it is a
        file path (`_is_path`): `_json_file_error` for it, instead of "unrecognized arguments"."""
        flag = any(a.option_strings == ["--json"] and a.nargs == 0 for a in self._actions)
        at = args.index("--json") + 1 if "--json" in args else len(args)
        if flag and at < len(args) and (args[at] in unknown or _is_path(args[at])):
            raise _json_file_error(self.prog, args[:at] + args[at + 1:], args[at])

    def _suggest(self, unknown: list[str]) -> str:
        import difflib

        known = [s for a in self._actions for s in a.option_strings]
        options = [u.split("=", 1)[0] for u in unknown if u.startswith("-") and not _is_number(u)]
        close = {o: difflib.get_close_matches(o, known, n=1) for o in options}
        close = {o: c[0] for o, c in close.items() if c}
        if not close:
            return ""
        if len(close) == 1:
            return f"; did you mean {next(iter(close.values()))}?"
        return f"; did you mean {', '.join(f'{c} (for {o})' for o, c in close.items())}?"


def _is_path(text: str) -> bool:
    """Whether ``text`` is a file path rather than a model name: it holds a path separator or ends in .json."""
    return "/" in text or os.sep in text or text.lower().endswith(".json")


def _json_file_error(prog: str, args: list[str], file: str) -> ZooError:
    """The error for ``file``, given to `zoo list` or `zoo info` (``prog``) as the file of its ``--json``, which
    takes none (unlike eval's and bench's ``--json FILE``): the command (``prog`` with ``args``, its other arguments)
    that redirects the JSON it prints into that file."""
    return ZooError(f"{prog}: --json takes no file name (it prints JSON to stdout); redirect it: "
                    f"`{shlex.join([*prog.split(), *args])} > {shlex.quote(file)}`")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zoo", description="A PyTorch Lightning model zoo of six papers.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    for verb, help_ in VERBS.items():
        sub.add_parser(verb, help=help_, add_help=verb not in LIGHTNING_VERBS + ("eval",))
    return p


def _list_parser(argv):
    p = _Parser(prog="zoo list")
    p.add_argument("pattern", nargs="?", default="*", help="a glob (knn_ood_resnet*) or a part of the name (knn)")
    p.add_argument("--pretrained", action="store_true", help="list name.tag entries that have weights")
    p.add_argument("--json", action="store_true")
    return p


def _cmd_list(a):
    from .registry import list_models, list_papers, paper_of, suggest, tags_for

    if a.json and _is_path(a.pattern):  # `zoo list --json out.json`: not a pattern, which would match nothing
        raise _json_file_error("zoo list", ["--pretrained"] * a.pretrained + ["--json"], a.pattern)
    names = list_models(a.pattern, pretrained=a.pretrained)
    if a.json:
        print(json.dumps(names if a.pretrained else {n: {"paper": paper_of(n).id, "tags": tags_for(n)}
                                                    for n in names}, indent=2))
        return
    if not names:
        hint = (f"; weights entries (name.tag) are listed with --pretrained: zoo list --pretrained {a.pattern!r}"
                if "." in a.pattern and not a.pretrained else "")
        data = _data_hint(a.pattern)
        known = [*list_models(pretrained=a.pretrained), *(p.id for p in list_papers())]
        close = "" if data or hint else suggest(a.pattern, known)  # a misspelt name, not a data or tag pattern
        print(f"no {'weights' if a.pretrained else 'models'} match {a.pattern!r}{close}{hint}{data}")
    for n in names:
        if a.pretrained:
            print(n)
        else:
            tags = tags_for(n)
            print(f"{n:<32} {paper_of(n).id:<10} {'weights: ' + ', '.join(tags) if tags else ''}")


def _data_hint(pattern: str) -> str:
    """For a `zoo list` pattern that matches no model: the manifest's data entries (DOORPING's distilled sets) it
    matches, which `zoo list` does not show, and where to see them."""
    from .hub import load_manifest
    from .registry import list_papers, split_name

    prefixes = {prefix for paper in list_papers() for prefix in paper.data}
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    found = sorted({split_name(k)[0] for k in load_manifest() if split_name(k)[0] in prefixes
                    and fnmatch.fnmatchcase(k.lower(), glob.lower())})
    return "".join(f"; {p}.* entries are data, not models (distilled sets): zoo info {p}" for p in found)


def _info_parser(argv):
    p = _Parser(prog="zoo info")
    p.add_argument("name", help="NAME, NAME.TAG or a folder written by save_pretrained")
    p.add_argument("--json", action="store_true")
    return p


def _cmd_info(a):
    from .checkpoint import check_folder
    from .registry import model_info

    if Path(a.name).is_dir():  # a folder that would not load is reported, not shown as if it were a model
        check_folder(a.name)
    info = model_info(a.name)
    if a.json:
        print(json.dumps(info, indent=2, default=str))
        return
    import yaml

    print(yaml.safe_dump(info, sort_keys=False, width=110).rstrip())


def _convert_parser(argv):
    p = _Parser(prog="zoo convert")
    p.add_argument("paper", help="paper id (see `zoo list`)")
    p.add_argument("--src", required=True, help="the authors' checkpoint")
    p.add_argument("--out", required=True, help="output folder (new or empty, unless --force)")
    p.add_argument("--force", action="store_true", help="replace the files of an existing --out folder")
    p.add_argument("--model-args", type=_model_args, metavar="YAML",
                   help="a YAML/JSON mapping of model arguments the checkpoint does not show, which replace the "
                        "converter's guess, e.g. '{num_heads: 6, last_block_heads: 12}' (tinymim: head counts; "
                        "recorded in the folder's metadata; refused for a paper whose converter takes none)")
    return p


def _model_args(text: str) -> dict:
    """``--model-args``: a YAML (or JSON) mapping of argument names to values."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a YAML/JSON mapping of argument names to values, e.g. "
                                         f"'{{num_heads: 6}}'")
    return value


def _converter_kwargs(paper, converter, model_args: dict | None) -> dict:
    """The keyword arguments beside (src, out) for ``converter``: ``model_args`` when given, which only a converter
    with a ``model_args`` parameter takes."""
    import inspect

    if model_args is None:
        return {}
    if "model_args" not in inspect.signature(converter).parameters:
        raise ZooError(f"--model-args is not supported for paper {paper.id}: its converter reads every model argument "
                       f"from the checkpoint; run `zoo convert {paper.id}` without --model-args")
    return {"model_args": model_args}


def _cmd_convert(a):
    from .io import check_outputs
    from .registry import get_paper, load_object

    paper = get_paper(a.paper)
    if not paper.converter:
        raise ZooError(f"paper {paper.id} has no converter")
    converter = load_object(paper.converter)
    kwargs = _converter_kwargs(paper, converter, a.model_args)
    check_outputs(folders={"--out": a.out})
    out = Path(a.out)
    if not a.force and out.is_dir() and any(out.iterdir()):
        raise ZooError(f"--out {out} already exists and is not an empty folder: choose a new folder, or pass --force "
                       f"to replace its model files")
    a.src = _convert_source(a.src)
    try:
        out = converter(a.src, a.out, **kwargs)
    except ZooError as exc:  # one line that names the --src file, whichever converter raised it
        if Path(a.src).name in str(exc):
            raise
        raise ZooError(f"{a.src}: {exc}") from None
    print(f"wrote {out}; {_next_step(paper, Path(out))}")


def _convert_source(src: str) -> str:
    """``--src`` as given, or, when it is a relative path that is not here but is under ``ZOO_DATA_DIR``, that file
    (the manifest's recipes name the authors' checkpoints they converted by their place in the data folder)."""
    from .data.catalog import data_root

    root = data_root()
    if Path(src).exists() or Path(src).is_absolute() or root is None or not (root / src).is_file():
        return src
    print(f"zoo: --src {src} read from the data folder: {root / src}", file=sys.stderr)
    return str(root / src)


def _next_step(paper, out: Path) -> str:
    """What to do with what a converter wrote: a model folder loads with from_pretrained; a file is data the paper's
    code made (DOORPING's distilled set), which its eval task reads."""
    if out.is_dir():
        return f"load it with zoo.from_pretrained({str(out)!r})"
    evals = " or ".join(f"zoo eval {out} --task {task} --data DATA" for task in paper.tasks)
    return (f"it is data made by the {paper.id} code, not a model (zoo.from_pretrained does not read it): evaluate "
            f"it with {evals}, or load it in Python as {paper.card} shows")


def _download_parser(argv):
    p = _Parser(prog="zoo download")
    p.add_argument("names", nargs="*", help="name.tag entries (see `zoo list --pretrained`); NAME: its default tag")
    p.add_argument("--all", action="store_true")
    return p


def _cmd_download(a):
    from .hub import fetch, load_manifest
    from .registry import resolve_entry

    keys = list(load_manifest()) if a.all else [resolve_entry(n)[0] for n in a.names]
    if not keys:
        raise ZooError("name at least one name.tag, or --all")
    for key in keys:
        print(f"{key}: {fetch(key)}")


def _verify_parser(argv):
    p = _Parser(prog="zoo verify", description="Re-hash the downloaded copy (in ZOO_HOME) of every manifest entry "
                "(or of the NAMEs given), downloading the ones not there yet; exit status 2 if any is missing or "
                "does not match its sha256.")
    p.add_argument("names", nargs="*", metavar="NAME", help="NAME.TAG, or NAME for its default weights")
    return p


def _cmd_verify(a):
    from .hub import REPLACED, verify_all
    from .registry import resolve_entry

    keys = [resolve_entry(n)[0] for n in a.names]
    replaced = failed = 0
    for key, status in verify_all(keys or None):
        print(f"{key}: {status}")
        replaced += status != "ok" and status.endswith(REPLACED)
        failed += status != "ok" and not status.endswith(REPLACED)
    problems = []
    if replaced:  # still exit status 2: a corrupt disk or a tampered cache should be noticed by scripts too
        problems.append("1 manifest entry was corrupt in the cache and has been replaced with a verified copy"
                        if replaced == 1 else f"{replaced} manifest entries were corrupt in the cache and have been "
                                              f"replaced with verified copies")
    if failed:
        problems.append(f"{failed} manifest {'entry' if failed == 1 else 'entries'} failed verification")
    if problems:
        raise ZooError("; ".join(problems))


def _eval_parser(argv):
    """The eval options, with those of the task that ``--task`` in ``argv`` names."""
    from .eval import get_task, list_tasks
    from .eval.base import add_run_arguments

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--task")
    known, _ = pre.parse_known_args(argv)
    p = _Parser(prog="zoo eval", description=f"tasks: {', '.join(sorted(list_tasks()))}")
    p.add_argument("model", help="zoo folder, NAME.TAG, or NAME with default weights")
    p.add_argument("--task", required=True, help="evaluation task")
    p.add_argument("--json", dest="json_out", help="write the result JSON here (plots go beside it)")
    p.add_argument("--save-scores", help="folder for raw per-sample scores (.npz per input)")
    p.add_argument("--out-dir", "--out", dest="out_dir",
                   help="folder for plots and other artifacts (default: beside --json)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    add_run_arguments(p)
    if known.task:
        get_task(known.task).add_arguments(p.add_argument_group(f"{known.task} options"))
    else:
        _refuse_task_options(p, argv)
    return p


def _refuse_task_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Without ``--task``, options that only tasks take (``--id-data``) are a ZooError saying that ``--task`` is
    required and which task each belongs to (argparse would call them unrecognised and suggest a general option)."""
    from .eval import get_task, list_tasks

    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    unknown = given - {o for action in parser._actions for o in action.option_strings}
    if not unknown:  # nothing to place: leave the missing --task to argparse, without importing every task
        return
    owners = {}
    for name in sorted(list_tasks()):
        options = argparse.ArgumentParser(add_help=False)
        get_task(name).add_arguments(options)
        for flag in unknown & {o for action in options._actions for o in action.option_strings}:
            owners.setdefault(flag, []).append(name)
    by_tasks = {}
    for flag, tasks in sorted(owners.items()):
        by_tasks.setdefault(" or ".join(tasks), []).append(flag)
    if by_tasks:
        belong = "; ".join(f"{', '.join(flags)} {'belongs' if len(flags) == 1 else 'belong'} to --task {tasks}"
                           for tasks, flags in by_tasks.items())
        raise ZooError(f"zoo eval: --task is required ({belong})")


def _cmd_eval(a):
    from .eval import evaluate

    a = vars(a)
    evaluate(a.pop("model"), a.pop("task"), **a)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _bench_parser(argv):
    p = _Parser(prog="zoo bench")
    p.add_argument("model", nargs="?", help="NAME (random init), NAME.TAG or a zoo folder")
    p.add_argument("--suite", help="configs/bench/FILE.yaml: run every job and write a results file (exit status 2 "
                                   "if any job failed; the file keeps its error)")
    p.add_argument("--mode", default=None, choices=["infer", "train", "generate"], help="default: infer")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--precision", default=None, choices=list(PRECISIONS), help="default: 32")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: the suite's, or 32")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compile time reported apart)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=positive_int, default=None, help="default: the suite's, or 5")
    p.add_argument("--iters", type=positive_int, default=None, help="default: the suite's, or 20")
    p.add_argument("--json", dest="json_out", help="write the result (or, with --suite, the results file) here")
    return p


def _cmd_bench(a):
    from .io import check_outputs, write_json

    check_outputs({"--json": a.json_out})  # before the benchmark, not after it
    device = a.device or ("cuda" if _cuda() else "cpu")
    if a.suite:
        from .bench.suite import run_suite

        per_job = (["a MODEL argument"] if a.model else []) + [
            f"--{k.replace('_', '-')}" for k in ("mode", "precision", "compile", "channels_last") if getattr(a, k)]
        if per_job:
            raise ZooError(f"--suite runs its file's jobs, which set the model, mode, precision and compilation: "
                           f"drop {', '.join(per_job)}, or drop --suite to benchmark one model")
        path = run_suite(a.suite, device=device, out=a.json_out, batch_size=a.batch_size, iters=a.iters,
                         warmup=a.warmup)
        print(f"wrote {path}")
        written = json.loads(path.read_text())
        if written["failed"]:  # exit status 2, as `zoo verify`: a script or CI run should notice a lost row
            n, jobs = len(written["failed"]), len(written["failed"]) + len(written["results"])
            raise ZooError(f"{n} of the {jobs} jobs of {a.suite} failed; the others were measured, and {path} lists "
                           f"the failed ones under 'failed' with their errors")
        return
    if not a.model:
        raise ZooError("name a model, or give --suite configs/bench/FILE.yaml")
    from .bench.harness import benchmark, format_result

    r = benchmark(a.model, mode=a.mode or "infer", device=device, precision=a.precision or "32",
                  batch_size=32 if a.batch_size is None else a.batch_size, compile=a.compile,
                  warmup=5 if a.warmup is None else a.warmup, iters=20 if a.iters is None else a.iters,
                  channels_last=a.channels_last)
    print(format_result(r))
    if a.json_out:
        write_json(a.json_out, r)


def _demo_parser(argv):
    p = _Parser(prog="zoo demo")
    p.add_argument("--workdir", default=None, help="where runs, models and results go (default: a temp folder)")
    p.add_argument("--only", default=None, help="comma-separated paper ids")
    return p


def _cmd_demo(a):
    from .demo import main as demo_main

    demo_main(workdir=a.workdir, only=None if a.only is None else [p.strip() for p in a.only.split(",")])


def parse_args(argv: list[str]) -> tuple[str, argparse.Namespace]:
    """``argv`` (without the program name) -> (verb, its options), running nothing: a usage error is a ZooError.

    For the verbs other than LightningCLI's (``fit``, ``validate``, ``test``, ``predict``: see
    ``zoo fit --print_config``).
    """
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS or verb in LIGHTNING_VERBS:
        raise ZooError(f"parse_args reads the zoo's own verbs, not {verb!r}")
    return verb, globals()[f"_{verb}_parser"](rest).parse_args(rest)


def _user_message(exc: ZooError) -> str:
    msg = str(exc)
    if "Original Traceback" in msg:  # a ZooError raised in a DataLoader worker: keep the original message
        last = msg.strip().splitlines()[-1]
        msg = last.split(": ", 1)[1] if last.startswith("zoo.errors.") else last
    return " ".join(msg.split())


def _reader_gone(stream) -> bool:
    """Whether ``stream`` is a pipe whose reading end is closed (poll reports an error on its writing end)."""
    import select

    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no file descriptor
        return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ZOO_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        _parser().print_help()
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        import difflib

        close = difflib.get_close_matches(verb, VERBS, n=1)
        print(f"zoo: error: unknown verb {verb!r}{f' (did you mean {close[0]}?)' if close else ''}; "
              f"see `zoo --help`", file=sys.stderr)
        return 2
    try:
        if verb in LIGHTNING_VERBS:
            from .training.cli import main as lightning_main

            args = [verb, *rest]  # None when they are the process's own: LightningCLI warns when given both
            lightning_main(None if args == sys.argv[1:] else args)
        else:
            globals()[f"_cmd_{verb}"](parse_args(argv)[1])
    except ZooError as exc:
        if debug:
            raise
        print(f"zoo: error: {_user_message(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError as exc:
        try:
            sys.stdout.flush()
            gone = _reader_gone(sys.stdout)  # a failed write may have dropped the buffer, so the flush succeeds
        except BrokenPipeError:
            gone = True
        if gone:  # stdout's reader went away (`zoo list | head -1`): stop quietly, as shell tools do
            with contextlib.suppress(Exception):  # and let Python's final flush of stdout write nowhere
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        if debug:
            raise
        print(f"zoo: error: {exc}", file=sys.stderr)  # another pipe (a worker's) broke: say so
        return 2
    except ImportError as exc:  # a paper's optional module that is not installed: the extra that installs it
        from .registry import as_missing_dependency

        missing = as_missing_dependency(exc)
        if debug or missing is None:
            raise
        print(f"zoo: error: {_user_message(missing)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the user named cannot be read or written: its path is in the message
        if debug:
            raise
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a fit's `Interrupted` says how to resume and carries its exit status
        print(f"zoo: {exc or 'interrupted'}", file=sys.stderr)
        return getattr(exc, "code", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
