"""`EvalTask` (the plugin contract) and `evaluate` (the loop every task shares)."""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from .. import distributed
from ..argtypes import non_negative_int, positive_int
from ..devices import torch_device
from ..errors import ZooError
from ..io import atomic_path, check_outputs, write_json
from ..precision import PRECISIONS, autocast_dtype
from ..registry import list_papers, load_object, suggest

CORE_TASKS = {"classification": "zoo.eval.classification:ClassificationTask"}


@dataclass
class EvalContext:
    """What the harness hands a task: where to run, how to load data and how to show progress.

    Under ``torchrun`` (``distributed``), `loader` shards a dataset across ranks and the harness gathers the
    scores back into dataset order; a task that builds its loaders with `loader` runs sharded unchanged.
    """

    device: torch.device
    amp_dtype: torch.dtype | None
    batch_size: int
    num_workers: int
    out_dir: Path | None
    distributed: bool = False
    json_out: Path | None = None  # the result JSON's path, if one is written (tasks name their artifacts after it)

    def loader(self, dataset, batch_size: int | None = None) -> DataLoader:
        sampler = DistributedSampler(dataset, shuffle=False) if self.distributed else None
        return DataLoader(dataset, batch_size=batch_size or self.batch_size, num_workers=self.num_workers,
                          sampler=sampler)

    def artifact_stem(self, default: str) -> str:
        """The stem a task names its plots after: the result JSON's (``x.json``: ``x``), so that evaluations
        writing into one folder keep their own plots; ``default`` without a JSON."""
        return self.json_out.stem if self.json_out is not None else default

    def progress(self, iterable, desc: str = "", total: int | None = None):
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is not a terminal; only rank 0 shows one
        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True,
                    disable=None if distributed.rank() == 0 else True)


class EvalTask:
    """One paper's evaluation protocol.

    Subclasses set ``name``, declare options in `add_arguments`, and implement `setup` (fit on reference data),
    `inputs` (the datasets to score), `score` (one batch -> named score arrays) and `finalize` (all scores ->
    the JSON result). `table` renders the result with the paper's metric names; `artifacts` writes plots.
    """

    name = ""

    def __init__(self, **options):
        """``options``: the task's options by their `add_arguments` names (``id_data`` for ``--id-data``), checked
        and converted as the CLI would (see `_convert_option`); the ones left out or None take the defaults declared
        there, so Python callers of `evaluate` get what the CLI gets."""
        parser = argparse.ArgumentParser(add_help=False)
        self.add_arguments(parser)
        actions = {a.dest: a for a in parser._actions}
        unknown = sorted(set(options) - set(actions))
        if unknown:
            raise ZooError(f"task {self.name!r} has no option {', '.join(unknown)}; its options: "
                           f"{', '.join(sorted(actions)) or 'none'}")
        missing = [(a.option_strings or [d])[0] for d, a in actions.items() if a.required and options.get(d) is None]
        if missing:
            raise ZooError(f"task {self.name!r} needs {', '.join(missing)}")
        owner = f"task {self.name!r}"
        given = {d: _convert_option(owner, actions[d], v) for d, v in options.items() if v is not None}
        self.options = argparse.Namespace(**{**{d: a.default for d, a in actions.items()}, **given})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        pass

    def load(self, source: str):
        return load_model(source)

    def setup(self, model, ctx: EvalContext) -> None:
        self.model, self.ctx = model, ctx

    def inputs(self) -> Iterable[tuple[str, Iterable]]:
        raise NotImplementedError

    def score(self, batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def finalize(self, scores: dict[str, dict[str, np.ndarray]]) -> dict:
        raise NotImplementedError

    def table(self, result: dict) -> str:
        return "\n".join(f"{k}: {v}" for k, v in result.items())

    def artifacts(self, result: dict, scores: dict[str, dict[str, np.ndarray]], out_dir: Path) -> list[Path]:
        return []


def _convert_option(owner: str, action: argparse.Action, value):
    """``value`` of ``action``'s option as the CLI would parse it: a flag (``store_true``) takes a bool; a list
    option (``action="append"`` or ``nargs``) takes a list, or one value as a one-element list; every value goes
    through the option's ``type`` as text (so ``5`` and ``"5"`` alike) and must be one of its ``choices``. Anything
    else is a `ZooError` naming ``owner`` (``task 'ood'``), the option, the value and what the option accepts."""
    def bad(why: str) -> ZooError:
        return ZooError(f"{owner}: {action.dest}={value!r} is not accepted: {why}")

    about = f" ({action.help})" if action.help else ""
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise bad("it is a flag, pass True or False")
        return value
    many = isinstance(action, argparse._AppendAction) or action.nargs not in (None, "?")
    if isinstance(value, (list, tuple)) and not many:
        raise bad(f"it takes one value, not a list{about}")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise bad(f"it takes {action.nargs} values{about}")
    if not items and action.nargs != "*":
        raise bad("it takes one or more values")
    out = []
    for raw in items:
        try:
            item = (action.type or str)(raw if isinstance(raw, str) else str(raw))
        except argparse.ArgumentTypeError as exc:
            raise bad(str(exc)) from None
        except (TypeError, ValueError):  # argparse's own message for a plain type such as int or float
            raise bad(f"invalid {getattr(action.type, '__name__', action.type)} value: {raw!r}") from None
        if action.choices is not None and item not in action.choices:
            raise bad(f"choose from {', '.join(map(str, action.choices))}")
        out.append(item)
    return out if many else out[0]


def list_tasks() -> dict[str, str]:
    """Task name -> ``"module:Class"``, from the core and every registered paper."""
    tasks = dict(CORE_TASKS)
    for paper in list_papers():
        tasks.update(paper.tasks)
    return tasks


def get_task(name: str) -> type[EvalTask]:
    """The `EvalTask` class registered as ``name`` (``classification``, or a paper's task such as ``ood``); an
    unknown name is a `ZooError` listing the tasks there are. Its options: ``get_task(name).add_arguments``."""
    tasks = list_tasks()
    if not isinstance(name, str) or name not in tasks:  # None or a number: as unknown as a misspelt name
        close = suggest(name, tasks)
        raise ZooError(f"unknown eval task {name!r}{close}; available: {', '.join(sorted(tasks))}")
    return load_object(tasks[name])


def add_run_arguments(parser) -> None:
    """The options every task takes, which `evaluate` has as arguments: ``--precision``, ``--batch-size``,
    ``--num-workers`` (``zoo eval``'s defaults)."""
    parser.add_argument("--precision", default="32", choices=list(PRECISIONS))
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--num-workers", type=non_negative_int, default=min(4, os.cpu_count() or 1))


def _harness_options(**values) -> argparse.Namespace:
    """``values`` of the options `evaluate` takes for every task (``batch_size``, ``num_workers``, ``precision``)
    checked and converted with the types and choices ``zoo eval`` declares for them (`add_run_arguments`,
    `_convert_option`), so that `evaluate` refuses what the CLI refuses, before the model or data are loaded."""
    parser = argparse.ArgumentParser(add_help=False)
    add_run_arguments(parser)
    actions = {a.dest: a for a in parser._actions}
    return argparse.Namespace(**{d: _convert_option("evaluate", actions[d], v) for d, v in values.items()})


def load_model(source: str):
    """A model from a zoo folder, a ``name.tag`` or a bare name with default weights."""
    from ..checkpoint import from_pretrained

    path = Path(source)
    if path.exists() and not path.is_dir():
        raise ZooError(f"{source}: pass a folder written by zoo.save_pretrained / zoo convert, not a file")
    return from_pretrained(source)


def evaluate(source: str, task: str, *, device: str = "cpu", precision: str = "32", batch_size: int = 256,
             num_workers: int = 2, json_out: str | Path | None = None, save_scores: str | Path | None = None,
             out_dir: str | Path | None = None, model=None, **options) -> dict:
    """Run task ``task`` on the model at ``source``; returns the result dict (also written to ``json_out``).

    Launched with ``torchrun --nproc_per_node N -m zoo eval ...`` it shards every dataset the task loads through
    ``ctx.loader`` across the N processes and gathers the scores; rank 0 writes the outputs.

    Args:
        source: zoo folder or ``name.tag`` (ignored when ``model`` is given).
        device, precision: where and how to run: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ``32``, ``bf16-mixed``
            or ``16-mixed``.
        batch_size, num_workers: images per batch (1 or more) and data loading processes (0 or more); these and
            ``precision`` are checked and converted as ``zoo eval`` parses them (``"4"`` is 4).
        json_out: path of the JSON result; artifacts (plots) go beside it, or into ``out_dir``.
        save_scores: folder for raw scores, one ``<input>.npz`` per scored input.
        **options: the task's options (see ``zoo eval --task T --help``).
    """
    cls = get_task(task)
    run = _harness_options(batch_size=batch_size, num_workers=num_workers, precision=precision)
    t = cls(**options)
    check_outputs({"--json": json_out}, {"--save-scores": save_scores, "--out-dir": out_dir})
    dev = torch_device(device)
    with distributed.from_env() as sharded:
        if sharded and dev.type == "cuda":
            dev = torch.device("cuda", torch.cuda.current_device())
        out = Path(out_dir) if out_dir else (Path(json_out).parent if json_out else None)
        ctx = EvalContext(dev, autocast_dtype(run.precision), run.batch_size, run.num_workers, out, sharded,
                          Path(json_out) if json_out else None)
        model = model if model is not None else t.load(source)
        t.setup(model, ctx)
        scores: dict[str, dict[str, np.ndarray]] = {}
        with torch.inference_mode():
            for name, batches in t.inputs():
                acc = defaultdict(list)
                total = len(batches) if hasattr(batches, "__len__") else None
                for batch in ctx.progress(batches, desc=f"{task}:{name}", total=total):
                    with torch.autocast(dev.type, dtype=ctx.amp_dtype, enabled=ctx.amp_dtype is not None):
                        for k, v in t.score(batch).items():
                            acc[k].append(torch.as_tensor(v).detach().float().cpu().numpy())
                if not acc:
                    raise ZooError(f"{task}: input {name!r} has no samples (an empty folder or split?)")
                keys = list(acc)
                arrays = [torch.from_numpy(np.concatenate(acc[k])).to(dev) for k in keys]
                arrays = distributed.gather_in_order(arrays, getattr(batches, "sampler", None))
                scores[name] = {k: a.cpu().numpy() for k, a in zip(keys, arrays)}
        result = t.finalize(scores)
        if distributed.rank() != 0:  # every rank holds the same result; rank 0 writes it
            return result
        if save_scores:
            folder = Path(save_scores)
            for name, arrays in scores.items():
                with atomic_path(folder / f"{name}.npz") as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, **arrays)
        if out is not None:  # before the JSON: a JSON on disk means its plots are there too
            t.artifacts(result, scores, out)
        if json_out:
            write_json(json_out, result)
        print(t.table(result))
        return result
