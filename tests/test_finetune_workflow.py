"""The workflow's fine-tuning (experiment A1 of config/config.yaml, shrunk): the online
fine-tuning baselines run as campaigns of rounds, the finetune rule distils fkc-al into the base
model in every mode, the fine-tuning table lands on the results page, and every fine-tuned
folder samples with diffusers alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from diffusers import DDPMPipeline
from workflow_helpers import REPO, run_snakemake, workdir

from prefalign.loop.spec import campaign_spec

EXPERIMENT = "A1"


def a1_config() -> dict:
    """config/config.yaml reduced to experiment A1, one seed, two rounds of four questions."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    experiment = config["experiments"][EXPERIMENT]
    experiment["seeds"] = [0]
    config["run"] = [EXPERIMENT]
    config["experiments"] = {EXPERIMENT: experiment}
    (domain,) = experiment["domains"]
    config["domains"] = {domain: config["domains"][domain]}
    config["methods"] = {m: config["methods"][m] for m in experiment["methods"]}
    config.pop("populations", None)  # U1's users copy domains and methods left out here
    config["finetune"] = {**config["finetune"], "steps": 4, "batch_size": 8, "particles": 16}
    d = config["domains"][domain]
    d.update(budget=8, k=4, n_particles=16, eval_particles=8)
    d["sampler"] = {**d["sampler"], "n_steps": 8}
    d["surrogate"] = {**d["surrogate"], "hidden": 8, "layers": 2, "epochs": 10}
    return config


def test_a1_learners_are_checked_at_plan_time():
    config = a1_config()
    spec = campaign_spec(config, "digits", "papa", 0)
    assert spec.form == "binary" and spec.method.learner == "papa"
    assert spec.method.eval_sampler is None  # judged by plain samples of its model
    config["methods"]["papa"]["form"] = "rate"
    with pytest.raises(ValueError, match="learner 'papa' learns from 'binary' questions"):
        campaign_spec(config, "digits", "papa", 0)
    config["methods"]["d3po"]["sampler"] = {"variant": "fkc"}
    with pytest.raises(ValueError, match="needs sampler.variant 'base'"):
        campaign_spec(config, "digits", "d3po", 0)


@pytest.mark.slow
def test_a1_runs_end_to_end(tmp_path: Path):
    config = a1_config()
    wd = workdir(tmp_path, config)  # with the shipped digits model: nothing to train
    run_snakemake(wd)

    # the baselines are campaigns of rounds: each round's model is a fine-tuned model folder
    for method, form in (("papa", "binary"), ("d3po", "pairwise")):
        obs = pd.read_parquet(wd / f"results/observations/digits/{method}/seed0/round1.parquet")
        assert set(obs["form"]) == {form} and len(obs["question"].unique()) == 8
        record = json.loads(
            (
                wd / f"results/campaigns/digits/{method}/seed0/round1/surrogate/finetune.json"
            ).read_text()
        )
        assert record["learner"] == method and record["round"] == 0
        final = wd / f"results/evaluation/digits/{method}/seed0/surrogate/finetune.json"
        assert json.loads(final.read_text())["n_observations"] == 8 * (2 if method == "d3po" else 1)

    # fkc-al distilled in every mode; each folder samples with diffusers alone
    folder = wd / "results/finetune/digits/fkc-al/seed0"
    for mode in ("full", "split", "lora"):
        record = json.loads((folder / f"{mode}.json").read_text())
        assert record["method"] == f"fkc-al → {mode}"
        assert 0 <= record["validity_rate"] <= 1 and np.isfinite(record["mean_reward"])
        assert record["network_evals_per_sample"] == 8 + 1  # the steps and the final denoising
        pipeline = DDPMPipeline.from_pretrained(folder / mode)
        out = pipeline(batch_size=2, num_inference_steps=5, output_type="np",
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert out.images.shape == (2, 8, 8, 1)
    assert (folder / "split" / "base_unet" / "config.json").is_file()
    assert (folder / "lora" / "lora" / "adapter_config.json").is_file()

    # the table and the results page
    table = (wd / f"results/experiments/{EXPERIMENT}/tables/amortised.md").read_text()
    for row in ("fkc-al (FKC sampler)", "fkc-al → full", "fkc-al → split", "fkc-al → lora",
                "papa", "d3po", "best-of-n (FKC sampler)"):  # fmt: skip
        assert f"| {row} " in table, (row, table)
    page = (wd / "results" / "README.md").read_text()
    assert "the alignment taken home" in page
    assert "figures/finetuned_lora.png" in page
    assert (wd / f"results/experiments/{EXPERIMENT}/figures/finetuned_lora.png").is_file()

    # nothing left to do
    dry = run_snakemake(wd, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
