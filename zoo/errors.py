"""Exceptions a user can act on.

`ZooError` carries one message that names the thing that is wrong and the fix; the CLI prints it as one line
and exits non-zero without a traceback. Anything else that escapes is a bug and keeps its traceback.
"""


class ZooError(Exception):
    """A user error: bad name, bad path, bad option, corrupt file, missing dataset or dependency."""


class MissingDependency(ZooError, ImportError):
    """An optional dependency is not installed; the message names what installs it (usually a zoo extra)."""


# Import name -> (PyPI package, the package that installs it when that is another) of the optional modules the
# papers import; the extra that installs them is the paper's (`zoo.registry.Paper.extra`).
OPTIONAL_MODULES = {
    "faiss": ("faiss-cpu", None),
    "timm": ("timm", None),
    "transformers": ("transformers", None),
    "tokenizers": ("tokenizers", "transformers"),
    "huggingface_hub": ("huggingface_hub", "transformers"),
    "peft": ("peft", None),
    "gguf": ("gguf", None),
    "mido": ("mido", "pretty_midi"),
    "nuscenes": ("nuscenes-devkit", None),
    "cv2": ("opencv-python-headless", "nuscenes-devkit"),
    "shapely": ("shapely", "nuscenes-devkit"),
    "pyquaternion": ("pyquaternion", "nuscenes-devkit"),
}


def install_hint(extra: str) -> str:
    """The command that installs zoo extra ``extra``: zoo is not on PyPI, so from the checkout, as editable."""
    return f"pip install -e '.[{extra}]' (in the zoo checkout)"


def missing_dependency(module: str, extra: str, reason: str, package: str | None = None) -> MissingDependency:
    """The error for optional module ``module`` (an import name; its top-level package is looked up in
    `OPTIONAL_MODULES` unless ``package`` names the PyPI package), which zoo extra ``extra`` installs; ``reason`` is
    the import error's message."""
    top = module.partition(".")[0]
    pkg, via = OPTIONAL_MODULES.get(top, (top, None))
    pkg = package or pkg
    installed_by = f" (installed by {via})" if via and not package else ""
    return MissingDependency(f"'{pkg}'{installed_by} is required for this feature but is not installed ({reason}); "
                             f"install it with: {install_hint(extra)}")


def require(module: str, extra: str, package: str | None = None):
    """Import an optional dependency or raise `MissingDependency` naming the extra to install.

    Args:
        module: import name, e.g. "faiss".
        extra: the zoo extra that installs it, e.g. "ood" (`install_hint`).
        package: the PyPI name, when it differs from the import name and `OPTIONAL_MODULES` does not give it.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_dependency(module, extra, str(exc), package) from None
