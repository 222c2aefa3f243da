"""prefalign.learning.adamw.AdamW against torch.optim.AdamW: the same parameters, bit for bit."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from prefalign.learning.adamw import AdamW


def _nets(seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 1)
    )
    twin = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 1)
    )
    twin.load_state_dict(net.state_dict())
    return net, twin


@pytest.mark.parametrize(
    ("lr", "weight_decay", "betas", "eps"),
    [
        (1e-3, 1e-4, (0.9, 0.999), 1e-8),
        (3e-2, 0.0, (0.8, 0.99), 1e-6),
        (3e-3, 0.1, (0.0, 0.9), 1e-8),
    ],
)
def test_same_parameters_as_torch_adamw_bit_for_bit(lr, weight_decay, betas, eps):
    net, twin = _nets(0)
    ours = AdamW(net.parameters(), lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
    theirs = torch.optim.AdamW(
        twin.parameters(), lr=lr, weight_decay=weight_decay, betas=betas, eps=eps
    )
    gen = torch.Generator().manual_seed(1)
    for _ in range(60):
        x = torch.randn(16, 1, 8, 8, generator=gen)
        y = torch.randn(16, 1, generator=gen)
        for model, opt in ((net, ours), (twin, theirs)):
            loss = torch.mean((model(x) - y) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_parameters_without_a_gradient_are_left_alone():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = AdamW([a, b], lr=0.1, weight_decay=0.5)
    (a**2).sum().backward()
    opt.step()
    assert torch.equal(b, torch.ones(3)) and not torch.equal(a, torch.ones(3))


@pytest.mark.parametrize(
    "kwargs", [{"lr": 0.0}, {"eps": 0.0}, {"weight_decay": -1.0}, {"betas": (0.9, 1.0)}]
)
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError, match="AdamW needs"):
        AdamW([nn.Parameter(torch.ones(2))], **kwargs)


def test_no_parameters_is_an_error():
    with pytest.raises(ValueError, match="no parameters"):
        AdamW([torch.ones(2)])


def test_a_fit_does_not_import_the_compiler_stack():
    """What this class is for: a surrogate fit in a fresh process leaves torch._dynamo unloaded."""
    code = (
        "import sys, numpy as np\n"
        "from prefalign.settings import SurrogateConfig\n"
        "from prefalign.learning.surrogate import fit\n"
        "x = np.random.default_rng(0).normal(size=(20, 2)); y = x.sum(1)\n"
        "fit(x, y, SurrogateConfig(hidden=8, epochs=3), seed=0)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
