"""A population of simulated users in the workflow config: each user becomes a config domain.

A config's ``populations: {NAME: {...}}`` block names a base domain (``domain:``), a family of
simulated users (:mod:`prefalign.oracles.population`), how many to draw and how many of them to
hold out. :func:`expand_populations` turns it into ordinary config domains, one per user, named
``{NAME}-u{III}`` (III: the user's index, from 000): a copy of the base domain with the user's
oracle, evaluator and exact reward. The workflow adds them to ``config["domains"]`` at load time,
so every rule, DVC-versioned observation path and report works per user unchanged.

Users ``0 .. size - held_out - 1`` train the population prior (their campaigns run the
population's ``train_method`` at ``train_seed`` and ``train_budget`` questions); the last
``held_out`` users are the ones a population experiment (``experiments.<E>.population``) runs
its methods on, each with ``prior:`` (:data:`PRIOR_DIR`) in its domain, which
:func:`prefalign.loop.spec.campaign_spec` passes on to methods whose learner starts from a prior.

Importable without torch: the workflow reads it at plan time.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

from prefalign.loop.spec import merge_settings

__all__ = [
    "PRIOR_DIR",
    "expand_populations",
    "held_out_domains",
    "population_users",
    "training_domains",
    "user_domain",
]

#: The population prior's directory (``model.safetensors`` + ``meta.json``), the output of the
#: workflow's ``population_prior`` rule; a held-out user's domain carries it as ``prior``.
PRIOR_DIR = "results/populations/{population}/prior"


def user_domain(population: str, index: int) -> str:
    """The config domain of a population's user: ``{population}-u{index:03d}``."""
    return f"{population}-u{index:03d}"


def _population(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    populations = config.get("populations") or {}
    if name not in populations:
        raise ValueError(
            f"no population {name!r}; defined: {', '.join(populations) or 'none'} "
            "(`populations:` in the config)"
        )
    return populations[name]


def _check(config: Mapping[str, Any], name: str, pop: Mapping[str, Any]) -> None:
    """The rules between a population's keys that the schema cannot express."""
    where = f"populations.{name}"
    size, held_out = pop["size"], pop["held_out"]
    if not 1 <= held_out < size:
        raise ValueError(
            f"{where}: held_out = {held_out} of size = {size}: at least one user must be held "
            "out and at least one must train the prior (1 <= held_out < size)"
        )
    if pop["domain"] not in config["domains"]:
        raise ValueError(
            f"{where}.domain: no domain {pop['domain']!r}; defined: {', '.join(config['domains'])}"
        )
    if pop["train_method"] not in config["methods"]:
        raise ValueError(
            f"{where}.train_method: no method {pop['train_method']!r}; defined: "
            f"{', '.join(config['methods'])}"
        )
    low, high = pop.get("noise_std", (0.0, 0.0))
    if not 0 <= low <= high:
        raise ValueError(f"{where}.noise_std = [{low}, {high}]: need 0 <= low <= high")


def population_users(config: Mapping[str, Any], name: str) -> list:
    """The simulated users of population ``name`` (``SimulatedUser``, index order), drawn from
    its family with its seed and noise range: the same config, the same users."""
    pop = _population(config, name)
    _check(config, name, pop)
    low, high = pop.get("noise_std", (0.0, 0.0))
    return list(
        _draw(pop["family"], int(pop["size"]), int(pop.get("seed", 0)), float(low), float(high))
    )


@functools.cache
def _draw(family: str, size: int, seed: int, low: float, high: float) -> tuple:
    from prefalign.oracles.population import draw_users

    return tuple(draw_users(family, size, seed, (low, high)))


def _n_training(pop: Mapping[str, Any]) -> int:
    return int(pop["size"]) - int(pop["held_out"])


def training_domains(config: Mapping[str, Any], name: str) -> list[str]:
    """The domains of the users that train population ``name``'s prior (the first ones)."""
    pop = _population(config, name)
    _check(config, name, pop)
    return [user_domain(name, i) for i in range(_n_training(pop))]


def held_out_domains(config: Mapping[str, Any], name: str) -> list[str]:
    """The domains of population ``name``'s held-out users (the last ``held_out``)."""
    pop = _population(config, name)
    _check(config, name, pop)
    return [user_domain(name, i) for i in range(_n_training(pop), int(pop["size"]))]


def _user_block(
    config: Mapping[str, Any], name: str, pop: Mapping[str, Any], user: Any
) -> dict[str, Any]:
    """The config domain of one user: the base domain with the user's answers and budget."""
    base_name = pop["domain"]
    base = config["domains"][base_name]
    kind = base.get("type", base_name)
    if user.domain_type != kind:
        raise ValueError(
            f"populations.{name}: family {pop['family']!r} draws {user.domain_type} users; "
            f"its domain {base_name!r} is of type {kind!r}"
        )
    block = copy.deepcopy(dict(base))
    block["type"] = kind
    block["oracle"] = list(user.oracle)
    block["eval_oracle"] = list(user.eval_oracle)
    block["true_reward"] = user.true_reward
    block["options"] = merge_settings(base.get("options"), user.domain_options)
    if user.index < _n_training(pop):
        if "train_budget" in pop:
            block["budget"] = pop["train_budget"]
    else:
        if "budget" in pop:
            block["budget"] = pop["budget"]
        block["prior"] = PRIOR_DIR.format(population=name)
    return block


def expand_populations(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The config domains of every user of every population of ``config``, by name
    (``{NAME}-u{III}``), in population and index order; nothing without ``populations``.

    A user's domain is a deep copy of the population's base domain with ``type`` (the base's,
    or its name), the user's ``oracle``, ``eval_oracle`` and ``true_reward``, ``options`` with
    the user's ``domain_options`` merged over them, ``budget`` (``train_budget`` for a training
    user, ``budget`` for a held-out one, where given) and, for a held-out user, ``prior``
    (:data:`PRIOR_DIR`). Expanding a config that already holds them gives the same domains.

    Raises:
        ValueError: ``held_out`` not in ``[1, size)``, an unknown base domain or ``train_method``,
            a family whose users are of another domain type, or a generated name that a
            configured domain already uses otherwise.
    """
    domains: dict[str, dict[str, Any]] = {}
    for name in config.get("populations") or {}:
        pop = config["populations"][name]
        for user in population_users(config, name):
            domain = user_domain(name, user.index)
            block = _user_block(config, name, pop, user)
            if config["domains"].get(domain, block) != block:
                raise ValueError(
                    f"populations.{name}: user domain {domain!r} is also a configured domain; "
                    "rename the population or the domain"
                )
            domains[domain] = block
    return domains
