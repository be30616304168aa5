"""`zoo fit | validate | test | predict`: LightningCLI in subclass mode for models and data.

Configs name any LightningModule and LightningDataModule by ``class_path``. Each run writes into its own folder,
``runs/<config name>/<timestamp>`` (or ``$ZOO_RUNS_DIR/...``), unless ``--trainer.default_root_dir`` is given:
the resolved ``config.yaml``, Lightning checkpoints (the newest, written after every training epoch, and
``last.ckpt`` linked to it, to resume with ``--ckpt_path last`` and the
same root dir) and, after ``fit``, the trained model as a zoo folder (``model/``: config.json +
model.safetensors) that `zoo.from_pretrained` loads.
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
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from ..errors import ZooError


class ExportModel(pl.Callback):
    """After ``fit``, save the LightningModule's ``model`` (a zoo model) to ``<run dir>/model`` on rank 0."""

    def __init__(self, enabled: bool = True, dirname: str = "model"):
        self.enabled, self.dirname = enabled, dirname

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = getattr(pl_module, "model", None)
        if not (self.enabled and trainer.is_global_zero and getattr(model, "zoo_cfg", None)):
            return
        from ..checkpoint import save_pretrained

        out = Path(trainer.default_root_dir) / self.dirname
        save_pretrained(model, out, metadata={"epochs": trainer.current_epoch, "global_step": trainer.global_step})


def _run_dir(config_files) -> str:
    name = Path(str(config_files[-1])).stem if config_files else "run"
    base = Path(os.environ.get("ZOO_RUNS_DIR", "runs")) / name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = base / stamp, 1
    while path.exists():
        path, n = base / f"{stamp}-{n}", n + 1
    return str(path)


class ZooLightningCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
            auto_configure_optimizers=False,
            parser_kwargs={"prog": "zoo", "exit_on_error": False},  # usage errors: one line (see `main`)
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # the newest checkpoint after every training epoch, validated or not, with last.ckpt linked to it: a run
        # killed midway resumes from its last finished epoch (Lightning saves "last" only beside another checkpoint)
        parser.set_defaults({"checkpoint.save_last": "link", "checkpoint.save_top_k": 1,
                             "checkpoint.save_on_train_epoch_end": True})
        parser.add_lightning_class_args(ExportModel, "export")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        ckpt = cfg.get("ckpt_path")
        if not cfg.trainer.get("default_root_dir"):
            if ckpt == "last":  # a new run folder has nothing to resume: Lightning would warn and start afresh
                raise ZooError("--ckpt_path last resumes the run in --trainer.default_root_dir; give that folder "
                               "(runs/<config name>/<timestamp> by default)")
            cfg.trainer.default_root_dir = self._new_run_dir = _run_dir(cfg.get("config") or [])
        root = cfg.trainer.default_root_dir
        _loggers_into(root, cfg.trainer.get("logger"))
        if not cfg.checkpoint.get("dirpath"):
            cfg.checkpoint.dirpath = str(Path(root) / "checkpoints")
        if ckpt and ckpt not in ("last", "best", "hpc", "registry") and not Path(ckpt).is_file():
            raise ZooError(f"--ckpt_path {ckpt} does not exist: give a Lightning .ckpt file, or `last` to resume "
                           f"the newest checkpoint of --trainer.default_root_dir")

    def before_fit(self) -> None:
        """Print the run folder, and let the module check the trainer (``check_trainer(trainer)``, e.g. that a
        progressive schedule has epochs to progress over) before the data's setup, which may take minutes."""
        if self.trainer.is_global_zero:
            print(f"zoo: run folder {self.trainer.default_root_dir}", file=sys.stderr)
        check = getattr(self.model, "check_trainer", None)
        if callable(check):
            check(self.trainer)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the verb; if it fails, remove the run folder this CLI made when nothing was written into it (a
        mistake found at data setup leaves no empty ``runs/<config>/<timestamp>/lightning_logs/version_0``)."""
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            new = getattr(self, "_new_run_dir", None)
            if new and self.trainer.is_global_zero and Path(new).is_dir() \
                    and not any(p.is_file() for p in Path(new).rglob("*")):
                shutil.rmtree(new, ignore_errors=True)
                with contextlib.suppress(OSError):  # runs/<config>/ too, when this run was its only one
                    Path(new).parent.rmdir()
            raise

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a ZooError raised inside a constructor (jsonargparse wraps it) is
        re-raised as itself so the CLI prints its one line."""
        try:
            super().instantiate_classes()
        except Exception as exc:
            cause = exc
            while cause is not None and not isinstance(cause, ZooError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None


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


def _quiet_lightning_notices() -> None:
    """Drop two Lightning notices that say nothing about the run: the advertisement for its cloud logger, and the
    warning that `tensorboardX` is not installed (the default logger is then a CSVLogger in the run folder)."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage())
    warnings.filterwarnings("ignore", message=r"Starting from v1\.9\.0, `tensorboardX` has been removed")


def main(args: list[str] | None = None) -> ZooLightningCLI:
    """Run LightningCLI; a usage error (a missing config file, an option a class does not accept) is one ZooError
    line instead of the full usage text."""
    _quiet_lightning_notices()
    try:
        return ZooLightningCLI(args=args)
    except argparse.ArgumentError as exc:
        lines = [line.strip() for line in str(exc).splitlines()]
        verb = (args or sys.argv[1:] or ["fit"])[0]
        raise ZooError(f"zoo {verb}: {' '.join(line for line in lines if line and not _NOISE.match(line))} "
                       f"(see `zoo {verb} --help`)") from None
