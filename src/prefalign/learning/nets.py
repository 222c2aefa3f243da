"""The networks behind the surrogate reward: an MLP for vectors and a small CNN for images.

Each network maps *normalised* inputs (N, *event_shape) to a *standardised* reward (N,); the
normalisation lives in :class:`prefalign.learning.surrogate.Surrogate`. Activations are smooth because the
FKC sampler differentiates the surrogate with respect to its input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

#: Smooth activations by name. ReLU is deliberately absent: its kinks make grad_x r piecewise
#: constant, and the FKC sampler follows that gradient.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
Activation = Literal[tuple(ACTIVATIONS)]


class MLP(nn.Module):
    """``layers`` hidden layers of width ``hidden`` on the flattened input, then a linear head.

    Works for any event shape (inputs are flattened), intended for vectors ``(d,)``.
    """

    def __init__(
        self, event_shape: tuple[int, ...], hidden: int, layers: int, activation: Activation
    ) -> None:
        super().__init__()
        d_in = math.prod(event_shape)
        body: list[nn.Module] = [nn.Flatten()]
        for i in range(layers):
            body += [nn.Linear(d_in if i == 0 else hidden, hidden), ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*body)
        self.head = nn.Linear(hidden, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised reward of normalised inputs ``z`` (N, *event_shape) -> (N,)."""
        return self.head(self.body(z)).squeeze(-1)  # (N,)


class CNN(nn.Module):
    """``layers`` 3x3 convolutions with ``hidden`` channels, global average pooling, linear head.

    The first convolution keeps the resolution; later ones halve it while the feature map is at
    least 4 pixels wide (8x8 -> 8 -> 4 -> 2), so three layers see the whole of an 8x8 image.
    Average (not max) pooling keeps the reward smooth in its input.
    """

    def __init__(
        self, event_shape: tuple[int, ...], hidden: int, layers: int, activation: Activation
    ) -> None:
        super().__init__()
        if len(event_shape) != 3:
            raise ValueError(f"CNN needs event_shape (C, H, W), got {event_shape}")
        channels, height, width = event_shape
        size = min(height, width)
        body: list[nn.Module] = []
        for i in range(layers):
            stride = 2 if i > 0 and size >= 4 else 1
            c_in = channels if i == 0 else hidden
            body += [nn.Conv2d(c_in, hidden, 3, stride=stride, padding=1)]
            body += [ACTIVATIONS[activation]()]
            size = -(-size // stride)
        self.body = nn.Sequential(*body)
        self.head = nn.Linear(hidden, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised reward of normalised images ``z`` (N, C, H, W) -> (N,)."""
        h = self.body(z).mean(dim=(-2, -1))  # (N, hidden)
        return self.head(h).squeeze(-1)  # (N,)


def build_member(
    arch: Literal["mlp", "cnn"],
    event_shape: tuple[int, ...],
    hidden: int,
    layers: int,
    activation: Activation,
    generator: torch.Generator,
) -> nn.Module:
    """Build one ensemble member, initialised from ``generator`` only (the global RNG is untouched).

    The module is created on the CPU with the global RNG's state saved and restored around it
    (``fork_rng``), then given PyTorch's default initialisation (Kaiming-uniform weights,
    uniform(+-1/sqrt(fan_in)) biases), drawn from ``generator``. (Building on the meta device
    would also leave the global RNG alone, but ``to_empty`` imports torch's symbolic-shape
    machinery: half a second of start-up in every workflow job.)
    """
    cls = {"mlp": MLP, "cnn": CNN}[arch]
    with torch.random.fork_rng(devices=[]):
        net = cls(event_shape, hidden, layers, activation)
    init_weights_(net, generator)
    return net


@torch.no_grad()
def init_weights_(net: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default init of every Linear / Conv2d in ``net``, drawn from ``generator``."""
    for module in net.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
