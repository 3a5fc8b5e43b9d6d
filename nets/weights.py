"""Pretrained ImageNet weights from torchvision, loaded into our models.

Our ResNets, MobileNets and ShuffleNets use torchvision's parameter names, so
torchvision's published checkpoints load into them strictly. Which checkpoints exist is
torchvision's own business: ``get_model_weights("resnet50")`` is the ``ResNet50_Weights``
enum, and ``weights=`` takes a member of it or its name, exactly as torchvision's builders
do. The download needs the network once (torch caches the file under
``torch.hub.get_dir()/checkpoints``); offline, loading fails with a message that says so
instead of a bare ``URLError``.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, Optional, Union

from torch import nn

Weights = Union[str, Any]  # a torchvision WeightsEnum member or its name


def resolve_weights(weights: Weights, model: str):
    """The member of torchvision's weights enum for ``model`` (e.g. ``"resnet50"``) that
    ``weights`` names: an enum member such as ``ResNet50_Weights.IMAGENET1K_V2``, or a
    string, full (``"ResNet50_Weights.IMAGENET1K_V2"``) or short (``"IMAGENET1K_V1"``,
    ``"DEFAULT"``)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(model)
    available = ["DEFAULT"] + [w.name for w in enum]
    if isinstance(weights, enum):
        return weights
    if not isinstance(weights, str) or not weights:
        raise ValueError(f"weights for {model} must be a member of {enum.__name__} or its name "
                         f"({', '.join(available)}), got {weights!r}")
    prefix, _, name = weights.rpartition(".")
    if prefix and prefix != enum.__name__:
        raise ValueError(f"weights {weights!r} are not for {model}; expected {enum.__name__}.<name>")
    try:
        return enum[name]
    except KeyError:
        raise ValueError(f"unknown weights {weights!r} for {model}; {enum.__name__} has "
                         f"{', '.join(available)}") from None


def check_num_classes(weights: Optional[Weights], model: str, num_classes: int) -> None:
    """Pretrained classifiers have the checkpoint's number of classes; a different
    ``num_classes`` would not load. Say so before building anything."""
    if weights is None:
        return
    expected = len(resolve_weights(weights, model).meta["categories"])
    if num_classes != expected:
        raise ValueError(
            f"weights {weights!r} have {expected} classes but num_classes={num_classes}; build with "
            f"num_classes={expected} and replace the classifier afterwards (see the transfer-learning "
            "section of the ResNet chapter)")


def load_torchvision_weights(model: nn.Module, weights: Weights, name: str,
                             progress: bool = True) -> nn.Module:
    """Download (or take from torch's cache) the checkpoint named by ``weights`` for the
    torchvision model ``name`` and load it into ``model`` strictly. Returns ``model``."""
    import torch.hub

    entry = resolve_weights(weights, name)
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


def no_pretrained_weights(weights: Optional[Weights], what: str, hint: str = "") -> None:
    """For builders of models torchvision has no checkpoint for: ``weights`` must be None."""
    if weights is not None:
        raise ValueError(f"there are no pretrained {what} weights in torchvision{hint}; "
                         "build with weights=None")


def make_builder(name: str, build: Callable[..., nn.Module], doc: str,
                 **fixed: Any) -> Callable[..., nn.Module]:
    """A public builder with torchvision's signature,
    ``name(*, weights=None, progress=True, num_classes=1000, **kwargs)``, that calls
    ``build(weights=..., progress=..., num_classes=..., **fixed, **kwargs)``. Everything is
    keyword-only, so ``builder(0.5)`` is a ``TypeError`` instead of a silent misuse. The
    families whose variants differ only in numbers (ResNet, SE-/CBAM-ResNet, ShuffleNet V2)
    make their builders with it rather than repeating one function per variant."""

    def builder(*, weights: Optional[Weights] = None, progress: bool = True,
                num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        return build(weights=weights, progress=progress, num_classes=num_classes, **fixed, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    builder.__annotations__ = {**builder.__annotations__,
                               "return": typing.get_type_hints(build).get("return", nn.Module)}
    return builder
