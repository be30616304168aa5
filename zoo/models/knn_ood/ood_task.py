"""``zoo eval MODEL --task ood``: the paper's OOD evaluation.

The kNN bank and the other scorers are fitted on the ID *training* split (eval transform, as the authors'
feature extraction); ID test images are the positives; each ``--ood`` folder is one OOD set. The ID data must have
separate train and test splits with the same classes (`zoo.data.images.open_train_test`; the OOD sets are read by
`zoo.data.images.open_ood`), matched to the model's class names when it records them
(`zoo.data.labels.to_model_labels`); ID data of other classes is scored for OOD all the same (the scorers
need its labels only among themselves), and its ``id_accuracy`` is null. Metrics use the paper's convention (ID
positive; see `zoo.metrics.ood`). JSON::

    {"id_accuracy": f | null, "k": int, "results": [{"ood": NAME, "scorer": S, "fpr95": f, "auroc": f,
     "aupr_in": f, "aupr_out": f}, ...], "average": [{"scorer": S, ...}], "n_id_train": int, "n_id_test": int,
     "n_ood": {NAME: int}, "labels_from": "model class names" | "sorted folder names" | UNMATCHED,
     "classifier": "trained" | "untrained"}

A model whose config marks its classifier ``untrained`` (a converted SupCon checkpoint, whose ``fc`` the authors
never trained) is scored by the feature scorers only: the logit scorers (MSP, energy) are left out of the default
list and refused when asked for, and its ID accuracy is null.

and ``ood_scores_<scorer>.png`` histograms beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...argtypes import positive_int
from ...data.catalog import catalog
from ...data.embedded import EMBEDDED
from ...data.images import open_ood, open_train_test
from ...data.labels import UNMATCHED, labels_note, to_model_labels
from ...data.transforms import eval_transform
from ...data.views import TransformView, seeded_subset
from ...errors import ZooError
from ...eval.base import EvalTask
from ...metrics.ood import ood_metrics
from .features import extract
from .model import UNTRAINED
from .scorers import Features, build_scorers


DEFAULT_SCORERS = "knn,msp,energy,mahalanobis"
LOGIT_SCORERS = ("msp", "energy")


def scorer_names(option: str, classifier: str) -> list[str]:
    """The scorers to run: ``option`` split on commas; for an ``untrained`` classifier the logit scorers are
    dropped from the default list and refused when named."""
    names = [s.strip() for s in option.split(",") if s.strip()]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ZooError(f"--scorers names {', '.join(twice)} more than once; name each scorer once")
    if classifier != UNTRAINED:
        return names
    if option == DEFAULT_SCORERS:
        return [n for n in names if n not in LOGIT_SCORERS]
    if asked := [n for n in names if n in LOGIT_SCORERS]:
        raise ZooError(f"--scorers {','.join(asked)}: this model's classifier was never trained (its config says "
                       f"classifier: untrained, as for a converted SupCon checkpoint), so its logits mean nothing; "
                       f"score it with --scorers knn,mahalanobis, or fit a linear probe first")
    return names


def same_data(a: str, b: str) -> bool:
    """Whether the data options ``a`` and ``b`` name one dataset: the same text, or paths of which one is, or is
    inside, the other once resolved. A catalogue or embedded name is told apart from other names and paths by
    name only (finding its files would verify and unpack them)."""
    if a == b:
        return True
    if {a, b} & {*catalog(), *EMBEDDED}:
        return False
    a_path, b_path = (Path(s).expanduser().resolve() for s in (a, b))
    return a_path.is_relative_to(b_path) or b_path.is_relative_to(a_path)


class OODTask(EvalTask):
    name = "ood"

    def __init__(self, **options):
        """The options (`EvalTask`); an OOD set that is the ID data (`same_data`: the same dataset, or a folder
        inside or around it, as ``DATA/test``) is refused: it would be scored against itself."""
        super().__init__(**options)
        o = self.options
        for ood in map(str, o.ood):
            if same_data(ood, str(o.id_data)):
                raise ZooError(f"task 'ood': ood={ood!r} is the ID data id_data={o.id_data!r} (the same dataset, or "
                               f"a folder inside or around it): it would score the ID data against itself; give OOD "
                               f"sets other than the ID data")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--id-data", required=True,
                            help="ID data with separate splits: a folder (or .tar.gz) with train/<class>/ and "
                                 "test/<class>/, an IDX folder, a catalogue name (cifar10_jpeg) or "
                                 "shapes (embedded)")
        parser.add_argument("--ood", action="append", required=True, metavar="PATH",
                            help="OOD set: a folder of images (recursive), an IDX folder, a catalogue name "
                                 "(fashion_mnist, biq2021_subset) or skimage_textures (embedded); repeat for "
                                 "several")
        parser.add_argument("--k", type=positive_int, default=50,
                            help="neighbour rank for the kNN score (paper CIFAR-10: 50)")
        parser.add_argument("--alpha", type=float, default=1.0, help="share of ID training features in the bank")
        parser.add_argument("--scorers", default=DEFAULT_SCORERS,
                            help="comma-separated: knn, msp, energy, mahalanobis (a model with an untrained "
                                 "classifier: knn and mahalanobis only)")
        parser.add_argument("--backend", default="auto", help="kNN index: auto, faiss, faiss-ivf, torch")
        parser.add_argument("--id-train-subset", type=positive_int, default=None,
                            help="use N ID training images (seeded)")
        parser.add_argument("--id-test-subset", type=positive_int, default=None, help="use N ID test images (seeded)")
        parser.add_argument("--ood-subset", type=positive_int, default=None,
                            help="use at most N images per OOD set (seeded)")

    def _loader(self, ds, subset):
        view = TransformView(ds, seeded_subset(len(ds), subset, 0), eval_transform(self.model.input_spec))
        return self.ctx.loader(view)

    def setup(self, model, ctx) -> None:
        if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
            raise ZooError(f"{type(model).__name__} has no forward_features/forward_head: the ood task needs a "
                           f"classifier backbone (e.g. knn_ood_resnet18)")
        super().setup(model, ctx)
        o = self.options
        self.classifier = getattr(model, "zoo_cfg", {}).get("classifier", "trained")
        self.scorers = build_scorers(scorer_names(o.scorers, self.classifier), k=o.k, alpha=o.alpha,
                                     backend=o.backend)
        model.eval().to(ctx.device)
        id_train, id_test = open_train_test(o.id_data)
        self.labels_from = to_model_labels(model, id_train, id_test, unmatched_ok=True)
        train = self._loader(id_train, o.id_train_subset)
        self.sets = [("id", self._loader(id_test, o.id_test_subset))]
        for path in o.ood:  # open every set before the expensive feature extraction, so bad paths fail fast
            ds = open_ood(path)
            name = ds.name
            while name in {n for n, _ in self.sets}:
                name += "_"
            self.sets.append((name, self._loader(ds, o.ood_subset)))
        self.n_id_train = len(train.dataset)
        if any(s.name == "knn" for s in self.scorers) and o.k > int(o.alpha * self.n_id_train):
            raise ZooError(f"--k {o.k} is larger than the kNN bank ({int(o.alpha * self.n_id_train)} ID training "
                           f"features); lower --k or use more training data")
        feats = extract(model, train, ctx.device, ctx.amp_dtype,
                        progress=lambda it: ctx.progress(it, desc="ood:id-train features", total=len(train)))
        for s in self.scorers:
            s.setup(feats)

    def inputs(self):
        yield from self.sets

    def score(self, batch):
        x, y = batch
        f = self.model.forward_features(x.to(self.ctx.device)).float()
        z = self.model.forward_head(f).float()
        feats = Features(f, z, torch.as_tensor(y))
        out = {s.name: s.score(feats) for s in self.scorers}
        out.update(pred=z.argmax(1), label=torch.as_tensor(y))
        return out

    def finalize(self, scores):
        idd = scores["id"]
        results = []
        for name, s in scores.items():
            if name == "id":
                continue
            for sc in self.scorers:
                results.append({"ood": name, "scorer": sc.name, **ood_metrics(idd[sc.name], s[sc.name])})
        average = []
        for sc in self.scorers:
            rows = [r for r in results if r["scorer"] == sc.name]
            average.append({"scorer": sc.name, **{m: float(np.mean([r[m] for r in rows]))
                                                  for m in ("fpr95", "auroc", "aupr_in", "aupr_out")}})
        return {
            "id_accuracy": (None if self.labels_from == UNMATCHED or self.classifier == UNTRAINED
                            else float(np.mean(idd["pred"] == idd["label"]))),
            "k": self.options.k,
            "results": results,
            "average": average,
            "alpha": self.options.alpha,
            "n_id_train": self.n_id_train,
            "n_id_test": int(idd["label"].size),
            "n_ood": {name: int(s["pred"].size) for name, s in scores.items() if name != "id"},
            "labels_from": self.labels_from,
            "classifier": self.classifier,
        }

    def table(self, r) -> str:
        acc = ("n/a (untrained classifier)" if r.get("classifier") == UNTRAINED
               else "n/a" if r["id_accuracy"] is None else f"{100 * r['id_accuracy']:.2f} %")
        bank = max(1, int(r["alpha"] * r["n_id_train"]))  # the kNN bank: an alpha share of the training features
        lines = [(f"ID accuracy {acc} (n={r['n_id_test']}{labels_note(r)}); kNN k={r['k']}, "
                  f"alpha={r['alpha']}, bank {bank} of {r['n_id_train']} training features; FPR95 (ID positive) / "
                  f"AUROC / AUPR-in / AUPR-out, %"),
                 f"{'OOD set':<20} {'scorer':<12} {'FPR95':>7} {'AUROC':>7} {'AUPR-in':>8} {'AUPR-out':>8}"]
        for row in r["results"] + [{"ood": "average", **a} for a in r["average"]]:
            lines.append(f"{row['ood']:<20} {row['scorer']:<12} {100 * row['fpr95']:7.2f} {100 * row['auroc']:7.2f} "
                         f"{100 * row['aupr_in']:8.2f} {100 * row['aupr_out']:8.2f}")
        return "\n".join(lines)

    def artifacts(self, result, scores, out_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ...io import atomic_path

        paths = []
        for sc in self.scorers:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for name, s in scores.items():
                ax.hist(s[sc.name], bins=60, alpha=0.5, density=True, label="ID test" if name == "id" else name)
            ax.set_xlabel(f"{sc.name} score (higher = more in-distribution)")
            ax.set_ylabel("density")
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = out_dir / f"ood_scores_{sc.name}.png"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", dpi=110)
            plt.close(fig)
            paths.append(path)
        return paths
