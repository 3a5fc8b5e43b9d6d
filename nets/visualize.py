"""Looking inside a network: record what named layers compute, with forward hooks.

A forward hook (``module.register_forward_hook(fn)``) is called after ``module.forward``
with ``(module, inputs, output)``; it sees the tensors exactly as the next layer will. The
helpers here register hooks for the duration of a ``with`` block or one call and always
remove them again — also when the forward pass raises — so a model never keeps a stale
hook that slows it down or leaks memory.

* :func:`capture` — a context manager that records the outputs (and, on request, the
  inputs) of named submodules during the forward passes run inside it.
* :func:`activations` — one forward pass in eval mode without gradients, returning the
  recorded outputs.
* :func:`shape_table` — per layer: type, input shapes, output shape, own parameters; the
  shape walk-through of a model generated from the model, never typed by hand.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["Capture", "capture", "activations", "shape_table", "ShapeRow"]


def _resolve(model: nn.Module, layers: Optional[Sequence[str]]) -> List[Tuple[str, nn.Module]]:
    """``(name, module)`` for the requested names (``None``: every leaf module, in
    registration order). Unknown names raise a ``ValueError`` listing a few valid ones."""
    named = dict(model.named_modules())
    if layers is None:
        return [(name, m) for name, m in model.named_modules()
                if name and not any(True for _ in m.children())]
    if isinstance(layers, str):
        raise ValueError(f"layers must be a sequence of module names, got the string {layers!r}; "
                         f"wrap it in a list: [{layers!r}]")
    missing = [name for name in layers if name not in named]
    if missing:
        some = [n for n in named if n][:12]
        raise ValueError(f"no submodule named {missing} in {type(model).__name__}; "
                         f"names look like {some} (see model.named_modules())")
    return [(name, named[name]) for name in layers]


def _tensors(value) -> List[torch.Tensor]:
    """The tensors in a hook's inputs or output (a tensor, or a tuple/list of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


class Capture(dict):
    """What :func:`capture` recorded: ``capture[name]`` is the output of layer ``name`` in
    the last forward pass (a tensor, or a tuple for modules returning several);
    ``capture.inputs[name]`` the tensors it was called with (when ``inputs=True``);
    ``capture.calls[name]`` how many times it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: Dict[str, Tuple[torch.Tensor, ...]] = {}
        self.calls: Dict[str, int] = {}


@contextmanager
def capture(model: nn.Module, layers: Optional[Sequence[str]] = None, *,
            inputs: bool = False, detach: bool = True, clone: bool = True) -> Iterator[Capture]:
    """Record the outputs of the submodules named in ``layers`` (names from
    ``model.named_modules()``; ``None``: every leaf module) during the forward passes run
    inside the ``with`` block::

        with nets.visualize.capture(model, ["layer1", "layer4"]) as seen:
            model(x)
        seen["layer4"].shape          # (N, 512, H/32, W/32)

    ``detach=True`` stores tensors cut from the autograd graph (no memory held for a
    backward pass); pass ``False`` to keep the graph (Grad-CAM needs it). ``clone=True``
    copies each tensor: a later in-place op (``nn.ReLU(inplace=True)``) would otherwise
    change what was recorded. A layer that runs several times keeps its last call.
    The hooks are removed when the block ends, also when it raises.
    """
    record = Capture()
    handles = []

    def keep(t: torch.Tensor) -> torch.Tensor:
        if detach:
            t = t.detach()
        return t.clone() if clone else t

    def hook_for(name: str):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor):
                record[name] = keep(output)
            else:
                record[name] = tuple(keep(t) for t in _tensors(output))
            if inputs:
                record.inputs[name] = tuple(keep(t) for t in _tensors(args))
            record.calls[name] = record.calls.get(name, 0) + 1
        return hook

    try:
        for name, module in _resolve(model, layers):
            handles.append(module.register_forward_hook(hook_for(name)))
        yield record
    finally:
        for handle in handles:
            handle.remove()


def activations(model: nn.Module, x: torch.Tensor,
                layers: Optional[Sequence[str]] = None) -> Capture:
    """Run ``model(x)`` once in eval mode without gradients and return the outputs of
    ``layers`` (see :func:`capture`). The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture(model, layers, inputs=True) as seen:
            model(x)
    finally:
        model.train(was_training)
    return seen


@dataclass
class ShapeRow:
    """One line of :func:`shape_table`."""

    name: str
    kind: str
    inputs: Tuple[Tuple[int, ...], ...]
    output: Tuple[Tuple[int, ...], ...]
    params: int

    def __str__(self) -> str:
        def fmt(shapes):
            return " + ".join("×".join(map(str, s)) for s in shapes)
        return f"{self.name:<24} {self.kind:<18} {fmt(self.inputs):>28} → {fmt(self.output):<20} {self.params:>10,}"


def shape_table(model: nn.Module, x: torch.Tensor,
                layers: Optional[Sequence[str]] = None) -> List[ShapeRow]:
    """Per layer (default: every leaf module), in the order they ran: its class, the
    shapes it received and returned, and its own parameter count (with children). The
    batch dimension is included. Generated by one forward pass with hooks, so it cannot
    drift from the code the way hand-written shape comments do."""
    seen = activations(model, x, layers)
    order = sorted(seen.keys(), key=list(seen.keys()).index)   # call order = insertion order
    named = dict(model.named_modules())
    rows = []
    for name in order:
        module = named[name]
        out = seen[name]
        outs = [out] if isinstance(out, torch.Tensor) else list(out)
        rows.append(ShapeRow(name, type(module).__name__,
                             tuple(tuple(t.shape) for t in seen.inputs.get(name, ())),
                             tuple(tuple(t.shape) for t in outs),
                             sum(p.numel() for p in module.parameters())))
    return rows
