"""The final evaluation of a campaign, spending no budget: fresh samples from the aligned
sampler (the method's evaluation sampler tilted by the last surrogate), scored by the oracle and
the independent evaluator, with validity and diversity beside the reward."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.io.atomic import savez, write_text
from prefalign.io.observations import read_observations
from prefalign.io.oracle_command import run_oracle
from prefalign.io.queries import write_queries
from prefalign.loop.draws import EVALUATION_ROUND, campaign_domain, draw
from prefalign.loop.learners import used_tilt
from prefalign.loop.spec import CampaignSpec, resolve
from prefalign.loop.steps.answer import OracleRunner, PathLike
from prefalign.loop.steps.fit import fit_round
from prefalign.runtime import numpy_rng

__all__ = [
    "EVALUATION_ROUND",
    "evaluate_campaign",
    "fit_and_evaluate",
    "importance_weights",
    "judge_samples",
    "rate_queries",
    "trusted_tilt",
]


def importance_weights(log_weights: np.ndarray) -> np.ndarray | None:
    """Self-normalised importance weights of a sample, or None when every log-weight is the same
    (the particles are then an unweighted sample of the target: after a final resampling, or
    ``guidance``/``base``).

    Raises:
        ValueError: a NaN or +inf log-weight, or every weight zero (all ``-inf``).
    """
    lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    if lw.size == 0 or np.all(lw == lw[0]):
        if lw.size and not np.isfinite(lw[0]):
            raise ValueError(f"the evaluation's log-weights are all {lw[0]}")
        return None
    if np.isnan(lw).any() or np.isposinf(lw).any():
        raise ValueError("the evaluation's log-weights hold NaN or +inf")
    w = np.exp(lw - lw.max())
    return w / w.sum()


def _systematic_indices(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling in numpy: ``len(weights)`` ancestor indices, sorted."""
    n = len(weights)
    cumsum = np.cumsum(weights)
    cumsum[-1] = 1.0
    positions = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(cumsum, positions, side="right"), n - 1)


def _weighted_summary(r: np.ndarray, w: np.ndarray | None, threshold: float) -> dict[str, float]:
    """Mean, standard deviation and share at or above ``threshold`` of rewards ``r``: plain when
    ``w`` is None, self-normalised importance-weighted otherwise."""
    if w is None:
        return {
            "mean": float(r.mean()),
            "std": float(r.std()),
            "frac": float((r >= threshold).mean()),
        }
    mean = float(np.sum(w * r))
    return {
        "mean": mean,
        "std": float(np.sqrt(np.sum(w * (r - mean) ** 2))),
        "frac": float(np.sum(w * (r >= threshold))),
    }


def evaluate_campaign(
    spec: CampaignSpec,
    surrogate_dir: PathLike,
    out_json: PathLike,
    samples_out: PathLike,
    *,
    log: PathLike | None = None,
    plot: PathLike | None = None,
    progress: bool = False,
    runner: OracleRunner = run_oracle,
) -> dict:
    """Final evaluation, spending no budget: sample ``eval_particles`` fresh particles with the
    method's evaluation sampler tilted by the last surrogate, and report the oracle's mean
    reward, the share above ``reward_threshold``, the validity rate and the diversity.

    With a frontier (``final_tilt.lams``), the aligned sampler is evaluated at every tilt of the
    grid, each row of ``frontier.csv`` beside ``samples_out`` one tilt, and the record and
    samples are those of the trusted tilt (:func:`trusted_tilt`: picked by a rule that reads
    only the surrogate, never the user); without one, at the method's own ``lam_max``.

    When the sampler returns particles whose log-weights are not all equal (``draft``, or
    ``fkc`` with ``final_resample: false``), the particles are an importance sample of the target,
    not a sample of it: the mean reward, its standard deviation, the share above the threshold
    and the validity rate are then self-normalised importance-weighted means
    (:func:`importance_weights`), and the diversity is computed on a systematic resample by the
    weights (seeded, same size), so every number describes the weighted distribution. The record
    says ``"weighted": true`` and gives the weights' ``eval_ess``; ``samples.npz`` also holds the
    ``log_weight`` of each particle. Uniform weights give the plain means, as before."""
    import torch

    torch.set_num_threads(spec.torch_threads)
    domain = campaign_domain(spec)
    lams = resolve(spec).learner.frontier(spec)
    tilts = [(lam, f"evaluate-lam{lam:g}") for lam in lams] or [(None, "evaluate")]
    records, frontier, draws = [], [], []
    for lam, stream in tilts:
        start = time.perf_counter()
        result, surrogate, used = _final_draw(
            spec, domain, surrogate_dir, progress, lam=lam, stream=stream
        )
        seconds = time.perf_counter() - start
        x = result.x.detach().cpu().float().numpy()
        log_w = result.log_weights.detach().cpu().double().numpy()
        weights = importance_weights(log_w)
        spread = {"lam": used, **_surrogate_spread(surrogate, x, weights)}
        judged = judge_samples(
            spec, domain, x, weights, Path(out_json).parent, log=log, runner=runner
        )
        record = {
            "campaign": spec.name,
            "domain": spec.label or spec.domain,
            "method": spec.method.name,
            "seed": spec.seed,
            "n_queries": spec.budget,
            "n_samples": len(x),
            **judged,
            "seconds": seconds,
            "seconds_per_sample": seconds / len(x),
            "network_evals_per_sample": (result.n_score_evals + result.n_reward_evals) / len(x),
        }
        records.append(record)
        frontier.append({**record, **spread})
        draws.append((x, log_w))
    pick = trusted_tilt(spec, frontier) if lams else 0
    for i, row in enumerate(frontier):
        row["trusted"] = i == pick
    _write_frontier(Path(samples_out).with_name("frontier.csv"), frontier)
    # with a grid the record is the trusted tilt's and says which; without, as it always was
    evaluation = frontier[pick] if lams else records[0]
    x, log_w = draws[pick]
    savez(samples_out, x=x, log_weight=log_w)
    write_text(out_json, json.dumps(evaluation, indent=2) + "\n")
    if plot:
        plot_final_samples(spec, x, plot)
    return evaluation


def trusted_tilt(spec: CampaignSpec, frontier: list[dict]) -> int:
    """The index of the trusted tilt among the frontier's records (``final_tilt.rule``), read
    from what the campaign knows, never the user's reward. ``std``: the largest tilt whose
    samples' mean posterior std of the reward (``surrogate_std``) is at most ``max_std``, and
    never less than the configured tilt (the largest of the grid up to the evaluation sampler's
    ``lam_max``: the tilt the campaign was set up with); the smallest tilt of the grid when the
    grid holds neither. The upper bound ``true-reward`` has no surrogate to doubt: its tilt is
    the configured one."""
    lams = [record["lam"] for record in frontier]
    configured = (spec.method.eval_sampler or spec.method.sampler).lam_max
    allowed = [i for i, lam in enumerate(lams) if lam <= configured]
    if not spec.true_reward:
        # a surrogate that does not yet know where a stronger tilt goes keeps the configured
        # one rather than falling back to the base model (all the rounds' answers unused)
        bound = spec.final_tilt.max_std
        allowed += [i for i, r in enumerate(frontier) if r["surrogate_std"] <= bound]
    if not allowed:
        return min(range(len(lams)), key=lambda i: lams[i])
    return max(allowed, key=lambda i: lams[i])


def _write_frontier(path: Path, records: list[dict]) -> None:
    """``frontier.csv``: one row per tilt of the grid (diversity's measures as columns)."""
    flat = []
    for record in records:
        row = {k: v for k, v in record.items() if k != "diversity"}
        row.update({f"diversity_{k}": v for k, v in record["diversity"].items()})
        flat.append(row)
    write_text(path, pd.DataFrame(flat).to_csv(index=False, float_format="%.17g"))


def _final_draw(
    spec: CampaignSpec,
    domain,
    learnt_dir: PathLike,
    progress: bool,
    *,
    lam: float | None = None,
    stream: str = "evaluate",
):
    """The evaluation's fresh samples from the sampler the user takes home (the learner's final
    proposal, at tilt ``lam`` when given), with the surrogate (None for a learner without one)
    and the tilt used (NaN without a surrogate)."""
    learner = resolve(spec).learner
    learnt = learner.load(spec, domain, learnt_dir)
    config = learner.final_sampler(spec, lam)
    proposal = learner.final_proposal(spec, domain, learnt, config)
    result = draw(spec, proposal, spec.eval_particles, EVALUATION_ROUND, stream, progress=progress)
    return result, learner.surrogate(learnt), used_tilt(learner, config)


def _surrogate_spread(surrogate, x: np.ndarray, weights: np.ndarray | None) -> dict[str, float]:
    """The surrogate's mean prediction and mean posterior (or ensemble) std over the samples
    (importance-weighted when ``weights``): what the trusted-tilt rule reads."""
    if surrogate is None:
        return {"surrogate_mean": math.nan, "surrogate_std": math.nan}
    import torch

    with torch.no_grad():
        mean, std = surrogate.cpu().eval().predict(torch.as_tensor(x, dtype=torch.float32))
    w = np.full(len(x), 1.0 / len(x)) if weights is None else weights
    return {
        "surrogate_mean": float(w @ mean.double().numpy()),
        "surrogate_std": float(w @ std.double().numpy()),
    }


def judge_samples(
    spec: CampaignSpec,
    domain,
    x: np.ndarray,
    weights: np.ndarray | None,
    workdir: PathLike,
    *,
    log: PathLike | None = None,
    runner: OracleRunner = run_oracle,
) -> dict:
    """The final evaluation's numbers for samples ``x`` (importance ``weights`` or None): the
    oracle's and the evaluator's mean reward, its spread and the share above the threshold,
    the validity rate and the diversity (see :func:`evaluate_campaign`)."""
    scores: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ids = [f"eval-{i:05d}" for i in range(len(x))]
        queries = Path(tmp) / "queries.npz"
        write_queries(queries, ids, x)
        evaluators = [("mean_reward", spec.oracle), ("eval_mean_reward", spec.eval_oracle)]
        if not spec.oracle_in_evaluation:  # e.g. a person: the evaluator scores the samples
            if spec.eval_oracle is None:
                raise ValueError("oracle_in_evaluation is false, so eval_oracle must be set")
            evaluators = [("mean_reward", spec.eval_oracle)]
        for key, argv in evaluators:
            if argv is None:
                continue
            rewards = runner(argv, queries, Path(tmp) / f"{key}.csv", spec.oracle_timeout_s, log)
            r = rewards.loc[ids].to_numpy(np.float64)
            summary = _weighted_summary(r, weights, spec.reward_threshold)
            scores[key] = summary["mean"]
            if key == "mean_reward":
                scores["reward_std"] = summary["std"]
                scores["frac_above_threshold"] = summary["frac"]
    valid = np.asarray(domain.is_valid(x), dtype=np.float64)
    if weights is None:
        validity, diverse = float(np.mean(valid)), x
    else:
        validity = float(np.sum(weights * valid))
        diverse = x[
            _systematic_indices(
                weights, numpy_rng(spec.seed, EVALUATION_ROUND, "evaluate-diversity")
            )
        ]
    return {
        **scores,
        "validity_rate": validity,
        "diversity": {k: float(v) for k, v in domain.diversity(diverse).items()},
        "weighted": weights is not None,
        "eval_ess": float(1.0 / np.sum(weights**2)) if weights is not None else float(len(x)),
        "eval_oracle": " ".join(spec.eval_oracle or spec.oracle),
        "oracle_in_evaluation": spec.oracle_in_evaluation,
    }


def plot_final_samples(
    spec: CampaignSpec, x: np.ndarray, path: PathLike, title: str | None = None
) -> None:
    """A picture of the final samples, coloured by the campaign's simulated user's reward when
    its oracle is a built-in user of the domain."""
    from prefalign.oracles.builtin import builtin_user
    from prefalign.reporting.samples import plot_domain_samples

    domain = campaign_domain(spec)
    user = builtin_user(spec.oracle, spec.domain)
    user = user if user in domain.oracle_names() else None
    plot_domain_samples(domain, x, path, user=user, title=title or spec.name)


def rate_queries(
    spec: CampaignSpec,
    observations: PathLike,
    out: PathLike,
    *,
    log: PathLike | None = None,
    runner: OracleRunner = run_oracle,
) -> pd.DataFrame:
    """The reward of every item the campaign showed, as the evaluation measures it: the
    oracle's ratings themselves for ``rate`` questions; for the other forms, which answer no
    number, the rating of each shown item by the evaluator of the final samples (the oracle, or
    ``eval_oracle`` when ``oracle_in_evaluation`` is false), asked as ``rate`` questions outside
    the budget. Writes ``out`` (CSV ``id,round,question,reward``) for the learning curves."""
    df, shape = read_observations(observations)
    table = df[["id", "round", "question", "reward"]].copy()
    if spec.form != "rate":
        argv = spec.oracle if spec.oracle_in_evaluation else spec.eval_oracle
        if argv is None:
            raise ValueError("oracle_in_evaluation is false, so eval_oracle must be set")
        x = np.stack(df["x"].to_numpy()).reshape(len(df), *shape)
        with tempfile.TemporaryDirectory(dir=Path(out).parent) as tmp:
            queries = Path(tmp) / "queries.npz"
            write_queries(queries, df["id"].tolist(), x)
            rated = runner(argv, queries, Path(tmp) / "ratings.csv", spec.oracle_timeout_s, log)
        table["reward"] = rated.loc[df["id"].tolist()].to_numpy(np.float64)
    write_text(out, table.to_csv(index=False, float_format="%.17g"))
    return table


def fit_and_evaluate(
    spec: CampaignSpec,
    observations: PathLike,
    previous_surrogate: PathLike | None,
    surrogate_out: PathLike,
    out_json: PathLike,
    samples_out: PathLike,
    *,
    query_rewards: PathLike | None = None,
    **options,
) -> dict:
    """The workflow's ``evaluate`` job: fit the last surrogate on every round's observations
    (warm-started from the last round's), then :func:`evaluate_campaign` with it; with
    ``query_rewards`` also :func:`rate_queries` into that file."""
    progress = options.get("progress", False)
    fit_round(
        spec, spec.rounds - 1, observations, previous_surrogate, surrogate_out, progress=progress
    )
    record = evaluate_campaign(spec, surrogate_out, out_json, samples_out, **options)
    if query_rewards is not None:
        Path(query_rewards).parent.mkdir(parents=True, exist_ok=True)
        rate_queries(
            spec,
            observations,
            query_rewards,
            log=options.get("log"),
            runner=options.get("runner", run_oracle),
        )
    return record
