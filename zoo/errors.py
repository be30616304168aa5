"""Exceptions a user can act on.

`ZooError` carries one message that names the thing that is wrong and the fix; the CLI prints it as one line
and exits non-zero without a traceback. Anything else that escapes is a bug and keeps its traceback.
"""


class ZooError(Exception):
    """A user error: bad name, bad path, bad option, corrupt file, missing dataset or dependency."""


class MissingDependency(ZooError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require(module: str, extra: str, package: str | None = None):
    """Import an optional dependency or raise `MissingDependency` naming the extra to install.

    Args:
        module: import name, e.g. "faiss".
        extra: the zoo extra that installs it, e.g. "ood" (``pip install zoo[ood]``).
        package: the PyPI name when it differs from the import name.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module
        raise MissingDependency(
            f"'{pkg}' is required for this feature but is not installed ({exc}); "
            f"install it with: pip install 'zoo[{extra}]'"
        ) from None
