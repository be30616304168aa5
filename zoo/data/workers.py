"""DataLoader workers of the training DataModules: they leave SIGTERM to the trainer process."""

from __future__ import annotations

import signal


def ignore_sigterm(worker_id: int) -> None:
    """``worker_init_fn`` of the zoo's training loaders: the worker ignores SIGTERM.

    A scheduler that stops a job signals every process of it (Slurm's scancel, systemd's stop), the DataLoader
    workers included. A worker forked before Lightning installs its handler dies of the signal, and the trainer's
    step then fails ("DataLoader worker ... is killed by signal: Terminated") instead of ending and saving
    ``interrupted.ckpt`` (`zoo.training.cli.InterruptCheckpoint`). Ignoring it leaves the stop to the trainer,
    which shuts its workers down; a worker whose trainer is gone still exits by itself (PyTorch's watchdog).
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
