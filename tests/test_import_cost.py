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
