"""Scaled dot-product and multi-head attention, written out, and a 2D self-attention block.

Vaswani et al., "Attention Is All You Need", arXiv:1706.03762, section 3.2::

    Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V

Each query scores every key by a dot product (stage 1: similarity), a softmax turns a
query's scores into weights that sum to 1 (stage 2: normalisation), and the output is the
weighted sum of the values (stage 3). Why divide by sqrt(d_k): if the components of q and k
are independent with variance 1, q·k has variance d_k, so unscaled scores grow with the
width, the softmax saturates to one-hot and its gradients vanish.

Masks follow ``F.scaled_dot_product_attention``: a boolean mask with **True = may attend**.
``nn.MultiheadAttention``'s boolean ``attn_mask`` and ``key_padding_mask`` mean the
opposite (True = may NOT attend); pass ``~mask`` when moving between the two.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nets.layers import ChecksInput, LayerFactory, check_image_batch


def causal_mask(length: int, source_length: Optional[int] = None,
                device: Optional[torch.device] = None) -> Tensor:
    """Boolean (L, S) mask where query i may attend to keys 0..i (True on and below the
    diagonal): the decoder mask of the Transformer, section 3.2.3."""
    source_length = length if source_length is None else source_length
    return torch.ones(length, source_length, dtype=torch.bool, device=device).tril()


SCORE_KINDS = ("dot", "scaled_dot", "cosine", "additive")


class AdditiveScore(nn.Module):
    """The additive (Bahdanau) score of "Neural Machine Translation by Jointly Learning to
    Align and Translate", arXiv:1409.0473, eq. (6) and Appendix A.1.2::

        score(q, k) = wᵀ tanh(W_q q + W_k k)

    A one-hidden-layer network on each (query, key) pair: query and key may have different
    sizes, at the cost of a (..., L, S, hidden) intermediate tensor.
    ``forward(query (..., L, d_q), key (..., S, d_k))`` returns scores (..., L, S).
    """

    def __init__(self, query_dim: int, key_dim: int, hidden: int) -> None:
        super().__init__()
        self.w_q = nn.Linear(query_dim, hidden, bias=False)
        self.w_k = nn.Linear(key_dim, hidden, bias=False)
        self.w = nn.Linear(hidden, 1, bias=False)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        hidden = torch.tanh(self.w_q(query).unsqueeze(-2) + self.w_k(key).unsqueeze(-3))  # (..., L, S, h)
        return self.w(hidden).squeeze(-1)  # (..., L, S)


def attention_scores(query: Tensor, key: Tensor, kind: str = "scaled_dot",
                     additive: Optional[AdditiveScore] = None) -> Tensor:
    """Stage 1 of attention, the similarity of every query to every key: (..., L, S).

    ``kind`` is one of :data:`SCORE_KINDS`:

    * ``"dot"``: q·k (Luong et al., arXiv:1508.04025); its spread grows like sqrt(d_k);
    * ``"scaled_dot"``: q·k / sqrt(d_k) (Vaswani et al.), variance ≈ 1 for unit-variance inputs;
    * ``"cosine"``: q·k / (|q| |k|), in [-1, 1] whatever the width, so a softmax over it
      needs a temperature to become sharp;
    * ``"additive"``: ``additive(query, key)``, an :class:`AdditiveScore` module (learned).

    Shapes: query (..., L, d), key (..., S, d) (for ``"additive"`` the sizes may differ).
    """
    if kind not in SCORE_KINDS:
        raise ValueError(f"kind must be one of {SCORE_KINDS}, got {kind!r}")
    if kind == "additive":
        if additive is None:
            raise ValueError("kind='additive' needs the learned scorer: pass additive=AdditiveScore(...)")
        return additive(query, key)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key need the same feature size d_k for a {kind!r} score, "
                         f"got {query.shape[-1]} and {key.shape[-1]}")
    if kind == "cosine":
        query, key = F.normalize(query, dim=-1), F.normalize(key, dim=-1)
    scores = query @ key.transpose(-2, -1)
    return scores / math.sqrt(query.shape[-1]) if kind == "scaled_dot" else scores


def sinusoidal_position_encoding(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """The fixed position encoding of Vaswani et al. (arXiv:1706.03762, section 3.5), (length, dim)::

        PE[pos, 2i] = sin(pos / base^(2i/dim)),   PE[pos, 2i+1] = cos(pos / base^(2i/dim))

    Each pair of columns is a rotation at its own frequency, from one turn per 2π positions
    (i = 0) to one per 2π·base positions, so PE[pos + k] is a fixed linear map (a rotation
    per pair) of PE[pos] for every pos: relative offsets are easy to read off. Added to the
    token embeddings, it breaks self-attention's permutation equivariance.
    """
    if length < 1 or dim < 2 or dim % 2:
        raise ValueError(f"need length >= 1 and an even dim >= 2 (sin and cos pairs), got "
                         f"length={length}, dim={dim}")
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (length, 1)
    frequency = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (dim/2,)
    angle = position * frequency  # (length, dim/2)
    return torch.stack((angle.sin(), angle.cos()), dim=-1).reshape(length, dim)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
) -> Tuple[Tensor, Tensor]:
    """softmax(Q Kᵀ / sqrt(d_k) + mask) V, step by step; returns ``(output, weights)``.

    Shapes: query (..., L, d_k), key (..., S, d_k), value (..., S, d_v) →
    output (..., L, d_v), weights (..., L, S). Leading dimensions broadcast.

    ``mask`` broadcasts to (..., L, S): boolean with True = "may attend", or float, added
    to the scores (0 keeps a key, -inf removes it). A removed key gets weight exactly 0.
    A query whose keys are *all* removed has no distribution to take: the plain softmax
    gives 0/0 = NaN there (and ``nn.MultiheadAttention`` returns NaN). Like
    ``F.scaled_dot_product_attention`` (checked in the tests, PyTorch 2.14) we give such a
    row weights 0 and output 0 instead, so that one fully padded query does not turn a whole batch's loss
    into NaN; raising would need a data-dependent check on every call.

    ``dropout_p`` drops attention weights (then rescales by 1/(1-p)) whenever it is > 0,
    exactly as in ``F.scaled_dot_product_attention``, which has no ``training`` flag
    either: modules pass ``dropout_p=0`` in eval mode. The returned weights are the ones
    before dropout (the attention distribution, for plotting). ``scale`` defaults to
    1/sqrt(d_k).
    """
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise ValueError(f"query, key and value need shape (..., length, features), got ranks "
                         f"{query.dim()}, {key.dim()}, {value.dim()}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key need the same feature size d_k, got {query.shape[-1]} "
                         f"and {key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key and value need the same length S, got {key.shape[-2]} and "
                         f"{value.shape[-2]}")
    if mask is not None and mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(f"mask must be boolean (True = may attend) or float (added to the "
                         f"scores), got dtype {mask.dtype}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale

    scores = query @ key.transpose(-2, -1) * scale  # (..., L, S) stage 1: similarity
    if mask is not None and mask.is_floating_point():
        scores = scores + mask
        mask = scores != float("-inf")  # from here on as a boolean mask: -inf removed the key
    if mask is not None:
        # (For a float mask the values are already -inf; the fill still stops gradients there.)
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (..., L, S) stage 2: each row sums to 1
    if mask is not None:
        # Removed keys get exactly 0; this also turns the NaN (0/0) rows of queries whose
        # keys were all removed into 0, and the fill above keeps their NaN gradients out.
        weights = weights.masked_fill(~mask, 0.0)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ value, weights  # (..., L, d_v) stage 3: weighted sum of the values


class MultiHeadAttention(ChecksInput, nn.Module):
    """Multi-head attention, batch-first, with one Linear per projection (arXiv:1706.03762,
    section 3.2.2)::

        head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)      i = 1 .. h,  d_k = d_v = E / h
        MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O

    The h per-head projections are stored together: ``q_proj``, ``k_proj``, ``v_proj`` map
    E → E and their outputs are split into h slices of E/h; ``out_proj`` is W^O. The base
    Transformer has E = 512, h = 8, d_k = 64.

    ``forward(query (B, L, E), key (B, S, E), value (B, S, E), mask)`` returns
    ``(output (B, L, E), weights (B, h, L, S))``. Self-attention passes the same tensor three
    times; cross-attention takes key and value from another sequence (S may differ from L).
    ``mask`` is boolean with True = may attend (or a float mask added to the scores), shaped
    (L, S) for every batch and head, (B, L, S) per batch element, or (B, h, L, S) (any of
    these dimensions may be 1). A key-padding mask ``keep`` (B, S) is ``keep[:, None, :]``.
    Note that ``nn.MultiheadAttention``'s boolean masks mean the opposite (True = blocked).

    ``need_weights=False`` takes the fused ``F.scaled_dot_product_attention`` (faster, less
    memory, no (L, S) weights kept) and returns ``(output, None)``; the tests check that
    both paths agree.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads}): each head gets embed_dim / num_heads features")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads  # d_k = d_v
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^Q of all heads
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^K
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^V
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^O

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor,
                      mask: Optional[Tensor]) -> None:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dim() != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"MultiHeadAttention expects {name} shaped (B, length, {self.embed_dim}), "
                    f"got {tuple(t.shape)}" + (" (add a batch dimension with .unsqueeze(0))"
                                               if t.dim() == 2 else ""))
        if not query.shape[0] == key.shape[0] == value.shape[0]:
            raise ValueError(f"query, key and value need the same batch size, got "
                             f"{query.shape[0]}, {key.shape[0]}, {value.shape[0]}")
        if key.shape[1] != value.shape[1]:
            raise ValueError(f"key and value need the same length S, got {key.shape[1]} and "
                             f"{value.shape[1]}")
        if mask is not None:
            if not 2 <= mask.dim() <= 4:
                raise ValueError(f"mask must be (L, S), (B, L, S) or (B, num_heads, L, S), got "
                                 f"shape {tuple(mask.shape)}")
            full = (query.shape[0], self.num_heads, query.shape[1], key.shape[1])
            try:
                torch.broadcast_shapes(self._mask_4d(mask).shape, full)
            except RuntimeError:
                raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to "
                                 f"(B, num_heads, L, S) = {full}") from None

    @staticmethod
    def _mask_4d(mask: Tensor) -> Tensor:
        """(L, S) and (B, L, S) masks → (1 or B, 1, L, S); a head axis is added explicitly so
        that a (B, L, S) mask can never be broadcast against the heads by accident."""
        return mask.unsqueeze(1) if mask.dim() == 3 else mask

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Optional[Tensor] = None,
                need_weights: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        if self.check_input:
            self._check_inputs(query, key, value, mask)
        (b, length, _), source_length = query.shape, key.shape[1]
        # (B, L, E) → (B, L, h, d_k) → (B, h, L, d_k): every head attends independently
        q = self.q_proj(query).view(b, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(key).view(b, source_length, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(value).view(b, source_length, self.num_heads, self.head_dim).transpose(1, 2)
        mask = None if mask is None else self._mask_4d(mask)
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)  # (B, h, L, d_k)
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                          dropout_p=dropout_p), None
        out = out.transpose(1, 2).reshape(b, length, self.embed_dim)  # concat heads: (B, L, E)
        return self.out_proj(out), weights

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A ``MultiHeadAttention`` with the weights of ``mha``.

        ``nn.MultiheadAttention`` packs W^Q, W^K, W^V into one (3E, E) ``in_proj_weight``
        (rows in that order); we split it. Ours is always batch-first: with a
        ``batch_first=False`` source, feed (B, L, E) tensors to the copy. Masks must be
        inverted (``~attn_mask``): True means blocked there and allowed here.
        """
        if not mha._qkv_same_embed_dim:
            raise ValueError(f"only kdim == vdim == embed_dim is supported, got kdim={mha.kdim}, "
                             f"vdim={mha.vdim}, embed_dim={mha.embed_dim}")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn are not part of the paper's "
                             "attention and are not supported")
        bias = mha.in_proj_bias is not None
        weight = mha.in_proj_weight
        model = cls(mha.embed_dim, mha.num_heads, bias=bias, dropout=mha.dropout).to(
            device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            for proj, w in zip((model.q_proj, model.k_proj, model.v_proj), weight.chunk(3)):
                proj.weight.copy_(w)
            if bias:
                for proj, b in zip((model.q_proj, model.k_proj, model.v_proj),
                                   mha.in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
            model.out_proj.weight.copy_(mha.out_proj.weight)
            if model.out_proj.bias is not None:
                model.out_proj.bias.copy_(mha.out_proj.bias)
        return model


class SelfAttention2d(ChecksInput, nn.Module):
    """Self-attention over the positions of a feature map, added back as a residual.

    Every one of the H·W positions is a token of C features and attends to all H·W
    positions (global context that a 3×3 conv would need many layers to reach)::

        x (B, C, H, W) → norm → tokens (B, HW, C) → MultiHeadAttention → (B, C, H, W) → + x

    As in Vaswani et al. (arXiv:1706.03762) the attention itself is permutation-equivariant:
    without a position encoding, shuffling the positions shuffles the output the same way;
    the surrounding convolutions supply the "where". Cost grows with (HW)², so use it on
    small (late) feature maps. ``norm_layer`` (e.g. ``nn.BatchNorm2d`` or
    ``partial(nn.GroupNorm, 8)``), called with ``channels``, normalises the attention's
    input (pre-norm); the shortcut carries the un-normalised ``x``.

    With ``keep_weights=True`` (also settable later as an attribute) the block takes the
    explicit path and stores the last attention weights, (B, num_heads, HW, HW), detached,
    in ``self.weights`` for plotting; otherwise it uses the fused path and stores None.
    """

    def __init__(self, channels: int, num_heads: int = 1,
                 norm_layer: Optional[LayerFactory] = None,
                 dropout: float = 0.0, bias: bool = True, keep_weights: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.norm = norm_layer(channels) if norm_layer is not None else nn.Identity()
        self.attn = MultiHeadAttention(channels, num_heads, bias=bias, dropout=dropout)
        self.keep_weights = keep_weights
        self.weights: Optional[Tensor] = None
        self.skip_nested_checks()

    def forward(self, x: Tensor) -> Tensor:
        if self.check_input:
            check_image_batch(x, self.channels, owner="SelfAttention2d")
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        out, weights = self.attn(tokens, tokens, tokens, need_weights=self.keep_weights)
        self.weights = None if weights is None else weights.detach()  # (B, heads, HW, HW)
        return x + out.transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)
