"""A model's size and cost: parameters, multiply-accumulates (MACs) and measured latency.

MACs are counted by torch itself (``torch.utils.flop_counter.FlopCounterMode``), which
knows the cost of convolutions, matrix products and attention: no hand-written formulas
to get wrong. One multiply-accumulate is two floating-point operations, so
``MACs = FLOPs / 2``; the "GFLOPS" torchvision lists for its weights are GMACs in this sense.

MACs are not time: memory traffic, kernel launches and how well an operation parallelises
decide that (ShuffleNet V2's point). :func:`latency` times one callable and
:func:`compare_latency` several, interleaved, both on ``torch.utils.benchmark`` (warm-up,
blocks sized so timer overhead vanishes, thread count recorded).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (``model.parameters()`` yields a shared tensor once; buffers
    such as BN running statistics are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Union[Sequence[int], torch.Size]) -> int:
    """Multiply-accumulates of one forward pass on a zero tensor of ``input_size``.

    ``input_size`` is the full shape including the batch, e.g. ``(1, 3, 224, 224)``.
    The model is run once in eval mode under ``torch.no_grad`` on the device of its
    parameters and put back in the mode it was in.
    """
    size = tuple(int(s) for s in input_size)
    if len(size) < 2 or any(s <= 0 for s in size):
        raise ValueError(f"input_size must be a full shape with batch, e.g. (1, 3, 224, 224), got {size}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


# ---------------------------------------------------------------------------- latency

def _benchmark_module():
    """``torch.utils.benchmark``, imported without the warning its import logs on machines
    with a CUDA toolkit but no GPU ("No CUDA runtime is found"): irrelevant for timing."""
    import logging

    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import torch.utils.benchmark as benchmark
    finally:
        log.setLevel(level)
    return benchmark


def _as_callable(target: Union[nn.Module, Callable[..., Any]], inputs: Tuple[Any, ...],
                 grad: bool) -> Callable[[], Any]:
    """``target(*inputs)`` as a no-argument callable; a module runs as it is (train or eval
    mode is the caller's choice) and, unless ``grad``, under ``torch.no_grad``."""
    if grad:
        return lambda: target(*inputs)

    def run() -> Any:
        with torch.no_grad():
            return target(*inputs)
    return run


@dataclass
class Latency:
    """One timed callable: seconds per call.

    ``median`` and ``iqr`` (interquartile range, the spread) summarise ``times``, the
    per-block means that ``torch.utils.benchmark`` measured (each block runs the call
    ``number_per_run`` times); ``threads`` is the intra-op thread count used."""

    label: str
    median: float
    iqr: float
    times: List[float]
    number_per_run: int
    threads: int

    def __str__(self) -> str:
        return (f"{self.label}: {self.median * 1e3:.3g} ms per call "
                f"(IQR {self.iqr * 1e3:.2g} ms, {len(self.times)} blocks × {self.number_per_run}, "
                f"{self.threads} thread{'s' if self.threads != 1 else ''})")


def latency(target: Union[nn.Module, Callable[..., Any]], *inputs: Any, label: str = "",
            min_run_time: float = 0.5, warmup: int = 2, threads: Optional[int] = None,
            grad: bool = False) -> Latency:
    """Time ``target(*inputs)`` with ``torch.utils.benchmark.Timer.blocked_autorange``.

    ``warmup`` untimed calls first (first calls allocate memory and pick kernels); then
    blocked_autorange sizes blocks so timer overhead is negligible and repeats them for at
    least ``min_run_time`` seconds. A module runs in the mode it is in (``model.eval()`` for
    inference latency) and without autograd unless ``grad=True``. ``threads`` defaults to
    ``torch.get_num_threads()``; on a machine whose cores are busy with other work, pass
    ``threads=1``: with more threads than free cores every op waits for a descheduled
    thread, and the timing says more about the machine than about the op. On a GPU the Timer synchronises the device itself.
    """
    benchmark = _benchmark_module()
    threads = torch.get_num_threads() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be positive, got {min_run_time}")
    fn = _as_callable(target, inputs, grad)
    label = label or getattr(type(target), "__name__", "callable")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            fn()
    finally:
        torch.set_num_threads(before)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, label=label)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Latency(label, m.median, m.iqr, list(m.times), m.number_per_run, threads)


@dataclass
class LatencyComparison:
    """Several callables timed in interleaved rounds (see :func:`compare_latency`).

    ``times[name]`` holds one time per round (seconds per call); ``median[name]`` their
    median; ``ratio[name]`` the median over rounds of ``time / baseline's time in the same
    round``: a ratio of two timings taken moments apart, so a change in machine load
    between rounds cancels out."""

    baseline: str
    times: Dict[str, List[float]]
    threads: int

    @property
    def median(self) -> Dict[str, float]:
        return {name: statistics.median(t) for name, t in self.times.items()}

    @property
    def ratio(self) -> Dict[str, float]:
        base = self.times[self.baseline]
        return {name: statistics.median(a / b for a, b in zip(t, base))
                for name, t in self.times.items()}

    def table(self) -> str:
        """A plain-text table: median ms per call and ratio to the baseline."""
        width = max(len(n) for n in self.times)
        lines = [f"{'':<{width}}  {'ms/call':>9}  {'× ' + self.baseline:>12}"]
        for name in self.times:
            lines.append(f"{name:<{width}}  {self.median[name] * 1e3:9.3f}  {self.ratio[name]:12.2f}")
        return "\n".join(lines)


def compare_latency(candidates: Mapping[str, Union[nn.Module, Callable[..., Any]]], *inputs: Any,
                    baseline: Optional[str] = None, rounds: int = 15, min_run_time: float = 0.05,
                    warmup: int = 2, threads: Optional[int] = None,
                    grad: bool = False) -> LatencyComparison:
    """Time several candidates on the same ``inputs`` *interleaved*, and report ratios.

    Absolute times on a shared machine drift with its load; two timings taken moments apart
    drift together. So each candidate is first calibrated with ``blocked_autorange`` (which
    fixes how many calls make one block of about ``min_run_time`` seconds); then, in each of
    ``rounds`` rounds, every candidate runs one block, in an order rotated from round to
    round (``Timer.timeit`` runs a short warm-up of its own before each block). Ratios are
    taken within a round. ``baseline`` (default: the first candidate) is the denominator. A candidate is a module or any callable taking ``*inputs``; callables
    that need different inputs can close over them and take none (pass no ``inputs``).
    """
    if not candidates:
        raise ValueError("compare_latency needs at least one candidate")
    names = list(candidates)
    baseline = names[0] if baseline is None else baseline
    if baseline not in candidates:
        raise ValueError(f"baseline {baseline!r} is not one of the candidates {names}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    benchmark = _benchmark_module()
    threads = torch.get_num_threads() if threads is None else int(threads)
    timers, numbers = {}, {}
    for name in names:
        fn = _as_callable(candidates[name], inputs, grad)
        timers[name] = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, label=name)
        for _ in range(warmup):
            timers[name].timeit(1)
        numbers[name] = timers[name].blocked_autorange(min_run_time=min_run_time).number_per_run
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2:
            order = order[::-1]
        for name in order:
            times[name].append(timers[name].timeit(numbers[name]).median)
    return LatencyComparison(baseline, times, threads)
