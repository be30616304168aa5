"""``zoo eval MODEL --task iqa --data PATH [--crops N] [--json OUT]``: blind IQA correlations on a dataset.

``PATH`` is a catalogue name (``biq2021_subset``) or a folder in any layout `zoo.data.iqa.read_table` reads: a
folder with images and one CSV (image column ``image`` / ``img_name`` / ``dis_img_path``, score column ``mos`` /
``mos_0_1`` / ``score``, or named with ``--image-col`` / ``--score-col``), or the layouts of BIQ2021, KonIQ-10k,
LIVE Challenge, LIVE, CSIQ, TID2013 and KADID-10k (``--csv``, ``--image-col`` or ``--score-col`` with
``--layout auto`` select the csv layout, whatever marker files the folder holds). Datasets with an official split
are scored on its ``test`` part unless ``--split`` says otherwise. Each image is scored as the mean regression
output over ``--crops`` random crops (seeded by ``--crop-seed`` and a hash of the image file, so an image gets the
same crops whichever rows are scored). JSON::

    {"srcc": f, "plcc": f, "krcc": f, "n": int}   (+ "plcc_logistic": f with --logistic, "target_sign": -1 if so)

The correlations are taken against ``target_sign`` x the true score, and ``target_sign`` is written only when it is
-1. ``--target-sign auto`` gives -1 for lower-is-better (DMOS) data (LIVE, CSIQ, a CSV whose score column is
``dmos``, pyiqa's LIVE meta CSV, which keeps DMOS in a column named ``mos``), so that a model predicting quality,
higher = better (every published zoo weight), gets positive correlations where it agrees with the observers; pass
``--target-sign 1`` for a model trained on that DMOS scale itself (it predicts DMOS). pyiqa's KADID-10k CSV, whose
``dmos`` column is a 1-5 rating (higher = better), gets +1 (`zoo.data.iqa.PYIQA_DIRECTIONS`); pass
``--target-sign -1`` for a CSV of your own that holds DMOS under another column name.

A scatter plot (predicted versus true score) is written beside the JSON as ``<stem>_scatter.png`` (``iqa.json``:
``iqa_scatter.png``), so evaluations writing their JSON into one folder keep their own plots; with ``--out-dir`` and
no ``--json`` it is ``iqa_scatter.png``. A missing image is an error naming the file; so are fewer than 3 images and
true scores that are all equal (no correlation is defined), found before any image is scored. The metrics refuse
constant predictions too, so no NaN reaches the report.
"""

from __future__ import annotations

import numpy as np
import torch

from ...data.iqa import read_table
from ...data.iqa_crops import IQACrops
from ...errors import ZooError
from ...eval.base import EvalTask
from ...metrics.iqa import check_values, iqa_metrics


class IQATask(EvalTask):
    name = "iqa"

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--data", required=True, help="catalogue name or folder (images + CSV, or a known layout)")
        parser.add_argument("--crops", type=int, default=4, help="random crops per image, averaged (paper: 4)")
        parser.add_argument("--split", default="auto", choices=["auto", "all", "train", "val", "test"],
                            help="rows to score; auto: the official test split when the data has one, else all")
        parser.add_argument("--layout", default="auto", help="auto, csv, biq2021, koniq10k, livec, live, csiq, "
                                                             "tid2013, kadid10k")
        parser.add_argument("--csv", default=None, help="the CSV to read (csv layout, which --layout auto then "
                                                        "takes; default: the folder's only CSV)")
        parser.add_argument("--image-col", default=None, help="image column of the CSV (any case; selects the csv "
                                                              "layout under --layout auto)")
        parser.add_argument("--score-col", default=None, help="score column of the CSV (any case; selects the csv "
                                                              "layout under --layout auto)")
        parser.add_argument("--resize", type=int, nargs=2, default=None, metavar=("H", "W"),
                            help="resize images before cropping (paper: 512 512 for BID)")
        parser.add_argument("--logistic", action="store_true", help="also report PLCC after a 4-parameter logistic fit")
        parser.add_argument("--crop-seed", type=int, default=0, help="seed of the evaluation crops")
        parser.add_argument("--target-sign", default="auto", choices=["auto", "1", "-1"],
                            help="correlate predictions with this sign times the true scores; auto: -1 for "
                                 "lower-is-better (DMOS) data (LIVE, CSIQ, a CSV column named dmos but in pyiqa's "
                                 "KADID-10k CSV), 1 otherwise; "
                                 "1 for a model trained on that DMOS; -1 for a CSV of your own whose score column "
                                 "holds DMOS under another name (pyiqa's LIVE meta CSV is recognised)")

    def setup(self, model, ctx) -> None:
        if not (hasattr(model, "predict") and hasattr(model, "input_spec")):
            raise ZooError(f"{type(model).__name__} cannot score image quality: the iqa task needs a PMT-IQA "
                           f"model (e.g. pmt_iqa_efficientnet_lite0.biq2021)")
        if self.options.crops < 1:
            raise ZooError(f"--crops must be >= 1, got {self.options.crops}")
        super().setup(model, ctx)
        o = self.options
        table = read_table(o.data, o.layout, o.csv, o.image_col, o.score_col)
        split = ("test" if table.split is not None else "all") if o.split == "auto" else o.split
        table = self.split_rows(table, split)
        check_values(table.scores, f"scores of {o.data} [{split}]",
                     "score a set of images whose true scores differ (check the score column and --split)")
        table.check_files()
        self.data, self.split = table, split
        auto = 1 if table.higher_better else -1
        self.target_sign = auto if o.target_sign == "auto" else int(o.target_sign)
        spec = model.input_spec
        no_levels = torch.zeros(len(table), dtype=torch.long)  # evaluation does not use quality levels
        crops = IQACrops(table, np.arange(len(table)), no_levels, spec["input_size"][-1], spec["mean"], spec["std"],
                         o.crops, train=False, resize=o.resize, seed=o.crop_seed)
        batch = max(1, ctx.batch_size // o.crops)
        self.loader = ctx.loader(crops, batch_size=batch)  # sharded across processes under torchrun
        model.eval().to(ctx.device)

    def split_rows(self, table, split: str):
        """The rows of ``table`` in ``split`` (``all``: every row); a split the data lacks is an error listing the
        split labels it has."""
        if split == "all":
            return table
        if table.split is None:
            raise ZooError(f"{self.options.data} has no official split; use --split all")
        labels = np.asarray(table.split)
        if not (labels == split).any():
            found = ", ".join(repr(v) for v in sorted(set(table.split)))
            raise ZooError(f"{self.options.data} has no rows in split {split!r} (its split labels: {found}); label the "
                           f"rows to score {split!r}, or choose another --split (all: every row)")
        return table.subset(np.flatnonzero(labels == split))

    def inputs(self):
        yield "data", self.loader

    def score(self, batch):
        crops, score, _, rows = batch
        return {"pred": self.model.predict(crops.to(self.ctx.device)), "score": score, "row": rows}

    def finalize(self, scores) -> dict:
        s = scores["data"]
        m = iqa_metrics(s["pred"], self.target_sign * s["score"], logistic=self.options.logistic)
        flipped = {"target_sign": self.target_sign} if self.target_sign != 1 else {}  # +1 goes without saying
        return {**m, "n": int(s["pred"].size), **flipped}

    def table(self, r) -> str:
        extra = f"  PLCC (logistic) {r['plcc_logistic']:.4f}" if "plcc_logistic" in r else ""
        extra += "  (against -score: lower score = better)" if r.get("target_sign", 1) < 0 else ""
        return (f"{self.data.name} [{self.split}], n={r['n']}, {self.options.crops} crops/image: "
                f"SRCC {r['srcc']:.4f}  PLCC {r['plcc']:.4f}  KRCC {r['krcc']:.4f}{extra}")

    def artifacts(self, result, scores, out_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ...io import atomic_path

        s = scores["data"]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(s["score"], s["pred"], s=8, alpha=0.6)
        lo, hi = self.data.score_range
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        better = "higher" if self.data.higher_better else "lower"
        ax.set_xlabel(f"true score ({self.data.name}, {better} = better)")
        ax.set_ylabel("predicted score")
        ax.set_title(f"SRCC {result['srcc']:.3f}  PLCC {result['plcc']:.3f}  n={result['n']}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{self.ctx.artifact_stem('iqa')}_scatter.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return [path]

