"""Benchmark suites (``configs/bench/*.yaml``) and their committed result files.

A suite lists runs; each run expands over ``modes x precisions x batch_sizes``::

    name: default
    runs:
      - {model: knn_ood_resnet18, modes: [infer, train], precisions: ["32", bf16-mixed], batch_sizes: [256]}
      - {model: drums_lm, model_args: {base: path/to/folder, init: scratch}, modes: [generate]}

``model_args`` are constructor keywords for a bare model name (random weights). A run may also set ``compile``,
``warmup`` and ``iters`` (the last two also at the top, for every run); any other key is refused.

Results go to ``benchmarks/results/<suite>__<device>__torch<version>[__cu<version>].json`` with the command and
environment; `zoo.bench.report` turns them into the tables of ``benchmarks/README.md``. `merge_results` folds a later
file of the same name (a GPU session's, which may hold only some rows) into a committed one.
"""

from __future__ import annotations

import json
import shlex
import sys
from difflib import get_close_matches
from itertools import product
from pathlib import Path

import torch

from ..errors import ZooError
from ..io import check_outputs, write_json
from ..precision import PRECISIONS
from .compare import results_dir
from .env import device_slug, environment, is_gpu
from .harness import MODES, benchmark, format_result

SUITE_KEYS = ("name", "warmup", "iters", "runs")
RUN_KEYS = ("model", "modes", "precisions", "batch_sizes", "compile", "model_args", "warmup", "iters")
# the lists a run expands over, with a test of one value and what it may be
LISTS = {"modes": (lambda v: v in MODES, ", ".join(MODES)),
         "precisions": (lambda v: str(v) in PRECISIONS, ", ".join(PRECISIONS)),
         "batch_sizes": (lambda v: type(v) is int and v > 0, "positive integers")}


def load_suite(path: str | Path) -> dict:
    """Read and check a suite file: every key known (a misspelt one would silently benchmark the defaults), every
    list a run expands over non-empty, so that each run has at least one job, and every run's model one that loads
    (`check_model`), so that a misspelt name fails before the other jobs run rather than after them."""
    path = Path(path)
    if not path.exists():
        raise ZooError(f"suite file {path} does not exist")
    if path.is_dir():
        named = ", ".join(sorted(str(p) for p in path.glob("*.yaml")))
        raise ZooError(f"suite {path} is a folder: give a suite YAML file, "
                       f"{'one of ' + named if named else 'e.g. configs/bench/NAME.yaml'}")
    suite = _read_yaml(path) or {}
    if not isinstance(suite, dict) or not isinstance(suite.get("runs"), list) or not suite["runs"]:
        raise ZooError(f"{path}: a suite needs a non-empty 'runs' list")
    check_keys(suite, SUITE_KEYS, str(path))
    check_scalars(suite, str(path))
    for i, run in enumerate(suite["runs"]):
        if not isinstance(run, dict) or "model" not in run:
            raise ZooError(f"{path}: run {i} has no 'model' (a run is a mapping: {{model: NAME, modes: [...]}})")
        where = f"{path}: run {i} ({run['model']})"
        check_keys(run, RUN_KEYS, where)
        check_lists(run, where)
        check_scalars(run, where)
        check_model(run["model"], where)
    suite.setdefault("name", path.stem)
    return suite


def _read_yaml(path: Path):
    """The contents of suite file ``path``; a ZooError naming the line and column of a YAML syntax error, or saying
    that the file is not text."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ZooError(f"{path} is not a text file: give a suite YAML file, e.g. configs/bench/NAME.yaml") from None
    except yaml.YAMLError as exc:
        raise ZooError(f"{path} is not valid YAML ({_yaml_problem(exc)}): fix the file") from None


def _yaml_problem(exc) -> str:
    """Where and what a PyYAML error is, on one line: ``line 2, column 1: expected ',' or ']', but got '<stream end>',
    while parsing a flow sequence started at line 1, column 7``."""
    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    problem, context = getattr(exc, "problem", None), getattr(exc, "context", None)
    if problem is None:  # a YAMLError without a position
        return str(exc)
    text = f"{at(exc.problem_mark)}: {problem}" if exc.problem_mark else problem
    if context:
        text += f", {context}" + (f" started at {at(exc.context_mark)}" if exc.context_mark else "")
    return text


def check_model(source, where: str) -> None:
    """A run's ``model`` is a zoo model folder that loads (`zoo.checkpoint.check_folder`), a registered model name
    (`zoo list`) or a ``name.tag`` of the manifest (`zoo list --pretrained`), as `load_bench_model` reads them;
    otherwise a ZooError prefixed with ``where``, with the registry's closest names for a misspelt one."""
    from ..checkpoint import check_folder
    from ..registry import paper_of, resolve_entry, split_name

    if not isinstance(source, str):
        raise ZooError(f"{where}: model must be a model name, a name.tag or a zoo model folder, not {source!r}")
    try:
        if Path(source).is_dir():
            check_folder(source)
        elif "/" in source:
            raise ZooError(f"{source} {'is not a folder' if Path(source).exists() else 'does not exist'}: give a "
                           f"folder written by zoo.save_pretrained, a model name (`zoo list`) or a name.tag (`zoo "
                           f"list --pretrained`)")
        elif split_name(source)[1]:
            resolve_entry(source)
        else:
            paper_of(source)
    except ZooError as exc:
        raise ZooError(f"{where}: {exc}") from None


def check_keys(given: dict, valid: tuple[str, ...], where: str) -> None:
    """Refuse a key of ``given`` that is not in ``valid``, naming the closest valid key where there is one."""
    unknown = [k for k in given if k not in valid]
    if unknown:
        named = [f"{k!r} (did you mean {close[0]!r}?)" if (close := get_close_matches(str(k), valid, n=1))
                 else repr(k) for k in unknown]
        raise ZooError(f"{where}: unknown key{'s' * (len(unknown) > 1)} {', '.join(named)}; the valid keys are "
                       f"{', '.join(valid)}")


def check_scalars(given: dict, where: str) -> None:
    """``warmup`` and ``iters`` whole numbers >= 1 (the harness's first step is always untimed), ``compile`` true or
    false, ``model_args`` a mapping (``compile: "false"``, a string, would be true in Python and compile the model)."""
    checks = {"warmup": (lambda v: type(v) is int and v >= 1, "a whole number >= 1"),
              "iters": (lambda v: type(v) is int and v >= 1, "a whole number >= 1"),
              "compile": (lambda v: type(v) is bool, "true or false"),
              "model_args": (lambda v: v is None or isinstance(v, dict), "a mapping of the model's arguments")}
    for key, (valid, what) in checks.items():
        if key in given and not valid(given[key]):
            raise ZooError(f"{where}: {key} must be {what}, not {given[key]!r}")


def check_lists(run: dict, where: str) -> None:
    """Each of a run's `LISTS` it gives is a non-empty list of valid values (an empty one would leave it no job)."""
    for key, (valid, choices) in LISTS.items():
        values = run.get(key, [])
        if key in run and (not isinstance(values, list) or not values):
            raise ZooError(f"{where}: {key} must be a non-empty list (of {choices}), not {values!r}")
        bad = [v for v in values if not valid(v)]
        if bad:
            raise ZooError(f"{where}: {key} has {bad[0]!r}; choose from {choices}")


def expand(suite: dict, device: str) -> list[dict]:
    """One keyword dict for `benchmark` per (run, mode, precision, batch size); every precision runs on every
    device (fp16 autocast on a CPU too: slow on most, and measured as such, as `zoo bench` measures it)."""
    jobs = []
    for run in suite["runs"]:
        for mode, prec, bs in product(run.get("modes", ["infer"]), run.get("precisions", ["32"]),
                                      run.get("batch_sizes", [32])):
            jobs.append({"source": run["model"], "mode": mode, "precision": str(prec), "batch_size": int(bs),
                         "device": device, "compile": bool(run.get("compile", False)),
                         "model_args": dict(run.get("model_args") or {}),
                         "warmup": int(run.get("warmup", suite.get("warmup", 5))),
                         "iters": int(run.get("iters", suite.get("iters", 20)))})
    return jobs


def results_path(suite: dict, env: dict, out_dir: Path | None = None) -> Path:
    out_dir = out_dir or results_dir()
    cu = f"__cu{env['cuda']}" if is_gpu(env) else ""
    return out_dir / f"{suite['name']}__{device_slug(env)}__torch{env['torch'].split('+')[0]}{cu}.json"


def run_suite(path: str | Path, device: str = "cpu", out: str | Path | None = None,
              batch_size: int | None = None, iters: int | None = None, warmup: int | None = None) -> Path:
    """Run every job of a suite; write and return the results file. ``batch_size``/``iters``/``warmup`` override
    the suite and its rows (for a quick check). A job that fails is recorded under ``failed`` with its error and
    the rest run."""
    suite = load_suite(path)
    env = environment(torch.device(device))
    dest = Path(out) if out else results_path(suite, env)
    check_outputs({"out": dest})  # before the first job, not after it
    command = "zoo bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    results, failed = [], []

    def write():  # after every job that leaves a measurement, so that a run stopped part-way keeps what it measured
        write_json(dest, {"suite": suite["name"], "suite_file": str(path), "command": command, "env": env,
                          "results": results, "failed": failed})

    for job in expand(suite, device):
        if batch_size:
            job["batch_size"] = batch_size
        if iters:
            job["iters"] = iters
        if warmup:
            job["warmup"] = warmup
        try:
            r = benchmark(**job)
        except Exception as e:  # noqa: BLE001 -- one broken job (a library's assertion too) must not lose the rest
            failed.append({k: job[k] for k in ("source", "mode", "precision", "batch_size", "model_args", "compile")}
                          | {"error": f"{type(e).__name__}: {e}"})
            print(f"FAILED {job['source']} {job['mode']} {job['precision']}: {e}", flush=True)
        else:
            r.pop("env")
            print(format_result(r), flush=True)
            results.append(r)
        if results:  # a file of failures only would replace an earlier file of the same name with nothing measured
            write()
    if failed and not results:
        raise ZooError(f"every job of {path} failed, so nothing was written; the first: {failed[0]['error']}")
    return dest


def row_key(row: dict) -> tuple:
    """What identifies a row of a suite's file, measured (``results``) or not (``failed``): the model and its
    constructor arguments, mode, precision, requested batch size and compilation."""
    return (row.get("model", row.get("source")), json.dumps(row.get("model_args") or {}, sort_keys=True),
            row["mode"], row["precision"], row.get("requested_batch_size", row["batch_size"]),
            bool(row.get("compile")))


def merge_results(old: dict, new: dict) -> dict:
    """``old`` (a suite's result file) updated by ``new`` (a later file of the same name): a row of ``new``
    replaces the row of ``old`` with the same `row_key` in its place, other new rows follow, and every row keeps
    the ``env`` of its own run. A failure of ``new`` is listed beside an older measurement of the same row (which
    stays); a failure of ``old`` goes once ``new`` has that row. The other fields (command, env, ...) are
    ``new``'s, a field only ``old`` has (a ``note``) stays."""
    def rows(data: dict) -> list[dict]:
        return [r if "env" in r else r | {"env": data["env"]} for r in data["results"]]

    fresh = {row_key(r): r for r in rows(new)}
    results = [fresh.pop(row_key(r), r) for r in rows(old)] + list(fresh.values())
    renewed = {row_key(r) for r in new["results"] + new.get("failed", [])}
    failed = [f for f in old.get("failed", []) if row_key(f) not in renewed] + new.get("failed", [])
    return old | new | {"results": results, "failed": failed}
