"""A population of simulated users in the workflow (prefalign.loop.population): each user is a
config domain `{NAME}-u{III}`, the first `size - held_out` train the prior, the last are held
out and carry the prior's directory; the workflow plans the prior's fit before every held-out
campaign that starts from it, and runs a tiny population end to end."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from snakemake.utils import validate
from workflow_helpers import REPO, population_config, run_snakemake, tiny_config, workdir

from prefalign.loop import population
from prefalign.loop.population import (
    PRIOR_DIR,
    expand_populations,
    held_out_domains,
    training_domains,
)
from prefalign.loop.spec import campaign_spec

SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def _fake_users(family, size, seed, noise):
    """Users as prefalign.oracles.population.draw_users returns them (the fields this module
    reads), so that the split and the domains are tested apart from the family's draw."""
    low, high = noise
    return tuple(
        SimpleNamespace(
            index=i,
            name=f"user-{i}",
            noise_std=low + (high - low) * i / max(1, size - 1),
            oracle=["prefalign", "oracle", "builtin", "mixture2d", "one-mode", "--s", str(i)],
            eval_oracle=["prefalign", "oracle", "builtin", "mixture2d", "one-mode"],
            true_reward="one-mode",
            domain_type="mixture2d",
            domain_options={"rare_weight": 0.01 * (i + 1)},
            description=f"user {i} of {family} seed {seed}",
        )
        for i in range(size)
    )


@pytest.fixture
def fake_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(population, "_draw", lambda f, n, s, lo, hi: _fake_users(f, n, s, (lo, hi)))


def _config(**pop) -> dict:
    config = tiny_config()
    config["domains"]["mixture2d"]["budget"] = 8
    config["domains"]["mixture2d"]["options"] = {"n_modes": 8}
    config["methods"]["fkc-al-prior"] = {**config["methods"]["fkc-al"], "learner": "population"}
    config["populations"] = {
        "mix": {
            "domain": "mixture2d",
            "family": "mixture2d-modes",
            "size": 5,
            "held_out": 2,
            "seed": 0,
            "noise_std": [0.0, 0.1],
            "train_method": "fkc-al",
            "train_seed": 0,
            "train_budget": 4,
            "budget": 12,
            **pop,
        }
    }
    return config


def test_users_are_domains_split_into_training_and_held_out(fake_draw: None) -> None:
    config = _config()
    base = copy.deepcopy(config["domains"]["mixture2d"])
    domains = expand_populations(config)
    assert list(domains) == [f"mix-u{i:03d}" for i in range(5)]
    assert training_domains(config, "mix") == ["mix-u000", "mix-u001", "mix-u002"]
    assert held_out_domains(config, "mix") == ["mix-u003", "mix-u004"]
    assert config["domains"]["mixture2d"] == base  # the base domain is copied, not changed
    for name, block in domains.items():
        i = int(name[-3:])
        held_out = i >= 3
        assert block["type"] == "mixture2d"  # the base has no `type`: its name
        assert block["oracle"][-1] == str(i)
        assert block["eval_oracle"] == ["prefalign", "oracle", "builtin", "mixture2d", "one-mode"]
        assert block["true_reward"] == "one-mode"
        assert block["options"] == {"n_modes": 8, "rare_weight": 0.01 * (i + 1)}
        assert block["budget"] == (12 if held_out else 4)
        assert block.get("prior") == ("results/populations/mix/prior" if held_out else None)
        assert block["surrogate"] == base["surrogate"] and block["sampler"] == base["sampler"]
    assert PRIOR_DIR.format(population="mix") == "results/populations/mix/prior"


def test_budgets_default_to_the_domains_and_expansion_is_idempotent(fake_draw: None) -> None:
    config = _config()
    del config["populations"]["mix"]["train_budget"], config["populations"]["mix"]["budget"]
    domains = expand_populations(config)
    assert {block["budget"] for block in domains.values()} == {8}
    config["domains"].update(domains)
    assert expand_populations(config) == domains  # a config that already holds them
    assert expand_populations(tiny_config()) == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"held_out": 5}, r"held_out = 5 of size = 5"),
        ({"held_out": 0}, r"at least one user must be held out"),
        ({"domain": "nowhere"}, r"populations\.mix\.domain: no domain 'nowhere'"),
        ({"train_method": "nothing"}, r"populations\.mix\.train_method: no method 'nothing'"),
        ({"noise_std": [0.2, 0.1]}, r"noise_std = \[0.2, 0.1\]"),
    ],
)
def test_bad_populations_are_refused_naming_the_key(
    fake_draw: None, change: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        expand_populations(_config(**change))


def test_a_user_name_taken_by_a_configured_domain_is_refused(fake_draw: None) -> None:
    config = _config()
    config["domains"]["mix-u001"] = copy.deepcopy(config["domains"]["mixture2d"])
    with pytest.raises(ValueError, match=r"user domain 'mix-u001' is also a configured domain"):
        expand_populations(config)


def test_a_family_of_another_domain_type_is_refused(fake_draw: None) -> None:
    config = _config()
    config["domains"]["mixture2d"]["type"] = "digits"
    with pytest.raises(ValueError, match=r"draws mixture2d users; its domain 'mixture2d'"):
        expand_populations(config)


def test_only_held_out_campaigns_of_a_prior_method_start_from_the_prior(fake_draw: None) -> None:
    config = _config()
    config["domains"].update(expand_populations(config))
    assert campaign_spec(config, "mix-u004", "fkc-al-prior", 0).prior == (
        "results/populations/mix/prior"
    )
    assert campaign_spec(config, "mix-u004", "fkc-al", 0).prior is None
    assert campaign_spec(config, "mix-u004", "fkc-al", 0).budget == 12
    with pytest.raises(ValueError, match="has no prior"):
        campaign_spec(config, "mix-u000", "fkc-al-prior", 0)


def test_the_schema_takes_a_population_experiment_and_refuses_both_or_neither() -> None:
    config = _config()
    config["experiments"]["U1"] = {"population": "mix", "methods": ["fkc-al"], "seeds": [0]}
    validate(copy.deepcopy(config), SCHEMA)
    for experiment in ({"domains": ["mixture2d"], "population": "mix"}, {}):
        bad = copy.deepcopy(config)
        bad["experiments"]["U1"] = {**experiment, "methods": ["fkc-al"], "seeds": [0]}
        with pytest.raises(Exception, match="U1|oneOf|valid under each|not valid"):
            validate(bad, SCHEMA)
    bad = copy.deepcopy(config)
    bad["populations"]["mix"]["sise"] = 3
    with pytest.raises(Exception, match="sise"):
        validate(bad, SCHEMA)


# --- the workflow ----------------------------------------------------------------------------
def _dry_run(wd: Path, *targets: str) -> str:
    proc = run_snakemake(wd, "-n", "--workflow-profile", "none", *targets)
    return proc.stdout + proc.stderr


def _job_counts(out: str) -> dict[str, int]:
    block = out.split("Job stats:")[-1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.MULTILINE)}


def test_the_plan_fits_the_prior_before_the_held_out_campaigns_that_use_it(
    tmp_path: Path,
) -> None:
    wd = workdir(tmp_path, population_config())
    held_out = "mix-u003"
    # a held-out campaign of fkc-al-prior needs the prior: every training user's campaign first
    out = _dry_run(wd, f"results/evaluation/{held_out}/fkc-al-prior/seed0.json")
    jobs = _job_counts(out)
    assert jobs["population_prior"] == 1
    assert jobs["spec"] == 4 and jobs["cold_start"] == 4  # 3 training users + the held-out one
    assert "results/populations/mix/prior" in out
    for user in ("mix-u000", "mix-u001", "mix-u002"):
        assert f"results/observations/{user}/fkc-al/seed0/round1.parquet" in out
    # the same user's campaign without the prior does not wait for it
    jobs = _job_counts(_dry_run(wd, f"results/evaluation/{held_out}/fkc-al/seed0.json"))
    assert "population_prior" not in jobs and jobs["spec"] == 1
    # the whole run: the population's report, not aggregate, makes U1's section
    jobs = _job_counts(_dry_run(wd))
    assert jobs["population_report"] == 1 and "aggregate" not in jobs
    assert jobs["evaluate"] == 2  # the held-out user x 2 methods; training users: no evaluation


@pytest.mark.slow
def test_a_tiny_population_runs_end_to_end(tmp_path: Path) -> None:
    """Three training users fit the prior; the held-out user's campaigns with and without it
    reach their final evaluations."""
    wd = workdir(tmp_path, population_config())
    targets = [f"results/evaluation/mix-u003/{m}/seed0.json" for m in ("fkc-al", "fkc-al-prior")]
    run_snakemake(wd, "--workflow-profile", "none", *targets)
    prior = wd / "results/populations/mix/prior"
    assert (prior / "meta.json").is_file() and (prior / "model.safetensors").is_file()
    spec = json.loads((wd / "results/campaigns/mix-u003/fkc-al-prior/seed0/spec.json").read_text())
    assert spec["prior"] == "results/populations/mix/prior"
    for target in targets:
        assert (wd / target).is_file()
    assert (wd / "logs/populations/mix/prior.log").is_file()
    assert (wd / "results/benchmarks/populations/mix/prior.tsv").is_file()
