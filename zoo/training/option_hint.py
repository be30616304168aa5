"""The hint a `zoo fit | validate | test | predict` usage error gets for an option that nothing accepts: the config
file that sets it and the closest accepted name. LightningCLI names neither (``trainer.max_epoch`` in a YAML file is
"Subcommand 'fit' does not accept option 'trainer.max_epoch'", wherever it was written)."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from pathlib import Path

# (pattern of LightningCLI's message, whether the option came from the command line); "group" and "cls" name the
# model or data class whose init_args refused the key
_REFUSALS = [
    (re.compile(r"Subcommand '\w+' does not accept option '(?P<key>[\w.]+)'"), False),
    (re.compile(r"unrecognized arguments: --(?P<key>[\w.]+)"), True),
    (re.compile(r"Parser key \"(?P<group>[\w.]+)\":.*?class_path '(?P<cls>[\w.]+)':\s*Option '(?P<key>\w+)' is not "
                r"accepted", re.S), False),
]


def option_hint(message: str, parser, args: list[str]) -> str:
    """``"; set in FILE; did you mean NAME?"`` (either part where it is known) for LightningCLI's ``message`` about an
    option no class accepts, or ``""``. ``parser`` is the CLI's top-level parser, ``args`` the command's arguments
    (the subcommand first, then ``--config FILE`` and options)."""
    for pattern, from_command_line in _REFUSALS:
        found = pattern.search(message)
        if found:
            break
    else:
        return ""
    key, cls = found["key"], found.groupdict().get("cls")
    path = f"{found['group']}.{key}" if cls else key
    accepted = _init_args(cls) if cls else _subcommand_keys(parser, args)
    close = difflib.get_close_matches(key if cls else path, accepted, n=1)
    hint = "" if from_command_line else "".join(f"; set in {f}" for f in _files_setting(path, args))
    if close:
        hint += f"; did you mean {'--' if from_command_line else ''}{close[0]}?"
    return hint


def _subcommand_keys(parser, args: list[str]) -> list[str]:
    """The dotted option names (``trainer.max_epochs``, ``checkpoint.dirpath``, ...) of the subcommand in ``args``,
    or of ``parser`` itself where it has no subcommands (a demo's ``run=False`` CLI)."""
    action = parser._subcommands_action  # jsonargparse keeps no public map of the subcommands' parsers
    if action is not None:
        parser = next((action._name_parser_map[a] for a in args if a in action._name_parser_map), None)
    if parser is None:
        return []
    return [a.dest for a in parser._actions if a.dest != "help" and not a.dest.endswith(".help")]


def _init_args(class_path: str) -> list[str]:
    """The keyword arguments of the class at ``class_path`` (a model or data module)."""
    module, _, name = class_path.rpartition(".")
    try:
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _files_setting(path: str, args: list[str]) -> list[str]:
    """The ``--config`` files of ``args`` whose YAML sets the dotted ``path`` (``init_args`` levels skipped)."""
    import yaml

    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    files += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    setting = []
    for file in files:
        try:
            tree = yaml.safe_load(Path(file).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if path in _dotted_keys(tree):
            setting.append(file)
    return setting


def _dotted_keys(tree, prefix: str = "") -> set[str]:
    """Every key of a nested YAML mapping as a dotted path, an ``init_args`` level left out of the path."""
    if not isinstance(tree, dict):
        return set()
    keys = set()
    for k, v in tree.items():
        if k == "init_args":
            keys |= _dotted_keys(v, prefix)
        else:
            keys.add(f"{prefix}{k}")
            keys |= _dotted_keys(v, f"{prefix}{k}.")
    return keys
