"""Local weight files for timm models: the zoo never lets timm reach a hub."""

from __future__ import annotations

from pathlib import Path

from ..errors import ZooError


def timm_weights_kwargs(weights_file: str | None) -> dict:
    """``timm.create_model`` keyword arguments that load ``weights_file`` (``.pth``/``.safetensors``), or none.

    Raises:
        ZooError: the file does not exist (timm would otherwise raise an empty FileNotFoundError).
    """
    if not weights_file:
        return {}
    if not Path(weights_file).is_file():
        raise ZooError(f"timm weights file {weights_file} does not exist: give a local .pth or .safetensors file "
                       f"of that architecture, or leave weights_file out for random initialisation")
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights_file)}}
