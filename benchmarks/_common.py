"""Helpers shared by the benchmarks: side-by-side timing, the digits model, surrogates, campaign
specs built the way the workflow builds them, and in-process simulated users.

Every comparison is timed in one process, alternating the cases (forward order on even
repetitions, reverse order on odd ones), and reported as a ratio of medians, so that load from
other processes on a shared machine hits both sides alike.
"""

from __future__ import annotations

import copy
import functools
import json
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from prefalign.loop.campaign import CampaignRun, run_campaign

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "out"
CONFIG = REPO / "config" / "config.yaml"
STUDY = REPO / "config" / "paper.yaml"
#: the digits base model shipped with the project (models/shipped.json)
SHIPPED_DIGITS = REPO / "models" / "digits"


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
    """The digits DDPM: ``model_dir`` if given, else the model shipped with the project
    (``models/digits``, the one every run samples: nothing is trained, quick or not).
    ``out`` and ``quick`` are kept for the sections' uniform call."""
    del out, quick
    return Path(model_dir) if model_dir is not None else SHIPPED_DIGITS


def fitted_surrogate(
    domain: Any,
    label: str,
    *,
    n: int,
    steps: int,
    seed: int = 0,
    save_to: Path | None = None,
    device: Any = "cpu",
) -> Any:
    """A surrogate fitted, as in a round, to ``n`` base samples of ``domain`` answered by the
    config's simulated user, with the config's surrogate settings (MLP on mixture2d, CNN on
    digits); checkpointed to ``save_to`` when given. ``device``: the domain's, where the base
    samples are drawn (from the same CPU seed) and the surrogate fitted."""
    import torch

    from prefalign.learning.checkpoint import save_surrogate
    from prefalign.learning.surrogate import fit, training_set_hash
    from prefalign.oracles.builtin import user_function
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
        device=device,
    )
    x = base.x.cpu().numpy()
    y = user_function(tuple(cfg["oracle"])).rate(x)
    config = SurrogateConfig.from_dict(cfg.get("surrogate", {}))
    surrogate, report = fit(x, y, config, seed=seed, device=device)
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
# campaign specs, as the workflow builds them (prefalign.loop.spec.campaign_spec)


@functools.cache
def _load_config(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    """A deep copy of a workflow config file (cached read). The default run's config defines only
    the methods it runs; read by default, it also gets every other method of the study
    (``config/paper.yaml``'s ``methods``: the ablations and levers the benchmarks compare)."""
    config = copy.deepcopy(_load_config(str(path)))
    if Path(path) == CONFIG:
        for name, block in _load_config(str(STUDY))["methods"].items():
            config["methods"].setdefault(name, copy.deepcopy(block))
    return config


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
    from prefalign.loop.spec import CampaignSpec, campaign_spec, merge_settings

    data = campaign_spec(config or load_config(), domain, method, seed).to_dict()
    data = merge_settings(data, overrides)
    if n_steps is not None:
        for key in ("sampler", "eval_sampler"):
            if data["method"][key] is not None:
                data["method"][key] = {**data["method"][key], "n_steps": n_steps}
    return CampaignSpec.from_dict(json.loads(json.dumps(data)))


def run_rounds(
    spec: Any,
    workdir: Path,
    *,
    fit: bool = True,
    fit_last: bool = False,
    stop: Callable[[Any], bool] | None = None,
    base_draws: Any = None,
) -> CampaignRun:
    """The library's Algorithm 1 (:func:`prefalign.loop.run_campaign`) with built-in users
    answering in this process (:func:`prefalign.oracles.builtin.answer_in_process`: the same CSV
    as the oracle command) and, when given, base-model draws shared across campaigns
    (:class:`prefalign.loop.steps.BaseDrawCache`)."""
    from prefalign.oracles.builtin import answer_in_process

    return run_campaign(
        spec,
        workdir,
        runner=answer_in_process,
        base_draws=base_draws,
        fit=fit,
        fit_last=fit_last,
        stop=stop,
    )


def section(title: str) -> None:
    """Print a section header."""
    print(f"\n== {title} ==", flush=True)
