"""Resolving a workflow config into one campaign's settings (:class:`CampaignSpec`, saved as
``spec.json``), its learner and selector checked once.

The workflow resolves the user's config into one :class:`CampaignSpec` per campaign; every step
of every round reads only that file, so any step can be rerun by hand with the same inputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefalign.domains import available_domains
from prefalign.io.atomic import write_text
from prefalign.loop.campaign_settings import CampaignSpec, MethodSpec
from prefalign.loop.learners import Learner, learner_for
from prefalign.loop.selectors import Selector
from prefalign.settings import FinalTilt, FinetuneSettings, SamplerConfig, SurrogateConfig

__all__ = [
    "CampaignSpec",
    "MethodSpec",
    "campaign_spec",
    "Method",
    "merge_settings",
    "read_spec",
    "resolve",
    "write_spec",
]


def merge_settings(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict:
    """Recursive dict merge: values of ``override`` win."""
    out = dict(base or {})
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = value
    return out


#: Method keys of the workflow config that are :class:`MethodSpec` fields as they are.
_METHOD_KEYS = (
    "selection",
    "score",
    "epsilon",
    "kappa",
    "batch",
    "tilt_member",
    "lam_ramp_queries",
    "explore_from",
    "pairing",
    "learner",
)
#: Domain keys of the workflow config that are :class:`CampaignSpec` fields as they are.
_DOMAIN_KEYS = (
    "oracle",
    "oracle_timeout_s",
    "eval_oracle",
    "oracle_in_evaluation",
    "reward_threshold",
    "form",
)


def _given(section: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The keys a config section sets; the others take the dataclasses' defaults (the only
    place defaults live)."""
    return {key: section[key] for key in keys if key in section}


def campaign_spec(config: Mapping[str, Any], domain: str, method: str, seed: int) -> CampaignSpec:
    """The resolved settings of one campaign of a workflow config (``config/config.yaml``): the
    domain's settings over the top level's, the method's over the domain's. Built once at plan
    time (an invalid campaign stops ``snakemake -n`` here, naming the setting), written as
    ``spec.json`` by the ``spec`` rule, read back by every step."""
    dom, meth = config["domains"][domain], config["methods"][method]
    kind, kinds = dom.get("type", domain), available_domains()
    if kind not in kinds:
        raise ValueError(
            f"domains.{domain}.type: no domain {kind!r}; there are {', '.join(kinds)} "
            "(a domain is a module of prefalign.domains)"
        )
    sampler = SamplerConfig.from_dict(merge_settings(dom.get("sampler"), meth.get("sampler")))
    try:
        learner = learner_for(meth.get("learner", MethodSpec.learner))
    except ValueError as err:
        raise ValueError(f"method {method!r}: {err}") from err
    eval_sampler = learner.evaluation_sampler(sampler, dict(dom.get("sampler") or {}))
    budget = dom.get("budget", config["budget"])
    method_spec = MethodSpec(
        name=method,
        sampler=sampler,
        eval_sampler=eval_sampler,
        cold_start_queries=budget if meth.get("non_adaptive", False) else None,
        **_given(meth, _METHOD_KEYS),
    )
    spec = CampaignSpec(
        domain=kind,
        label=domain,
        method=method_spec,
        seed=int(seed),
        budget=budget,
        k=meth.get("k", dom.get("k", config["k"])),
        n_particles=meth.get("n_particles", dom.get("n_particles", config["n_particles"])),
        eval_particles=dom.get("eval_particles", config["eval_particles"]),
        surrogate=SurrogateConfig.from_dict(
            merge_settings(dom.get("surrogate"), meth.get("surrogate"))
        ),
        domain_options=dict(dom.get("options", {})),
        finetune=FinetuneSettings.from_dict(
            merge_settings(
                merge_settings(config.get("finetune"), dom.get("finetune")), meth.get("finetune")
            )
        ),
        final_tilt=FinalTilt.from_dict(
            merge_settings(config.get("final_tilt"), dom.get("final_tilt"))
        ),
        true_reward=dom.get("true_reward") if meth.get("true_reward") else None,
        prior=dom.get("prior") if learner.uses_prior else None,
        **_given({**dom, **_given(meth, ("form",))}, _DOMAIN_KEYS),
        **_given(config, ("device", "torch_threads")),
    )
    resolve(spec)
    return spec


@dataclass(frozen=True)
class Method:
    """A campaign's method resolved into its behaviour: what it learns and samples
    (:class:`~prefalign.loop.learners.Learner`) and how it picks questions
    (:class:`~prefalign.loop.selectors.Selector`)."""

    learner: Learner
    selector: Selector


def resolve(spec: CampaignSpec) -> Method:
    """The campaign's learner and selector, from the method's names: an unknown name or a
    combination the campaign cannot use stops here (at plan time in :func:`campaign_spec`, or
    when a ``spec.json`` is read), naming the setting and the valid choices."""
    try:
        learner = learner_for(spec.method.learner)
    except ValueError as err:
        raise ValueError(f"method {spec.method.name!r}: {err}") from err
    learner.check(spec)
    return Method(learner, Selector.of(spec))


def write_spec(spec: CampaignSpec, path: str | os.PathLike[str]) -> None:
    """Write ``spec.json`` atomically, with sorted keys (same spec, same bytes)."""
    write_text(path, json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n")


def read_spec(path: str | os.PathLike[str]) -> CampaignSpec:
    """Read and validate ``spec.json``; errors name the file."""
    try:
        data = json.loads(Path(path).read_text())
        spec = CampaignSpec.from_dict(data)
        resolve(spec)
        return spec
    except FileNotFoundError as err:
        raise ValueError(f"campaign spec {str(path)!r} does not exist") from err
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as err:
        raise ValueError(f"campaign spec {str(path)!r} is invalid: {err}") from err
