"""Fine-tuning inside and after a campaign: the online learners (PAPA- and D3PO-style baselines)
and the distillation of a campaign's aligned sampler into the base model.

- :func:`fit_learner`: a round's learning step for a method whose ``learner`` is ``papa`` or
  ``d3po``: the base model fine-tuned on every answer so far (from the base weights each round,
  so a round's model depends on the answers only), saved as a model directory. ``papa``
  (PAPA, arXiv 2607.00486: fine-tuning from binary feedback) does denoising score matching on
  the liked items; ``d3po`` (Yang et al. 2024; the Diffusion-DPO loss of Wallace et al. 2024)
  prefers each pair's chosen item to the other against the base model. Until a first like
  (or a first untied pair) the model is the base model.
- :func:`distil_campaign`: the ``finetune`` rule: FKC particles tilted by the campaign's last
  surrogate, importance weights kept, distilled by weighted denoising score matching in each mode
  (full, split, LoRA); each model is saved, reloaded and judged like the campaign's final
  evaluation, with its sampling and fine-tuning cost.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from prefalign.finetune.model_dir import FINETUNE_FILE, load_finetuned, save_finetuned
from prefalign.finetune.train import denoising_fit, preference_fit
from prefalign.io.atomic import write_text
from prefalign.io.observations import observations_xy, read_observations
from prefalign.io.oracle_command import run_oracle
from prefalign.loop.spec import CampaignSpec
from prefalign.models.ddpm import UNetScore
from prefalign.runtime import numpy_rng, resolve_device, torch_generator
from prefalign.sampling import SampleResult, sample
from prefalign.settings import SamplerConfig


def base_noise_model(domain) -> UNetScore:
    """The domain's base noise-prediction network with its schedule (``domain.noise_model``).

    Raises:
        ValueError: the domain's base model is not a network (mixture2d: the exact mixture).
    """
    model = getattr(domain, "noise_model", None)
    if model is None:
        raise ValueError(
            f"domain {domain.name!r} has no base network to fine-tune (its score is exact); "
            "fine-tuning works on the domains with a diffusers model (digits, pretrained)"
        )
    return model


def liked_items(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The items answered ``like`` (reward >= 1/2) of binary observations."""
    return x[y >= 0.5]


def answered_pairs(x: np.ndarray, y: np.ndarray, questions: np.ndarray):
    """``(winners, losers)`` of pairwise observations: per question the item with reward 1 and
    the one with 0 (ties, 0.5 each, are left out)."""
    winners, losers = [], []
    for q in dict.fromkeys(questions.tolist()):
        items = np.flatnonzero(questions == q)
        if len(items) != 2 or y[items[0]] == y[items[1]]:
            continue
        w, l = (items[0], items[1]) if y[items[0]] > y[items[1]] else (items[1], items[0])
        winners.append(x[w])
        losers.append(x[l])
    shape = x.shape[1:]
    if not winners:
        return np.empty((0, *shape), np.float32), np.empty((0, *shape), np.float32)
    return np.stack(winners), np.stack(losers)


def fit_learner(
    spec: CampaignSpec,
    round_: int,
    observations,
    previous_model,
    out,
    *,
    progress: bool = False,
) -> dict:
    """Fine-tune the base model on the observations of rounds ``0..round_`` (the method's
    ``learner``), and save it as ``out`` (:mod:`prefalign.finetune.model_dir`). Returns the
    record written to its ``finetune.json``."""
    from prefalign.loop.steps import campaign_domain

    torch.set_num_threads(spec.torch_threads)
    learner = spec.method.learner
    base = base_noise_model(campaign_domain(spec))
    df, shape = read_observations(observations)
    x, y = observations_xy(df, shape)
    settings = replace(
        spec.finetune, seed=int(numpy_rng(spec.seed, round_, "finetune").integers(2**31))
    )
    tuned, report = base.unet, None
    if learner == "papa":
        liked = liked_items(x, y)
        n_examples = len(liked)
        if n_examples:
            tuned, report = denoising_fit(
                base.unet, base.schedule, torch.from_numpy(liked), None, settings, progress=progress
            )
    elif learner == "d3po":
        winners, losers = answered_pairs(x, y, df["question"].to_numpy(str))
        n_examples = len(winners)
        if n_examples:
            tuned, report = preference_fit(
                base.unet,
                base.schedule,
                torch.from_numpy(winners),
                torch.from_numpy(losers),
                settings,
                progress=progress,
            )
    else:
        raise ValueError(f"method {spec.method.name!r} has no fine-tuning learner ({learner!r})")
    seconds = report.seconds if report is not None else 0.0
    earlier = 0.0
    if previous_model:
        earlier = float(
            json.loads((Path(previous_model) / FINETUNE_FILE).read_text())["cumulative_seconds"]
        )
    record = {
        "mode": settings.mode,
        "t_split": settings.t_split,
        "learner": learner,
        "round": round_,
        "n_observations": len(df),
        "n_examples": n_examples,
        "settings": settings.to_dict(),
        "training": report.to_dict() if report is not None else None,
        "trained_parameters": report.trained_parameters if report is not None else 0,
        "seconds": seconds,
        "cumulative_seconds": earlier + seconds,
    }
    save_finetuned(out, tuned, base.unet, base.schedule, record)
    return record


def sample_model(
    spec: CampaignSpec, model, n: int, round_: int, step: str, *, progress: bool = False
) -> SampleResult:
    """``n`` plain (untilted) samples of a fine-tuned model, with the campaign's sampler steps and
    the (seed, round, step) random stream."""
    config = SamplerConfig.from_dict({**spec.method.sampler.to_dict(), "variant": "base"})
    device = resolve_device(spec.device)
    return sample(
        model.score,
        model.sde,
        n,
        tuple(model.event_shape),
        config=config,
        generator=torch_generator(spec.seed, round_, step, device),
        device=device,
        progress=progress,
    )


def distil_campaign(
    spec: CampaignSpec,
    surrogate_dir,
    out_dir,
    modes: list[str],
    *,
    log=None,
    progress: bool = False,
    runner=run_oracle,
) -> dict:
    """The ``finetune`` rule: distil the campaign's aligned sampler (the method's sampler tilted
    by its last surrogate, ``finetune.particles`` particles with their importance weights) into
    the base model in each of ``modes``, save each as ``out_dir/<mode>``, and judge each like the
    final evaluation (``out_dir/<mode>.json``); ``out_dir/teacher.json`` holds the teacher's
    sampling cost. Returns ``{mode: record}``."""
    from prefalign.learning.checkpoint import load_surrogate
    from prefalign.loop.evaluation import EVALUATION_ROUND, judge_samples, plot_final_samples
    from prefalign.loop.steps import campaign_domain, draw_particles

    torch.set_num_threads(spec.torch_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    domain = campaign_domain(spec)
    base = base_noise_model(domain)
    sampler = replace(spec.method.eval_sampler or spec.method.sampler, final_resample=False)
    teacher_spec = replace(spec, method=replace(spec.method, sampler=sampler))
    start = time.perf_counter()
    teacher = draw_particles(
        teacher_spec,
        domain,
        load_surrogate(surrogate_dir),
        spec.finetune.particles,
        EVALUATION_ROUND,
        "distil",
        explore=False,
        progress=progress,
    )
    teacher_seconds = time.perf_counter() - start
    n = spec.finetune.particles
    log_w = teacher.log_weights.detach().double().cpu()
    weights = torch.softmax(log_w, 0)
    teacher_record = {
        "n_particles": n,
        "ess": float(1.0 / (weights**2).sum()),
        "seconds_per_sample": teacher_seconds / n,
        "network_evals_per_sample": (teacher.n_score_evals + teacher.n_reward_evals) / n,
    }
    write_text(out_dir / "teacher.json", json.dumps(teacher_record, indent=2) + "\n")
    records = {}
    for mode in modes:
        settings = replace(
            spec.finetune,
            mode=mode,
            seed=int(numpy_rng(spec.seed, EVALUATION_ROUND, f"distil-{mode}").integers(2**31)),
        )
        tuned, report = denoising_fit(
            base.unet, base.schedule, teacher.x.detach(), weights, settings, progress=progress
        )
        record = {
            "mode": mode,
            "t_split": settings.t_split,
            "distilled_from": spec.name,
            "teacher": teacher_record,
            "settings": settings.to_dict(),
            "training": report.to_dict(),
            "trained_parameters": report.trained_parameters,
            "seconds": report.seconds,
        }
        model = load_finetuned(
            save_finetuned(out_dir / mode, tuned, base.unet, base.schedule, record),
            resolve_device(spec.device),
        )
        model.event_shape = domain.event_shape
        start = time.perf_counter()
        result = sample_model(spec, model, spec.eval_particles, EVALUATION_ROUND, "evaluate")
        seconds = time.perf_counter() - start
        x = result.x.detach().cpu().float().numpy()
        judged = judge_samples(spec, domain, x, None, out_dir, log=log, runner=runner)
        evaluation = {
            "campaign": f"{spec.name}/{mode}",
            "domain": spec.label or spec.domain,
            "method": f"{spec.method.name} → {mode}",
            "seed": spec.seed,
            "n_queries": spec.budget,
            "n_samples": len(x),
            **judged,
            "seconds": seconds,
            "seconds_per_sample": seconds / len(x),
            "network_evals_per_sample": result.n_score_evals / len(x),
            "finetune_seconds": report.seconds,
            "trained_parameters": report.trained_parameters,
            "total_parameters": report.total_parameters,
        }
        write_text(out_dir / f"{mode}.json", json.dumps(evaluation, indent=2) + "\n")
        np.savez(out_dir / f"{mode}-samples.npz", x=x)
        plot_final_samples(spec, x, out_dir / f"{mode}.png", title=f"{spec.name} → {mode}")
        records[mode] = evaluation
    return records
