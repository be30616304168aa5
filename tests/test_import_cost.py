import subprocess
import sys

HEAVY = ("pytorch_lightning", "lightning", "timm", "faiss", "transformers", "nuscenes", "pretty_midi", "mido")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_zoo_is_light():
    mods = _modules_after("import zoo")
    assert not [m for m in HEAVY if m in mods]
    assert "torch" not in mods


def test_listing_imports_no_per_paper_dependency():
    mods = _modules_after("import zoo; assert zoo.list_models(); zoo.list_models(pretrained=True)")
    assert not [m for m in HEAVY if m in mods]


def test_eval_tasks_and_their_help_import_no_trainer():
    """Evaluation needs no trainer: every registered eval task, and ``zoo eval --task T --help`` for each, leave
    Lightning unimported (their datasets live apart from the DataModules), which saves seconds on every call."""
    code = ("import contextlib, io\n"
            "from zoo.cli import main\n"
            "from zoo.eval import get_task, list_tasks\n"
            "for name in list_tasks():\n"
            "    get_task(name)\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        main(['eval', '--task', name, '--help'])\n")
    mods = _modules_after(code)
    assert "zoo.models.cmt.det3d_task" in mods and "zoo.models.drums.drums_task" in mods
    assert not [m for m in ("pytorch_lightning", "lightning", "lightning_fabric") if m in mods]
