"""The progressive multi-task objective: quality levels, task weights (easy -> hard or fixed), the loss, the
authors' learning-rate steps.

Loss = lambda_reg * L1(score, MOS) + lambda_cls * CE(level logits, level), on the dataset's own score scale (the
authors do not normalise scores). Schedules:

* ``progressive`` (the paper's easy-to-hard schedule; the authors' ``dyn_weight``): at epoch t of T,
  lambda_reg = t / (T - 1) and lambda_cls = 1 - lambda_reg, so training starts as pure classification and ends as
  pure regression, linearly in epochs.
* ``fixed``: constant weights; the authors' Optuna values are lambda_reg = 0.9419, lambda_cls = 0.9603.
* ``regression``: lambda_reg = 1, lambda_cls = 0 (the single-task ablation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import ZooError

SCHEDULES = ("progressive", "fixed", "regression")
AUTHORS_FIXED = (0.9419036108703593, 0.9602831644731372)  # learn.py --lambda1 / --lambda2


def task_weights(schedule: str, epoch: int, max_epochs: int | None, fixed=AUTHORS_FIXED) -> tuple[float, float]:
    """(lambda_reg, lambda_cls) at ``epoch`` (0-based) of ``max_epochs``; ``progressive`` needs ``max_epochs`` to
    be a positive integer (Lightning gives None or -1 when training is bounded by steps or time instead)."""
    if schedule == "progressive":
        if not isinstance(max_epochs, int) or max_epochs < 1:
            raise ZooError(f"the progressive schedule needs a positive number of epochs, got max_epochs="
                           f"{max_epochs!r}; pass Trainer(max_epochs=N) (CLI: --trainer.max_epochs N) or use "
                           f"schedule 'fixed' or 'regression'")
        lam = 1.0 if max_epochs <= 1 else min(epoch / (max_epochs - 1), 1.0)
        return lam, 1.0 - lam
    if schedule == "fixed":
        return float(fixed[0]), float(fixed[1])
    if schedule == "regression":
        return 1.0, 0.0
    raise ZooError(f"unknown schedule {schedule!r}; choose {', '.join(SCHEDULES)}")


def pmt_loss(out: dict[str, torch.Tensor], mos: torch.Tensor, levels: torch.Tensor, lambda_reg: float,
             lambda_cls: float) -> dict[str, torch.Tensor]:
    """``out`` = {"mos": [N], "logits": [N, L]}; mos [N]; levels [N] -> {"loss", "l1", "ce"} (scalars)."""
    l1 = F.l1_loss(out["mos"].float(), mos.float())
    ce = F.cross_entropy(out["logits"].float(), levels)
    return {"loss": lambda_reg * l1 + lambda_cls * ce, "l1": l1, "ce": ce}


def lr_factor(epoch: int, step: int = 6, gamma: float = 0.1) -> float:
    """The authors' learning-rate multiplier for ``epoch`` (0-based). After epoch t they rebuild the optimiser with
    lr / 10 ** (t // 6), so epochs 0-6 run at lr, 7-12 at lr / 10, 13-18 at lr / 100, ..."""
    return gamma ** (max(epoch - 1, 0) // step)
