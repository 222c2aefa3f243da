"""The digits base model shipped with the project (models/digits, recorded in
models/shipped.json): it loads, its bytes are the ones recorded, and the project's own training
regenerates a model as valid as it (release-marked: a full training run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from workflow_helpers import run_snakemake, workdir

from prefalign.domains.digits import DigitsDomain, train_digits_ddpm
from prefalign.models.ddpm import training_record
from prefalign.provenance import content_hash, model_manifest
from prefalign.reporting.base_models import describe_base_model, read_shipped, ship_model
from prefalign.reporting.samples import draw_samples
from prefalign.settings import DDPMTraining, SamplerConfig

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DIR = REPO / "models" / "digits"
SHIPPED_FILE = REPO / "models" / "shipped.json"
#: The validity test of :func:`test_train_digits_regenerates_a_model_as_valid_as_the_shipped_one`
#: draws this many base samples of each model (2 x 2,048: the difference's standard error is
#: about 0.8 points at a validity near 0.92, so "within 2 points" is a real check).
N_VALIDITY = 2048


def test_the_shipped_model_loads_and_has_the_recorded_hash() -> None:
    shipped = read_shipped(SHIPPED_FILE)["digits"]
    assert shipped["path"] == "models/digits"
    sha = content_hash(SHIPPED_DIR)
    assert sha == shipped["content_sha256"], (
        "models/digits is not the model recorded in models/shipped.json: regenerated or "
        "edited? (README, 'The shipped digits model')"
    )
    record = training_record(SHIPPED_DIR)
    assert record["content_sha256"] == sha
    assert record["settings"]["steps"] == DDPMTraining().steps  # the default config's model
    # the files it is made of, with the weights as safetensors, a few MB
    files = {line.split("  ", 1)[1] for line in model_manifest(SHIPPED_DIR).splitlines()}
    assert "unet/diffusion_pytorch_model.safetensors" in files
    assert (SHIPPED_DIR / "unet/diffusion_pytorch_model.safetensors").stat().st_size < 8e6

    domain = DigitsDomain(SHIPPED_DIR)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        score = domain.score(x, 0.5)
    assert score.shape == x.shape and torch.isfinite(score).all()
    assert describe_base_model(SHIPPED_DIR, read_shipped(SHIPPED_FILE)).origin == "shipped"


def _job_counts(snakemake_output: str) -> dict[str, int]:
    """The "Job stats" table of a dry run: rule -> jobs."""
    table = snakemake_output.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_the_default_run_trains_nothing_and_forcerun_regenerates(tmp_path: Path) -> None:
    """A checkout (the workflow and models/, no Snakemake records) plans the default config with
    the shipped model: no `train_digits` job. `--forcerun train_digits` regenerates it, and every
    digits job downstream of it reruns."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    wd = workdir(tmp_path, config)
    plan = run_snakemake(wd, "-n")
    jobs = _job_counts(plan.stdout)
    assert "train_digits" not in jobs and jobs["digits_base_samples"] == 1, jobs
    assert sum(jobs.values()) > 100  # the whole default run is planned
    target = "results/evaluation/digits/fkc-al/seed0.json"
    forced = _job_counts(run_snakemake(wd, target, "-n", "--forcerun", "train_digits").stdout)
    assert forced["train_digits"] == 1 and forced["evaluate"] == 1, forced


def _base_validity(model_dir: Path) -> float:
    domain = DigitsDomain(model_dir)
    config = SamplerConfig(variant="base", n_steps=50)  # the campaigns' 50 steps
    result = draw_samples(domain, N_VALIDITY, config, seed=0, progress=False)
    return float(domain.is_valid(result.x.float().numpy()).mean())


@pytest.mark.release
def test_train_digits_regenerates_a_model_as_valid_as_the_shipped_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The `train_digits` settings of the shipped model, retrained here (about 5 minutes on two
    threads): its base samples are as often valid as the shipped model's, within 2 points; on
    the CPU type the shipped model was trained on, the bytes are identical too."""
    shipped = read_shipped(SHIPPED_FILE)["digits"]
    settings = {k: shipped["settings"][k] for k in ("steps", "batch_size", "lr", "seed", "threads")}
    regenerated = train_digits_ddpm(tmp_path / "digits", progress=False, **settings)
    same_bytes = content_hash(regenerated) == shipped["content_sha256"]
    valid_shipped, valid_regenerated = _base_validity(SHIPPED_DIR), _base_validity(regenerated)
    with capsys.disabled():
        print(
            f"\nregenerated digits model: validity {valid_regenerated:.4f} against the shipped "
            f"model's {valid_shipped:.4f} ({N_VALIDITY} base samples, 50 steps); "
            f"{'byte-identical' if same_bytes else 'different bytes'} "
            f"(shipped: trained on {shipped['trained_on']})"
        )
    assert abs(valid_regenerated - valid_shipped) <= 0.02
    assert valid_shipped >= 0.85  # as valid as real digits are (about 0.93), give or take


# ---------------------------------------------------------------------------------------------
# the content hash and the origin of a base model
# ---------------------------------------------------------------------------------------------


def test_content_hash_is_the_files_bytes_not_the_training_record(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(SHIPPED_DIR, copy)
    sha = content_hash(copy)
    assert sha == content_hash(SHIPPED_DIR)
    # how it was made (training.json) and Snakemake's marker file are not what it is
    (copy / "training.json").write_text("{}\n")
    (copy / ".snakemake_timestamp").write_text("")
    assert content_hash(copy) == sha
    # a changed weight byte is another model
    weights = copy / "unet/diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert content_hash(copy) != sha
    with pytest.raises(FileNotFoundError, match="nope"):
        content_hash(tmp_path / "nope")


def _tiny_model(path: Path) -> Path:
    return train_digits_ddpm(path, steps=2, batch_size=4, progress=False)


def test_a_base_models_origin_shipped_regenerated_or_supplied(tmp_path: Path) -> None:
    model = _tiny_model(tmp_path / "tiny")
    shipped_file = tmp_path / "shipped.json"
    assert describe_base_model(model, {}).origin == "regenerated"  # train_digits's own record

    entry = ship_model(model, "digits", shipped_file, base_validity=0.5)
    assert entry["content_sha256"] == content_hash(model) and entry["base_validity"] == 0.5
    shipped = read_shipped(shipped_file)
    assert describe_base_model(model, shipped).origin == "shipped"

    # the same bytes made again (another training record): regenerated, byte-identical
    again = tmp_path / "again"
    shutil.copytree(model, again)
    record = json.loads((again / "training.json").read_text())
    record["trained_at"] = "2099-01-01T00:00:00Z"
    (again / "training.json").write_text(json.dumps(record))
    described = describe_base_model(again, shipped)
    assert described.origin == "regenerated" and "byte-identical" in described.description

    # other bytes made by train_digits: regenerated, not the shipped model
    other = train_digits_ddpm(tmp_path / "other", steps=2, batch_size=4, seed=1, progress=False)
    described = describe_base_model(other, shipped)
    assert (
        described.origin == "regenerated" and "**not** the shipped model" in described.description
    )

    # a model without a record of its bytes: supplied by the user
    (other / "training.json").unlink()
    assert describe_base_model(other, shipped).origin == "supplied"
    with pytest.raises(ValueError, match="only a model that train_digits wrote"):
        ship_model(other, "digits", shipped_file)


def test_a_malformed_shipped_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "shipped.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="shipped.json"):
        read_shipped(bad)
    bad.write_text(json.dumps({"digits": {"path": "x"}}))
    with pytest.raises(ValueError, match="content_sha256"):
        read_shipped(bad)
    assert read_shipped(tmp_path / "absent.json") == {}


def test_the_training_record_names_the_machine(tmp_path: Path) -> None:
    record = training_record(_tiny_model(tmp_path / "tiny"))
    assert record["content_sha256"] == content_hash(tmp_path / "tiny")
    assert "family" in record["cpu"] and record["trained_at"].endswith("Z")
    assert record["machine"]["torch CPU capability"] == torch.backends.cpu.get_cpu_capability()
    assert np.isfinite(record["final_loss"])
