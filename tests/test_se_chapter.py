"""What chapter 4 relies on in nets.se: the gate is readable through a forward hook, the
squeeze width with divisor=1 is round(C / r) and never 0, and a bad divisor is a clear
ValueError rather than a ZeroDivisionError."""

from __future__ import annotations

import pytest
import torch

from nets.se import SqueezeExcitation


def test_forward_hook_on_gate_sees_the_channel_weights():
    torch.manual_seed(0)
    se = SqueezeExcitation(16, reduction=4).eval()
    seen = []
    handle = se.gate.register_forward_hook(lambda module, inputs, out: seen.append(out))
    x = torch.randn(3, 16, 5, 7)
    with torch.no_grad():
        y = se(x)
    handle.remove()
    assert len(seen) == 1 and seen[0].shape == (3, 16, 1, 1)
    torch.testing.assert_close(y, x * seen[0], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(seen[0], se.channel_weights(x), rtol=0, atol=0)


@pytest.mark.parametrize("channels, reduction, squeeze", [
    (16, 2, 8), (16, 4, 4), (16, 8, 2), (16, 16, 1), (64, 16, 4), (8, 16, 1), (1, 16, 1),
])
def test_divisor_one_gives_c_over_r_never_zero(channels, reduction, squeeze):
    assert SqueezeExcitation(channels, reduction=reduction, divisor=1).squeeze_channels == squeeze


@pytest.mark.parametrize("divisor", [0, -8, 2.5])
def test_bad_divisor_is_a_value_error(divisor):
    with pytest.raises(ValueError, match="divisor"):
        SqueezeExcitation(16, divisor=divisor)
