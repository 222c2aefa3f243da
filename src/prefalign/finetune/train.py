"""Fine-tuning a noise-prediction network (a diffusers ``UNet2DModel`` or
:class:`~prefalign.finetune.denoiser.MLPDenoiser`) on what a campaign learnt.

Two objectives, both on the discrete schedule the base model was trained on
(``x_i = sqrt(abar_i) x_0 + sqrt(1 - abar_i) eps``, ``i`` uniform):

- :func:`denoising_fit`: denoising score matching on weighted samples ``(x_0, w)``. Batches are
  drawn with replacement in proportion to ``w``, so the minimiser is the score of the weighted
  distribution: on FKC particles with their importance weights, the tilted target
  ``q_0 exp(lam r)`` (amortising the aligned sampler); on the items a user liked, PAPA's update.
- :func:`preference_fit`: the Diffusion-DPO loss (Wallace et al. 2024, the per-step form of
  D3PO, Yang et al. 2024) on answered pairs, against the frozen base model::

      d = (|eps - eps_theta(xw_i)|^2 - |eps - eps_base(xw_i)|^2)
        - (|eps - eps_theta(xl_i)|^2 - |eps - eps_base(xl_i)|^2)
      loss = -log sigmoid(-beta d)

  (the same ``i`` and ``eps`` for the winner ``xw`` and the loser ``xl``; squared errors are
  means over the values).

Modes (:data:`prefalign.settings.MODES`): every weight, every weight at ``t >= t_split``
only, or peft LoRA adapters on every linear and convolution layer, merged when done. ``decay``
pulls the weights toward the base model's after each step (the regulariser toward the base).

Everything runs on the network's device: the examples are moved there once, the batches,
timesteps and noise are drawn there (a generator on the device,
:func:`~prefalign.runtime.device_generator`), and the losses are read once, at the end.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from prefalign.io.progress import tqdm
from prefalign.models.ddpm import NoiseSchedule
from prefalign.runtime import device_generator, to_host
from prefalign.settings import FinetuneSettings


@dataclass(frozen=True)
class TuningReport:
    """What a fine-tuning run did and cost.

    Attributes:
        mode: the fine-tuning mode.
        objective: ``denoising`` or ``preference``.
        n_examples: training examples (samples, or pairs).
        steps: optimiser steps.
        trained_parameters: parameters the optimiser changed (the adapters' for ``lora``).
        total_parameters: parameters of the network.
        final_loss: mean loss of the last 10 % of the steps.
        seconds: wall time of the optimisation.
    """

    mode: str
    objective: str
    n_examples: int
    steps: int
    trained_parameters: int
    total_parameters: int
    final_loss: float
    seconds: float

    def to_dict(self) -> dict:
        """Plain-dict form, for JSON."""
        return asdict(self)


def lora_targets(net: nn.Module) -> list[str]:
    """The names of every linear and 2-D convolution layer of ``net`` (LoRA's targets)."""
    return [name for name, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _alphas_cumprod(schedule: NoiseSchedule, device: torch.device) -> torch.Tensor:
    betas = torch.linspace(
        schedule.beta_start,
        schedule.beta_end,
        schedule.num_train_timesteps,
        dtype=torch.float64,
        device=device,
    )
    return torch.cumprod(1.0 - betas, 0).float()


def first_timestep(schedule: NoiseSchedule, settings: FinetuneSettings) -> int:
    """The smallest discrete timestep trained: 0, or ``ceil(t_split (T - 1))`` in ``split``."""
    if settings.mode != "split":
        return 0
    return math.ceil(settings.t_split * (schedule.num_train_timesteps - 1))


def _target(
    kind: str, x0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return a * noise - s * x0
    return x0  # "sample"


class _Run:
    """The network being tuned, its frozen base, the optimiser and the noise draws."""

    def __init__(self, net: nn.Module, schedule: NoiseSchedule, settings: FinetuneSettings):
        self.settings, self.schedule = settings, schedule
        self.device = next(net.parameters()).device
        self.base = copy.deepcopy(net).eval().requires_grad_(False)
        model = copy.deepcopy(net).train().requires_grad_(True)
        self.total = sum(p.numel() for p in model.parameters())
        if settings.mode == "lora":
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=settings.lora_rank,
                lora_alpha=settings.lora_rank,
                target_modules=lora_targets(model),
                lora_dropout=0.0,
            )
            # the adapters' random initial A, drawn where the network lives (manual_seed seeds
            # the CUDA generators too; only the CPU's state is restored, nothing else uses them)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(settings.seed)
                model = get_peft_model(model, config)
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.start = [p.detach().clone() for p in self.params]
        self.optimiser = torch.optim.AdamW(self.params, lr=settings.lr, weight_decay=0.0)
        warmup = max(1, settings.steps // 10)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser, lambda step: min(1.0, (step + 1) / warmup)
        )
        self.generator = device_generator(settings.seed, self.device)
        self.draws = self.generator.device  # the generator's device (the CPU's for meta)
        self.abar = _alphas_cumprod(schedule, self.device)
        self.lo = first_timestep(schedule, settings)

    def sample_rows(self, n: int, weights: torch.Tensor | None, size: int) -> torch.Tensor:
        """``size`` row indices in ``0..n-1``, in proportion to ``weights`` (on the device) or
        uniformly (None)."""
        if weights is not None:
            return torch.multinomial(weights, size, replacement=True, generator=self.generator)
        rows = torch.randint(n, (size,), generator=self.generator, device=self.draws)
        return rows.to(self.device)

    def draw(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random timesteps (N,) and noise shaped like ``like`` (N, *shape), on the device."""
        n = like.shape[0]
        i = torch.randint(
            self.lo,
            self.schedule.num_train_timesteps,
            (n,),
            generator=self.generator,
            device=self.draws,
        )
        noise = torch.randn(like.shape, generator=self.generator, device=self.draws)
        return i.to(self.device), noise.to(self.device)

    def noised(
        self, x0: torch.Tensor, i: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_i, target)``: the noised samples and what the network should predict."""
        shape = (len(x0),) + (1,) * (x0.ndim - 1)
        a = self.abar[i].sqrt().reshape(shape)
        s = (1.0 - self.abar[i]).sqrt().reshape(shape)
        return a * x0 + s * noise, _target(self.schedule.prediction_type, x0, noise, a, s)

    def step(self, loss: torch.Tensor) -> None:
        """One optimiser step, then the pull toward the base weights."""
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimiser.step()
        self.lr_schedule.step()
        if self.settings.decay > 0:
            shrink = self.lr_schedule.get_last_lr()[0] * self.settings.decay
            with torch.no_grad():
                for p, p0 in zip(self.params, self.start, strict=True):
                    p.sub_(shrink * (p - p0))

    def finish(self) -> nn.Module:
        """The tuned network, frozen in eval mode (for ``lora`` the peft model: its adapters are
        saved on their own, then merged, by :func:`prefalign.finetune.model_dir.save_finetuned`)."""
        return self.model.eval().requires_grad_(False)


def _optimise(
    run: _Run,
    loss_of_batch: Callable[[], torch.Tensor],
    objective: str,
    n_examples: int,
    progress: bool,
) -> tuple[nn.Module, TuningReport]:
    started = time.perf_counter()
    losses = []
    for _ in tqdm(range(run.settings.steps), disable=not progress, desc=f"finetune {objective}"):
        loss = loss_of_batch()
        run.step(loss)
        losses.append(loss.detach())
    tail = losses[-max(1, len(losses) // 10) :]
    host = to_host(torch.stack(tail))  # the one read of the run (None on meta: no values)
    tail = [float("nan")] * len(tail) if host is None else host.tolist()
    model = run.finish()
    report = TuningReport(
        mode=run.settings.mode,
        objective=objective,
        n_examples=n_examples,
        steps=run.settings.steps,
        trained_parameters=sum(p.numel() for p in run.params),
        total_parameters=run.total,
        final_loss=sum(tail) / len(tail),
        seconds=time.perf_counter() - started,
    )
    return model, report


def _out(model: nn.Module, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    return model(x, i.to(x.device)).sample


def denoising_fit(
    net: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    weights: torch.Tensor | None,
    settings: FinetuneSettings,
    *,
    progress: bool = False,
) -> tuple[nn.Module, TuningReport]:
    """A copy of ``net`` fine-tuned by denoising score matching on ``x0`` (N, *shape), each
    sample drawn with probability proportional to ``weights`` (N,) (None: uniform).

    Raises:
        ValueError: no samples, or weights that are negative, not finite or all zero.
    """
    if len(x0) == 0:
        raise ValueError("denoising_fit needs at least one sample")
    w = torch.ones(len(x0), device="cpu") if weights is None else weights.detach().double().cpu()
    if w.shape != (len(x0),) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("denoising_fit: weights must be (N,), finite, >= 0 and not all zero")
    run = _Run(net, schedule, settings)
    x0, w = x0.detach().float().to(run.device), w.to(run.device)

    def loss_of_batch() -> torch.Tensor:
        index = run.sample_rows(len(x0), w, settings.batch_size)
        i, noise = run.draw(x0[index])
        x_i, target = run.noised(x0[index], i, noise)
        return torch.nn.functional.mse_loss(_out(run.model, x_i, i), target)

    return _optimise(run, loss_of_batch, "denoising", len(x0), progress)


def preference_fit(
    net: nn.Module,
    schedule: NoiseSchedule,
    winners: torch.Tensor,
    losers: torch.Tensor,
    settings: FinetuneSettings,
    *,
    progress: bool = False,
) -> tuple[nn.Module, TuningReport]:
    """A copy of ``net`` fine-tuned by the Diffusion-DPO loss on pairs (``winners[j]`` preferred
    to ``losers[j]``), with ``net`` itself as the frozen reference.

    Raises:
        ValueError: no pairs, or winners and losers of different shapes.
    """
    if len(winners) == 0 or winners.shape != losers.shape:
        raise ValueError(
            f"preference_fit needs pairs of equal shape; got {tuple(winners.shape)} and "
            f"{tuple(losers.shape)}"
        )
    run = _Run(net, schedule, settings)
    winners, losers = (
        winners.detach().float().to(run.device),
        losers.detach().float().to(run.device),
    )
    n = settings.batch_size

    def sq_err(model: nn.Module, x: torch.Tensor, i: torch.Tensor, target: torch.Tensor):
        return (_out(model, x, i) - target).pow(2).flatten(1).mean(1)

    def loss_of_batch() -> torch.Tensor:
        index = run.sample_rows(len(winners), None, n)
        i, noise = run.draw(winners[index])  # the same timestep and noise for both items
        x_w, target_w = run.noised(winners[index], i, noise)
        x_l, target_l = run.noised(losers[index], i, noise)
        x_i, target, i2 = torch.cat([x_w, x_l]), torch.cat([target_w, target_l]), i.repeat(2)
        err = sq_err(run.model, x_i, i2, target)
        with torch.no_grad():
            ref = sq_err(run.base, x_i, i2, target)
        d = (err[:n] - ref[:n]) - (err[n:] - ref[n:])
        return -torch.nn.functional.logsigmoid(-settings.dpo_beta * d).mean()

    return _optimise(run, loss_of_batch, "preference", len(winners), progress)
