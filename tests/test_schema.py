"""The workflow's config schema is generated from one definition (prefalign.config_schema and the
settings classes of prefalign.settings): the committed file is what the generator writes, the
shipped configs pass it, wrong ones are refused naming the key, and only the top level carries
defaults (Snakemake's validate() fills defaults in at every level)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError
from snakemake.utils import validate
from workflow_helpers import REPO, tiny_config

from prefalign.config_schema import COMMAND, WorkflowConfig, method_choices, render
from prefalign.loop.spec import merge_settings

SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
TOP_LEVEL_DEFAULTS = {
    "name": "config/config.yaml",
    "results_page": "results/README.md",
    "success_threshold": 0.5,
    "job_server": True,
}


def test_the_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_PATH.read_text() == render(), (
        f"{SCHEMA_PATH.relative_to(REPO)} is not what the config models generate; "
        f"regenerate it: {COMMAND}"
    )


def _load(*paths: str) -> dict:
    """A config file, or several merged as Snakemake merges --configfile over the default."""
    config: dict = {}
    for path in paths:
        config = merge_settings(config, yaml.safe_load((REPO / path).read_text()))
    return config


SHIPPED = {
    "config/config.yaml": ("config/config.yaml",),
    "config/paper.yaml": ("config/config.yaml", "config/paper.yaml"),
    "config/human.yaml": ("config/config.yaml", "config/human.yaml"),
    ".test/config/config.yaml": (".test/config/config.yaml",),
}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_configs_pass_and_gain_only_top_level_defaults(name: str) -> None:
    config = _load(*SHIPPED[name])
    before = copy.deepcopy(config)
    validate(config, str(SCHEMA_PATH))
    added = {key: config[key] for key in config.keys() - before.keys()}
    assert added == {k: v for k, v in TOP_LEVEL_DEFAULTS.items() if k not in before}
    assert {key: value for key, value in config.items() if key not in added} == before
    TypeAdapter(WorkflowConfig).validate_python(before)  # the models accept it too


def _defaults_below_the_top(node: object, path: str, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "default":
                found.append(path)
            elif key in ("properties", "$defs"):
                for name, sub in value.items():
                    _defaults_below_the_top(sub, f"{path}/{key}/{name}", found)
            else:
                _defaults_below_the_top(value, f"{path}/{key}", found)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _defaults_below_the_top(item, f"{path}/{i}", found)
    return found


def test_only_top_level_keys_have_defaults() -> None:
    """A default in a settings block would be filled into every domain's and method's block,
    and a method's `lam_max: 1.0` would then override its domain's."""
    top = {name: sub["default"] for name, sub in SCHEMA["properties"].items() if "default" in sub}
    assert top == TOP_LEVEL_DEFAULTS
    nested = [
        p
        for p in _defaults_below_the_top(SCHEMA, "", [])
        if not (p.count("/") == 2 and p.startswith("/properties/"))
    ]
    assert nested == []


def _wrong(change) -> dict:
    config = tiny_config()
    change(config)
    return config


WRONG = {
    "unknown key in a sampler block": (
        lambda c: c["domains"]["mixture2d"]["sampler"].update(lamda=1.0),
        "'lamda' was unexpected",
        ("domains", "mixture2d", "sampler", "lamda"),
    ),
    "negative lam_max": (
        lambda c: c["methods"]["fkc-al"]["sampler"].update(lam_max=-1.0),
        "-1.0 is less than the minimum of 0",
        ("methods", "fkc-al", "sampler", "lam_max"),
    ),
    "a method name that is no safe name": (
        lambda c: c["methods"].update({"a;b": c["methods"].pop("random")}),
        "'a;b' does not match",
        ("methods", "a;b", "[key]"),
    ),
    "a choice that is not one": (
        lambda c: c["methods"]["random"].update(score="best"),
        "'best' is not one of ['fk_weight', 'surrogate']",
        ("methods", "random", "score"),
    ),
    "a misspelt top-level key": (
        lambda c: c.update(n_particle=3),
        "'n_particle' was unexpected",
        ("n_particle",),
    ),
    "a string for an integer": (
        lambda c: c["domains"]["mixture2d"]["surrogate"].update(hidden="16"),
        "'16' is not of type 'integer'",
        ("domains", "mixture2d", "surrogate", "hidden"),
    ),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_wrong_configs_are_refused_naming_the_key(case: str) -> None:
    change, message, where = WRONG[case]
    with pytest.raises(Exception, match="Error validating config file") as err:
        validate(_wrong(change), str(SCHEMA_PATH))
    assert message in str(err.value)
    with pytest.raises(ValidationError) as err:
        TypeAdapter(WorkflowConfig).validate_python(_wrong(change))
    assert where in [e["loc"] for e in err.value.errors()]


def test_method_choices_are_the_schemas_and_selection_is_left_to_plan_time() -> None:
    """The choice lists come from where the code defines them (method_choices); a selection rule
    is one function of prefalign.acquisition, so the schema does not list them (campaign_spec
    refuses an unknown one at plan time), but the models check it."""
    method = SCHEMA["$defs"]["MethodBlock"]["properties"]
    choices = method_choices()
    for key, valid in choices.items():
        if key == "selection":
            assert "enum" not in method[key]
        else:
            assert method[key]["enum"] == list(valid), key
    assert "eps_greedy" in choices["selection"]
    config = _wrong(lambda c: c["methods"]["random"].update(selection="best"))
    validate(copy.deepcopy(config), str(SCHEMA_PATH))
    with pytest.raises(ValidationError, match="selection must be one of eps_greedy"):
        TypeAdapter(WorkflowConfig).validate_python(config)


def test_the_settings_blocks_are_the_settings_classes() -> None:
    """Every field of a settings class is a key of its block, with the class's description."""
    import dataclasses

    from prefalign import settings

    defs = SCHEMA["$defs"]
    for cls in (
        settings.SamplerConfig,
        settings.SurrogateConfig,
        settings.FinetuneSettings,
        settings.FinalTilt,
        settings.DDPMTraining,
    ):
        block = defs[cls.__name__]
        assert list(block["properties"]) == [f.name for f in dataclasses.fields(cls)]
        assert block["additionalProperties"] is False
    for where in ("DomainBlock", "MethodBlock"):
        assert defs[where]["properties"]["sampler"] == {"$ref": "#/$defs/SamplerConfig"}


def test_generating_the_schema_does_not_need_the_workflow(tmp_path: Path) -> None:
    """The command in the file's header writes it (a fresh interpreter, no Snakemake)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "prefalign.config_schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert out == SCHEMA_PATH.read_text()
    assert COMMAND in out.splitlines()[2]
