"""Dataset distillation under attack, as LightningModules with manual optimisation.

`GradientMatching` (DC; DSA with a ``dsa_strategy``) and `DistributionMatching` (DM) share `Distillation`: the real
training split in memory, the poisoning (1 % of it stamped with the trigger and relabelled to the target class,
*before* the class pools are built, so poisoned images feed the target class), the synthetic images (the only
optimised parameter), the DOORPING trigger and the artifact written at the end of ``fit``.

One training batch is one distillation iteration on a freshly initialised network: ``iterations`` of them make
one epoch (run with ``trainer.max_epochs: 1``). Validation trains ``val_models`` networks on the current set and logs ``val/cta`` and
``val/asr``. At the end of ``fit`` the set is saved to ``output`` (default ``<run dir>/distilled.safetensors``)
with a PNG grid beside it; the zoo's ``zoo eval FILE --task backdoor`` evaluates it.

Fixed against the authors' code (model card): with ``ipc`` 1 the DC schedule has no inner loop, and the trigger
was never optimised; here an inner training phase runs after the last matching step so DOORPING updates it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from torch import nn

from ...errors import ZooError
from ...io import write_json
from ...registry import create_model
from .attack import (ATTACKS, choose_poisoned, naive_trigger, pixel_bounds, random_trigger, select_neuron, stamp,
                     update_trigger)
from .augment import DSA
from .evaluate import backdoor_metrics, summarise, train_network
from .matching import METRICS, class_gradients, dc_loops, match_loss
from .real_images import RealImages
from .synset import DistilledSet


class Distillation(pl.LightningModule):
    """What DC, DSA and DM share (see the module docstring).

    Args:
        iterations: distillation iterations (the authors' ``--Iteration``: 1000 for DC, 20 000 for DM).
        arch: registry name of the distillation network (``doorping_convnet``, ``doorping_alexnet``,
            ``doorping_convnet_in``); a fresh one is built every iteration.
        ipc: synthetic images per class.
        attack: ``none``, ``naive`` (fixed white patch) or ``doorping`` (re-optimised patch).
        target_class, portion, trigger_size: the backdoor's target, the share of the training set poisoned, the
            patch side in pixels (paper code: 0, 0.01, 2).
        alpha, topk, trigger_lr, trigger_steps, trigger_threshold: DOORPING's update (10, 1, 0.08, 1000, 0.5).
        trigger_objective: ``relative`` (the fix) or ``authors`` (their rectified, absolute-threshold update; see
            `zoo.models.doorping.attack.update_trigger`).
        clamp_trigger: keep the trigger in the valid pixel range (the fix; False reproduces the authors' code).
        init: ``noise`` (N(0, 1), the DOORPING code's default) or ``real`` (random real images of each class).
        lr_img, batch_real: the synthetic images' SGD learning rate (momentum 0.5) and real images per class.
        dsa_strategy: differentiable Siamese augmentation families (``none`` disables it).
        val_models, val_epochs, val_test_subset: in-run evaluation (networks, epochs, test images; None: all).
        channels_last: run convolutions in channels-last memory format (faster on CPUs and GPUs; same maths).
        compile: ``torch.compile`` the networks' forward and backward passes (DC's real-image gradients and inner
            loop, the in-run evaluation): the element-wise work around the convolutions is fused; compiled once per
            process (about a minute on a CPU).
        cuda_graph: on a CUDA device, replay DC's inner-loop training steps from a CUDA graph when each epoch is one
            whole batch (see `evaluate.train_network`); ignored elsewhere.
        output: where to write the distilled set (default ``<run dir>/distilled.safetensors``).
    """

    method = ""  # "dc", "dsa" or "dm": what the distilled set records
    exports_model = False  # its result is the distilled set it writes at the end of fit (zoo.training.cli.ExportModel)

    def __init__(self, iterations: int = 1000, arch: str = "doorping_convnet", ipc: int = 10,
                 attack: Literal["none", "naive", "doorping"] = "none", target_class: int = 0,
                 portion: float = 0.01, trigger_size: int = 2, alpha: float = 10.0, topk: int = 1,
                 trigger_lr: float = 0.08, trigger_steps: int = 1000, trigger_threshold: float = 0.5,
                 trigger_objective: Literal["relative", "authors"] = "relative", clamp_trigger: bool = True,
                 init: Literal["noise", "real"] = "noise", lr_img: float = 0.1, batch_real: int = 256,
                 dsa_strategy: str = "none", val_models: int = 1, val_epochs: int = 300,
                 val_test_subset: int | None = 2000, channels_last: bool = True, compile: bool = False,
                 cuda_graph: bool = False, output: str | None = None):
        super().__init__()
        if attack not in ATTACKS:
            raise ZooError(f"unknown attack {attack!r}; choose {', '.join(ATTACKS)}")
        if init not in ("noise", "real"):
            raise ZooError(f"init must be 'noise' or 'real', got {init!r}")
        if min(iterations, ipc, batch_real) < 1:
            raise ZooError(f"iterations, ipc and batch_real must be >= 1, got {iterations}, {ipc}, {batch_real}")
        if attack != "none":  # a clean distillation uses none of them
            _check_trigger_settings(portion=portion, trigger_size=trigger_size, alpha=alpha, topk=topk,
                                    trigger_lr=trigger_lr, trigger_steps=trigger_steps)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.dsa = DSA(dsa_strategy)
        self.real: RealImages | None = None
        self.test: RealImages | None = None
        self.trigger_log: list[dict] = []
        self.iteration = 0
        self._generators_after_step: dict | None = None  # the next step's starting states, for a checkpoint
        self._generators_to_restore: dict | None = None  # a checkpoint's, until the resumed run's first step

    # ----------------------------------------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        if self.real is not None:
            return
        dm = self.trainer.datamodule if self.trainer is not None else None
        if dm is None or getattr(dm, "train_images", None) is None:
            raise ZooError("distillation needs data: zoo.models.doorping.data.DistillationData")
        self.real, self.test = dm.train_images, dm.test_images
        hp = self.hparams
        k, (c, h, _) = self.real.num_classes, self.real.shape
        if not 0 <= hp.target_class < k:
            raise ZooError(f"target_class {hp.target_class} is not a class of {self.real.name} (0..{k - 1})")
        self.net_args = {"channels": c, "num_classes": k, "image_size": h, "mean": self.real.mean,
                         "std": self.real.std}
        if hp.attack != "none":
            make = naive_trigger if hp.attack == "naive" else random_trigger
            trigger, mask = make(h, hp.trigger_size, self.real.mean, self.real.std)
            self.register_buffer("trigger", trigger)
            self.register_buffer("trigger_mask", mask)
            self.register_buffer("poisoned", choose_poisoned(len(self.real.labels), hp.portion))
        if hp.attack == "doorping":  # topk against the units, before any work (meta: no memory, no random draws)
            with torch.device("meta"):
                net = create_model(hp.arch, **self.net_args)
            select_neuron(net.get_submodule(net.penultimate), hp.topk)
        self.poison()
        if min(len(p) for p in self.pools) < hp.ipc:
            raise ZooError(f"some class of {self.real.name} has fewer than ipc={hp.ipc} training images")
        if hp.init == "real":  # poisoned images are already stamped and relabelled: they may be drawn
            syn = torch.cat([self.images_all[p[torch.randperm(len(p))[:hp.ipc]]] for p in self.pools])
        else:
            syn = torch.randn(k * hp.ipc, c, h, h)
        self.image_syn = nn.Parameter(syn)
        self.register_buffer("label_syn", torch.arange(k).repeat_interleave(hp.ipc))

    def poison(self) -> None:
        """Build the working copy of the training split: poisoned images stamped with the current trigger and
        relabelled to the target class, then the per-class pools (so poisoned images join the target's pool)."""
        self.images_all = self.real.images.to(self.device, copy=True)
        self.labels_all = self.real.labels.to(self.device, copy=True)
        if self.hparams.attack != "none":
            self.labels_all[self.poisoned.to(self.device)] = self.hparams.target_class
            self._restamp()
        self.pools = [(self.labels_all == i).nonzero().squeeze(1) for i in range(self.real.num_classes)]

    def on_fit_start(self) -> None:
        self.poison()  # on this device, and after a resume with the checkpoint's trigger and poisoned indices

    # ----------------------------------------------------------------------------------------------- resume
    # A step draws its real images, its fresh network and its DSA parameters from the process's generators; a
    # checkpoint keeps their states as of the next step's start (a step's end: nothing draws in between, the in-run
    # evaluation forks them), and the resumed run's first step starts from them: an interrupted or crashed run
    # resumed from a step checkpoint or a step-boundary interrupt writes the uninterrupted run's set. The trigger
    # log goes with it. (Under DDP every rank restores rank 0's states: exact as long as the ranks draw alike, as
    # they do with one seed_everything seed.)
    @property
    def resumes_mid_epoch(self) -> bool:
        """Whether this run was resumed from a checkpoint that holds the generators (read by
        `zoo.training.resume.SeededTraining`, which otherwise warns that the resumed run differs)."""
        return self._generators_to_restore is not None

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self.iteration = self.trainer.current_epoch * self.hparams.iterations + batch_idx
        if self._generators_to_restore is not None:
            _set_generator_states(self._generators_to_restore, self.device)
            self._generators_to_restore = None

    def training_step(self, batch, batch_idx):
        """One distillation iteration (`iterate`); then the generators' states, for a checkpoint saved at its end
        (Lightning's checkpoint callbacks save before the module's ``on_train_batch_end``)."""
        self.iterate()
        self._check_finite()
        self._generators_after_step = _generator_states(self.device)

    def iterate(self) -> None:
        """One distillation iteration: a fresh network, matching, the synthetic images' update (and the trigger's)."""
        raise NotImplementedError

    def _check_finite(self) -> None:
        """Stop the run at the iteration whose update made the synthetic images (or the trigger) NaN or infinite:
        the step's checkpoint is not written, so every checkpoint of the run holds finite images."""
        bad = [name for name, t in (("synthetic images", self.image_syn), ("trigger", getattr(self, "trigger", None)))
               if t is not None and not bool(torch.isfinite(t).all())]
        if not bad:
            return
        ckpt = getattr(self.trainer.checkpoint_callback, "dirpath", None) if self.trainer is not None else None
        lower = f"a lower --model.init_args.lr_img (now {self.hparams.lr_img:g})" + (
            f" or --model.init_args.trigger_lr (now {self.hparams.trigger_lr:g})" if "trigger" in bad else "")
        then = (f"resume from its last finite checkpoint with {lower} and --ckpt_path last (the checkpoints in {ckpt} "
                f"were saved before the divergence), or start again with it" if ckpt and any(Path(ckpt).glob("*.ckpt"))
                else f"start again with {lower}")
        raise ZooError(f"the distillation diverged at iteration {self.iteration}: the {' and the '.join(bad)} became "
                       f"NaN or infinite; nothing was written. {then[0].upper()}{then[1:]}")

    def on_train_start(self) -> None:
        if self._generators_after_step is None:
            self._generators_after_step = _generator_states(self.device)
        for group in self.optimizers().param_groups:  # a resumed run takes this run's lr_img, not the checkpoint's
            group["lr"] = self.hparams.lr_img

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["distillation"] = {"trigger_log": self.trigger_log, "generators": self._generators_after_step}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("distillation") or {}
        self.trigger_log = list(state.get("trigger_log", []))
        # also the states an interrupt in the first resumed iteration saves
        self._generators_to_restore = self._generators_after_step = state.get("generators")

    def configure_optimizers(self):
        return torch.optim.SGD([self.image_syn], lr=self.hparams.lr_img, momentum=0.5)

    # ----------------------------------------------------------------------------------------------- helpers
    @property
    def _fmt(self):
        return torch.channels_last if self.hparams.channels_last else torch.contiguous_format

    def fresh_network(self) -> nn.Module:
        """A randomly initialised distillation network on this module's device."""
        return create_model(self.hparams.arch, **self.net_args).to(self.device, memory_format=self._fmt)

    def sample_real(self, n: int) -> torch.Tensor:
        """[K, n, C, H, W]: ``n`` random real images of each class (without replacement within a class)."""
        n = min(n, min(len(p) for p in self.pools))
        idx = torch.stack([p[torch.randperm(len(p), device=p.device)[:n]] for p in self.pools])
        return self._cl(self.images_all[idx])

    def _cl(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last strides for [..., C, H, W] (a no-op with ``channels_last=False``)."""
        if not self.hparams.channels_last:
            return x
        return x.movedim(-3, -1).contiguous().movedim(-1, -3)

    def synthetic(self) -> torch.Tensor:
        """[K, ipc, C, H, W] view of the synthetic images (differentiable)."""
        k, ipc = self.real.num_classes, self.hparams.ipc
        return self._cl(self.image_syn.view(k, ipc, *self.image_syn.shape[1:]))

    def siamese(self, real: torch.Tensor, syn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DSA with the same family and parameters for a class's real and synthetic images (one draw per class)."""
        if not self.dsa.enabled:
            return real, syn
        k, n, ipc = real.shape[0], real.shape[1], syn.shape[1]
        params = self.dsa.sample(k, real.shape[-1], real.device)
        cls = torch.arange(k, device=real.device)
        real = self.dsa(real.flatten(0, 1), params, cls.repeat_interleave(n)).view_as(real)
        syn = self.dsa(syn.flatten(0, 1), params, cls.repeat_interleave(ipc)).view_as(syn)
        return self._cl(real), self._cl(syn)

    def _restamp(self) -> None:
        """Stamp the current trigger on every poisoned real image (after each DOORPING update)."""
        if self.hparams.attack == "none":
            return
        p = self.poisoned.to(self.device)
        self.images_all[p] = stamp(self.images_all[p], self.trigger, self.trigger_mask)

    def doorping_update(self, net: nn.Module) -> None:
        """Re-optimise the trigger on ``net`` and re-stamp the poisoned real images."""
        hp = self.hparams
        bounds = pixel_bounds(self.real.mean, self.real.std, self.device)
        before = self.trigger.clone()
        new, rec = update_trigger(net, self.trigger, self.trigger_mask, bounds, alpha=hp.alpha, topk=hp.topk,
                                  lr=hp.trigger_lr, max_steps=hp.trigger_steps, threshold=hp.trigger_threshold,
                                  objective=hp.trigger_objective, clamp=hp.clamp_trigger)
        self.trigger.copy_(new)
        self._restamp()
        shift = float((new - before).norm())
        self.trigger_log.append({"iteration": self.iteration, **rec.__dict__, "shift": shift})
        self.log_dict({"trigger/activation_start": rec.activation_start, "trigger/activation_end":
                       rec.activation_end, "trigger/steps": float(rec.steps), "trigger/shift": shift},
                      on_step=True, on_epoch=False)

    # ----------------------------------------------------------------------------------------------- results
    def distilled_set(self) -> DistilledSet:
        hp = self.hparams
        attacked = hp.attack != "none"
        return DistilledSet(
            images=self.image_syn.detach().float().cpu().contiguous(), labels=self.label_syn.cpu(),
            dataset=self.real.name, mean=self.real.mean, std=self.real.std, method=self.method,
            attack=hp.attack, ipc=hp.ipc, arch=hp.arch, target_class=hp.target_class,
            trigger=self.trigger.cpu() if attacked else None, trigger_mask=self.trigger_mask.cpu() if attacked else None)

    def validation_step(self, batch, batch_idx):
        hp = self.hparams
        if self.test is None or hp.val_models < 1:
            return
        synset = self.distilled_set()
        trig, mask = ((synset.trigger, synset.trigger_mask) if synset.trigger is not None
                      else naive_trigger(synset.shape[-1], hp.trigger_size, synset.mean, synset.std))
        n = len(self.test.labels) if hp.val_test_subset is None else min(hp.val_test_subset, len(self.test.labels))
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(self.test.labels), generator=g)[:n]
        x, y = self.test.images[idx], self.test.labels[idx]
        forked = [self.device] if self.device.type == "cuda" else []  # training's draws go on as without it
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=forked):
            per = []
            for _ in range(hp.val_models):
                net = train_network(self.fresh_network(), synset.images.to(self.device), synset.labels.to(self.device),
                                    epochs=hp.val_epochs, dsa=self.dsa if self.dsa.enabled else None,
                                    compile=hp.compile)
                per.append(backdoor_metrics(net, x, y, trig, mask, hp.target_class))
        s = summarise(per)
        self.log_dict({"val/cta": s["cta"], "val/asr": s["asr"], "val/asr_incl_target": s["asr_incl_target"]},
                      prog_bar=True, batch_size=1)  # a tick, not a batch Lightning could measure

    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        out = Path(self.hparams.output or Path(self.trainer.default_root_dir) / "distilled.safetensors")
        synset = self.distilled_set()
        synset.save(out)
        synset.grid(out.with_suffix(".png"))
        if self.trigger_log:
            write_json(out.with_name(out.stem + "_trigger_log.json"), self.trigger_log)
        print(f"wrote {out} and {out.with_suffix('.png').name}; evaluate it with: zoo eval {out} --task backdoor "
              f"--data <{self.real.name} data>")


def _generator_states(device: torch.device) -> dict:
    """The states of torch's CPU generator and, on a CUDA device, of that device's (what a distillation step draws
    from)."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_generator_states(states: dict, device: torch.device) -> None:
    """Give torch's CPU generator and ``device``'s CUDA generator the states `_generator_states` read."""
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def _check_trigger_settings(**values) -> None:
    """Raise `ZooError` naming the first of the poisoning and DOORPING settings (`Distillation`) out of range."""
    valid = {"portion": (lambda v: 0 < v < 1, "in (0, 1)"), "trigger_size": (lambda v: v >= 1, ">= 1 pixel"),
             "alpha": (lambda v: v > 0, "> 0"), "topk": (lambda v: v >= 1, ">= 1"),
             "trigger_lr": (lambda v: v > 0, "> 0"), "trigger_steps": (lambda v: v >= 1, ">= 1")}
    for name, value in values.items():
        ok, rule = valid[name]
        if not ok(value):
            raise ZooError(f"{name} must be {rule}, got {value}")


class GradientMatching(Distillation):
    """DC gradient matching (DSA when ``dsa_strategy`` is set), as run in DOORPING's code.

    Each iteration: a fresh network; ``outer_loop`` times: match the per-class gradients of real and synthetic
    images (layer-wise cosine distance, `zoo.models.doorping.matching`), one SGD step on the images; then, except
    after the last outer step, train the network ``inner_loop`` epochs on the synthetic set (SGD, ``lr_net``) and
    run the DOORPING trigger update on it.

    Args:
        outer_loop, inner_loop: default from ``ipc`` (1: 1/1, 10: 10/50, 20: 20/25, 30: 30/20, 40: 40/15, 50: 50/10).
        lr_net, batch_train: the inner-loop SGD (no momentum) learning rate and batch size (0.01, 256).
        metric: matching distance: ``ours`` (layer-wise), ``mse`` or ``cos``.
        (the rest: see `Distillation`.)
    """

    def __init__(self, outer_loop: int | None = None, inner_loop: int | None = None, lr_net: float = 0.01,
                 batch_train: int = 256, metric: Literal["ours", "mse", "cos"] = "ours", **kwargs):
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise ZooError(f"unknown matching metric {metric!r}; choose {', '.join(METRICS)}")
        if (outer_loop is None) != (inner_loop is None):
            raise ZooError("give both outer_loop and inner_loop, or neither (then they follow ipc)")
        self.loops = (outer_loop, inner_loop) if outer_loop is not None else dc_loops(self.hparams.ipc)
        self.save_hyperparameters()

    @property
    def method(self) -> str:
        return "dsa" if self.dsa.enabled else "dc"

    def train_inner(self, net: nn.Module, epochs: int) -> None:
        """DC's inner loop: ``epochs`` epochs of plain SGD (``lr_net``) on the current synthetic set."""
        train_network(net, self._cl(self.image_syn.detach()), self.label_syn, epochs=epochs, lr=self.hparams.lr_net,
                      momentum=0.0, weight_decay=0.0, batch_size=self.hparams.batch_train, lr_decay=False,
                      dsa=self.dsa if self.dsa.enabled else None, compile=self.hparams.compile,
                      cuda_graph=self.hparams.cuda_graph)

    def matching_step(self, net: nn.Module) -> torch.Tensor:
        """One outer step: the matching loss over all classes and one SGD step on the synthetic images."""
        real, syn = self.siamese(self.sample_real(self.hparams.batch_real), self.synthetic())
        g_real = class_gradients(net, real, create_graph=False, compile=self.hparams.compile)
        g_syn = class_gradients(net, syn, create_graph=True)
        loss = match_loss(g_real, g_syn, self.hparams.metric)
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss, inputs=[self.image_syn])  # the images only, not the network's parameters
        opt.step()
        return loss.detach()

    def iterate(self) -> None:
        t0 = time.perf_counter()
        outer, inner = self.loops
        net = self.fresh_network()
        doorping = self.hparams.attack == "doorping"
        total = 0.0
        for ol in range(outer):
            total += float(self.matching_step(net))
            if ol == outer - 1:
                break
            self.train_inner(net, inner)
            if doorping:
                self.doorping_update(net)
        if doorping and outer == 1:  # the fix: the authors' loop never reaches the update at ipc 1
            self.train_inner(net, inner)
            self.doorping_update(net)
        k = self.real.num_classes
        self.log_dict({"train/match_loss": total / (k * outer), "train/seconds_per_iteration":
                       time.perf_counter() - t0}, prog_bar=True, on_step=True, on_epoch=False)


class DistributionMatching(Distillation):
    """DM (Zhao & Bilen 2023): match the mean embedding of each class's real and synthetic images under a fresh,
    frozen network per iteration, with DSA on both sides (shared parameters per class). DOORPING's update runs on
    that fresh network once per iteration (DM is not in the authors' code; the zoo attacks it the same way).

    Defaults follow the DM code: ``lr_img`` 1.0, ``init`` real, DSA ``color_crop_cutout_flip_scale_rotate``.
    """

    method = "dm"

    def __init__(self, lr_img: float = 1.0, init: Literal["noise", "real"] = "real",
                 dsa_strategy: str = "color_crop_cutout_flip_scale_rotate", **kwargs):
        super().__init__(lr_img=lr_img, init=init, dsa_strategy=dsa_strategy, **kwargs)

    def iterate(self) -> None:
        t0 = time.perf_counter()
        net = self.fresh_network()
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        real, syn = self.siamese(self.sample_real(self.hparams.batch_real), self.synthetic())
        k, n, ipc = real.shape[0], real.shape[1], syn.shape[1]
        with torch.no_grad():
            mean_real = net.embed(real.flatten(0, 1)).view(k, n, -1).mean(1)
        mean_syn = net.embed(syn.flatten(0, 1)).view(k, ipc, -1).mean(1)
        loss = ((mean_real - mean_syn) ** 2).sum()
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        if self.hparams.attack == "doorping":
            self.doorping_update(net)
        self.log_dict({"train/match_loss": float(loss.detach()) / k, "train/seconds_per_iteration": time.perf_counter() - t0},
                      prog_bar=True, on_step=True, on_epoch=False)
