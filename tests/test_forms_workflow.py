"""A digits campaign in each question form, end to end through the workflow (Snakemake): the
simulated user answers like/dislike, pairs and groups of four, the observations say how they
were collected, the learning curves count questions and rate the shown items with the
evaluator, and the experiment's table holds every form."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from workflow_helpers import REPO, run_snakemake, workdir

from prefalign.io.observations import read_observations

FORMS = {"digits": "rate", "digits-binary": "binary", "digits-pairwise": "pairwise",
         "digits-best-of-4": "best-of-4"}  # fmt: skip


def forms_config() -> dict:
    """config/config.yaml reduced to one fkc-al seed per form (the shipped digits model)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.pop("populations", None)  # U1's users copy the digits domain, left out here
    digits = config["domains"]["digits"]
    digits["sampler"] = {**digits["sampler"], "n_steps": 10}
    digits["surrogate"] = {**digits["surrogate"], "hidden": 8, "layers": 2, "epochs": 20}
    digits.pop("budget", None)
    domains = {}
    for name, form in FORMS.items():
        domains[name] = {**digits, "type": "digits", "form": form}
        if form != "rate":
            domains[name]["oracle"] = [*digits["oracle"], "--temperature", "0.05"]
    config.update(
        run=["F1"],
        experiments={
            "F1": {
                "title": "F1: forms",
                "domains": list(FORMS),
                "methods": ["fkc-al"],
                "seeds": [0],
            }
        },  # fmt: skip
        domains=domains,
        methods={"fkc-al": config["methods"]["fkc-al"]},
        budget=8,
        k=4,
        n_particles=48,
        eval_particles=16,
    )
    return config


@pytest.mark.slow
def test_a_digits_campaign_runs_in_each_form(tmp_path) -> None:
    wd = workdir(tmp_path, forms_config())
    run_snakemake(wd)
    for name, form in FORMS.items():
        obs, _ = read_observations(wd / f"results/observations/{name}/fkc-al/seed0/round1.parquet")
        assert set(obs["form"]) == {form}
        assert obs["question"].nunique() == 8
        items = {"rate": 1, "binary": 1, "pairwise": 2, "best-of-4": 4}[form]
        assert len(obs) == 8 * items
        rated = pd.read_csv(wd / f"results/evaluation/{name}/fkc-al/seed0/query_rewards.csv")
        assert sorted(rated["id"]) == sorted(obs["id"])
        if form == "rate":
            assert rated["reward"].tolist() == obs["reward"].tolist()
        else:  # rated by the user's utility, not its answers (0/1 choices)
            assert not rated["reward"].isin([0.0, 1.0]).all()
    rounds = pd.read_csv(wd / "results/experiments/F1/tables/round_metrics.csv")
    assert set(rounds["domain"]) == set(FORMS)
    assert (rounds.groupby("domain")["n_queries"].max() == 8).all()
    final = json.loads((wd / "results/experiments/F1/tables/final_metrics.json").read_text())
    assert set(final) == set(FORMS)
