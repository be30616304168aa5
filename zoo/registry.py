"""Model registry: papers declare their models; `create_model` builds one, with verified weights if asked.

Each paper is one folder `zoo/models/<paper>/` whose `__init__.py` defines `PAPER = Paper(...)`. That file
imports nothing heavy: models are named by ``"module:function"`` strings and are imported only when created,
so listing the zoo costs milliseconds and one paper's optional dependencies never break another paper.

Names follow timm: ``<paper>_<arch>_<size>`` for an architecture, ``name.tag`` for one set of weights
(``knn_ood_resnet20.cifar10``). A bare name with ``pretrained=True`` takes the tag marked ``default`` in the
manifest, else the first one listed.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import pkgutil
import re
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .errors import OPTIONAL_MODULES, MissingDependency, ZooError, missing_dependency


@dataclass(frozen=True)
class Paper:
    """What one paper contributes. Strings of the form ``"package.module:attr"`` are imported lazily.

    Attributes:
        id: folder name under ``zoo/models`` (``knn_ood``); ``zoo convert <id>`` uses it.
        title, authors, venue, arxiv, code: the citation and the authors' repository.
        license: licence of the authors' code and released weights.
        models: model name -> builder ``"module:function"``; the builder takes keyword arguments only and
            returns a plain ``nn.Module``.
        tasks: ``zoo eval --task`` name -> ``"module:Class"`` (a `zoo.eval.EvalTask`).
        converter: ``"module:function"``, called by ``zoo convert`` as ``converter(src, out_dir)``, or
            ``converter(src, out_dir, model_args=...)`` with ``--model-args`` when it has that parameter (TinyMIM's:
            what the weights do not show); it returns the path it wrote (a model folder, or a data file such as
            DOORPING's distilled set).
        bench: ``"module:function"`` returning a `zoo.bench.BenchAdapter` for a model of this paper.
        demo: ``"module:function"`` with signature ``(workdir: Path) -> list[dict]`` for ``zoo demo`` (rows with
            the keys of `zoo.demo.COLUMNS` but ``paper``).
        card: model card path, relative to the repository root.
        data: manifest key prefixes of entries that are data this paper's code made, not weights (DOORPING's
            distilled sets, ``doorping_distilled.TAG``): ``zoo info`` and ``zoo download`` take them, model loading
            never does.
        extra: the setup.cfg extra that installs the paper's optional dependencies (``ood``), or None when the core
            install is all it needs; a missing optional module (`zoo.errors.OPTIONAL_MODULES`) imported by the
            paper's code is a `MissingDependency` naming it (`as_missing_dependency`).
    """

    id: str
    title: str
    authors: str
    venue: str
    arxiv: str
    code: str
    license: str
    models: dict[str, str]
    tasks: dict[str, str] = field(default_factory=dict)
    converter: str | None = None
    bench: str | None = None
    demo: str | None = None
    card: str | None = None
    data: tuple[str, ...] = ()
    extra: str | None = None


def load_object(target: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute; a paper's optional module that is not installed
    is a `MissingDependency` naming the extra to install (`as_missing_dependency`)."""
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        missing = as_missing_dependency(exc)
        if missing is None:
            raise
        raise missing from None


def as_missing_dependency(exc: BaseException) -> MissingDependency | None:
    """The `MissingDependency` that explains ``exc``: ``exc`` itself or an exception it was raised from or during
    (jsonargparse wraps the import errors of a config's class_path), or one made for a ``ModuleNotFoundError`` of an
    optional module (`OPTIONAL_MODULES`) that a paper's code (``zoo.models.<paper>``, the innermost such frame of
    its traceback) imported, naming that paper's extra. None when there is none (a missing module is then a bug, or
    a broken core install, and keeps its traceback)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MissingDependency):
            return exc
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").partition(".")[0] in OPTIONAL_MODULES:
            paper = _importing_paper(exc)
            if paper is not None and paper.extra:
                return missing_dependency(exc.name, paper.extra, str(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _importing_paper(exc: BaseException) -> Paper | None:
    """The paper whose module is the innermost ``zoo.models.<paper>`` frame of ``exc``'s traceback, if any."""
    papers = [m.group(1) for frame, _ in traceback.walk_tb(exc.__traceback__)
              if (m := re.match(r"zoo\.models\.(\w+)", frame.f_globals.get("__name__", "")))]
    return _papers().get(papers[-1]) if papers else None


@lru_cache(maxsize=None)
def _papers() -> dict[str, Paper]:
    import zoo.models

    papers = {}
    for info in sorted(pkgutil.iter_modules(zoo.models.__path__), key=lambda m: m.name):
        if not info.ispkg or info.name.startswith("_"):
            continue
        paper = getattr(importlib.import_module(f"zoo.models.{info.name}"), "PAPER", None)
        if isinstance(paper, Paper):
            papers[paper.id] = paper
    return papers


@lru_cache(maxsize=None)
def _model_index() -> dict[str, Paper]:
    index: dict[str, Paper] = {}
    for paper in _papers().values():
        for name in paper.models:
            if name in index:
                raise RuntimeError(f"model name {name!r} is registered by both {index[name].id} and {paper.id}")
            index[name] = paper
    return index


def list_papers() -> list[Paper]:
    """All registered papers, sorted by id."""
    return list(_papers().values())


def get_paper(paper_id: str) -> Paper:
    """The `Paper` registered under ``paper_id`` (a folder name under ``zoo/models``, e.g. ``knn_ood``)."""
    papers = _papers()
    if paper_id not in papers:
        raise ZooError(f"unknown paper {paper_id!r}{suggest(paper_id, papers)}; known papers: {', '.join(papers)}")
    return papers[paper_id]


def paper_of(name: str) -> Paper:
    """The paper that registers model ``name`` (a tag, if any, is ignored)."""
    arch, _ = split_name(name)
    index = _model_index()
    if arch not in index:
        raise ZooError(f"unknown model {arch!r}{suggest(arch, index)}; see `zoo list`")
    return index[arch]


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def suggest(name: str, choices) -> str:
    """`` (did you mean a, b, c?)`` with the up to three ``choices`` closest to a misspelt ``name`` (compared
    regardless of case, so ``KNN_OOD_RESNET20`` finds ``knn_ood_resnet20``), or ``""`` (also for a ``name`` that is
    not a string)."""
    if not isinstance(name, str):
        return ""
    by_lower = {str(c).lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(by_lower[c] for c in close)}?)" if close else ""


def split_name(name: str) -> tuple[str, str | None]:
    """``"arch.tag"`` -> ``("arch", "tag")``; ``"arch"`` -> ``("arch", None)``; anything else that is not such a
    string (None, a number, ``"arch."``) is a `ZooError`."""
    if not isinstance(name, str):
        raise ZooError(f"a model name is a str, 'arch' or 'arch.tag' (`zoo list`), not {type(name).__name__} "
                       f"{name!r}; a saved model folder loads with zoo.from_pretrained")
    arch, dot, tag = name.partition(".")
    if dot and not tag:
        raise ZooError(f"model name {name!r} ends in '.': give {arch!r}, or {arch!r} with a tag after the dot "
                       f"(`zoo list --pretrained`)")
    return arch, (tag or None)


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered model names matching ``pattern``, naturally sorted: an fnmatch glob (``knn_ood_resnet?0``), or,
    without glob characters, a part of the name (``knn`` = ``*knn*``); either way regardless of case (``KNN``).

    With ``pretrained=True`` the result lists ``name.tag`` for every manifest entry of a registered model instead
    (entries that are data, such as DOORPING's distilled sets, are left out).
    """
    if not isinstance(pattern, str):
        raise ZooError(f"list_models takes a name pattern str (knn, knn_ood_resnet?0), not {type(pattern).__name__} "
                       f"{pattern!r}")
    if pretrained:
        from .hub import load_manifest

        names = [k for k in load_manifest() if split_name(k)[0] in _model_index()]
    else:
        names = list(_model_index())
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    return sorted((n for n in names if fnmatch.fnmatchcase(n.lower(), pattern.lower())), key=_natural_key)


def tags_for(arch: str) -> list[str]:
    """Manifest tags of one architecture, the default tag first."""
    from .hub import load_manifest

    entries = {k: v for k, v in load_manifest().items() if split_name(k)[0] == arch}
    tags = [split_name(k)[1] for k in entries]
    default = [split_name(k)[1] for k, v in entries.items() if v.get("default")]
    return default + [t for t in tags if t not in default]


def resolve_entry(name: str, pretrained: bool | str = True) -> tuple[str, dict]:
    """Manifest key and entry for ``name`` (``arch`` or ``arch.tag``) and a ``pretrained`` tag."""
    from .hub import load_manifest

    arch, tag = split_name(name)
    if isinstance(pretrained, str):
        tag = pretrained
    if tag is None:
        tags = tags_for(arch)
        if not tags:
            paper_of(arch)  # an unknown name: its error suggests the closest ones
            raise ZooError(f"model {arch!r} has no pretrained weights in the manifest: build it without weights "
                           f"(pretrained=False in Python) or give a zoo model folder")
        tag = tags[0]
    key = f"{arch}.{tag}"
    manifest = load_manifest()
    if key not in manifest:
        known = [f"{arch}.{t}" for t in tags_for(arch)]
        raise ZooError(
            f"no weights named {key!r}{suggest(key, manifest)}; "
            f"weights for {arch}: {', '.join(known) if known else 'none'}"
        )
    return key, manifest[key]


# Constructor arguments that only say where a model's initial weights come from (a local timm file). When the
# model's own weights are loaded right after construction they are not passed, so a saved folder never needs them.
INIT_WEIGHT_ARGS = frozenset({"weights_file", "img_weights_file"})


def _builder(arch: str) -> Callable[..., Any]:
    paper = paper_of(arch)
    return load_object(paper.models[arch])


def _names_a_file(arch: str, pretrained: bool | str | Path) -> bool:
    """Whether ``pretrained`` is a weights path rather than a manifest tag: a ``Path``, a string with a path
    separator or a ``.safetensors`` suffix, or an existing file or folder that is not one of ``arch``'s tags (a tag
    wins over a same-named folder in the working directory)."""
    if isinstance(pretrained, Path):
        return True
    if not isinstance(pretrained, str):
        return False
    if "/" in pretrained or os.sep in pretrained or pretrained.endswith(".safetensors"):
        return True
    return Path(pretrained).exists() and pretrained not in tags_for(arch)


def create_model(name: str, pretrained: bool | str = False, **kwargs):
    """Build a registered model as a plain ``nn.Module``.

    Args:
        name: ``arch`` or ``arch.tag``. A tag's ``model_args`` from the manifest apply; its weights load only
            when ``pretrained`` asks for them (timm's convention).
        pretrained: ``False`` (no zoo weights: random init, except the parts a model is defined with
            pre-trained, such as the drum models' SmolLM2 base, which load their own weights), ``True`` (the tag in
            ``name`` or the default tag), a tag string, or a path to a ``.safetensors`` file or a folder written by
            `zoo.save_pretrained` (of model ``name``; its config's ``model_args``, tag and classes apply, as with
            `zoo.from_pretrained`).
        **kwargs: constructor arguments; they override the manifest's or the folder's ``model_args``.

    Returns:
        The model, with ``model.zoo_cfg = {"architecture", "model_args", "tag"}`` (and ``classes``, the names of
        a classifier's outputs, where its manifest entry gives them; `zoo.from_pretrained` also carries a folder's
        ``classes`` and ``classifier``, the latter ``"untrained"`` for a converted SupCon model) recorded so that
        `zoo.save_pretrained` can write a config that rebuilds it. An image model (``input_spec["input_size"]``
        [C, H, W]) checks what it is called with (`check_image_input`).
    """
    from .checkpoint import load_state_dict, read_weights

    arch, tag = split_name(name)
    data_paper = _data_paper(arch)
    if data_paper is not None:
        raise ZooError(f"{name} is data made by the {data_paper.id} code, not model weights: `zoo info {name}` "
                       f"shows it, and its model card ({data_paper.card}) says how to load it")
    entry_key, entry, folder_cfg = None, None, None
    weights_path: Path | None = None
    if _names_a_file(arch, pretrained):
        weights_path = Path(pretrained)
        if weights_path.is_dir():  # its verified config stands in for a manifest entry
            entry = folder_cfg = _folder_entry(weights_path, arch)
            weights_path = weights_path / "model.safetensors"
        if not weights_path.exists():
            raise ZooError(f"pretrained weights {pretrained} not found: expected a .safetensors file or a "
                           f"folder written by zoo.save_pretrained")
    elif pretrained:
        entry_key, entry = resolve_entry(name, pretrained)
        tag = split_name(entry_key)[1]
    elif tag is not None:
        from .hub import load_manifest

        entry = load_manifest().get(f"{arch}.{tag}")
        if entry is None:
            resolve_entry(name, tag)  # raises with suggestions

    builder = _builder(arch)  # after the folder check, which names a folder's unknown architecture as the folder's
    model_args = {**(entry or {}).get("model_args", {}), **kwargs}
    loads_weights = entry_key is not None or weights_path is not None
    build_args = {k: v for k, v in model_args.items() if not (loads_weights and k in INIT_WEIGHT_ARGS)}
    try:
        model = builder(**build_args)
    except (TypeError, ValueError, RuntimeError, AssertionError, IndexError, ArithmeticError) as exc:
        if not kwargs and not isinstance(exc, TypeError):  # the manifest's or default arguments: the zoo's bug
            raise
        given = f" ({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})" if kwargs else ""
        raise ZooError(f"bad arguments for model {arch!r}{given}: {type(exc).__name__}: {exc}") from exc
    model.zoo_cfg = {"architecture": arch, "model_args": model_args, "tag": tag if loads_weights else None}
    if folder_cfg is not None:  # its tag and classifier state
        model.zoo_cfg.update(tag=folder_cfg.get("tag"),
                             **({"classifier": folder_cfg["classifier"]} if folder_cfg.get("classifier") else {}))
    if loads_weights and (entry or {}).get("classes") and "num_classes" not in kwargs:  # the weights' outputs, in order
        model.zoo_cfg["classes"] = list(entry["classes"])
    if len((getattr(model, "input_spec", None) or {}).get("input_size", ())) == 3:
        model.register_forward_pre_hook(check_image_input)

    if entry_key is not None:
        from .hub import fetch

        weights_path = fetch(entry_key)
    if weights_path is not None:
        load_state_dict(
            model,
            read_weights(weights_path),
            allow_missing=(entry or {}).get("allow_missing", ()),
            allow_unexpected=(entry or {}).get("allow_unexpected", ()),
            source=str(weights_path),
        )
    return model


def _folder_entry(folder: Path, arch: str) -> dict:
    """The verified ``config.json`` of a `zoo.save_pretrained` folder given as ``create_model(arch, pretrained=...)``,
    which must hold an ``arch`` model: it stands in for a manifest entry (``model_args``, ``classes``, ``tag``)."""
    from .checkpoint import verified_folder

    cfg = verified_folder(folder)
    if cfg["architecture"] != arch:
        raise ZooError(f"{folder} holds a {cfg['architecture']} model, not {arch}: load it with "
                       f"zoo.from_pretrained({str(folder)!r})")
    return cfg


def check_image_input(model, args) -> None:
    """Forward pre-hook of the zoo's image models: the input must be a floating [B, C, H, W] tensor with the
    model's C channels (``model.input_spec["input_size"]``), in the weights' dtype unless autocast is on; anything
    else is one ZooError saying what to pass, instead of an error from deep inside a convolution. The spatial size
    is checked only for models whose spec says ``fixed_size`` (most of the models take any)."""
    import torch

    x = args[0] if args else None
    if not isinstance(x, torch.Tensor):
        return
    name = model.zoo_cfg["architecture"]
    c, h, w = model.input_spec["input_size"]
    if x.dim() != 4 or x.shape[1] != c:
        hint = " (one image: add the batch dimension, x[None])" if x.dim() == 3 and x.shape[0] == c else ""
        raise ZooError(f"{name} takes images [B, {c}, H, W] ({c}x{h}x{w} when trained); got shape "
                       f"{list(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ZooError(f"{name} takes float images normalised with model.input_spec's mean and std; got "
                       f"{x.dtype} (for 0-255 pixels: (x.float() / 255 - mean) / std)")
    if model.input_spec.get("fixed_size") and tuple(x.shape[-2:]) != (h, w):
        raise ZooError(f"{name} takes {h}x{w} images (it is built for that size); got {x.shape[-2]}x{x.shape[-1]}: "
                       f"resize them, or build the model for their size (its image-size argument)")
    weight = next(model.parameters(), None)
    if weight is not None:
        check_weights_dtype(x, weight, f"{name}'s", "input is", "x")


def check_weights_dtype(x, weight, whose: str, what: str, var: str) -> None:
    """Refuse a float input ``x`` that cannot meet ``weight``: it must have the same dtype, or one autocast casts
    (float32 and the 16-bit types) while autocast is on; float64 never is cast, so it fails a float32 layer even
    under autocast. The ZooError reads "{whose} weights are W but the {what} X: pass {var}.to(W), ..."."""
    import torch

    if x.dtype == weight.dtype or (torch.is_autocast_enabled(x.device.type)
                                   and x.dtype in (torch.float32, torch.float16, torch.bfloat16)):
        return
    raise ZooError(f"{whose} weights are {weight.dtype} but the {what} {x.dtype}: pass {var}.to({weight.dtype}), or "
                   f"run under torch.autocast")


def _data_paper(prefix: str) -> Paper | None:
    """The paper whose `Paper.data` holds manifest key prefix ``prefix``, if any."""
    return next((p for p in _papers().values() if prefix in p.data), None)


def _file_not_model(path: Path) -> ZooError:
    """The error for a file given where `model_info` reads a model folder: its folder when that is a zoo model
    folder (the file is its weights or config), else what `zoo info` reads."""
    from .checkpoint import CONFIG_NAME

    if (path.parent / CONFIG_NAME).is_file():
        return ZooError(f"{path} is a file of the zoo model folder {path.parent}: give the folder (zoo info "
                        f"{path.parent})")
    return ZooError(f"{path} is a file, not a model: zoo info reads a folder written by zoo.save_pretrained (with "
                    f"{CONFIG_NAME}), or a manifest name NAME or NAME.TAG (zoo list --pretrained)")


def _citation(paper: Paper) -> dict:
    """The fields of ``paper`` that `model_info` shows under ``paper``: how to cite it and its licence."""
    return {k: getattr(paper, k) for k in ("id", "title", "authors", "venue", "arxiv", "code", "license")}


def _paper_info(paper: Paper) -> dict:
    """`model_info` of a paper id (``knn_ood``): the paper, its model card, and its models with their weights tags."""
    return {"name": paper.id, "kind": "paper", "paper": _citation(paper),
            "model_card": paper.card, "models": {m: tags_for(m) for m in sorted(paper.models, key=_natural_key)}}


def model_info(name: str) -> dict:
    """Everything known about ``name`` (``arch``, ``arch.tag``, a paper's data entry ``prefix[.tag]``, a paper id,
    or a folder written by save_pretrained)."""
    from .hub import load_manifest

    if not isinstance(name, (str, Path)):
        raise ZooError(f"model_info takes a name, name.tag, paper id or folder path, not {type(name).__name__} "
                       f"{name!r}")
    path = Path(name)
    if path.is_dir():
        from .checkpoint import read_config

        cfg = read_config(path)
        return {"source": str(path), **cfg}
    if path.is_file():
        raise _file_not_model(path)
    if "/" in name:
        raise ZooError(f"{name} does not exist: give a folder written by zoo.save_pretrained, NAME or NAME.TAG")
    arch, tag = split_name(name)
    if arch not in _model_index() and arch in _papers() and tag is None:
        return _paper_info(_papers()[arch])
    paper = _data_paper(arch) or paper_of(arch)
    info = {
        "name": arch,
        **({"kind": "data (not model weights)"} if arch in paper.data else {}),
        "paper": _citation(paper),
        "model_card": paper.card,
        "weights": {},
    }
    manifest = load_manifest()
    tags = [tag] if tag else tags_for(arch)
    for t in tags:
        key = f"{arch}.{t}"
        if key not in manifest:
            resolve_entry(name, t)
        info["weights"][key] = manifest[key]
    return info
