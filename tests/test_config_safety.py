"""Config names never reach a shell (issue 13): the schema restricts domain, method and
experiment names and ``results_page`` to safe patterns, and every path in a rule's ``shell:`` is
quoted."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from workflow_helpers import REPO, env, snakemake_cmd, tiny_config, workdir

from prefalign.loop.spec import merge_settings

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def _errors(config: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [e.message for e in validator.iter_errors(config)]


def _rename_domain(config: dict, new: str) -> dict:
    config = copy.deepcopy(config)
    config["domains"] = {new: config["domains"].pop("mixture2d")}
    config["experiments"]["E1"]["domains"] = [new]
    return config


def _rename_method(config: dict, new: str) -> dict:
    config = copy.deepcopy(config)
    config["methods"][new] = config["methods"].pop("fkc-al")
    config["experiments"]["E1"]["methods"] = [new, "random"]
    return config


def _rename_experiment(config: dict, new: str) -> dict:
    config = copy.deepcopy(config)
    config["experiments"] = {new: config["experiments"].pop("E1")}
    config["run"] = [new]
    return config


UNSAFE_NAMES = ["a;touch X;b", "m$(touch X)", "../../../../tmp/x", "a b", "x/y", "a..b", "-x", ""]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
@pytest.mark.parametrize(
    "rename", [_rename_domain, _rename_method, _rename_experiment], ids=["domain", "method", "exp"]
)
def test_schema_rejects_unsafe_names(name: str, rename) -> None:
    """Domain and method names were free strings: `a;touch X;b` ran a command during `spec`,
    `../../../../tmp/x` wrote outside results/, `a b` split into two arguments."""
    assert _errors(rename(tiny_config(), name)), f"{name!r} was accepted"


@pytest.mark.parametrize(
    "page", ["../README.md", "/tmp/page.md", "results/../../x.md", "a b.md", "x;rm.md", ".md"]
)
def test_schema_rejects_results_page_outside_the_project(page: str) -> None:
    """`results_page` was only checked for `.md$`."""
    assert _errors(tiny_config(results_page=page)), f"{page!r} was accepted"


@pytest.mark.parametrize("name", ["mixture2d-two-modes", "E1", "k_4", "v1.2", "n-1024"])
def test_schema_accepts_safe_names(name: str) -> None:
    config = _rename_experiment(_rename_method(_rename_domain(tiny_config(), name), name), name)
    assert _errors(config) == []
    assert _errors(tiny_config(results_page="docs/results/page.md")) == []


@pytest.mark.parametrize(
    "path",
    ["config/config.yaml", "config/paper.yaml", "config/human.yaml", ".test/config/config.yaml"],
)
def test_shipped_configs_pass_the_schema(path: str) -> None:
    config = yaml.safe_load((REPO / path).read_text())
    if path == "config/human.yaml":  # applied over the default config (--configfile)
        config = merge_settings(yaml.safe_load((REPO / "config/config.yaml").read_text()), config)
    assert _errors(config) == []


def _shell_strings(text: str) -> list[str]:
    """The (concatenated) string of every `shell:` directive of a rules file."""
    shells = []
    for match in re.finditer(r"^(\s*)shell:\s*\n((?:\1\s+\".*\"\s*\n)+)", text, flags=re.M):
        shells.append("".join(re.findall(r'"(.*)"', match.group(2))))
    return shells


def test_every_path_in_a_shell_directive_is_quoted() -> None:
    """Rules pasted {input}, {output}, {log} and path {params} unquoted into `shell:`."""
    quoted_params = {
        "spec",
        "title",
        "name",
        "previous",
        "fit",
        "reference",
        "modes",
        "teacher",
        "base_models",
    }  # shlex-quoted by helpers
    numeric_params = {"threshold", "steps", "batch_size", "lr", "seed", "torch_threads"}
    checked = 0
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        for shell in _shell_strings(path.read_text()):
            for field in re.findall(r"\{([^{}]+)\}", shell):
                checked += 1
                name, _, spec = field.partition(":")
                if name.startswith(("input", "output", "log")) or name in (
                    "params.page_dir",
                    "wildcards.experiment",
                ):
                    assert spec == "q", f"{path.name}: {{{field}}} is not quoted"
                elif name.startswith("params."):
                    param = name.removeprefix("params.")
                    quoted = spec == "q" or param in quoted_params | numeric_params
                    assert quoted, f"{path.name}: {field}"
                else:
                    assert name == "wildcards.round", f"{path.name}: {{{field}}}"  # digits only
    assert checked > 50


def test_rules_name_helpers_and_hold_no_python() -> None:
    """Every value a rule computes (inputs, params, resources, the results page's path) comes
    from a named `get_*` function of common.smk: a rule file holds no lambda, no config lookup
    and no default of its own."""
    common = (REPO / "workflow/rules/common.smk").read_text()
    helpers = set(re.findall(r"^def (get_\w+)\(", common, flags=re.M))
    used: set[str] = set()
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        if path.name == "common.smk":
            continue
        code = re.sub(r"#.*", "", re.sub(r'"[^"\n]*"', '""', path.read_text()))
        for word in (r"\blambda\b", r"\bconfig\b", r"\bos\.", r"\bshlex\.", r"\.get\("):
            assert not re.search(word, code), f"{path.name}: {word}"
        used |= set(re.findall(r"\bget_\w+", code))
    assert len(used) >= 10 and used <= helpers, sorted(used - helpers)


def test_flag_helper_quotes_its_path() -> None:
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert 'f"--{name} {shlex.quote(paths[0])}"' in common


def test_a_domain_name_with_a_command_runs_nothing(tmp_path: Path) -> None:
    """`snakemake` on a config whose domain is `a;touch PWNED;b` used to run `touch PWNED` in
    the spec job; now the schema refuses the config before any job."""
    config = _rename_domain(tiny_config(), "a;touch PWNED;b")
    config["experiments"]["E1"]["methods"] = ["random"]
    wd = workdir(tmp_path, config)
    target = "results/campaigns/a;touch PWNED;b/random/seed0/spec.json"
    proc = subprocess.run(
        snakemake_cmd(target), cwd=wd, env=env(), capture_output=True, text=True, timeout=300
    )
    assert not (wd / "PWNED").exists(), "a config name ran a shell command"
    assert proc.returncode != 0
    assert "does not match" in proc.stdout + proc.stderr


def test_schema_and_settings_dataclasses_have_the_same_keys_and_choices() -> None:
    """The schema checks a config before any job; the settings dataclasses are what the steps
    build from it: neither may know a key or a choice that the other does not."""
    import dataclasses

    from prefalign import acquisition, settings
    from prefalign.loop import learners, selectors

    defs = SCHEMA["$defs"]
    for cls in (settings.SamplerConfig, settings.SurrogateConfig):
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(defs[cls.__name__]["properties"]) == fields, cls
    choices = {
        ("sampler", "variant"): list(settings.VARIANTS),
        ("sampler", "resample"): list(settings.RESAMPLE_MODES),
        ("sampler", "time_grid"): list(settings.TIME_GRIDS),
        ("sampler", "reward_at"): list(settings.REWARD_AT),
        ("surrogate", "arch"): list(settings.ARCHS),
        ("surrogate", "features"): list(settings.GP_FEATURES),
        ("method", "score"): list(selectors.SCORES),
        ("method", "batch"): list(acquisition.BATCH_RULES),
        ("method", "tilt_member"): list(learners.TILT_MEMBERS),
        ("method", "explore_from"): list(selectors.EXPLORE_ARMS),
        ("method", "learner"): list(learners.LEARNERS),
    }
    blocks = {"sampler": "SamplerConfig", "surrogate": "SurrogateConfig", "method": "MethodBlock"}
    for (where, key), valid in choices.items():
        enum = defs[blocks[where]]["properties"][key]["enum"]
        assert sorted(enum) == sorted(valid), (where, key)


def test_domains_and_selection_rules_are_checked_by_their_registries() -> None:
    """A domain is a module of prefalign.domains and a selection rule an entry of
    acquisition.RULES (so adding one is one file): the schema does not list them, and
    resolving a campaign at plan time refuses an unknown one, naming the key and the valid ones."""
    from prefalign.loop.spec import campaign_spec

    defs = SCHEMA["$defs"]
    assert "enum" not in defs["DomainBlock"]["properties"]["type"]
    assert "enum" not in defs["MethodBlock"]["properties"]["selection"]
    config = tiny_config()
    config["domains"]["mixture2d"]["type"] = "mixture3d"
    with pytest.raises(
        ValueError, match=r"domains\.mixture2d\.type.*digits, mixture2d, pretrained"
    ):
        campaign_spec(config, "mixture2d", "random", 0)
    config = tiny_config()
    config["methods"]["random"]["selection"] = "best"
    with pytest.raises(
        ValueError, match=r"selection must be one of eps_greedy, greedy, random, ucb"
    ):
        campaign_spec(config, "mixture2d", "random", 0)


def test_digits_training_defaults_are_written_once() -> None:
    """`models.digits` (the `train_digits` rule): the schema knows the keys of
    prefalign.settings.DDPMTraining and sets no default of its own; the rule fills the keys a
    config leaves out from DDPMTraining, and the library's DDPMSettings extends it."""
    import dataclasses

    from prefalign.models.ddpm import DDPMSettings
    from prefalign.settings import DDPMTraining

    models = SCHEMA["$defs"]["Models"]["properties"]["digits"]
    assert models["$ref"] == "#/$defs/DDPMTraining"
    digits = SCHEMA["$defs"]["DDPMTraining"]["properties"]
    fields = [f.name for f in dataclasses.fields(DDPMTraining)]
    assert sorted(digits) == sorted(fields)
    assert [name for name, sub in digits.items() if "default" in sub] == []
    assert issubclass(DDPMSettings, DDPMTraining)
    assert [f.name for f in dataclasses.fields(DDPMSettings)][: len(fields)] == fields
    assert all(getattr(DDPMSettings(), f) == getattr(DDPMTraining(), f) for f in fields)
