"""Weights in and out: safetensors + config.json folders, safe reading of foreign checkpoints, load reports.

* `save_pretrained` writes ``config.json`` (architecture, constructor arguments, the weights' sha256),
  ``model.safetensors`` and a ``README.md`` model card; each file is written atomically.
* `from_pretrained` rebuilds the model from such a folder (or a ``name.tag``), checks the weights' sha256 and
  loads them strictly.
* `read_foreign` reads an authors' checkpoint with ``torch.load(weights_only=True)``: a pickle that would import
  or call anything beyond tensors and plain containers is refused before any of its code runs; a file that is
  not a checkpoint, or a zip whose members fail their CRC, is named as such.
* `load_state_dict` compares keys and shapes first and raises one error that lists every missing, unexpected
  and mis-shaped key, unless an explicit allow-list (fnmatch patterns) covers the missing/unexpected ones.
"""

from __future__ import annotations

import fnmatch
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ZooError
from .hub import sha256_file
from .io import atomic_path, json_text, write_json, write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class LoadReport:
    """Outcome of comparing a state dict with a model: every key that did not load cleanly."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, model shape, file shape

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        if self.clean:
            return f"{self.source}: all keys loaded"
        parts = []
        if self.missing:
            parts.append(f"missing in file ({len(self.missing)}): {_first(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected in file ({len(self.unexpected)}): {_first(self.unexpected)}")
        if self.mismatched:
            parts.append("shape mismatch: " + _first([f"{k} model {tuple(a)} vs file {tuple(b)}"
                                                      for k, a, b in self.mismatched]))
        return f"{self.source}: " + "; ".join(parts)


def _first(items: list[str], n: int = 8) -> str:
    """The first ``n`` items joined, and how many more there are (a wrong file can differ in hundreds of keys)."""
    return ", ".join(items[:n]) + (f", ... and {len(items) - n} more" if len(items) > n else "")


def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def load_state_dict(model, state_dict: dict, *, allow_missing=(), allow_unexpected=(),
                    source: str = "state dict") -> LoadReport:
    """Load ``state_dict`` into ``model`` strictly, except for keys covered by the allow-lists.

    Raises:
        ZooError: naming every mis-shaped key and every missing/unexpected key outside the allow-lists (and a
            ``state_dict`` that is a file path: `read_weights` or `read_foreign` reads one).
    """
    if isinstance(state_dict, (str, Path)):
        raise ZooError(f"load_state_dict takes a state dict, not the path {str(state_dict)!r}: read the file first, "
                       f"load_state_dict(model, read_weights(path)) (or read_foreign for .pt/.pth checkpoints)")
    own = model.state_dict()
    report = LoadReport(source=source)
    report.missing = [k for k in own if k not in state_dict]
    report.unexpected = [k for k in state_dict if k not in own]
    report.mismatched = [(k, tuple(own[k].shape), tuple(v.shape)) for k, v in state_dict.items()
                         if k in own and tuple(own[k].shape) != tuple(v.shape)]
    bad = LoadReport(
        source=source,
        missing=[k for k in report.missing if not _matches(k, allow_missing)],
        unexpected=[k for k in report.unexpected if not _matches(k, allow_unexpected)],
        mismatched=report.mismatched,
    )
    if not bad.clean:
        raise ZooError(f"weights do not fit {type(model).__name__}: {bad}")
    model.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return report


def read_foreign(path: str | Path) -> dict:
    """Read a checkpoint written by someone else, without ever executing code from it.

    ``.safetensors`` files are read directly; anything else goes through ``torch.load(weights_only=True)``,
    which refuses pickles that reference functions or classes outside torch's tensor allow-list.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        raise ZooError(f"checkpoint {path} is a folder: give the checkpoint file itself (a .pth, .pt, .ckpt, .bin "
                       f"or .safetensors file)")
    if not path.is_file():
        raise ZooError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return read_weights(path)
    _check_format(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise ZooError(f"cannot read {path}: corrupt or truncated checkpoint ({exc})") from None
        lines = [ln.strip() for ln in str(exc).splitlines()]
        detail = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0])
        raise ZooError(
            f"refused to load {path}: it is not a plain tensor checkpoint and loading it would run code "
            f"({detail}); re-save it as a state dict of tensors or as .safetensors"
        ) from None
    except Exception as exc:  # torch.load raises many types for bytes that are not a checkpoint
        raise ZooError(f"cannot read {path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from None


def foreign_state_dict(ckpt, source: str | Path) -> dict:
    """The tensors of the state dict in a checkpoint dict read by `read_foreign`: the dict under ``model`` or
    ``state_dict`` when there is one (the authors' layouts), else the checkpoint itself, with DataParallel's
    ``module.`` prefixes removed. ``source`` names the file in the error for anything else."""
    import torch

    sd = ckpt
    if isinstance(ckpt, dict):
        sd = next((ckpt[k] for k in ("model", "state_dict") if isinstance(ckpt.get(k), dict)), ckpt)
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ZooError(f"{source}: no state dict of tensors (a dict of tensors, or one under 'model' or "
                       f"'state_dict'); pass the authors' checkpoint file")
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def with_bn_counters(sd: dict) -> dict:
    """``sd`` plus a zero ``num_batches_tracked`` for every BatchNorm (``running_var``) that lacks one (checkpoints
    of old PyTorch versions have none)."""
    import torch

    out = dict(sd)
    for k in sd:
        if k.endswith(".running_var"):
            out.setdefault(k[: -len("running_var")] + "num_batches_tracked", torch.tensor(0))
    return out


def _check_format(path: Path) -> None:
    """``torch.save`` writes a zip archive (or, in its legacy format, a pickle). Anything else is not a
    checkpoint; a zip whose members fail their CRC is corrupt (``torch.load`` does not check)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            raise ZooError(f"cannot read {path}: corrupt or truncated checkpoint (a zip archive without its "
                           f"directory); download it again")
        if head[:1] != b"\x80":  # every pickle of protocol >= 2 starts with PROTO
            raise ZooError(f"cannot read {path}: not a PyTorch checkpoint (neither a zip archive nor a pickle); "
                           f"is it an HTML page, a git-lfs pointer or another format?")
        return
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ZooError(f"cannot read {path}: corrupt zip archive ({exc})") from None
    if bad is not None:
        raise ZooError(f"cannot read {path}: member {bad} fails its CRC check (the file is corrupt; download "
                       f"it again)")


def read_weights(path: str | Path) -> dict:
    """Tensors of a ``.safetensors`` file (or a foreign checkpoint, via `read_foreign`)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return read_foreign(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ZooError(f"cannot read {path}: corrupt or truncated safetensors file ({exc})") from None


def save_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file` with reproducible bytes, written atomically: the same tensors and metadata
    always give the same file, so a file's sha256 identifies its contents (safetensors writes the metadata map in a
    per-process random order; here its keys are sorted)."""
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to a multiple of 8 bytes with spaces
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.write(memoryview(data)[8 + n:])


def read_config(directory: str | Path) -> dict:
    """The ``config.json`` of a zoo model folder (``architecture``, ``model_args``, ...); a ZooError when the folder
    lacks one or it is not valid."""
    path = Path(directory) / CONFIG_NAME
    if not path.exists():
        raise ZooError(f"{directory} is not a zoo model folder: {CONFIG_NAME} is missing")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ZooError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("architecture"), str):
        raise ZooError(f"{path} is not a zoo config: it needs an object with 'architecture' (a model name from "
                       f"`zoo list`); save the model again with zoo.save_pretrained")
    if not isinstance(cfg.get("model_args", {}), dict):
        raise ZooError(f"{path}: 'model_args' must be an object of keyword arguments, got "
                       f"{type(cfg['model_args']).__name__}")
    return cfg


def check_folder(directory: str | Path) -> dict:
    """The ``config.json`` of zoo model folder ``directory`` (`read_config`), once the folder is known to be complete
    (its weights file is there) and its architecture a registered model; a ZooError naming the problem otherwise."""
    from .registry import list_models, suggest

    path = Path(directory)
    cfg = read_config(path)
    if not (path / WEIGHTS_NAME).is_file():
        raise ZooError(f"{path} is not a complete zoo model folder: {WEIGHTS_NAME} is missing; save the model again "
                       f"(zoo.save_pretrained), or copy the whole folder")
    arch = cfg["architecture"]
    if arch not in list_models():
        raise ZooError(f"unknown architecture {arch!r} in {path / CONFIG_NAME}{suggest(arch, list_models())}; correct "
                       f"its 'architecture' (see `zoo list`) or save the model again")
    return cfg


def save_pretrained(model, directory: str | Path, *, model_card: str | None = None,
                    metadata: dict | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``README.md`` into ``directory``.

    The model must carry ``zoo_cfg`` (set by `zoo.create_model`), which records how to rebuild it.
    ``metadata`` (JSON-serialisable) is stored in ``config.json`` under ``"metadata"``. The metadata, the card and the
    folder are checked before anything is written, so that a bad argument leaves a folder's earlier model as it was.
    """
    import torch

    from . import __version__

    cfg = getattr(model, "zoo_cfg", None)
    if not cfg:
        raise ZooError("save_pretrained needs a model built by zoo.create_model (it records the architecture "
                       "and arguments needed to rebuild it)")
    config = {**cfg, "zoo_version": __version__, "weights_sha256": None, **({"metadata": metadata} if metadata else {})}
    try:
        json_text(config)
    except (TypeError, ValueError) as exc:
        raise ZooError(f"save_pretrained: the model's zoo_cfg and metadata must be JSON-serialisable for config.json "
                       f"({exc}); pass plain numbers, strings, lists and dicts") from None
    if model_card is not None and not isinstance(model_card, str):
        raise ZooError(f"save_pretrained: model_card is the README.md text, a str; got {type(model_card).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ZooError(f"cannot save the model into {directory}: it is a file; give a folder path")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ZooError(f"cannot save the model into {directory}: a part of that path is a file; give a folder "
                       f"path") from None
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()
               if isinstance(v, torch.Tensor)}
    save_safetensors(tensors, directory / WEIGHTS_NAME, metadata={"format": "pt", "architecture": cfg["architecture"]})
    config["weights_sha256"] = sha256_file(directory / WEIGHTS_NAME)
    card = model_card or _default_card(config)
    write_text(directory / "README.md", card)
    write_json(directory / CONFIG_NAME, config)  # last: a folder with a config is complete
    return directory


def _default_card(config: dict) -> str:
    """The folder's README.md: YAML front matter (licence of the weights' manifest entry when the model came from
    one, else the paper's code licence), then how to load it."""
    import yaml

    from .hub import load_manifest
    from .registry import paper_of

    paper = paper_of(config["architecture"])
    entry = load_manifest().get(f"{config['architecture']}.{config['tag']}") if config.get("tag") else None
    front = {"library_name": "zoo", "license": (entry or {}).get("license", paper.license), "tags": [paper.id]}
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---\n\n"
        f"# {config['architecture']}\n\n"
        f"Weights saved by zoo {config['zoo_version']}. Paper: {paper.title} ({paper.authors}, {paper.venue}, "
        f"arXiv {paper.arxiv}); authors' code: {paper.code}.\n\n"
        f"```python\nimport zoo\nmodel = zoo.from_pretrained(\"<this folder>\")\n```\n\n"
        f"Constructor arguments: `{json.dumps(config.get('model_args', {}))}`.\n"
    )


def _check_weights_architecture(weights: Path, architecture: str) -> None:
    """Refuse weights whose safetensors metadata (written by `save_pretrained`) names another architecture than the
    folder's ``config.json``: a config copied from another model's folder."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), "pt") as f:
            recorded = (f.metadata() or {}).get("architecture")
    except (SafetensorError, OSError) as exc:
        raise ZooError(f"cannot read {weights}: corrupt or truncated safetensors file ({exc})") from None
    if recorded and recorded != architecture:
        raise ZooError(f"{weights} holds {recorded} weights but {weights.parent / CONFIG_NAME} names {architecture}: "
                       f"the two files come from different models; save the model again")


def verified_folder(directory: str | Path) -> dict:
    """The ``config.json`` of zoo model folder ``directory`` (`check_folder`), once its weights are known to match
    the sha256 and the architecture the config records."""
    cfg = check_folder(directory)
    weights = Path(directory) / WEIGHTS_NAME
    expected = cfg.get("weights_sha256")
    if expected and sha256_file(weights) != expected:
        raise ZooError(f"{weights} does not match the sha256 recorded in its {CONFIG_NAME} (the file is corrupt "
                       f"or was replaced); save the model again")
    _check_weights_architecture(weights, cfg["architecture"])
    return cfg


def from_pretrained(source: str | Path):
    """A model from a folder written by `save_pretrained`, or from a manifest ``name.tag``."""
    from .registry import create_model

    if not isinstance(source, (str, Path)):
        raise ZooError(f"from_pretrained takes a folder path or a 'name.tag' str, not {type(source).__name__} "
                       f"{source!r}")
    path = Path(source)
    if path.is_dir():
        return create_model(read_config(path)["architecture"], pretrained=path)  # which verifies the folder
    if path.exists() or "/" in str(source):
        what = "does not exist" if not path.exists() else "is not a zoo model folder"
        raise ZooError(f"{source} {what}: give a folder written by zoo.save_pretrained (or `zoo fit`'s model/) or "
                       f"a name.tag from `zoo list --pretrained`")
    try:
        return create_model(str(source), pretrained=True)
    except ZooError as exc:
        if not str(exc).startswith("unknown model"):
            raise
        raise ZooError(f"{source!r} is neither a folder here ({path.resolve()} does not exist) nor a registered "
                       f"model ({exc}): give a folder written by zoo.save_pretrained or a name.tag from "
                       f"`zoo list --pretrained`") from None
