"""Helpers shared by the benchmarks: side-by-side timing, the digits model, surrogates, campaign
specs built the way the workflow builds them, and in-process simulated users.

Every comparison is timed in one process, alternating the cases (forward order on even
repetitions, reverse order on odd ones), and reported as a ratio of medians, so that load from
other processes on a shared machine hits both sides alike.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from prefalign.loop.campaign import CampaignRun, run_campaign

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "out"
CONFIG = REPO / "config" / "config.yaml"


# ---------------------------------------------------------------------------------------------
# timing


def interleaved(
    cases: Mapping[str, Callable[[], object]], repeats: int, *, warmup: bool = True
) -> dict[str, list[float]]:
    """Wall times (s) of each case, ``repeats`` times, alternating the cases.

    Args:
        cases: name -> a call to time.
        repeats: timed calls per case.
        warmup: call every case once, untimed, first (imports, caches, allocator).

    Returns:
        name -> the ``repeats`` wall times, in seconds.
    """
    names = list(cases)
    if warmup:
        for name in names:
            cases[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else reversed(names):
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    return float(statistics.median(values))


def max_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def goal_text(value: float, goal: float, *, at_most: bool = True) -> str:
    """``met`` / ``NOT met`` for ``value <= goal`` (or ``>=``), for the printed summary."""
    ok = value <= goal if at_most else value >= goal
    return "met" if ok else "NOT met"


# ---------------------------------------------------------------------------------------------
# models and surrogates


def digits_model(out: Path, *, quick: bool, model_dir: Path | None = None) -> Path:
    """The digits DDPM: ``model_dir`` if given, else trained (or reused) under ``out``.

    The full benchmark uses the default settings (2,000 steps, about 3 minutes on one thread, then
    cached); ``quick`` trains a 20-step model, good for smoke tests only.
    """
    import torch

    from prefalign.domains.digits import train_digits_ddpm

    if model_dir is not None:
        return Path(model_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if quick:
            return train_digits_ddpm(out / "digits-model-quick", steps=20, progress=False)
        return train_digits_ddpm(out / "digits-model", progress=False)
    finally:
        torch.set_num_threads(threads)


def fitted_surrogate(
    domain: Any,
    label: str,
    *,
    n: int,
    steps: int,
    seed: int = 0,
    save_to: Path | None = None,
) -> Any:
    """A surrogate fitted, as in a round, to ``n`` base samples of ``domain`` answered by the
    config's simulated user, with the config's surrogate settings (MLP on mixture2d, CNN on
    digits); checkpointed to ``save_to`` when given."""
    import torch

    from prefalign.learning.checkpoint import save_surrogate
    from prefalign.learning.surrogate import fit, training_set_hash
    from prefalign.sampling import SamplerConfig, sample
    from prefalign.settings import SurrogateConfig

    cfg = load_config()["domains"][label]
    base = sample(
        domain.score,
        domain.sde,
        n,
        tuple(domain.event_shape),
        config=SamplerConfig(variant="base", n_steps=steps),
        generator=torch.Generator().manual_seed(seed),
    )
    x = base.x.numpy()
    y = builtin_oracle(tuple(cfg["oracle"]))(x)
    config = SurrogateConfig.from_dict(cfg.get("surrogate", {}))
    surrogate, report = fit(x, y, config, seed=seed)
    if save_to is not None:
        save_surrogate(
            surrogate,
            save_to,
            config=config,
            report=report,
            training_set_hash=training_set_hash(x, y),
        )
    return surrogate.eval()


# ---------------------------------------------------------------------------------------------
# campaign specs, as the workflow builds them (prefalign.loop.spec.campaign_settings)


@functools.cache
def _load_config(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    """A deep copy of a workflow config file (cached read)."""
    return copy.deepcopy(_load_config(str(path)))


def campaign_spec(
    domain: str,
    method: str,
    seed: int,
    *,
    overrides: Mapping[str, Any] | None = None,
    n_steps: int | None = None,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """A :class:`~prefalign.loop.spec.CampaignSpec` from ``config/config.yaml``, with top-level
    spec keys (``budget``, ``n_particles``, ``domain_options``, ``surrogate``, ...) merged over,
    and ``n_steps`` (if given) set in the method's sampler and evaluation sampler."""
    from prefalign.loop.spec import CampaignSpec, campaign_settings, merge_settings

    data = campaign_settings(config or load_config(), domain, method, seed)
    data = merge_settings(data, overrides)
    if n_steps is not None:
        for key in ("sampler", "eval_sampler"):
            if data["method"][key] is not None:
                data["method"][key] = {**data["method"][key], "n_steps": n_steps}
    return CampaignSpec.from_dict(json.loads(json.dumps(data)))


# ---------------------------------------------------------------------------------------------
# simulated users, in-process


@functools.cache
def builtin_oracle(argv: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray] | None:
    """The in-process reward function of ``[..., "oracle", "builtin", DOMAIN, USER]``; None for
    any other command (or one with extra flags), which then runs as a subprocess."""
    if "builtin" not in argv:
        return None
    rest = argv[argv.index("builtin") + 1 :]
    if len(rest) != 2 or any(a.startswith("-") for a in rest):
        return None
    from prefalign.domains import get_oracle

    return get_oracle(rest[0], rest[1])


def answer_queries(argv: list[str], queries: Path, rewards: Path) -> None:
    """Answer a queries file as ``prefalign oracle builtin`` would, in this process: the same
    ``id,reward`` CSV (``%.17g``); falls back to running the command for any other oracle."""
    import pandas as pd

    from prefalign.io.oracle_command import run_oracle
    from prefalign.io.queries import read_queries

    oracle = builtin_oracle(tuple(argv))
    if oracle is None:
        run_oracle(argv, queries, rewards)
        return
    ids, x = read_queries(queries)
    values = np.asarray(oracle(x), dtype=np.float64)
    table = pd.DataFrame({"id": ids, "reward": values})
    table.to_csv(rewards, index=False, float_format="%.17g")


@contextlib.contextmanager
def in_process_rounds(cache_base_draws: bool = True) -> Iterator[dict[str, int]]:
    """Patch :mod:`prefalign.loop.steps` for in-process campaigns, without changing any result:

    - built-in oracles answer in this process (no interpreter start per query batch);
    - each domain is built once (the digits UNet is loaded once, not once per round);
    - with ``cache_base_draws``, base-model draws are memoised: they depend only on the domain,
      the sampler settings, N and the (seed, round, step) generator, so methods that sample the
      base model (round 0 of every method, ``random`` and ``best-of-n`` in every round) share them
      seed by seed. The sampler is deterministic for a seed, so the particles are the same ones.

    Yields a dict counting base draws computed and reused.
    """
    from prefalign.io.queries import read_queries, read_rewards
    from prefalign.loop import steps
    from prefalign.settings import SamplerConfig

    stats = {"base_draws": 0, "base_draws_reused": 0}
    original_draw, original_domain, original_run = (
        steps.draw_particles,
        steps.campaign_domain,
        steps.run_oracle,
    )
    domains: dict[str, Any] = {}
    draws: dict[str, Any] = {}

    def campaign_domain(spec):
        key = json.dumps([spec.domain, spec.domain_options], sort_keys=True)
        if key not in domains:
            domains[key] = original_domain(spec)
        return domains[key]

    def draw_particles(spec, domain, surrogate, n, round_, step, **kwargs):
        config = spec.method.sampler
        if not cache_base_draws or (surrogate is not None and config.variant != "base"):
            return original_draw(spec, domain, surrogate, n, round_, step, **kwargs)
        base = SamplerConfig.from_dict({**config.to_dict(), "variant": "base"})
        key = json.dumps(
            [spec.domain, spec.domain_options, spec.seed, spec.device, n, round_, step]
            + [base.to_dict()],
            sort_keys=True,
        )
        if key in draws:
            stats["base_draws_reused"] += 1
        else:
            stats["base_draws"] += 1
            draws[key] = original_draw(spec, domain, surrogate, n, round_, step, **kwargs)
        return draws[key]

    def run_oracle(argv, queries_path, rewards_path, *args, **kwargs):
        if builtin_oracle(tuple(argv)) is None:
            return original_run(argv, queries_path, rewards_path, *args, **kwargs)
        answer_queries(argv, Path(queries_path), Path(rewards_path))
        ids, _ = read_queries(queries_path)
        return read_rewards(rewards_path, list(ids))

    steps.draw_particles, steps.campaign_domain, steps.run_oracle = (
        draw_particles,
        campaign_domain,
        run_oracle,
    )
    try:
        yield stats
    finally:
        steps.draw_particles, steps.campaign_domain, steps.run_oracle = (
            original_draw,
            original_domain,
            original_run,
        )


def run_rounds(
    spec: Any,
    workdir: Path,
    *,
    fit: bool = True,
    fit_last: bool = False,
    stop: Callable[[Any], bool] | None = None,
) -> CampaignRun:
    """The library's Algorithm 1 (:func:`prefalign.loop.campaign.run_campaign`) with built-in users
    answering in this process (:func:`answer_queries`: the same CSV as the oracle command)."""
    return run_campaign(
        spec,
        workdir,
        answer=lambda s, queries, rewards: answer_queries(s.oracle, queries, rewards),
        fit=fit,
        fit_last=fit_last,
        stop=stop,
    )


def section(title: str) -> None:
    """Print a section header."""
    print(f"\n== {title} ==", flush=True)
