"""Shared test setup: offline, a project-local cache, real data when ../shared/data is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ZOO_HOME", str(ROOT / ".zoo-cache"))  # persists unpacked archives between local runs
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def require_data(name: str) -> Path:
    """The folder of catalogue dataset ``name``, or skip the test saying what is missing."""
    from zoo.data.catalog import available, locate, missing_reason

    if not available(name):
        pytest.skip(missing_reason(name))
    return locate(name)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def shapes_data() -> Path:
    """A small generated ID dataset (train/test, 10 classes) that needs no download."""
    from zoo.data import synthetic

    return synthetic.shapes(n_train=40, n_test=10)


@pytest.fixture(scope="session")
def textures_data() -> Path:
    from zoo.data import synthetic

    return synthetic.textures(n_per_texture=30)


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> Path:
    """A TinyMIM teacher folder: a randomly initialised encoder shaped like the CIFAR teacher (depth 8, 4 heads),
    narrower (width 64)."""
    import zoo

    m = zoo.create_model("tinymim_vit", embed_dim=64, depth=8, num_heads=4, img_size=32, patch_size=8,
                         num_classes=0, global_pool="token", fixed_pos_embed=True)
    return zoo.save_pretrained(m, tmp_path_factory.mktemp("teacher") / "model")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests: on 2 shared cores that is faster than two threads fighting for
    them (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


PUBLISHING_CPU = "AMD EPYC"  # the CPU model name (/proc/cpuinfo) of the machine that made the published PMT-IQA
# weights and DOORPING sets, as its benchmark files record it


def assert_remade(made: dict, published: dict, tolerance: float) -> None:
    """A recipe's tensors against the published ones: equal bit for bit on the CPU model that made them
    (`PUBLISHING_CPU`); elsewhere, where other vector kernels round differently, within ``tolerance`` plus 2e-3 of
    the value (an fp16 step is 1e-3 of it; measured on an Intel Xeon: largest difference 1.1e-4 for the DOORPING
    set, 6.1e-5 for the PMT-IQA weights; a changed recipe moves them by 1e-2 and more)."""
    import torch

    from zoo.bench.env import _cpu_name

    assert set(made) == set(published)
    if _cpu_name() == PUBLISHING_CPU:
        assert [k for k, v in published.items() if not torch.equal(made[k], v)] == []
    else:
        far = [k for k, v in published.items()
               if not torch.allclose(made[k].double(), v.double(), rtol=2e-3, atol=tolerance)]
        assert far == [], f"{len(far)} tensors differ beyond the tolerance on {_cpu_name()}: {far[:5]}"


def run_manifest_recipe(key: str, root: Path) -> Path:
    """Run the ``zoo fit`` recipe that the manifest entry ``key`` says made its file, on one thread, into ``root``
    (its own ``--trainer.default_root_dir`` is replaced); returns ``root``."""
    import shlex

    import torch

    from zoo.cli import main
    from zoo.hub import load_manifest

    words = shlex.split(load_manifest()[key]["recipe"])
    argv = words[words.index("zoo") + 1:]
    if "--trainer.default_root_dir" in argv:
        i = argv.index("--trainer.default_root_dir")
        del argv[i:i + 2]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*argv, "--trainer.default_root_dir", str(root)]) == 0
    finally:
        torch.set_num_threads(n)
    return root


def interrupt_at(training_step, global_step: int):
    """A ``training_step`` that raises KeyboardInterrupt (Ctrl-C) at ``global_step`` and runs ``training_step``
    before it."""
    def step(self, batch, batch_idx):
        if self.global_step == global_step:
            raise KeyboardInterrupt
        return training_step(self, batch, batch_idx)
    return step
