"""nets.attention against F.scaled_dot_product_attention and nn.MultiheadAttention.

Tolerance: the explicit path and PyTorch's kernels multiply in a different order (PyTorch
scales q before Q Kᵀ, packs the three projections into one matmul, fuses the softmax), so
results agree to float32 rounding, not bit for bit: rtol=1e-5, atol=1e-6 for values of
order 1 (largest deviation observed, torch 2.14.1 CPU: 7.2e-7).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nets.attention import (MultiHeadAttention, SelfAttention2d, causal_mask,
                            scaled_dot_product_attention)

TOL = dict(rtol=1e-5, atol=1e-6)
B, H, L, S, DK, DV = 2, 3, 5, 7, 8, 6


def qkv(requires_grad: bool = True):
    q = torch.randn(B, H, L, DK, requires_grad=requires_grad)
    k = torch.randn(B, H, S, DK, requires_grad=requires_grad)
    v = torch.randn(B, H, S, DV, requires_grad=requires_grad)
    return q, k, v


def random_bool(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) > 0.4


MASKS = {
    "none": lambda: None,
    "(L, S)": lambda: random_bool(L, S),
    "(B, 1, L, S)": lambda: random_bool(B, 1, L, S),
    "(B, H, L, S)": lambda: random_bool(B, H, L, S),
    "key padding (B, 1, 1, S)": lambda: random_bool(B, 1, 1, S),
    "causal": lambda: causal_mask(L, S),
    "float additive": lambda: torch.randn(L, S).masked_fill(random_bool(L, S), float("-inf")),
}


@pytest.mark.parametrize("name", list(MASKS))
def test_explicit_sdpa_equals_torch(name):
    torch.manual_seed(0)
    q, k, v = qkv()
    mask = MASKS[name]()
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out.shape == (B, H, L, DV) and weights.shape == (B, H, L, S)
    torch.testing.assert_close(out, ref, **TOL)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    grads_ref = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(grads, grads_ref, strict=True):
        assert a.isfinite().all()
        torch.testing.assert_close(a, b, **TOL)


def test_weights_sum_to_one_over_allowed_keys_and_are_zero_elsewhere():
    torch.manual_seed(1)
    q, k, v = qkv(requires_grad=False)
    mask = random_bool(B, H, L, S)
    mask[..., 0] = True  # every query has at least one key here
    _, w = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, L), **TOL)
    assert (w[~mask] == 0).all()  # exactly zero, not just small
    assert (w[mask] > 0).all()
    # causal: query i sees keys 0..i only, and the first query attends only to itself
    _, w = scaled_dot_product_attention(q, k, v, causal_mask(L, S))
    assert (w.triu(diagonal=1) == 0).all()
    assert (w[..., 0, 0] == 1).all()


def test_query_with_no_allowed_key_gets_zeros_like_torch():
    torch.manual_seed(2)
    q, k, v = qkv()
    mask = random_bool(B, 1, L, S)
    mask[..., 0] = True
    mask[0, 0, 3] = False  # query 3 of batch element 0 may attend to nothing
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert (w[0, :, 3] == 0).all() and (out[0, :, 3] == 0).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL)
    out.sum().backward()
    assert all(t.grad.isfinite().all() for t in (q, k, v))
    # nn.MultiheadAttention's plain softmax gives NaN for such a row (0/0): why we don't
    mha = nn.MultiheadAttention(4, 1, batch_first=True)
    x = torch.randn(1, 2, 4)
    blocked = torch.tensor([[True, True], [False, True]])  # its convention: True = blocked
    assert mha(x, x, x, attn_mask=blocked)[0][0, 0].isnan().all()


def test_scale_and_dropout():
    torch.manual_seed(3)
    q, k, v = qkv(requires_grad=False)
    out, _ = scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3), **TOL)
    # dropout zeroes attention weights and rescales the rest by 1/(1-p); the returned
    # weights are the distribution before dropout
    torch.manual_seed(10)
    out, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(10)
    dropped = F.dropout(w, 0.5)
    kept = dropped != 0
    assert (~kept).any() and kept.any()
    torch.testing.assert_close(dropped[kept], 2 * w[kept], rtol=0, atol=0)
    torch.testing.assert_close(out, dropped @ v, rtol=0, atol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, L), **TOL)


def test_sdpa_bad_input():
    q, k, v = qkv(requires_grad=False)
    with pytest.raises(ValueError, match="same feature size d_k"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="same length S"):
        scaled_dot_product_attention(q, k, v[..., :3, :])
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(L, S, dtype=torch.long))
    with pytest.raises(ValueError, match="ranks"):
        scaled_dot_product_attention(torch.randn(4), k, v)


# ---- MultiHeadAttention ------------------------------------------------------------

E, NH = 16, 4


def torch_and_ours(bias: bool = True):
    ref = nn.MultiheadAttention(E, NH, bias=bias, batch_first=True)
    if bias:
        with torch.no_grad():  # nn.MultiheadAttention starts its biases at 0: make them count
            ref.in_proj_bias.uniform_(-0.5, 0.5)
            ref.out_proj.bias.uniform_(-0.5, 0.5)
    return ref.eval(), MultiHeadAttention.from_torch(ref).eval()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["self", "cross"])
@pytest.mark.parametrize("masks", ["none", "attn", "key_padding", "both"])
def test_from_torch_equals_nn_multihead_attention(bias, kind, masks):
    torch.manual_seed(5)
    ref, ours = torch_and_ours(bias)
    x = torch.randn(B, L, E)
    if kind == "self":
        query = key = value = x  # nn.MultiheadAttention takes its packed path here
    else:
        query, key, value = x, torch.randn(B, S, E), torch.randn(B, S, E)
    s = key.shape[1]
    allowed = random_bool(L, s) if masks in ("attn", "both") else None
    keep = random_bool(B, s) if masks in ("key_padding", "both") else None
    for t in (allowed, keep):
        if t is not None:
            t[..., 0] = True  # no fully blocked query: nn.MultiheadAttention gives NaN there
    # nn.MultiheadAttention: True = NOT allowed, so both masks are inverted for it
    kwargs = dict(attn_mask=None if allowed is None else ~allowed,
                  key_padding_mask=None if keep is None else ~keep)
    # ours: one mask, True = may attend; (L, S) and (B, 1, S) both broadcast to (B, L, S)
    mask = None
    for t in (allowed, None if keep is None else keep[:, None, :]):
        if t is not None:
            mask = t if mask is None else mask & t
    out, w = ours(query, key, value, mask)
    out_ref, w_ref = ref(query, key, value, need_weights=True, **kwargs)
    torch.testing.assert_close(out, out_ref, **TOL)
    assert w.shape == (B, NH, L, s)
    torch.testing.assert_close(w.mean(1), w_ref, **TOL)  # average_attn_weights=True
    _, w_heads = ref(query, key, value, need_weights=True, average_attn_weights=False, **kwargs)
    torch.testing.assert_close(w, w_heads, **TOL)


def test_from_torch_sequence_first_source():
    torch.manual_seed(6)
    ref = nn.MultiheadAttention(E, NH).eval()  # batch_first=False: (L, B, E)
    ours = MultiHeadAttention.from_torch(ref).eval()
    x = torch.randn(L, B, E)
    out_ref, _ = ref(x, x, x)
    out, _ = ours(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1))
    torch.testing.assert_close(out.transpose(0, 1), out_ref, **TOL)


def test_from_torch_rejects_what_it_cannot_copy():
    with pytest.raises(ValueError, match="kdim=8"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(E, NH, kdim=8, vdim=8))
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(E, NH, add_bias_kv=True))


@pytest.mark.parametrize("mask_shape", [None, (L, S), (B, L, S), (B, NH, L, S), (1, NH, 1, S)])
def test_fused_path_equals_explicit_path(mask_shape):
    torch.manual_seed(7)
    mha = MultiHeadAttention(E, NH)
    query, key = torch.randn(B, L, E, requires_grad=True), torch.randn(B, S, E, requires_grad=True)
    mask = None if mask_shape is None else random_bool(*mask_shape)
    if mask is not None:
        mask[..., 0] = True
    out, w = mha(query, key, key, mask)
    fused, none = mha(query, key, key, mask, need_weights=False)
    assert none is None and w.shape == (B, NH, L, S)
    torch.testing.assert_close(out, fused, **TOL)
    g = torch.randn_like(out)
    params = (query, key, *mha.parameters())
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(fused, params, g), strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_a_batch_mask_is_not_mistaken_for_a_head_mask():
    """(B, L, S) with B == num_heads would broadcast against the heads; we add the head axis."""
    torch.manual_seed(8)
    mha = MultiHeadAttention(E, NH)
    x = torch.randn(NH, L, E)
    mask = random_bool(NH, L, L)
    mask[..., 0] = True
    _, w = mha(x, x, x, mask)
    for b in range(NH):
        assert (w[b][:, ~mask[b]] == 0).all()


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(9)
    mha = MultiHeadAttention(E, NH, dropout=0.1).train()
    x = torch.randn(B, L, E, requires_grad=True)
    out, _ = mha(x, x, x, causal_mask(L))
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0
    for name, p in mha.named_parameters():
        assert p.grad is not None and p.grad.isfinite().all() and p.grad.abs().sum() > 0, name


def test_multihead_bad_input():
    with pytest.raises(ValueError, match=r"embed_dim \(10\).*num_heads \(4\)"):
        MultiHeadAttention(10, 4)
    mha = MultiHeadAttention(E, NH)
    x = torch.randn(B, L, E)
    with pytest.raises(ValueError, match="unsqueeze"):
        mha(x[0], x[0], x[0])
    with pytest.raises(ValueError, match=f"\\(B, length, {E}\\)"):
        mha(x[..., :8], x, x)
    with pytest.raises(ValueError, match="same batch size"):
        mha(x, x[:1], x[:1])
    with pytest.raises(ValueError, match="same length S"):
        mha(x, torch.randn(B, S, E), x)
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(x, x, x, torch.ones(L, L + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be"):
        mha(x, x, x, torch.ones(L, dtype=torch.bool))


# ---- SelfAttention2d ---------------------------------------------------------------

def test_self_attention_2d_is_a_residual_mha_over_positions():
    torch.manual_seed(10)
    block = SelfAttention2d(8, num_heads=2, norm_layer=lambda c: nn.GroupNorm(2, c)).eval()
    x = torch.randn(2, 8, 5, 7)  # non-square
    y = block(x)
    assert y.shape == x.shape and block.weights is None
    tokens = block.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
    out, _ = block.attn(tokens, tokens, tokens)
    expected = x + out.transpose(1, 2).reshape(2, 8, 5, 7)  # shortcut carries un-normalised x
    torch.testing.assert_close(y, expected, **TOL)
    block.keep_weights = True
    torch.testing.assert_close(block(x), y, **TOL)  # explicit path = fused path
    assert block.weights.shape == (2, 2, 35, 35) and not block.weights.requires_grad
    torch.testing.assert_close(block.weights.sum(-1), torch.ones(2, 2, 35), **TOL)


def test_self_attention_2d_is_permutation_equivariant_without_position_encoding():
    torch.manual_seed(11)
    block = SelfAttention2d(6, num_heads=3)
    x = torch.randn(1, 6, 4, 5)
    perm = torch.randperm(20)
    shuffled = x.flatten(2)[..., perm].reshape(1, 6, 4, 5)
    torch.testing.assert_close(block(shuffled).flatten(2), block(x).flatten(2)[..., perm], **TOL)


def test_self_attention_2d_bad_input():
    block = SelfAttention2d(6)
    with pytest.raises(ValueError, match="expects 6 input channels"):
        block(torch.randn(1, 5, 4, 4))
    with pytest.raises(ValueError, match="3-d"):
        block(torch.randn(6, 4, 4))
    with pytest.raises(ValueError, match=r"embed_dim \(6\).*num_heads \(4\)"):
        SelfAttention2d(6, num_heads=4)
