"""``zoo eval ARTIFACT --task backdoor --data PATH``: CTA and ASR of networks trained on a distilled set.

``ARTIFACT`` is a distilled-set file or a manifest key (``doorping_distilled.<tag>``); the task overrides
`EvalTask.load`, so the harness never tries to build an ``nn.Module`` from it. ``--models`` fresh networks of
``--arch`` (default: the distillation network; another one gives the cross-architecture result, as the authors'
evaluation pool ``doorping_vgg11`` and ``doorping_resnet18`` do) are trained on the set with the paper's protocol
(`zoo.models.doorping.evaluate`), then every test image is scored clean and with the trigger stamped. Sets without a
trigger (attack ``none``) are scored with NAIVEATTACK's white patch, as the authors' code does. JSON::

    {"cta": f, "cta_std": f, "asr": f, "asr_std": f, "asr_incl_target": f, "asr_incl_target_std": f,
     "per_model": [{"cta", "asr", "asr_incl_target"}], "models": int, "arch": str, "epochs": int, "augment": str,
     "dataset": str, "n_test": int, "method": str, "attack": str, "ipc": int, "target_class": int, "trigger": str}

``asr`` leaves out test images of the target class (the usual definition); ``asr_incl_target`` keeps them (the
authors'). A PNG grid of the distilled images with the trigger is written beside the JSON, named after it
(``--json out/x.json`` gives ``out/x.grid.png``), or into ``--out-dir`` (named after the JSON, else after the set);
with neither option no grid is written.

Training protocol: the authors' evaluation (fact sheet A.4), 300 epochs by default (``--epochs``; their DSA and DM
protocols train 1000, which is not the default) and augmentation by the set's method when ``--augment`` is not given
(DC: none, as baadd's ``get_daparam`` for a ConvNet; DSA and DM: DSA, as their evaluations train).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...argtypes import positive_float, positive_int
from ...errors import ZooError
from ...eval.base import EvalTask
from ...registry import create_model, paper_of
from . import PAPER
from .attack import naive_trigger, stamp
from .augment import DSA
from .evaluate import backdoor_scores, summarise, train_network
from .real_images import STATS, load_real, renormalise
from .synset import DistilledSet, load_distilled

EVAL_POOL = ("doorping_vgg11", "doorping_resnet18")  # the authors' cross-architecture pool (eval_mode 'M')
NETWORKS = ", ".join(PAPER.models)  # every DOORPING network (the pool included), for the help and the errors
AUGMENT = {"dc": "none", "dsa": "dsa", "dm": "dsa"}  # --augment by the set's method, when not given


class BackdoorTask(EvalTask):
    name = "backdoor"

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.description = ("writes the result to --json and a PNG grid of the set and its trigger beside it "
                              "(x.json: x.grid.png), or into --out-dir (named after the JSON, else after the set); "
                              "with neither option no grid is written")
        parser.add_argument("--data", required=True,
                            help="test data of the set's dataset: catalogue name (fashion_mnist, cifar10_jpeg), IDX "
                                 "folder, image tree or archive")
        parser.add_argument("--arch", default=None,
                            help=f"network to train (default: the set's distillation network): one of {NETWORKS}; "
                                 f"the authors' cross-architecture evaluation pool is {' and '.join(EVAL_POOL)}")
        parser.add_argument("--models", type=int, default=10, help="fresh networks to train (paper code: 10)")
        parser.add_argument("--epochs", type=int, default=300, help="training epochs per network (default 300, the DC "
                                 "protocol; the DSA and DM code train 1000)")
        parser.add_argument("--augment", default=None, choices=["none", "dsa"],
                            help="augmentation while training (default: the set's method's, DC: none, DSA and DM: "
                                 "dsa; their code trains DSA/DM evaluations 1000 epochs: add --epochs 1000)")
        parser.add_argument("--lr", type=positive_float, default=0.01,
                            help="SGD learning rate (decayed x0.1 after half)")
        parser.add_argument("--trigger-of", default=None,
                            help="score with the trigger of this other distilled set (file or key) instead of the "
                                 "set's own: e.g. networks trained on a clean set against a DOORPING trigger")
        parser.add_argument("--trigger-size", type=positive_int, default=None,
                            help="side of the white patch that scores a set without a trigger (attack none; "
                                 "default 2, the paper's); a set with a trigger is scored with its own")
        parser.add_argument("--test-subset", type=positive_int, default=None,
                            help="score N >= 1 test images (seeded; default all)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the networks' initialisation and batches")
        parser.add_argument("--compile", action="store_true",
                            help="torch.compile the networks' training step (faster for many epochs; the first "
                                 "step compiles, about a minute on a CPU)")

    def load(self, source: str) -> DistilledSet:
        self.source = str(source)
        return load_distilled(source, use="--task backdoor evaluates a DOORPING distilled set")

    def setup(self, model, ctx) -> None:
        if not isinstance(model, DistilledSet):
            raise ZooError(f"the backdoor task evaluates a distilled set (a .safetensors file from "
                           f"zoo.models.doorping or a doorping_distilled.* key), not a {type(model).__name__}")
        super().setup(model, ctx)
        o, synset = self.options, model
        if o.models < 1 or o.epochs < 1:
            raise ZooError(f"--models and --epochs must be >= 1, got {o.models} and {o.epochs}")
        arch = o.arch or synset.arch
        if paper_of(arch).id != "doorping":
            raise ZooError(f"--arch {arch} is not a DOORPING network; use one of {NETWORKS}")
        c, h, _ = synset.shape
        test = load_real(o.data, "test", image_size=h)
        if test.name in STATS and test.name != synset.dataset:
            raise ZooError(f"--data {o.data} is {test.name} but the set was distilled from {synset.dataset}: point "
                           f"--data at the set's dataset ({synset.dataset})")
        if test.shape != synset.shape:
            raise ZooError(f"--data {o.data} has {list(test.shape)} images but the set has {list(synset.shape)}: "
                           f"point --data at the set's dataset ({synset.dataset})")
        if test.num_classes != synset.num_classes:
            raise ZooError(f"--data {o.data} has {test.num_classes} classes but the set {synset.num_classes}: "
                           f"point --data at the set's dataset ({synset.dataset})")
        test.images = renormalise(test.images, test.mean, test.std, synset.mean, synset.std)
        if o.test_subset is not None:
            idx = torch.randperm(len(test.labels), generator=torch.Generator().manual_seed(o.seed))[:o.test_subset]
            test.images, test.labels = test.images[idx], test.labels[idx]
        self.test = test
        own = f"the trigger of --trigger-of {o.trigger_of}" if o.trigger_of is not None else (
            f"its own {synset.attack} trigger" if synset.trigger is not None else None)
        if o.trigger_size is not None and own:
            raise ZooError(f"--trigger-size sizes the white patch of a set without a trigger, but this set is scored "
                           f"with {own}; leave --trigger-size out")
        if o.trigger_of is not None:
            other = load_distilled(o.trigger_of, use="--trigger-of takes a DOORPING distilled set")
            if other.trigger is None or other.shape != synset.shape or other.mean != synset.mean:
                raise ZooError(f"--trigger-of {o.trigger_of} needs an attacked set of the same dataset as the "
                               f"evaluated one ({synset.dataset}, {list(synset.shape)})")
            self.trigger, self.mask = other.trigger, other.trigger_mask
            self.trigger_desc = f"{other.attack} (of {o.trigger_of})"
        elif synset.trigger is not None:
            self.trigger, self.mask, self.trigger_desc = synset.trigger, synset.trigger_mask, f"{synset.attack} (set's)"
        else:
            side = o.trigger_size or 2
            self.trigger, self.mask = naive_trigger(h, side, synset.mean, synset.std)
            self.trigger_desc = f"white patch {side}x{side} (the set carries none)"
        torch.manual_seed(o.seed)
        self.augment = o.augment or AUGMENT[synset.method]
        dsa = DSA() if self.augment == "dsa" else None
        args = {"channels": c, "num_classes": synset.num_classes, "image_size": h, "mean": synset.mean,
                "std": synset.std}
        self.arch, self.nets = arch, []
        x, y = synset.images.to(ctx.device), synset.labels.to(ctx.device)
        for i in range(o.models):
            desc = f"backdoor: train {arch} {i + 1}/{o.models}"
            net = create_model(arch, **args).to(ctx.device)
            self.nets.append(train_network(net, x, y, epochs=o.epochs, lr=o.lr, dsa=dsa,
                                           compile=o.compile,
                                           progress=lambda it, d=desc: ctx.progress(it, desc=d, total=o.epochs)))

    def inputs(self):
        def batches(triggered: bool):
            for x, y in zip(self.test.images.split(self.ctx.batch_size), self.test.labels.split(self.ctx.batch_size)):
                yield (stamp(x, self.trigger, self.mask) if triggered else x), y

        n = -(-len(self.test.labels) // self.ctx.batch_size)
        yield "clean", _Sized(lambda: batches(False), n)
        yield "triggered", _Sized(lambda: batches(True), n)

    def score(self, batch):
        x, y = batch
        x = x.to(self.ctx.device)
        return {"pred": torch.stack([net(x).argmax(1) for net in self.nets], 1), "label": y}

    def finalize(self, scores):
        target, y = self.model.target_class, scores["clean"]["label"]
        per_model = [backdoor_scores(scores["clean"]["pred"][:, m], scores["triggered"]["pred"][:, m], y, target)
                     for m in range(len(self.nets))]
        s = self.model
        return {**summarise(per_model), "per_model": per_model, "models": len(self.nets), "arch": self.arch,
                "epochs": self.options.epochs, "augment": self.augment, "dataset": s.dataset,
                "n_test": int(np.asarray(y).size), "method": s.method, "attack": s.attack, "ipc": s.ipc,
                "target_class": target, "trigger": self.trigger_desc}

    def table(self, r) -> str:
        return (f"{r['dataset']} {r['method'].upper()} ipc {r['ipc']}, attack {r['attack']}; {r['models']} x "
                f"{r['arch']} trained {r['epochs']} epochs; {r['n_test']} test images; trigger: {r['trigger']}\n"
                f"CTA {100 * r['cta']:.2f} +- {100 * r['cta_std']:.2f} %   ASR {100 * r['asr']:.2f} +- "
                f"{100 * r['asr_std']:.2f} % (target-class images excluded)   ASR incl. target "
                f"{100 * r['asr_incl_target']:.2f} %")

    def artifacts(self, result, scores, out_dir):
        """The grid, named after the JSON (``x.json`` -> ``x.grid.png``), so that evaluations writing into one
        folder keep their own grids; without --json, after the set (its file's stem, or its manifest key)."""
        source = getattr(self, "source", None) or "distilled_set"
        stem = self.ctx.artifact_stem(Path(source).stem if Path(source).exists() else source)
        return [self.model.grid(out_dir / f"{stem}.grid.png")]


class _Sized:
    """An iterable of batches with a length (the harness shows progress with it)."""

    def __init__(self, make, n: int):
        self.make, self.n = make, n

    def __iter__(self):
        return self.make()

    def __len__(self) -> int:
        return self.n
