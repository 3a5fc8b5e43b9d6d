"""Pretrained ImageNet weights from torchvision, loaded into our models.

Our ResNets, MobileNets and ShuffleNets use torchvision's parameter names, so
torchvision's published checkpoints load into them strictly. The download needs the
network once (torch caches the file under ``torch.hub.get_dir()/checkpoints``); offline,
loading fails with a message that says so instead of a bare ``URLError``.
"""

from __future__ import annotations

from typing import Optional

from torch import nn


def resolve_weights(weights: str, enum_name: str):
    """The torchvision weights entry for ``weights``: a full name such as
    ``"ResNet50_Weights.IMAGENET1K_V2"`` or a short one (``"IMAGENET1K_V1"``,
    ``"DEFAULT"``) that is looked up in ``enum_name``."""
    from torchvision.models import get_weight

    if not isinstance(weights, str) or not weights:
        raise ValueError(f"weights must be a torchvision weight name such as "
                         f"'{enum_name}.DEFAULT', got {weights!r}")
    name = weights if "." in weights else f"{enum_name}.{weights}"
    if name.split(".")[0] != enum_name:
        raise ValueError(f"weights {weights!r} are not for this model; expected {enum_name}.<name>")
    try:
        return get_weight(name)
    except (ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"unknown weights {weights!r}; {enum_name} has "
                         f"{_available(enum_name)}") from exc


def _available(enum_name: str) -> list:
    import torchvision.models as tvm

    enum = getattr(tvm, enum_name, None)
    return ["DEFAULT"] + [w.name for w in enum] if enum is not None else []


def check_num_classes(weights: Optional[str], enum_name: str, num_classes: int) -> None:
    """Pretrained classifiers have the checkpoint's number of classes; a different
    ``num_classes`` would not load. Say so before building anything."""
    if weights is None:
        return
    expected = len(resolve_weights(weights, enum_name).meta["categories"])
    if num_classes != expected:
        raise ValueError(
            f"weights {weights!r} have {expected} classes but num_classes={num_classes}; build with "
            f"num_classes={expected} and replace the classifier afterwards (see the transfer-learning "
            "section of the ResNet chapter)")


def load_torchvision_weights(model: nn.Module, weights: str, enum_name: str,
                             progress: bool = True) -> nn.Module:
    """Download (or take from torch's cache) the checkpoint named by ``weights`` and load
    it into ``model`` strictly. Returns ``model``."""
    import torch.hub

    entry = resolve_weights(weights, enum_name)
    try:
        state_dict = entry.get_state_dict(progress=progress)
    except OSError as exc:  # URLError, HTTPError, socket errors are all OSErrors
        raise RuntimeError(
            f"could not download the pretrained weights {entry} from {entry.url} ({exc}). "
            "They need the network once and are then cached in "
            f"{torch.hub.get_dir()}/checkpoints. Offline, build the model without weights= "
            "(random initialisation) or load a state_dict you have with model.load_state_dict()."
        ) from exc
    model.load_state_dict(state_dict, strict=True)
    return model
