"""`zoo fit | validate | test | predict`: LightningCLI in subclass mode for models and data.

Configs name any LightningModule and LightningDataModule by ``class_path``. Each run writes into its own folder,
``runs/<config name>/<timestamp>`` (or ``$ZOO_RUNS_DIR/...``), unless ``--trainer.default_root_dir`` is given: the
resolved ``config.yaml``, Lightning checkpoints (the newest, written after every training epoch, or every N steps
instead with ``--checkpoint.every_n_train_steps N``, and ``last.ckpt`` linked to it, to resume with ``--ckpt_path
last`` and the same root dir; ``interrupted.ckpt`` when Ctrl-C or SIGTERM stopped a fit midway, and ``final.ckpt``
at the end of a run that does not save every epoch, either of which ``last`` resumes when it is the newest) and,
after ``fit``, the trained model as a zoo folder (``model/``: config.json + model.safetensors) that
`zoo.from_pretrained` loads.

A fresh ``fit`` into a folder that holds checkpoints is refused (it would replace that run's ``model/``), and so
are ``--ckpt_path last`` with nothing to resume, a ``--ckpt_path`` file of another model or module class, a
``--ckpt_path`` that is no Lightning checkpoint file (a missing path, a run folder, a zoo model's weights) and a
``--trainer.default_root_dir`` that is a file, each before a run folder is made or any work is done.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities.exceptions import (
    MisconfigurationException,
    SIGTERMException,
)

from ..errors import ZooError
from ..registry import as_missing_dependency
from .option_hint import option_hint
from .resume import SeededTraining


class ExportModel(pl.Callback):
    """After ``fit``, save the LightningModule's ``model`` (a zoo model) to ``<run dir>/model`` on rank 0; a module
    without one gets a note on stderr instead, unless it says it writes its own result (``exports_model = False``:
    DOORPING's distillation, whose result is a distilled set)."""

    def __init__(self, enabled: bool = True, dirname: str = "model"):
        self.enabled, self.dirname = enabled, dirname

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.enabled and trainer.is_global_zero) or getattr(pl_module, "exports_model", True) is False:
            return
        model = getattr(pl_module, "model", None)
        if not getattr(model, "zoo_cfg", None):
            print(f"zoo: {type(pl_module).__name__} has no zoo model (a `model` attribute made by zoo.create_model), "
                  f"so no {self.dirname}/ folder is written", file=sys.stderr)
            return
        from ..checkpoint import save_pretrained

        if trainer.global_step == 0:  # max_epochs 0 or max_steps 0: the weights are the initial ones
            print(f"zoo: no training step ran, so {self.dirname}/ is not written: max_epochs or max_steps 0, or a "
                  f"training split with no batch (check train_subset, val_fraction and batch_size)", file=sys.stderr)
            return
        out = Path(trainer.default_root_dir) / self.dirname
        save_pretrained(model, out, metadata={"epochs": trainer.current_epoch, "global_step": trainer.global_step})


class InterruptCheckpoint(Checkpoint):
    """On Ctrl-C or SIGTERM during training, save ``<dirpath>/interrupted.ckpt`` (the step reached), which ``--ckpt_path
    last`` resumes when it is the newest checkpoint (`ZooLightningCLI.before_fit`); removed when a run ends
    normally. An epoch-long recipe (DOORPING's whole distillation, the one-epoch CPU recipes) so loses nothing to an
    interrupt. A SIGKILL or another exception (a bug, a lost node) saves nothing: a run that must survive those
    saves step checkpoints instead (``--checkpoint.every_n_train_steps N``), which ``last`` resumes in the same way.
    (Not Lightning's ``OnExceptionCheckpoint``: with one, every fresh fit asks for ``ckpt_path="last"``.)"""

    def __init__(self, dirpath: str | Path):
        self.ckpt_path = str(Path(dirpath) / "interrupted.ckpt")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) and trainer.state.fn == "fit" \
                and trainer.global_step > 0:
            trainer.save_checkpoint(self.ckpt_path)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        trainer.strategy.remove_checkpoint(self.ckpt_path)


class FinalCheckpoint(Checkpoint):
    """When training ends, save ``<dirpath>/final.ckpt`` (the finished run's state), for a checkpoint callback whose
    trigger is not every epoch (``--checkpoint.every_n_train_steps N``, ``train_time_interval``, ``every_n_epochs``
    above 1): its ``last.ckpt`` then holds the state up to N-1 steps before the end, and a run extended by more
    epochs with ``--ckpt_path last`` (which takes the newest checkpoint) would redo them."""

    def __init__(self, dirpath: str | Path):
        self.ckpt_path = str(Path(dirpath) / "final.ckpt")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step > 0:
            trainer.save_checkpoint(self.ckpt_path)


def _saves_every_epoch(checkpoint) -> bool:
    """Whether the ``--checkpoint.*`` settings save at the end of every training epoch (the zoo's default; with
    ``save_on_train_epoch_end`` false a checkpoint waits for a validation, which may not come every epoch)."""
    return not (checkpoint.get("every_n_train_steps") or checkpoint.get("train_time_interval")) \
        and checkpoint.get("every_n_epochs") in (None, 1) and checkpoint.get("save_on_train_epoch_end") is not False


def _rank_run_dir(config_files) -> str:
    """The run folder of this process: a new one (`_run_dir`) on rank 0, whose path the ranks Lightning launches
    later inherit through ``ZOO_RUN_DIR_OF_RANK0``; a rank started on its own (torchrun) names the folder of this
    second without making it, as rank 0 does when it starts in the same second."""
    if int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))) > 0:
        return os.environ.get("ZOO_RUN_DIR_OF_RANK0") or _run_dir(config_files, make=False)
    path = _run_dir(config_files)
    os.environ["ZOO_RUN_DIR_OF_RANK0"] = path
    return path


def _run_dir(config_files, make: bool = True) -> str:
    """Make and return a new run folder, ``<runs>/<config name>/<timestamp>[-N]``: made here (``mkdir`` fails when
    the folder exists), so two runs started in the same second get a folder each."""
    name = Path(str(config_files[-1])).stem if config_files else "run"
    base = Path(os.environ.get("ZOO_RUNS_DIR", "runs")) / name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if not make:
        return str(base / stamp)
    base.mkdir(parents=True, exist_ok=True)
    path, n = base / stamp, 1
    while True:
        try:
            path.mkdir()
            return str(path)
        except FileExistsError:
            path, n = base / f"{stamp}-{n}", n + 1


class ZooLightningCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        _quiet_lightning_notices()
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=False,
            parser_kwargs={"prog": "zoo", "exit_on_error": False, "allow_abbrev": False},  # usage errors: one line
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # the newest checkpoint after every training epoch, validated or not, with last.ckpt linked to it: a run
        # killed midway resumes from its last finished epoch (Lightning saves "last" only beside another checkpoint)
        parser.set_defaults({"checkpoint.save_last": "link", "checkpoint.save_top_k": 1,
                             "checkpoint.save_on_train_epoch_end": True})
        parser.add_lightning_class_args(ExportModel, "export")

    def parse_arguments(self, parser, args) -> None:
        """LightningCLI's parse, with `option_hint` added to the error for an option that nothing accepts."""
        try:
            super().parse_arguments(parser, args)
        except argparse.ArgumentError as exc:
            with contextlib.suppress(Exception):  # a hint that cannot be made must not replace the error itself
                exc.zoo_hint = option_hint(str(exc), parser, list(sys.argv[1:] if args is None else args))
            raise

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        ckpt = cfg.get("ckpt_path")
        if cfg.trainer.get("default_root_dir"):
            _check_root_dir(cfg.trainer.default_root_dir)
        else:
            if ckpt == "last":  # a new run folder has nothing to resume: Lightning would warn and start afresh
                raise ZooError("--ckpt_path last resumes the run in --trainer.default_root_dir; give that folder "
                               "(runs/<config name>/<timestamp> by default)")
            cfg.trainer.default_root_dir = self._new_run_dir = _rank_run_dir(cfg.get("config") or [])
        root = cfg.trainer.default_root_dir
        _loggers_into(root, cfg.trainer.get("logger"))
        if not cfg.checkpoint.get("dirpath"):
            cfg.checkpoint.dirpath = str(Path(root) / "checkpoints")
        saved = sorted(Path(cfg.checkpoint.dirpath).glob("*.ckpt"))
        if ckpt == "last" and not saved:  # Lightning would warn and start afresh (a mistyped folder, say)
            raise ZooError(f"--ckpt_path last: {cfg.checkpoint.dirpath} holds no checkpoint to resume; give the "
                           f"--trainer.default_root_dir of a run that finished an epoch or was interrupted")
        if self.subcommand == "fit" and not ckpt and saved:  # a fresh run would replace that run's model/
            raise ZooError(f"{root} already holds a run ({saved[0].name}, ...): resume it with --ckpt_path last, or "
                           f"give a new --trainer.default_root_dir")

    def _parse_ckpt_path(self) -> None:
        """Before Lightning reads a ``--ckpt_path`` file's hyper-parameters into the config (they replace the config's
        model arguments), and before `before_instantiate_classes` makes a run folder, refuse a path that is no
        Lightning checkpoint file (`_check_ckpt_file`) and a checkpoint of another model."""
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if ckpt and ckpt not in ("last", "best", "hpc", "registry"):
            _check_ckpt_file(ckpt, self.config[sub].get("model"), sub)
            _check_checkpoint_model(ckpt, _checkpoint_hparams(ckpt), self.config[sub].get("model"))
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        """Print the run folder, add the interrupt checkpoint, and let the module check the trainer
        (``check_trainer(trainer)``, e.g. that a progressive schedule has epochs to progress over) before the data's
        setup, which may take minutes."""
        self._announce()
        dirpath = self.trainer.checkpoint_callback.dirpath
        self.trainer.callbacks += [InterruptCheckpoint(dirpath), SeededTraining()]
        if not _saves_every_epoch(self.config.fit.checkpoint):
            self.trainer.callbacks.append(FinalCheckpoint(dirpath))
        if self.config.fit.get("ckpt_path") == "last":  # the newest of the last, interrupt and final checkpoints
            names = ("last.ckpt", "interrupted.ckpt", "final.ckpt")  # on an mtime tie the later name (written later)
            newest = max((p for p in (Path(dirpath) / name for name in names) if p.exists()),
                         key=lambda p: (p.stat().st_mtime, names.index(p.name)), default=None)
            if newest is None:  # a run without last.ckpt (checkpoint.save_last false): its newest checkpoint
                newest = max(Path(dirpath).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, default=None)
            if newest is not None:  # Lightning would load it into the config's model, whatever that is
                _check_checkpoint_model(newest, _checkpoint_hparams(newest), self.config.fit.get("model"))
                self.config_init.fit.ckpt_path = str(newest)
        check = getattr(self.model, "check_trainer", None)
        if callable(check):
            check(self.trainer)

    def before_validate(self) -> None:
        self._announce(scores=True)

    def before_test(self) -> None:
        self._announce(scores=True)

    def before_predict(self) -> None:
        self._announce(scores=True)
        from pytorch_lightning.callbacks import BasePredictionWriter

        if self.trainer.is_global_zero and not any(isinstance(c, BasePredictionWriter) for c in self.trainer.callbacks):
            print("zoo: predict writes nothing without a prediction writer: add one with --trainer.callbacks (a "
                  "pytorch_lightning.callbacks.BasePredictionWriter), or call Trainer.predict from Python",
                  file=sys.stderr)

    def _announce(self, scores: bool = False) -> None:
        """Print the run folder (and, for validate/test/predict without ``--ckpt_path``, whose weights are used)."""
        if not self.trainer.is_global_zero:
            return
        print(f"zoo: run folder {self.trainer.default_root_dir}", file=sys.stderr)
        if scores and not self.config[self.subcommand].get("ckpt_path"):
            print("zoo: no --ckpt_path: using the weights the config builds (random unless its model loads "
                  "pretrained ones)", file=sys.stderr)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the verb; if it fails, remove the run folder this CLI made when nothing was written into it (a
        mistake found at data setup leaves no empty ``runs/<config>/<timestamp>/lightning_logs/version_0``). An
        interrupted fit (Ctrl-C, SIGTERM: Lightning ends it with exit status 1 or 0) is `Interrupted`, saying how to
        resume."""
        try:
            super()._run_subcommand(subcommand)
        except BaseException as exc:
            self._drop_empty_run_dir()
            if self.trainer.state.status == "interrupted" and isinstance(exc, (KeyboardInterrupt, SystemExit)):
                root, sigterm = self.trainer.default_root_dir, isinstance(exc, SIGTERMException)
                dirpath = self.trainer.checkpoint_callback.dirpath if self.trainer.checkpoint_callback else None
                saved = subcommand == "fit" and dirpath and any(Path(dirpath).glob("*.ckpt"))
                then = (f"resume with --trainer.default_root_dir {root} --ckpt_path last" if saved else
                        "no checkpoint was saved" if subcommand == "fit" else "nothing to resume")
                raise Interrupted(f"{subcommand} interrupted ({'SIGTERM' if sigterm else 'Ctrl-C'}); {then}",
                                  143 if sigterm else 130) from None
            raise

    def _drop_empty_run_dir(self) -> None:
        new = getattr(self, "_new_run_dir", None)
        if new and int(os.environ.get("LOCAL_RANK", "0")) == 0 and Path(new).is_dir() \
                and not any(p.is_file() for p in Path(new).rglob("*")):
            shutil.rmtree(new, ignore_errors=True)
            with contextlib.suppress(OSError):  # runs/<config>/ too, when this run was its only one
                Path(new).parent.rmdir()

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a ZooError raised inside a constructor (jsonargparse wraps it) is
        re-raised as itself so the CLI prints its one line, and so is a Trainer setting Lightning refuses
        (``--trainer.accelerator gpu`` without one, ``--trainer.max_epochs -3``)."""
        try:
            super().instantiate_classes()
        except Exception as exc:
            self._drop_empty_run_dir()
            cause = exc
            while cause is not None and not isinstance(cause, (ZooError, MisconfigurationException)):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            if isinstance(cause, MisconfigurationException):
                raise ZooError(f"zoo {self.subcommand}: {cause}") from None
            raise cause from None


class Interrupted(KeyboardInterrupt):
    """An interrupted run: ``str`` says how to resume it, ``code`` is the exit status (130 Ctrl-C, 143 SIGTERM)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _check_root_dir(root: str) -> None:
    """Refuse a ``--trainer.default_root_dir`` that is a file or lies under one, before any work (the run would
    fail at its first write into it: logs, checkpoints, or ``model/`` at the end of a ``fast_dev_run``)."""
    found = next((p for p in (Path(root), *Path(root).parents) if p.exists()), None)
    if found is not None and not found.is_dir():
        where = "is a file" if found == Path(root) else f"lies under the file {found}"
        raise ZooError(f"--trainer.default_root_dir {root} {where}: give a folder")


def _check_ckpt_file(ckpt: str, model_cfg, verb: str) -> None:
    """Refuse a ``--ckpt_path`` that names no Lightning checkpoint file: a missing path, a folder (a run's, say),
    and a zoo model's weights (``<run>/model/model.safetensors``, or its folder), on which Lightning would fail
    with a traceback after the data's setup."""
    from ..checkpoint import WEIGHTS_NAME

    path = Path(ckpt)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if weights.is_file() and _is_safetensors(weights):
        raise _zoo_weights_error(ckpt, model_cfg, verb)
    if path.is_dir():
        run = path.parent if path.name == "checkpoints" else path
        raise ZooError(f"--ckpt_path {ckpt} is a folder: give a checkpoint file in it ({run / 'checkpoints'}"
                       f"/last.ckpt), or resume that run with --trainer.default_root_dir {run} --ckpt_path last")
    if not path.is_file():
        raise ZooError(f"--ckpt_path {ckpt} does not exist: give a Lightning .ckpt file, or `last` to resume "
                       f"the newest checkpoint of --trainer.default_root_dir")


def _zoo_weights_error(ckpt: str, model_cfg, verb: str) -> ZooError:
    """The error for a ``--ckpt_path`` that is a zoo model's weights: it names the run's checkpoints (the run
    folder above ``model/`` where it has them) and the config module's argument that starts from such weights
    (``pretrained``: ClassifierModule and most; ``pretrained_encoder``: TinyMIM's fine-tuning)."""
    path = Path(ckpt)
    run = path.parent if path.is_dir() else path.parent.parent
    run = run if (run / "checkpoints").is_dir() else "<run>"
    init = model_cfg.get("init_args") or {}
    arg = next((a for a in ("pretrained", "pretrained_encoder") if a in init), None)
    use = "start training from" if verb == "fit" else f"{verb} with"
    how = f"give --model.init_args.{arg} {ckpt} instead" if arg else \
        f"use a recipe whose module takes them ({str(model_cfg.get('class_path')).rsplit('.', 1)[-1]} takes none)"
    return ZooError(f"--ckpt_path {ckpt} is a zoo model's weights (safetensors), not a Lightning checkpoint: give a "
                    f".ckpt from {run}/checkpoints/ (or `last` with --trainer.default_root_dir {run}); to {use} "
                    f"these weights, {how}")


def _is_safetensors(path: Path) -> bool:
    """Whether file ``path`` is in the safetensors format (a zoo model's ``model.safetensors``)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt"):
            return True
    except Exception:  # safetensors raises its own error, or OSError, for bytes that are not its format
        return False


def _checkpoint_hparams(path) -> dict:
    """The ``hyper_parameters`` of Lightning checkpoint ``path`` (its tensors are memory-mapped, not read); a file
    that is not a checkpoint is a ZooError."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters") or {}
    except Exception as exc:  # torch.load raises many types for bytes that are not a checkpoint
        why = "not a zip-format torch.save file, as Lightning writes" if "mmap" in str(exc) else \
            f"{type(exc).__name__}: {exc}"
        raise ZooError(f"--ckpt_path {path} is not a readable Lightning checkpoint ({why}); give a .ckpt file that "
                       f"`zoo fit` wrote") from None


def _check_checkpoint_model(path, hparams: dict, model_cfg) -> None:
    """Refuse a checkpoint written by another LightningModule class, or for another zoo model, than the config
    names: Lightning would silently swap the config's model for the checkpoint's."""
    cfg_class = model_cfg.get("class_path") if model_cfg else None
    ck_class = hparams.get("_class_path")
    if ck_class and cfg_class and ck_class != cfg_class:
        raise ZooError(f"--ckpt_path {path} was written by {ck_class}, but the config trains {cfg_class}: give the "
                       f"config of that run, or a checkpoint of this one")
    cfg_model = (model_cfg.get("init_args") or {}).get("model") if model_cfg else None
    ck_model = hparams.get("model")
    if isinstance(ck_model, str) and isinstance(cfg_model, str) and ck_model != cfg_model:
        raise ZooError(f"--ckpt_path {path} holds a {ck_model} model, but the config names {cfg_model}: give a "
                       f"checkpoint of {cfg_model}, or --model.init_args.model {ck_model}")


def _loggers_into(root: str, loggers) -> None:
    """A logger's relative ``save_dir`` (a recipe's ``save_dir: lightning_logs``) is taken inside the run folder,
    so a run's metrics stay with its config and checkpoints wherever ``zoo fit`` is started."""
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init = getattr(logger, "init_args", None)
        save_dir = init.get("save_dir") if init is not None else None
        if save_dir and not Path(save_dir).is_absolute():
            init.save_dir = str(Path(root) / save_dir)


# jsonargparse's explanation lines that say nothing about the mistake (a subclass-mode key's Union bookkeeping)
_NOISE = re.compile(r"^(Does not validate against any of the Union subtypes|Subtypes:|Errors:|- Expected a <class "
                    r"'NoneType'>|Given value type:)")


def _not_litlogger_advert(record: logging.LogRecord) -> bool:
    """Logging filter: False for Lightning's advertisement for its cloud logger."""
    return "litlogger" not in record.getMessage()


def _quiet_lightning_notices() -> None:
    """Drop five Lightning notices that say nothing true about the run: the advertisement for its cloud logger,
    the warning that `tensorboardX` is not installed (the default logger is then a CSVLogger in the run folder), the
    one that a mid-epoch resume's loader is not resumable (`SeededTraining` resumes a seeded loader exactly, and
    warns itself for the others), the one that ``args`` is given while ``sys.argv`` holds arguments (the zoo
    builds ``args`` itself: `main` from its own verb's, ``zoo demo``'s papers from their recipes), and torch's
    deprecation of ``LeafSpec``, which Lightning's own CombinedLoader still uses (as a fit or validation starts).
    Calling it again adds nothing."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_not_litlogger_advert)
    warnings.filterwarnings("ignore", message=r"Starting from v1\.9\.0, `tensorboardX` has been removed")
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python "
                                              r"like if it were from the command line")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def main(args: list[str] | None = None) -> ZooLightningCLI:
    """Run LightningCLI; a usage error (a missing config file, an option a class does not accept) is one ZooError
    line instead of the full usage text, and a config's class that needs a missing extra is its `MissingDependency`
    alone (jsonargparse's error would bury it in the whole given value)."""
    try:
        return ZooLightningCLI(args=args)
    except argparse.ArgumentError as exc:
        missing = as_missing_dependency(exc)
        if missing is not None:
            raise missing from None
        lines = [line.strip() for line in str(exc).splitlines()]
        verb = (args or sys.argv[1:] or ["fit"])[0]
        hint = getattr(exc, "zoo_hint", "")  # it says where the option was: the value jsonargparse repeats is noise
        message = " ".join(line for line in lines
                           if line and not _NOISE.match(line) and not (hint and line.startswith("Given value:")))
        raise ZooError(f"zoo {verb}: {message}{hint} (see `zoo {verb} --help`)") from None
