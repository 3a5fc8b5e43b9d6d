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

In eval mode BN is a fixed affine map per channel, so a convolution followed by BN is one
convolution (:func:`fold_bn`, the readable twin of ``torch.nn.utils.fusion.fuse_conv_bn_eval``;
:func:`fold_bn_eval` folds every such pair of a model)::

    s_c = gamma_c / sqrt(running_var_c + eps)
    W'_c = s_c * W_c,      b'_c = s_c * (b_c - running_mean_c) + beta_c
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nets.layers import ChecksInput, check_image_batch


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


class BatchNorm2d(ChecksInput, nn.Module):
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
        if self.check_input:
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


_BATCH_NORMS = (nn.BatchNorm2d, BatchNorm2d)


def fold_bn(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """One ``nn.Conv2d`` computing ``bn(conv(x))`` of an eval-mode pair (a new module).

    The readable twin of ``torch.nn.utils.fusion.fuse_conv_bn_eval``: with the running
    statistics, BN multiplies channel c by ``s_c = gamma_c / sqrt(running_var_c + eps)`` and
    adds ``beta_c - s_c * running_mean_c``; the multiplication moves into the filter of that
    output channel and the rest into its bias (the module docstring has the equations).
    Only eval mode can be folded: in train mode BN uses each batch's own statistics, which
    no fixed weights can reproduce. ``bn`` is an ``nn.BatchNorm2d`` or a
    :class:`BatchNorm2d` with running statistics.
    """
    if conv.training or bn.training:
        raise ValueError("fold_bn needs conv and bn in eval mode: in train mode BN normalises "
                         "with each batch's statistics, which fixed weights cannot reproduce")
    if getattr(bn, "running_mean", None) is None or getattr(bn, "running_var", None) is None:
        raise ValueError("fold_bn needs a BN layer with running statistics "
                         "(track_running_stats=True)")
    if conv.out_channels != bn.num_features:
        raise ValueError(f"the conv has {conv.out_channels} output channels but the BN layer "
                         f"normalises {bn.num_features}")
    with torch.no_grad():
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)                 # s_c, (C_out,)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                           conv.padding, conv.dilation, conv.groups, bias=True,
                           padding_mode=conv.padding_mode, device=conv.weight.device,
                           dtype=conv.weight.dtype)
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))      # W' = s·W
        folded.bias.copy_((bias - bn.running_mean) * scale + beta)         # b' = s·(b − μ) + β
    return folded.eval()


def fold_bn_eval(model: nn.Module, example: Optional[Tensor] = None,
                 atol: float = 1e-4) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d → BatchNorm pair folded into the conv.

    A pair is a ``nn.Conv2d`` child registered directly before a BN child (``nn.BatchNorm2d``
    or :class:`BatchNorm2d`) of the same module with as many channels — the layout of
    ``nets``' and torchvision's blocks (``conv1, bn1``; ``Sequential(conv, bn, ...)``). The
    conv becomes the folded conv (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and the BN an
    ``nn.Identity``, so attribute names and ``forward`` stay as they are. Registration order
    is not data flow: a model whose ``forward`` uses such a pair differently would change.
    Pass an ``example`` batch and the function checks that the copy's outputs equal the
    original's (eval mode, within ``atol``) and raises ``ValueError`` if not. ``model`` itself
    is left untouched.
    """
    folded = copy.deepcopy(model).eval()
    for parent in folded.modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, _BATCH_NORMS)
                    and bn.running_mean is not None and conv.out_channels == bn.num_features):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    if example is not None:
        was_training = model.training
        with torch.no_grad():
            expected = model.eval()(example)
            got = folded(example)
        model.train(was_training)
        if not torch.allclose(got, expected, atol=atol, rtol=0):
            gap = (got - expected).abs().max().item()
            raise ValueError(f"folding changed the outputs (max difference {gap:.3g} > {atol}): "
                             "this model uses a conv and the BN after it in some other way")
    return folded
