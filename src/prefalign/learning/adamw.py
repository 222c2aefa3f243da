"""AdamW for the surrogate fits, without ``torch.optim``'s start-up cost.

``torch.optim.Optimizer`` imports ``torch._dynamo`` (the compiler stack) the first time a
parameter group is added and on every first ``step()``: 1.1-1.5 s in each fresh process
(``benchmarks/README.md``, "Workflow overhead"), while a whole surrogate fit takes about a
second. This class performs the same update, operation for operation, as
``torch.optim.AdamW(params, lr, betas, eps, weight_decay)`` on tensors that are not on CUDA
(torch's single-tensor implementation): ``tests/test_adamw.py`` checks the parameters are bit
for bit those of ``torch.optim.AdamW`` after many steps.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), ``torch.optim.AdamW``'s update.

    Args:
        params: the parameters to optimise (each a leaf tensor with ``requires_grad``).
        lr: learning rate.
        weight_decay: decoupled weight decay (``p <- p (1 - lr wd)`` before the Adam step).
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("AdamW got no parameters that require gradients")
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(
                f"AdamW needs lr > 0, eps > 0, weight_decay >= 0 and betas in [0, 1); got "
                f"lr={lr}, eps={eps}, weight_decay={weight_decay}, betas={betas}"
            )
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.exp_avg_sq = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.steps = 0

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update of every parameter that has a gradient."""
        self.steps += 1
        beta1, beta2 = self.betas
        step = float(self.steps)
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            grad = p.grad
            if grad is None:
                continue
            if self.weight_decay != 0:
                p.mul_(1 - self.lr * self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)
