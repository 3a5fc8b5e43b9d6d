"""Batch Normalization, written out: the readable twin of ``nn.BatchNorm2d``.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing
Internal Covariate Shift", arXiv:1502.03167 (Algorithm 1 for training, Algorithm 2 for
inference).

For every channel c of a batch ``x`` of shape (N, C, H, W), over its m = N·H·W values::

    mu_B      = mean(x[:, c])                         # batch mean
    sigma2_B  = mean((x[:, c] - mu_B) ** 2)           # batch variance, *biased* (divide by m)
    x_hat     = (x[:, c] - mu_B) / sqrt(sigma2_B + eps)
    y         = gamma_c * x_hat + beta_c              # learned scale and shift ("affine")

At inference the batch statistics are replaced by population estimates kept during
training. PyTorch keeps them as exponential moving averages with its own momentum
convention (Keras' ``momentum=0.9`` is the opposite one)::

    running_mean = (1 - momentum) * running_mean + momentum * mu_B
    running_var  = (1 - momentum) * running_var  + momentum * sigma2_B * m / (m - 1)

so the *biased* variance normalises the batch while the *unbiased* one (the paper's
population estimate) is stored. ``momentum=None`` gives every batch the same weight: the
cumulative average, with factor 1 / num_batches_tracked.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from nets.layers import check_image_batch


def _per_channel(t: Tensor, ndim: int) -> Tensor:
    """A (C,) vector reshaped to (1, C, 1, ..., 1) so it broadcasts against an ndim-d batch."""
    return t.reshape(1, -1, *([1] * (ndim - 2)))


def batch_norm(
    x: Tensor,
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization of ``x`` (N, C, *) over every axis but the channel axis.

    The readable twin of ``F.batch_norm`` (same arguments, same order). ``training=True``
    normalises with the batch's statistics and, when running buffers are given, updates
    them in place; ``training=False`` normalises with ``running_mean``/``running_var``.
    The update runs under ``torch.no_grad()``: the running statistics are bookkeeping, not
    part of the computation graph (updating them with autograd on makes every buffer hold
    a graph that grows from step to step).
    """
    dims = [0, *range(2, x.dim())]  # every axis but the channel axis: N, H, W
    if training:
        m = x.numel() // x.shape[1]  # values per channel: N·H·W
        if m == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input "
                             f"size {tuple(x.shape)}: a variance needs at least two values")
        if m == 0:  # an empty batch (detection models make them): nothing to normalise or count
            return x.clone()
        mean = x.mean(dims)  # (C,)
        var = x.var(dims, correction=0)  # (C,) biased, as in the paper's Algorithm 1
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mean)
                running_var.mul_(1 - momentum).add_(momentum * var * (m / (m - 1)))  # unbiased
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm with training=False needs running_mean and running_var")
        mean, var = running_mean, running_var
    x_hat = (x - _per_channel(mean, x.dim())) / torch.sqrt(_per_channel(var, x.dim()) + eps)
    if weight is not None:
        x_hat = x_hat * _per_channel(weight, x.dim())  # gamma
    if bias is not None:
        x_hat = x_hat + _per_channel(bias, x.dim())  # beta
    return x_hat


class BatchNorm2d(nn.Module):
    """Batch normalization of (N, C, H, W) feature maps, per channel (arXiv:1502.03167).

    A drop-in for ``nn.BatchNorm2d``: same arguments, same parameters and buffers with the
    same names (``weight`` = gamma, ``bias`` = beta, ``running_mean``, ``running_var``,
    ``num_batches_tracked``), so a model built with ``norm_layer=BatchNorm2d`` loads
    torchvision's checkpoints strictly. Train mode: batch statistics, running statistics
    updated (see the module docstring for the equations). Eval mode: running statistics,
    or batch statistics when ``track_running_stats=False``. ``affine=False`` drops gamma and
    beta. Input and output: (N, num_features, H, W).

    It is not a subclass of ``nn.BatchNorm2d``: code that looks for norm layers with
    ``isinstance(m, nn.BatchNorm2d)`` (weight-decay filters, conv-BN fusion) skips it.
    """

    _version = 2  # state_dict format of nn.BatchNorm2d since num_batches_tracked exists

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features))  # gamma
            self.bias = nn.Parameter(torch.empty(num_features))  # beta
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Forget the population estimates: mean 0, variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Running statistics reset, gamma = 1, beta = 0: at first the layer only standardises."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.num_features, owner="BatchNorm2d")
        use_batch_stats = self.training or self.running_mean is None
        update = self.training and self.track_running_stats and self.running_mean is not None
        if update and self.momentum is None:  # cumulative average: batch k gets weight 1/k
            momentum = 1.0 / float(self.num_batches_tracked + 1)
        else:
            momentum = 0.0 if self.momentum is None else self.momentum
        y = batch_norm(
            x,
            self.running_mean if update or not use_batch_stats else None,
            self.running_var if update or not use_batch_stats else None,
            self.weight, self.bias, use_batch_stats, momentum, self.eps)
        if update:
            self.num_batches_tracked.add_(1)  # after the call: a rejected batch is not counted
        return y

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs) -> None:
        # Checkpoints saved before PyTorch 0.4.1 (state_dict version < 2) have no
        # num_batches_tracked; like nn.BatchNorm2d, keep our counter instead of failing.
        key = prefix + "num_batches_tracked"
        if ((local_metadata.get("version") or 0) < 2 and self.track_running_stats
                and key not in state_dict):
            state_dict[key] = self.num_batches_tracked
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)
