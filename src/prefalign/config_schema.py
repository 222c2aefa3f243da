"""The workflow's config file as pydantic models, and the JSON schema generated from them.

:class:`WorkflowConfig` is ``config/config.yaml``: the top level, ``experiments``, a domain's
block (:class:`DomainBlock`), a method's block (:class:`MethodBlock`), ``models`` and the rest.
Its ``sampler``, ``surrogate``, ``finetune``, ``final_tilt`` and ``models.digits`` blocks are the
settings classes of :mod:`prefalign.settings`, and a method's choice lists are read from where
the code defines them (:func:`method_choices`): every key, type, bound and choice is written once.

The workflow validates its config with the JSON schema generated from these models
(``validate(config, ...)`` in ``workflow/rules/common.smk``), committed as
``workflow/schemas/config.schema.yaml`` and written by::

    python -m prefalign.config_schema > workflow/schemas/config.schema.yaml

(``tests/test_schema.py`` checks that the committed file is what this writes). Snakemake's
``validate`` fills each ``default`` of the schema into the config, at every level, so the schema
carries the defaults of the top-level keys below and no other: a settings block (and a domain's
or a method's) takes its defaults where it is resolved (``prefalign.loop.spec.campaign_spec``),
after a method's block is merged over its domain's. For the same reason the rules between
settings (``prefalign.settings``' validators) are not in the schema: they apply to the merged
settings. Domains and selection rules are checked at plan time by their registries (a new one is
one module, or one function), not by the schema.

Validating a config with the models themselves (``TypeAdapter(WorkflowConfig)``) is stricter
than the schema, never looser: it also checks the selection rule, takes no ``1.0`` for an integer
(JSON Schema does), and applies the settings classes' rules between settings to each block alone.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, Required

import yaml
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, with_config
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from prefalign.settings import (
    DDPMTraining,
    FinalTilt,
    FinetuneSettings,
    Mode,
    SamplerConfig,
    SurrogateConfig,
)

#: The command that writes ``workflow/schemas/config.schema.yaml``.
COMMAND = "python -m prefalign.config_schema > workflow/schemas/config.schema.yaml"


def method_choices() -> dict[str, tuple[str, ...]]:
    """The valid values of a method's choice keys, read from where the code defines them."""
    from prefalign.acquisition import BATCH_RULES, RULES
    from prefalign.loop.learners import LEARNERS, TILT_MEMBERS
    from prefalign.loop.selectors import EXPLORE_ARMS, SCORES
    from prefalign.pairing import PAIRINGS

    return {
        "selection": tuple(RULES),
        "score": tuple(SCORES),
        "batch": tuple(BATCH_RULES),
        "tilt_member": tuple(TILT_MEMBERS),
        "explore_from": tuple(EXPLORE_ARMS),
        "pairing": tuple(PAIRINGS),
        "learner": tuple(LEARNERS),
    }


# --- constraints that pydantic's own do not write ---------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Refuse:
    """A string that must not match ``pattern`` (the schema's ``not: {pattern: ...}``)."""

    pattern: str

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        regex = re.compile(self.pattern)

        def check(value: str) -> str:
            if regex.search(value):
                raise ValueError(f"must not match {self.pattern!r}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(schema), "not": {"pattern": self.pattern}}


@dataclasses.dataclass(frozen=True)
class _Distinct:
    """A list whose items are distinct (the schema's ``uniqueItems``)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        def check(items: list[Any]) -> list[Any]:
            if len(set(items)) != len(items):
                raise ValueError("items repeat")
            return items

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(schema), "uniqueItems": True}


def _one_of(key: str) -> Callable[[str], str]:
    """A check that the value is one of ``method_choices()[key]`` (read when it runs)."""

    def check(value: str) -> str:
        valid = method_choices()[key]
        if value not in valid:
            raise ValueError(f"{key} must be one of {', '.join(valid)}; got {value!r}")
        return value

    return check


# --- names and strings ------------------------------------------------------------------------
# Domain, method and experiment names become path components and reach shell commands: a safe
# pattern only (letters, digits, '_', '.', '-'; a letter or digit first; no '..').
Name = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100), _Refuse(r"\.\.")
]
# a Markdown file inside the project: a relative path, no '..', no '//'
MarkdownPath = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.md$"),
    _Refuse(r"(^|/)\.\.(/|$)|//"),
]
Argv = Annotated[list[str], Field(min_length=1)]
# the question form (docs/feedback-forms.md): rate | binary | pairwise | best-of-K
Form = Annotated[str, Field(pattern=r"^(rate|binary|pairwise|best-of-([2-9]|[1-9][0-9]+))$")]
PositiveInt = Annotated[int, Field(ge=1)]
Names = Annotated[list[Name], Field(min_length=1), _Distinct()]

_CHOICES = method_choices()
Score = Literal[_CHOICES["score"]]
BatchRule = Literal[_CHOICES["batch"]]
TiltMember = Literal[_CHOICES["tilt_member"]]
ExploreFrom = Literal[_CHOICES["explore_from"]]
Pairing = Literal[_CHOICES["pairing"]]
Learner = Literal[_CHOICES["learner"]]

#: Every block of the file: its keys only (a misspelt key is an error, naming it), each of its
#: type (no ``"3"`` for 3).
_BLOCK = ConfigDict(extra="forbid", strict=True)


# --- the blocks -------------------------------------------------------------------------------
@with_config(_BLOCK)
class DomainBlock(TypedDict, total=False):
    """A domain (``domains.<name>``): what is sampled, who answers, how much is asked; its
    settings blocks are the defaults of its campaigns (a method's blocks override them)."""

    # checked at plan time against the modules of prefalign.domains (a new domain is one module)
    type: Annotated[
        str,
        Field(
            pattern=r"^[a-z][a-z0-9_]*$",
            description="domain module of prefalign.domains (default: the key)",
        ),
    ]
    options: Annotated[dict[str, Any], Field(description="the domain's options")]
    true_reward: Annotated[str, Field(description="built-in user whose exact reward bounds FKC")]
    budget: Annotated[PositiveInt, Field(description="overrides the top-level budget")]
    k: Annotated[PositiveInt, Field(description="overrides the top-level k (a method's k wins)")]
    n_particles: Annotated[PositiveInt, Field(description="overrides the top-level n_particles")]
    eval_particles: Annotated[PositiveInt, Field(description="overrides eval_particles")]
    oracle: Required[Annotated[Argv, Field(description="the command that answers the questions")]]
    oracle_timeout_s: Annotated[float, Field(gt=0)] | None
    eval_oracle: Argv | None
    oracle_in_evaluation: Annotated[
        bool, Field(description="false: only eval_oracle scores the final samples")
    ]
    reward_threshold: float
    form: Annotated[Form, Field(description="the question form")]
    sampler: SamplerConfig
    surrogate: SurrogateConfig
    finetune: FinetuneSettings
    final_tilt: FinalTilt


@with_config(_BLOCK)
class MethodBlock(TypedDict, total=False):
    """A method (``methods.<name>``): how it samples, selects and learns; its settings blocks
    override its domain's, key by key."""

    sampler: SamplerConfig
    surrogate: SurrogateConfig
    # checked at plan time against prefalign.acquisition.RULES (a new rule is one entry)
    selection: Annotated[
        str,
        AfterValidator(_one_of("selection")),
        Field(description="selection rule: eps_greedy, greedy, random, ucb, ..."),
    ]
    score: Score
    epsilon: Annotated[float, Field(ge=0, le=1)] | None
    kappa: Annotated[float, Field(ge=0)]
    k: PositiveInt
    n_particles: PositiveInt
    non_adaptive: bool
    true_reward: bool
    batch: BatchRule
    tilt_member: TiltMember
    lam_ramp_queries: PositiveInt | None
    explore_from: ExploreFrom
    pairing: Annotated[Pairing, Field(description="who joins each lead in pairs and groups")]
    learner: Annotated[
        Learner,
        Field(
            description="what a round learns: a surrogate, or a fine-tuned model "
            "(PAPA: likes; D3PO: pairs)"
        ),
    ]
    finetune: FinetuneSettings
    form: Annotated[Form, Field(description="the question form (overrides the domain's)")]


@with_config(_BLOCK)
class Distil(TypedDict, total=False):
    """The method whose aligned sampler is fine-tuned into the base model after the last round
    (the finetune rule), in these modes."""

    method: Required[Name]
    modes: Annotated[list[Mode], Field(min_length=1), _Distinct()]


@with_config(
    ConfigDict(
        **_BLOCK,
        json_schema_extra={"oneOf": [{"required": ["domains"]}, {"required": ["population"]}]},
    )
)
class Experiment(TypedDict, total=False):
    """An experiment (``experiments.<name>``): one campaign per domain x method x seed, or, with
    ``population`` instead of ``domains``, per held-out user of that population x method x
    seed."""

    title: str
    reference: Annotated[
        Name, Field(description="method the paired differences are against (default best-of-n)")
    ]
    domains: Names
    population: Annotated[
        Name,
        Field(
            description="a key of `populations`: the campaigns are its held-out users' (instead "
            "of `domains`)"
        ),
    ]
    methods: Required[Names]
    seeds: Required[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1), _Distinct()]]
    exclude: Annotated[
        list[Annotated[str, Field(pattern=r"^[^/]+/[^/]+$")]],
        Field(
            description="domain/method pairs left out of the grid (e.g. an upper bound that "
            "needs a differentiable oracle)"
        ),
    ]
    distil: Distil


#: where an experiment's campaigns come from: one of these keys
_SOURCES = ("domains", "population")


def _one_source(experiment: Experiment) -> Experiment:
    """An experiment's campaigns come from ``domains`` or from a ``population``, one of them."""
    if sum(key in experiment for key in _SOURCES) != 1:
        raise ValueError("an experiment names either `domains` or a `population`, one of them")
    return experiment


@with_config(_BLOCK)
class Population(TypedDict, total=False):
    """A population of simulated users (``populations.<name>``): each user is a copy of
    ``domain`` with the user's answers, a config domain ``<name>-u<III>``; the first
    ``size - held_out`` train the population prior, the last ``held_out`` are held out
    (:mod:`prefalign.loop.population`)."""

    domain: Required[
        Annotated[
            Name, Field(description="the domain each user's campaigns copy (a key of domains)")
        ]
    ]
    # checked at plan time against prefalign.oracles.population.FAMILIES
    family: Required[
        Annotated[str, Field(description="the family the users are drawn from (FAMILIES)")]
    ]
    size: Required[Annotated[int, Field(ge=2, description="users drawn")]]
    held_out: Required[
        Annotated[int, Field(ge=1, description="the last held_out users are held out (< size)")]
    ]
    seed: Annotated[int, Field(ge=0, description="seeds the draw of the users")]
    noise_std: Annotated[
        list[Annotated[float, Field(ge=0)]],
        Field(
            min_length=2,
            max_length=2,
            description="each user's rating noise std, uniform in [low, high] (seeded)",
        ),
    ]
    train_method: Required[
        Annotated[Name, Field(description="the method of the training users' campaigns")]
    ]
    train_seed: Annotated[int, Field(ge=0, description="the seed of the training campaigns")]
    train_budget: Annotated[
        PositiveInt, Field(description="the training users' budget (default: the domain's)")
    ]
    budget: Annotated[
        PositiveInt, Field(description="the held-out users' budget (default: the domain's)")
    ]


@with_config(_BLOCK)
class Models(TypedDict, total=False):
    """The base models the workflow trains on request."""

    digits: Annotated[
        DDPMTraining,
        Field(
            description="the digits DDPM's training; a key left out takes the default of "
            "prefalign.settings.DDPMTraining"
        ),
    ]


@with_config(_BLOCK)
class WorkflowConfig(TypedDict, total=False):
    """prefalign workflow configuration (see config/README.md)"""

    # `default:` values are filled in by validate() in workflow/rules/common.smk: the rules read
    # them from the config and repeat none of them
    name: Annotated[
        str,
        Field(
            default="config/config.yaml", description="label of the run, shown on the results page"
        ),
    ]
    results_page: Annotated[
        MarkdownPath,
        Field(
            default="results/README.md",
            description="where the results page goes: a relative path inside the project, no '..'",
        ),
    ]
    run: Annotated[
        Names,
        Field(
            description="experiments to run (default: all defined); a list, so --configfile "
            "replaces it"
        ),
    ]
    experiments: Required[
        Annotated[
            dict[Name, Annotated[Experiment, AfterValidator(_one_source)]], Field(min_length=1)
        ]
    ]
    finetune: Annotated[
        FinetuneSettings,
        Field(description="how the base model is fine-tuned (domains and methods override it)"),
    ]
    final_tilt: Annotated[
        FinalTilt, Field(description="the sampler the user takes home (domains override it)")
    ]
    budget: Required[PositiveInt]
    k: Required[PositiveInt]
    n_particles: Required[PositiveInt]
    eval_particles: Required[PositiveInt]
    success_threshold: Annotated[
        float, Field(default=0.5, description="reward for 'queries to threshold'")
    ]
    device: Annotated[str, Field(pattern=r"^(cpu|auto|cuda(:[0-9]+)?)$")]
    gpu: bool
    torch_threads: PositiveInt
    job_server: Annotated[
        bool,
        Field(
            default=True,
            description="local runs: one warm process (torch imported) forks every job's "
            "command (prefalign.cli.job_server)",
        ),
    ]
    models: Models
    domains: Required[dict[Name, DomainBlock]]
    populations: Annotated[
        dict[Name, Population],
        Field(
            description="populations of simulated users, each user a domain <name>-u<III> "
            "(prefalign.loop.population)"
        ),
    ]
    methods: Required[dict[Name, MethodBlock]]


# --- the schema -------------------------------------------------------------------------------
class _Draft202012(GenerateJsonSchema):
    """Pydantic's schema, with a mapping's key constraints as ``propertyNames`` (pydantic writes
    a key pattern as ``patternProperties``, which lets a key that does not match through)."""

    def dict_schema(self, schema: core_schema.DictSchema) -> dict[str, Any]:
        json_schema = super().dict_schema(schema)
        patterns = json_schema.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            json_schema["propertyNames"] = {
                "pattern": pattern,
                **json_schema.get("propertyNames", {}),
            }
            json_schema["additionalProperties"] = values
        return json_schema


#: The order of a schema's keywords in the file (pydantic sorts them by name); others follow.
_KEYWORDS = (
    "$ref", "type", "description", "enum", "const", "pattern", "not", "minimum",
    "exclusiveMinimum", "maximum", "exclusiveMaximum", "minLength", "maxLength", "items",
    "minItems", "uniqueItems", "anyOf", "additionalProperties", "propertyNames", "minProperties",
    "required", "properties",
)  # fmt: skip


def _tidy(node: Any) -> Any:
    """Pydantic's schema without its titles and ``default`` values, its keywords in the order of
    :data:`_KEYWORDS`; a class's description is its docstring's first paragraph."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("title", "default"):
            continue
        if key in ("properties", "$defs"):
            out[key] = {name: _tidy(sub) for name, sub in value.items()}
        elif key == "description" and isinstance(value, str):
            out[key] = " ".join(value.split("\n\n")[0].replace("``", "`").split())
        else:
            out[key] = _tidy(value)
    rank = {keyword: i for i, keyword in enumerate(_KEYWORDS)}
    return dict(sorted(out.items(), key=lambda item: rank.get(item[0], len(rank))))


def config_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of :class:`WorkflowConfig`."""
    raw = TypeAdapter(WorkflowConfig).json_schema(schema_generator=_Draft202012)
    defs = {name: _tidy(sub) for name, sub in raw.pop("$defs").items()}
    # the top level's defaults: filled in by validate()
    properties = {
        name: _tidy(sub) | ({"default": sub["default"]} if "default" in sub else {})
        for name, sub in raw.pop("properties").items()
    }
    top = _tidy(raw)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": top.pop("description"),
        "type": top.pop("type"),
        "additionalProperties": top.pop("additionalProperties"),
        "required": top.pop("required"),
        "properties": properties,
        **top,
        "$defs": defs,
    }


HEADER = f"""\
# GENERATED from prefalign.config_schema (the config file's models) and prefalign.settings (its
# settings blocks): do not edit, change those and regenerate:
#   {COMMAND}
# tests/test_schema.py checks that this file is what the command writes. Only top-level keys carry
# a `default:` (validate() fills defaults in at every level, and a settings block takes its
# defaults after a method's block is merged over its domain's: prefalign.loop.spec).
"""


def render() -> str:
    """The text of ``workflow/schemas/config.schema.yaml``."""
    body = yaml.safe_dump(config_schema(), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
