"""A positive control for the backdoor evaluation: a distilled set that certainly carries a backdoor.

`poisoned_copy` appends to a set stamped copies of some of its own images: ``fraction`` of the set, drawn from the
classes other than the target, with the set's trigger (NAIVEATTACK's white patch for an unattacked set) and
relabelled to the target class. Networks that `zoo eval --task backdoor` trains on such a set learn the trigger if
the evaluation protocol (networks, epochs, test images) can show a backdoor at all; the DOORPING model card puts the
distilled sets beside it, so that "no backdoor" is read against a measured "backdoor".

    python -m zoo.models.doorping.control SET --out FILE [--fraction 0.1] [--seed 0]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from ...errors import ZooError
from .attack import naive_trigger, stamp
from .synset import DistilledSet, load_distilled


def poisoned_copy(synset: DistilledSet, fraction: float = 0.1, seed: int = 0,
                  trigger_size: int = 2) -> DistilledSet:
    """``synset`` plus ``round(fraction * N)`` stamped, relabelled copies of its non-target images.

    Returns a set of N + n images ([N + n, C, H, W], the copies last, labelled ``target_class``) with the trigger
    it was stamped with; an unattacked set becomes ``attack="naive"`` (white ``trigger_size`` patch).
    """
    if not 0 < fraction <= 1:
        raise ZooError(f"fraction must be in (0, 1], got {fraction}")
    trigger, mask, attack = synset.trigger, synset.trigger_mask, synset.attack
    if trigger is None:
        trigger, mask = naive_trigger(synset.shape[-1], trigger_size, synset.mean, synset.std)
        attack = "naive"
    others = (synset.labels != synset.target_class).nonzero().squeeze(1)
    n = max(1, round(fraction * len(synset.labels)))
    if n > len(others):
        raise ZooError(f"the set has {len(others)} images outside the target class; fraction {fraction} asks for {n}")
    pick = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:n]]
    images = torch.cat([synset.images, stamp(synset.images[pick], trigger, mask)])
    labels = torch.cat([synset.labels, torch.full((n,), synset.target_class, dtype=torch.int64)])
    return replace(synset, images=images, labels=labels, attack=attack, trigger=trigger, trigger_mask=mask)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m zoo.models.doorping.control", description=__doc__.split("\n\n")[0])
    p.add_argument("set", help="distilled-set file or doorping_distilled.<tag> key")
    p.add_argument("--out", required=True, help="where to write the control set (.safetensors)")
    p.add_argument("--fraction", type=float, default=0.1, help="stamped copies as a fraction of the set")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    synset = load_distilled(a.set)
    control = poisoned_copy(synset, a.fraction, a.seed)
    control.save(a.out)
    print(f"wrote {a.out}: {len(control.labels)} images, the last {len(control.labels) - len(synset.labels)} "
          f"stamped with the {control.attack} trigger and labelled {control.target_class}")


if __name__ == "__main__":
    main()
