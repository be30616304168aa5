"""DataLoader workers of the training DataModules: a SIGTERM that is not their trainer's is left to the trainer."""

from __future__ import annotations

import os
import signal
import threading


def ignore_foreign_sigterm(worker_id: int) -> None:
    """``worker_init_fn`` of the zoo's training loaders: the worker ignores a SIGTERM that its trainer did not send.

    A scheduler that stops a job signals every process of it (Slurm's scancel, systemd's stop), the DataLoader
    workers included. PyTorch's workers exit quietly on their parent's SIGTERM (its ``terminate()`` at shutdown)
    but die of anyone else's, and the trainer's step then fails ("DataLoader worker ... is killed by signal:
    Terminated") instead of ending and saving ``interrupted.ckpt`` (`zoo.training.cli.InterruptCheckpoint`).
    Here SIGTERM is blocked in the worker and taken by a thread that exits the worker when the parent sent it,
    as PyTorch does, and drops it otherwise: the trainer, which got the same signal, shuts its workers down.
    Where Python has no ``sigwaitinfo`` (macOS, Windows) the worker keeps PyTorch's behaviour.
    """
    if not hasattr(signal, "sigwaitinfo"):
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_exit_on_parents_sigterm, args=(os.getppid(),), daemon=True,
                     name="zoo-worker-sigterm").start()


def _exit_on_parents_sigterm(parent: int) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)
