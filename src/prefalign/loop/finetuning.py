"""The distillation of a campaign's aligned sampler into the base model (the workflow's
``finetune`` rule): FKC particles tilted by the campaign's last surrogate, importance weights
kept, distilled by weighted denoising score matching in each mode (full, split, LoRA); each
model is saved, reloaded and judged like the campaign's final evaluation, with its sampling and
fine-tuning cost. (The online fine-tuning learners, PAPA and D3PO, are
:mod:`prefalign.loop.learners`.)
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from prefalign.finetune.model_dir import load_finetuned, save_finetuned
from prefalign.finetune.train import denoising_fit
from prefalign.io.atomic import write_text
from prefalign.io.oracle_command import run_oracle
from prefalign.loop.draws import EVALUATION_ROUND, campaign_domain, draw
from prefalign.loop.evaluation import judge_samples, plot_final_samples
from prefalign.loop.learners import base_noise_model, model_proposal
from prefalign.loop.spec import CampaignSpec, resolve
from prefalign.runtime import numpy_rng, resolve_device


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
    torch.set_num_threads(spec.torch_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    domain = campaign_domain(spec)
    base = base_noise_model(domain)
    learner = resolve(spec).learner
    sampler = replace(learner.final_sampler(spec), final_resample=False)
    start = time.perf_counter()
    surrogate = learner.load(spec, domain, surrogate_dir)
    teacher = draw(
        spec,
        learner.final_proposal(spec, domain, surrogate, sampler),
        spec.finetune.particles,
        EVALUATION_ROUND,
        "distil",
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
        result = draw(
            spec,
            model_proposal(model, spec.method.sampler),
            spec.eval_particles,
            EVALUATION_ROUND,
            "evaluate",
        )
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
