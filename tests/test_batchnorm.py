"""nets.batchnorm against nn.BatchNorm2d / F.batch_norm.

Tolerance: our BatchNorm computes mean, variance and the normalisation as separate tensor
ops, PyTorch's CPU kernel fuses them (other summation order, scale and shift folded into
one multiply-add), so results agree to float32 rounding, not bit for bit. We use
rtol=1e-5, atol=1e-6 throughout. Observed (torch 2.14.1, CPU): at most 5e-7 on outputs of
order 1, 3.8e-6 on a gamma gradient of size 38 (a sum over 105 values, relative 1e-7), and
1.2e-6 on ResNet-18 logits (printed by the ResNet test under ``pytest -s``).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from nets.batchnorm import BatchNorm2d, batch_norm

TOL = dict(rtol=1e-5, atol=1e-6)


def pair(**kwargs) -> tuple[nn.BatchNorm2d, BatchNorm2d]:
    """nn.BatchNorm2d and ours with the same non-trivial gamma and beta."""
    ref = nn.BatchNorm2d(4, **kwargs)
    ours = BatchNorm2d(4, **kwargs)
    if ref.affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def batch(*shape: int) -> torch.Tensor:
    return (torch.randn(*shape) * 2.0 + 0.7).requires_grad_()


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_training_steps_then_eval_match_torch(momentum):
    torch.manual_seed(0)
    ref, ours = pair(momentum=momentum)
    for step in range(4):
        x = batch(3, 4, 5, 7)
        x_ref = x.detach().clone().requires_grad_()
        y, y_ref = ours(x), ref(x_ref)
        torch.testing.assert_close(y, y_ref, **TOL)
        g = torch.randn_like(y)
        y.backward(g)
        y_ref.backward(g)
        torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **TOL)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, **TOL)
        torch.testing.assert_close(ours.running_mean, ref.running_mean, **TOL)
        torch.testing.assert_close(ours.running_var, ref.running_var, **TOL)
        assert torch.equal(ours.num_batches_tracked, ref.num_batches_tracked)
        assert ours.num_batches_tracked.item() == step + 1
    ours.eval()
    ref.eval()
    x = torch.randn(1, 4, 6, 3)  # batch size 1 is fine in eval mode
    torch.testing.assert_close(ours(x), ref(x), **TOL)
    assert ours.num_batches_tracked.item() == 4  # eval leaves the statistics alone


def test_running_statistics_are_the_documented_formulas():
    torch.manual_seed(1)
    bn = BatchNorm2d(3, momentum=0.5)
    x = torch.randn(2, 3, 4, 4) * 3
    bn(x)
    m = 2 * 4 * 4
    mean = x.mean((0, 2, 3))
    var_biased = x.var((0, 2, 3), correction=0)
    torch.testing.assert_close(bn.running_mean, 0.5 * 0.0 + 0.5 * mean, **TOL)
    torch.testing.assert_close(bn.running_var, 0.5 * 1.0 + 0.5 * var_biased * m / (m - 1), **TOL)
    # momentum=None: the running mean is the plain average of all batch means so far
    bn = BatchNorm2d(3, momentum=None)
    xs = [torch.randn(2, 3, 4, 4) + i for i in range(3)]
    for x in xs:
        bn(x)
    average = torch.stack([x.mean((0, 2, 3)) for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_mean, average, **TOL)


def test_running_statistics_are_updated_without_autograd():
    """The running buffers must not join the graph (labml's BatchNorm had them do so)."""
    torch.manual_seed(2)
    bn = BatchNorm2d(4)
    for _ in range(3):
        x = batch(2, 4, 3, 3)
        bn(x).square().sum().backward()  # a graph kept in the buffers would fail here
    for name in ("running_mean", "running_var"):
        buf = getattr(bn, name)
        assert not buf.requires_grad and buf.grad_fn is None, name
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]


def test_affine_false():
    torch.manual_seed(3)
    ref, ours = pair(affine=False)
    assert ours.weight is None and ours.bias is None and list(ours.parameters()) == []
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = batch(2, 4, 5, 5)
    torch.testing.assert_close(ours(x), ref(x), **TOL)
    torch.testing.assert_close(ours.running_var, ref.running_var, **TOL)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_track_running_stats_false_uses_batch_statistics_in_both_modes():
    torch.manual_seed(4)
    ref, ours = pair(track_running_stats=False)
    assert ours.running_mean is None and ours.running_var is None
    assert ours.num_batches_tracked is None
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    x = batch(2, 4, 5, 6)
    for train in (True, False):
        ours.train(train)
        ref.train(train)
        torch.testing.assert_close(ours(x), ref(x), **TOL)
    # eval mode really normalises with this batch's statistics: per-channel mean beta, std gamma
    y = ours(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), ours.bias, rtol=0, atol=1e-5)
    # and, like PyTorch, it then needs more than one value per channel even in eval mode
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ours(torch.randn(1, 4, 1, 1))


def test_state_dict_keys_and_cross_loading_both_ways():
    torch.manual_seed(5)
    ref = nn.BatchNorm2d(6, momentum=0.3)
    ref(torch.randn(4, 6, 3, 3))  # non-trivial running statistics and counter
    with torch.no_grad():
        ref.weight.uniform_()
    ours = BatchNorm2d(6, momentum=0.3)
    assert list(ours.state_dict()) == list(ref.state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    ours.load_state_dict(ref.state_dict(), strict=True)
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    back = nn.BatchNorm2d(6)
    back.load_state_dict(ours.state_dict(), strict=True)
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
        assert back.state_dict()[k].dtype == v.dtype, k


def test_old_checkpoint_without_num_batches_tracked_loads_like_torch():
    """State dicts from before PyTorch 0.4.1 lack the counter; nn.BatchNorm2d accepts them."""
    sd = {"weight": torch.rand(3), "bias": torch.rand(3), "running_mean": torch.rand(3),
          "running_var": torch.rand(3) + 1}  # a plain dict: no version metadata
    ours, ref = BatchNorm2d(3), nn.BatchNorm2d(3)
    ours.load_state_dict(dict(sd), strict=True)
    ref.load_state_dict(dict(sd), strict=True)
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    # a current-format state_dict missing the counter is still an error, as in PyTorch
    current = BatchNorm2d(3).state_dict()
    del current["num_batches_tracked"]
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        BatchNorm2d(3).load_state_dict(current, strict=True)


def test_resnet18_with_our_batchnorm_loads_torchvision_weights():
    torch.manual_seed(6)
    tv = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():  # give every BN layer non-trivial statistics and affine parameters
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    ours = torchvision.models.resnet18(num_classes=10, norm_layer=BatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ours.modules())
    assert sum(isinstance(m, BatchNorm2d) for m in ours.modules()) == 20
    ours.load_state_dict(tv.state_dict(), strict=True)

    observed = []
    with torch.no_grad():
        tv.eval()
        ours.eval()
        for shape in [(1, 3, 224, 224), (1, 3, 97, 131)]:
            x = torch.randn(shape)
            a, b = ours(x), tv(x)
            observed.append((b - a).abs().max().item())
            torch.testing.assert_close(a, b, **TOL)
        # train mode: batch statistics, same input, both from the same state
        tv.train()
        ours.train()
        x = torch.randn(2, 3, 97, 131)
        a, b = ours(x), tv(x)
        observed.append((b - a).abs().max().item())
        torch.testing.assert_close(a, b, **TOL)
        for (name, p), q in zip(tv.state_dict().items(), ours.state_dict().values(), strict=True):
            torch.testing.assert_close(q, p, **TOL, msg=name)
    print(f"resnet18 max |ours - torchvision| (eval 224, eval 97x131, train): {observed}")


def test_functional_batch_norm_matches_torch():
    torch.manual_seed(7)
    for shape in [(5, 4), (3, 4, 6, 5)]:
        x = torch.randn(shape) * 3 + 1
        w, b = torch.rand(4), torch.randn(4)
        rm, rv = torch.randn(4), torch.rand(4) + 0.5
        rm2, rv2 = rm.clone(), rv.clone()
        y = batch_norm(x, rm, rv, w, b, training=True, momentum=0.2, eps=1e-3)
        y_ref = F.batch_norm(x, rm2, rv2, w, b, training=True, momentum=0.2, eps=1e-3)
        torch.testing.assert_close(y, y_ref, **TOL)
        torch.testing.assert_close(rm, rm2, **TOL)
        torch.testing.assert_close(rv, rv2, **TOL)
        torch.testing.assert_close(batch_norm(x, rm, rv, w, b), F.batch_norm(x, rm, rv, w, b),
                                   **TOL)
        torch.testing.assert_close(batch_norm(x, None, None, training=True),
                                   F.batch_norm(x, None, None, training=True), **TOL)


def test_empty_batch_leaves_statistics_alone_like_torch():
    ref, ours = pair()
    x = torch.randn(0, 4, 3, 3)
    assert ours(x).shape == (0, 4, 3, 3)
    ref(x)
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k


def test_bad_input_raises_value_error_before_any_update():
    bn = BatchNorm2d(4)
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\).*3-d"):
        bn(torch.randn(4, 5, 5))
    with pytest.raises(ValueError, match="expects 4 input channels, got 3"):
        bn(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        bn(torch.randn(1, 4, 1, 1))
    assert bn.num_batches_tracked.item() == 0  # the rejected batch was not counted
    assert torch.equal(bn.running_mean, torch.zeros(4))
    bn(torch.randn(2, 4, 1, 1))  # two values per channel are enough
    bn.eval()
    assert bn(torch.randn(1, 4, 1, 1)).shape == (1, 4, 1, 1)  # eval uses the running statistics


def test_reset_and_repr():
    torch.manual_seed(8)
    bn = BatchNorm2d(3, eps=1e-3, momentum=None)
    bn(torch.randn(2, 3, 4, 4) + 5)
    with torch.no_grad():
        bn.weight.mul_(3)
    bn.reset_running_stats()
    assert torch.equal(bn.running_mean, torch.zeros(3))
    assert torch.equal(bn.running_var, torch.ones(3))
    assert bn.num_batches_tracked.item() == 0 and not torch.equal(bn.weight, torch.ones(3))
    bn.reset_parameters()
    assert torch.equal(bn.weight, torch.ones(3)) and torch.equal(bn.bias, torch.zeros(3))
    assert repr(bn) == ("BatchNorm2d(3, eps=0.001, momentum=None, affine=True, "
                        "track_running_stats=True)")
    copy.deepcopy(bn)  # plain module: copies like any other
