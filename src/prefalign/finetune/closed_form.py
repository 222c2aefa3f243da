"""The distillation error against a closed form: mixture2d, an MLP base model, a quadratic tilt.

1. Train an :class:`~prefalign.finetune.denoiser.MLPDenoiser` on exact samples of the mixture2d
   ring (the base model the user has).
2. Tilt it by ``r(x) = -|x - c|^2 / 2`` with ``c`` the rare mode 0's centre: the target
   ``q_0(x) exp(lam r(x))`` is a Gaussian mixture in closed form
   (:meth:`~prefalign.models.mixture.GaussianMixture.tilt_quadratic`, fkc-math.md).
3. Sample it with FKC driven by the MLP's score (importance weights kept), and fine-tune the MLP
   on those weighted particles in each mode (full, split, LoRA).
4. Sample each fine-tuned model with plain ancestral (Euler–Maruyama) steps, and measure its energy
   distance to exact samples of the target, in multiples of the exact-vs-exact floor (two
   independent exact samples of the same size).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from prefalign.domains.mixture2d import Mixture2D
from prefalign.finetune.denoiser import MLPDenoiser
from prefalign.finetune.model_dir import load_finetuned, save_finetuned
from prefalign.finetune.train import denoising_fit
from prefalign.models.ddpm import NoiseSchedule, UNetScore
from prefalign.reporting.distances import energy_distance
from prefalign.sampling import sample
from prefalign.settings import MODES, FinetuneSettings, SamplerConfig


@dataclass(frozen=True)
class ClosedFormCheck:
    """Sizes of the check (the defaults: about 50 s on one CPU thread).

    Attributes:
        base_data: exact mixture samples the MLP base model is trained on.
        base: how the base model is trained (``full`` mode from a random network).
        hidden, layers: the MLP's width and depth.
        lam: tilt strength of the quadratic reward.
        particles: FKC particles the fine-tuning distils.
        eval_samples: samples of each model compared with as many exact ones.
        floor_repeats: exact-vs-exact distances averaged into the floor.
        n_steps: sampling steps (FKC and ancestral).
        finetune: fine-tuning settings (``mode`` set per row).
        split_times: the ``t_split`` of each ``split`` row.
        seed: seeds everything.
    """

    base_data: int = 20000
    base: FinetuneSettings = field(
        default_factory=lambda: FinetuneSettings(steps=12000, batch_size=256, lr=1e-3)
    )
    hidden: int = 128
    layers: int = 3
    lam: float = 1.0
    particles: int = 4096
    eval_samples: int = 1000
    floor_repeats: int = 5
    n_steps: int = 100
    finetune: FinetuneSettings = field(
        default_factory=lambda: FinetuneSettings(steps=3000, batch_size=256, lr=3e-4)
    )
    split_times: tuple[float, ...] = (0.1, 0.2, 0.5)
    seed: int = 0


def _ancestral(score, sde, n: int, n_steps: int, seed: int) -> torch.Tensor:
    config = SamplerConfig(variant="base", n_steps=n_steps)
    result = sample(
        score,
        sde,
        n,
        (2,),
        config=config,
        generator=torch.Generator(device="cpu").manual_seed(seed),
    )
    return result.x.detach().double()


def run_check(
    check: ClosedFormCheck, modes: tuple[str, ...] = MODES, *, workdir=None, progress=False
) -> dict:
    """Run the check; returns ``{"floor": ..., "rows": [...]}``, one row per model (the base, the
    FKC sampler, each fine-tuned mode) with its energy distance to exact samples of its target
    and the multiple of the floor. ``workdir``: where the fine-tuned models are saved (and
    reloaded from, as a user would); a temporary folder when None."""
    import tempfile
    from pathlib import Path

    mixture2d = Mixture2D()
    schedule = NoiseSchedule()  # 1000 linear betas: VP b_min 0.1, b_max 20, as the mixture's
    sde = schedule.vpsde()
    exact = mixture2d.mixture
    c = torch.as_tensor(mixture2d.means[0], device="cpu")
    target = exact.tilt_quadratic(c, check.lam)

    def reward(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x - c.to(x.dtype)) ** 2).sum(-1)

    g = torch.Generator(device="cpu").manual_seed(check.seed)
    floor = float(
        np.mean(
            [
                energy_distance(
                    target.sample(check.eval_samples, g), target.sample(check.eval_samples, g)
                )
                for _ in range(check.floor_repeats)
            ]
        )
    )
    base_floor = float(
        np.mean(
            [
                energy_distance(
                    exact.sample(check.eval_samples, g), exact.sample(check.eval_samples, g)
                )
                for _ in range(check.floor_repeats)
            ]
        )
    )
    rows = []

    # 1. the base model
    torch.manual_seed(check.seed)
    net = MLPDenoiser(dim=2, hidden=check.hidden, layers=check.layers)
    data = exact.sample(check.base_data, g).float()
    base_net, base_report = denoising_fit(
        net, schedule, data, None, replace(check.base, seed=check.seed), progress=progress
    )
    base_score = UNetScore(base_net, schedule)
    x = _ancestral(base_score, sde, check.eval_samples, check.n_steps, check.seed + 1)
    d = energy_distance(x, exact.sample(check.eval_samples, g))
    rows.append(
        {
            "model": "base MLP (vs the base mixture)",
            "energy_distance": d,
            "floor_multiple": d / base_floor,
            "evals_per_sample": check.n_steps,
            "seconds_per_sample": None,
            "train_seconds": base_report.seconds,
            "trained_parameters": base_report.trained_parameters,
        }
    )

    d = energy_distance(x, target.sample(check.eval_samples, g))
    rows.append(
        {
            "model": "base MLP (vs the tilted target: before fine-tuning)",
            "energy_distance": d,
            "floor_multiple": d / floor,
            "evals_per_sample": check.n_steps,
            "seconds_per_sample": None,
            "train_seconds": None,
            "trained_parameters": None,
        }
    )

    # 2. the FKC sampler driven by the base model's score
    start = time.perf_counter()
    fkc = sample(
        base_score,
        sde,
        check.particles,
        (2,),
        reward=reward,
        config=SamplerConfig(
            variant="fkc", n_steps=check.n_steps, lam_max=check.lam, final_resample=False
        ),
        generator=torch.Generator(device="cpu").manual_seed(check.seed + 2),
    )
    fkc_seconds = time.perf_counter() - start
    w = torch.softmax(fkc.log_weights.double(), 0)
    ess = float(1.0 / (w**2).sum())
    resampled = fkc.x.detach().double()[
        torch.multinomial(w, check.eval_samples, replacement=True, generator=g)
    ]
    d = energy_distance(resampled, target.sample(check.eval_samples, g))
    rows.append(
        {
            "model": "FKC sampler (the teacher)",
            "energy_distance": d,
            "floor_multiple": d / floor,
            "evals_per_sample": 2 * check.n_steps,
            "seconds_per_sample": fkc_seconds / check.particles,
            "train_seconds": None,
            "trained_parameters": None,
            "ess": ess,
        }
    )

    # 3. the fine-tuned models, saved, reloaded and sampled with plain ancestral steps
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        runs = [
            (mode, t_split)
            for mode in modes
            for t_split in (check.split_times if mode == "split" else (check.finetune.t_split,))
        ]
        for mode, t_split in runs:
            settings = replace(check.finetune, mode=mode, t_split=t_split, seed=check.seed + 3)
            label = f"split t >= {t_split:g}" if mode == "split" else mode
            tuned, report = denoising_fit(
                base_net, schedule, fkc.x.detach(), w, settings, progress=progress
            )
            record = {
                "mode": mode,
                "t_split": settings.t_split,
                "settings": settings.to_dict(),
                **{f"train_{k}": v for k, v in report.to_dict().items()},
            }
            model = load_finetuned(
                save_finetuned(
                    root / label.replace(" ", "_").replace(">=", "ge"),
                    tuned,
                    base_net,
                    schedule,
                    record,
                )
            )
            start = time.perf_counter()
            x = _ancestral(
                model.score, model.sde, check.eval_samples, check.n_steps, check.seed + 4
            )
            seconds = time.perf_counter() - start
            d = energy_distance(x, target.sample(check.eval_samples, g))
            rows.append(
                {
                    "model": f"fine-tuned: {label}",
                    "energy_distance": d,
                    "floor_multiple": d / floor,
                    "evals_per_sample": check.n_steps,
                    "seconds_per_sample": seconds / check.eval_samples,
                    "train_seconds": report.seconds,
                    "trained_parameters": report.trained_parameters,
                }
            )
    return {"floor": floor, "base_floor": base_floor, "check": asdict(check), "rows": rows}
