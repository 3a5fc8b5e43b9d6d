"""What chapter 8 adds to nets.attention: the four score functions of stage 1 and the
sinusoidal position encoding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nets.attention import (SCORE_KINDS, AdditiveScore, attention_scores, scaled_dot_product_attention,
                            sinusoidal_position_encoding)


def test_dot_scaled_and_cosine_scores():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8)
    dot = attention_scores(q, k, "dot")
    assert dot.shape == (2, 3, 5, 7)
    torch.testing.assert_close(dot, torch.einsum("bhld,bhsd->bhls", q, k))
    torch.testing.assert_close(attention_scores(q, k, "scaled_dot"), dot / math.sqrt(8))
    cos = attention_scores(q, k, "cosine")
    torch.testing.assert_close(cos, F.cosine_similarity(q.unsqueeze(-2), k.unsqueeze(-3), dim=-1))
    assert cos.abs().max() <= 1 + 1e-6
    # scaled_dot is the score inside scaled_dot_product_attention
    _, w = scaled_dot_product_attention(q, k, torch.randn(2, 3, 7, 4))
    torch.testing.assert_close(w, attention_scores(q, k).softmax(-1))


def test_additive_score_is_a_small_mlp_per_pair():
    torch.manual_seed(1)
    scorer = AdditiveScore(query_dim=6, key_dim=4, hidden=5)
    q, k = torch.randn(3, 2, 6), torch.randn(3, 9, 4)  # different sizes are fine
    s = attention_scores(q, k, "additive", additive=scorer)
    assert s.shape == (3, 2, 9)
    manual = torch.stack([torch.stack([scorer.w(torch.tanh(scorer.w_q(q[b, i]) + scorer.w_k(k[b, j])))[0]
                                       for j in range(9)]) for b in range(3) for i in range(2)])
    torch.testing.assert_close(s.reshape(-1, 9), manual)


def test_score_bad_input():
    q = torch.randn(4, 8)
    with pytest.raises(ValueError, match="kind must be one of"):
        attention_scores(q, q, "general")
    with pytest.raises(ValueError, match="additive=AdditiveScore"):
        attention_scores(q, q, "additive")
    with pytest.raises(ValueError, match="same feature size"):
        attention_scores(q, torch.randn(4, 6), "dot")
    assert set(SCORE_KINDS) == {"dot", "scaled_dot", "cosine", "additive"}


def test_sinusoidal_position_encoding_matches_the_paper():
    pe = sinusoidal_position_encoding(50, 16)
    assert pe.shape == (50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    # PE[pos + k] = R_k PE[pos] with R_k a rotation per (sin, cos) pair, the same for every pos
    k = 3
    pairs = pe.reshape(50, 8, 2)
    freq = 10000 ** (-torch.arange(0, 16, 2) / 16)
    c, s = torch.cos(k * freq), torch.sin(k * freq)
    rotated = torch.stack((pairs[..., 0] * c + pairs[..., 1] * s, pairs[..., 1] * c - pairs[..., 0] * s), -1)
    torch.testing.assert_close(rotated[:-k], pairs[k:], atol=1e-4, rtol=0)
    # every position gets a different code
    assert torch.cdist(pe, pe).add(torch.eye(50) * 1e9).min() > 0.1


def test_sinusoidal_position_encoding_bad_input():
    with pytest.raises(ValueError, match="even dim"):
        sinusoidal_position_encoding(10, 7)
    with pytest.raises(ValueError, match="length >= 1"):
        sinusoidal_position_encoding(0, 8)


def test_chapter_8_retrieval_data_and_readers():
    """The retrieval task of chapter 8 (benchmarks/experiments/ch8_retrieval.py): the target is the
    value paired with the query key, keys are distinct, and the MLP baseline is the larger model."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks" / "experiments"))
    import ch8_retrieval as r

    x, y = r.make_data(500, seed=3)
    keys, values, query = x[:, :r.PAIRS], x[:, r.PAIRS:2 * r.PAIRS], x[:, -1]
    assert all(len(set(row.tolist())) == r.PAIRS for row in keys)
    slot = (keys == query[:, None]).float().argmax(1)
    assert ((keys == query[:, None]).sum(1) == 1).all()
    assert torch.equal(values.gather(1, slot[:, None]).squeeze(1), y)
    attention, mlp = r.AttentionReader(), r.MLPReader()
    assert attention(x).shape == mlp(x).shape == (500, r.VALUES)
    assert attention.weights.shape == (500, 1, 1, r.PAIRS)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(mlp) >= count(attention)


def test_chapter_8_retrieval_controls():
    """best_lr breaks ties towards the larger rate; the query-blind baseline is the mean share of
    the most frequent value; the wide MLP of the controls is wider than the MLP arm."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks" / "experiments"))
    import ch8_retrieval as r

    runs = [dict(arm="a", lr=lr, seed=0, accuracy=1.0) for lr in r.LRS]
    assert r.best_lr(runs, "a") == max(r.LRS)
    runs[0]["accuracy"] = 1.5
    assert r.best_lr(runs, "a") == r.LRS[0]
    x = torch.zeros(2, 2 * r.PAIRS + 1, dtype=torch.long)
    x[0, r.PAIRS:2 * r.PAIRS] = 3  # all values equal: the blind guess is always right
    x[1, r.PAIRS:2 * r.PAIRS] = torch.arange(r.PAIRS)  # all distinct: right 1 time in PAIRS
    assert abs(r.query_blind_accuracy(x) - (1 + 1 / r.PAIRS) / 2) < 1e-6
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(r.wide_mlp()) > count(r.MLPReader())
