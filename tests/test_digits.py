"""The digits domain: data splits, DDPM training cache, loading, score, oracles, validity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prefalign.domains import get_domain
from prefalign.domains.base import Domain
from prefalign.domains.digits import (
    SPLIT_FRACTIONS,
    DigitsDomain,
    digit_models,
    digit_split,
    digit_splits,
    diversity,
    is_valid,
    make_oracle,
    oracle_names,
    train_digits_ddpm,
    validity_checks,
)
from prefalign.models.ddpm import ModelLoadError, training_record
from prefalign.models.sde import VPSDE

TINY = {"steps": 4, "batch_size": 8, "lr": 1e-3, "seed": 0}
WEIGHTS = Path("unet") / "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_digits_ddpm(tmp_path_factory.mktemp("digits") / "ddpm", progress=False, **TINY)


@pytest.fixture(scope="module")
def domain(model_dir: Path) -> DigitsDomain:
    return DigitsDomain(model_dir)


@pytest.fixture(scope="module")
def heldout() -> np.ndarray:
    return np.array(digit_split("heldout").images)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def test_splits_are_disjoint_stratified_and_cover_the_data() -> None:
    splits = digit_splits()
    assert list(splits) == list(SPLIT_FRACTIONS)
    index = np.concatenate([s.index for s in splits.values()])
    assert len(index) == 1797 and len(np.unique(index)) == 1797
    for name, split in splits.items():
        assert split.images.shape == (len(split.labels), 1, 8, 8)
        assert split.images.min() >= -1.0 and split.images.max() <= 1.0
        assert set(split.labels.tolist()) == set(range(10)), name
        assert abs(len(split.labels) / 1797 - SPLIT_FRACTIONS[name]) < 0.01
        assert not split.images.flags.writeable


def test_unknown_split_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="heldout"):
        digit_split("test")


# ---------------------------------------------------------------------------------------------
# DDPM training, cache, loading
# ---------------------------------------------------------------------------------------------


def test_training_writes_a_pipeline_and_its_record(model_dir: Path) -> None:
    for part in ("model_index.json", "scheduler/scheduler_config.json", "unet/config.json"):
        assert (model_dir / part).is_file(), part
    record = training_record(model_dir)
    assert record["settings"]["steps"] == TINY["steps"]
    assert record["data"].startswith("sklearn-digits:ddpm-split:sha256=")
    assert record["n_images"] == len(digit_split("ddpm").labels)
    scheduler = json.loads((model_dir / "scheduler/scheduler_config.json").read_text())
    assert scheduler["beta_schedule"] == "linear" and scheduler["prediction_type"] == "epsilon"
    assert (scheduler["beta_start"], scheduler["beta_end"]) == (1e-4, 0.02)


def test_cache_skips_retraining_and_retrains_on_new_settings(
    model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddpm"
    shutil.copytree(model_dir, out)
    before = (out / WEIGHTS).stat().st_mtime_ns
    assert train_digits_ddpm(out, progress=False, **TINY) == out
    assert (out / WEIGHTS).stat().st_mtime_ns == before
    train_digits_ddpm(out, progress=False, **{**TINY, "steps": 2})
    assert (out / WEIGHTS).stat().st_mtime_ns != before
    assert training_record(out)["settings"]["steps"] == 2


def test_training_is_seeded(model_dir: Path, tmp_path: Path) -> None:
    again = train_digits_ddpm(tmp_path / "again", progress=False, **TINY)
    a = (model_dir / WEIGHTS).read_bytes()
    assert (again / WEIGHTS).read_bytes() == a


def test_missing_model_dir_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError, match="nowhere"):
        DigitsDomain(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="empty"):
        DigitsDomain(empty)


def test_corrupt_model_dir_names_the_path(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-weights"
    shutil.copytree(model_dir, broken)
    (broken / WEIGHTS).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="broken-weights"):
        DigitsDomain(broken)
    bad_json = tmp_path / "bad-scheduler"
    shutil.copytree(model_dir, bad_json)
    (bad_json / "scheduler/scheduler_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="bad-scheduler"):
        DigitsDomain(bad_json)


def test_corrupt_cache_is_retrained(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddpm"
    shutil.copytree(model_dir, out)
    (out / WEIGHTS).write_bytes(b"garbage")
    train_digits_ddpm(out, progress=False, **TINY)
    DigitsDomain(out)  # loads again


# ---------------------------------------------------------------------------------------------
# domain and score
# ---------------------------------------------------------------------------------------------


def test_domain_implements_the_protocol(domain: DigitsDomain, model_dir: Path) -> None:
    assert isinstance(domain, Domain)
    assert domain.name == "digits" and domain.event_shape == (1, 8, 8)
    assert domain.sde == VPSDE(0.1, 20.0)
    assert isinstance(get_domain("digits", {"model_dir": str(model_dir)}), DigitsDomain)


@pytest.mark.parametrize("t", [1e-3, 0.37, 1.0])
def test_score_is_minus_eps_over_sigma(domain: DigitsDomain, t: float) -> None:
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    score = domain.score(x, t)
    assert score.shape == x.shape and torch.isfinite(score).all()
    unet = domain._score.unet
    with torch.no_grad():
        eps = unet(x, torch.full((5,), t * 999.0)).sample
    integrated = 0.1 * t + 0.5 * t * t * (20.0 - 0.1)
    expected = -eps / np.sqrt(1.0 - np.exp(-integrated))
    torch.testing.assert_close(score, expected, rtol=1e-5, atol=1e-5)
    assert not score.requires_grad


def test_score_uses_fractional_timesteps(domain: DigitsDomain) -> None:
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    # t = 0.5005 -> timestep 500.0 (fractional), not the integer 499 a long cast would give
    with torch.no_grad():
        eps_frac = domain._score.unet(x, torch.full((3,), 0.5 * 999.0)).sample
        eps_long = domain._score.unet(x, torch.full((3,), 499, dtype=torch.long)).sample
    assert not torch.allclose(eps_frac, eps_long)
    torch.testing.assert_close(domain._score.eps(x, 0.5), eps_frac)


# ---------------------------------------------------------------------------------------------
# oracles
# ---------------------------------------------------------------------------------------------


def test_oracles_shapes_and_ranges(heldout: np.ndarray) -> None:
    x = heldout[:40]
    digits = np.stack([make_oracle(f"digit-{k}")(x) for k in range(10)], axis=1)
    assert digits.shape == (40, 10)
    np.testing.assert_allclose(digits.sum(axis=1), 1.0, atol=1e-6)
    thick = make_oracle("thick")(x)
    assert thick.shape == (40,) and thick.min() >= 0.0 and thick.max() <= 1.0
    thick3 = make_oracle("thick-3")(x)
    np.testing.assert_allclose(thick3, digits[:, 3] * thick)
    for name in oracle_names():
        r = make_oracle(name)(x)
        assert r.shape == (40,) and np.isfinite(r).all() and (r >= 0).all() and (r <= 1).all()


def test_oracle_classifier_recognises_real_digits(heldout: np.ndarray) -> None:
    labels = digit_split("heldout").labels
    for prefix in ("", "eval-"):
        probs = np.stack([make_oracle(f"{prefix}digit-{k}")(heldout) for k in range(10)], axis=1)
        assert (probs.argmax(axis=1) == labels).mean() > 0.9


def test_evaluation_classifier_differs_from_optimisation_classifier(heldout: np.ndarray) -> None:
    models = digit_models()
    assert type(models.evaluation) is not type(models.oracle)
    noise = np.random.default_rng(0).uniform(-1, 1, (200, 1, 8, 8))
    a, b = make_oracle("digit-3")(noise), make_oracle("eval-digit-3")(noise)
    assert np.abs(a - b).max() > 0.1


def test_default_preference_is_rare_among_real_digits(heldout: np.ndarray) -> None:
    assert (make_oracle("thick-3")(heldout) > 0.9).mean() < 0.05


def test_oracle_noise_is_seeded_per_query(heldout: np.ndarray) -> None:
    x = heldout[:10]
    exact = make_oracle("thick-3")(x)
    noisy = make_oracle("thick-3", noise_std=0.1, seed=7)
    first = noisy(x)
    assert not np.allclose(first, exact)
    np.testing.assert_allclose(noisy(x[::-1])[::-1], first)  # order does not matter
    np.testing.assert_allclose(make_oracle("thick-3", noise_std=0.1, seed=7)(x[:3]), first[:3])
    assert not np.allclose(make_oracle("thick-3", noise_std=0.1, seed=8)(x), first)


def test_torch_users_match_the_scikit_learn_users(heldout: np.ndarray) -> None:
    """The differentiable users (the `true-reward` upper bound) agree with the black boxes,
    which are scikit-learn's own predict_proba and np.interp, on real, noisy and clipped inputs."""
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            heldout[:30],
            heldout[:30] + rng.normal(0, 0.3, (30, 1, 8, 8)),
            rng.uniform(-2, 2, (8, 1, 8, 8)),
        ]
    )
    names = ("thick-3", "digit-7", "thick", "eval-thick-3", "eval-digit-0")
    names += ("thin-8", "slant-7", "wide-1", "eval-slant-7", "wide", "slant")
    for name in names:
        user = make_oracle(name)
        got = user.torch(torch.as_tensor(x, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(got, user(x), atol=1e-9, err_msg=name)
    assert not hasattr(make_oracle("thick-3", noise_std=0.1), "torch")  # noisy users are not


@pytest.mark.parametrize("name", ["thick-3", "slant-7", "wide-1"])
def test_torch_user_has_a_gradient_that_raises_the_reward(heldout: np.ndarray, name: str) -> None:
    reward = make_oracle(name).torch
    x = torch.as_tensor(heldout[:40], dtype=torch.float64) * 0.9
    x.requires_grad_(True)
    reward(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    stepped = (x + 0.02 * x.grad / x.grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).detach()
    assert (reward(stepped) >= reward(x.detach()) - 1e-9).float().mean() > 0.9


def test_unknown_oracle_lists_the_valid_names(domain: DigitsDomain) -> None:
    for bad in ("bold", "digit-10", "thick-x", "eval-", "slant-12"):
        with pytest.raises(ValueError, match="digit-K"):
            domain.oracle(bad)


def test_oracles_accept_out_of_range_and_nan(heldout: np.ndarray) -> None:
    x = heldout[:4].copy()
    x[0, 0, 0, 0] = np.nan
    x[1] *= 3.0
    assert np.isfinite(make_oracle("thick-3")(x)).all()


# ---------------------------------------------------------------------------------------------
# validity and diversity
# ---------------------------------------------------------------------------------------------


def test_real_heldout_digits_are_mostly_valid(heldout: np.ndarray) -> None:
    assert is_valid(heldout).mean() > 0.9


def test_noise_blank_and_broken_images_are_invalid(heldout: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    assert is_valid(rng.uniform(-1, 1, (300, 1, 8, 8))).mean() < 0.02
    assert is_valid(rng.normal(0, 1, (300, 1, 8, 8))).mean() < 0.02
    assert not is_valid(np.full((2, 1, 8, 8), -1.0)).any()
    assert not is_valid(np.ones((2, 1, 8, 8))).any()
    broken = heldout[:3].copy()
    broken[0, 0, 0, 0] = np.nan
    broken[1, 0, 4, 4] = 4.0
    broken[2] = np.roll(broken[2], 4, axis=-1)
    assert not is_valid(broken).any()
    checks = validity_checks(broken)
    assert not checks["finite"][0] and not checks["range"][1] and not checks["manifold"][2]


def test_validity_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        is_valid(np.zeros((3, 1, 4, 4)))


def test_diversity(heldout: np.ndarray) -> None:
    full = diversity(heldout)
    assert full["n_classes"] == 10 and full["class_entropy"] > 3.0
    assert full["mean_pairwise_l2"] > 1.0
    same = diversity(np.repeat(heldout[:1], 20, axis=0))
    assert same["n_classes"] == 1 and same["class_entropy"] == 0.0
    assert same["mean_pairwise_l2"] == pytest.approx(0.0, abs=1e-6)


def test_style_users_score_what_they_say(heldout: np.ndarray) -> None:
    """A digit sheared to the right is more ``slant``; one stretched sideways more ``wide``;
    the ``thin`` user is the ``thick`` user reversed."""
    from prefalign.domains.digits import style_percentile

    x = heldout[:60]
    upright = np.full((1, 1, 8, 8), -1.0)
    upright[0, 0, 1:7, 3:5] = 1.0  # a vertical bar
    leaning = np.full((1, 1, 8, 8), -1.0)
    for row in range(1, 7):  # the same bar, its top to the right
        leaning[0, 0, row, 6 - row : 8 - row] = 1.0
    assert style_percentile(leaning, "slant")[0] > style_percentile(upright, "slant")[0]
    wide = np.full((1, 1, 8, 8), -1.0)
    wide[0, 0, 3:5, 0:8] = 1.0  # a horizontal bar
    assert style_percentile(wide, "wide")[0] > style_percentile(upright, "wide")[0]
    # reversed, up to the ties of real digits' ink (the percentile of a tie is its first place)
    np.testing.assert_allclose(
        style_percentile(x, "thin"), 1.0 - style_percentile(x, "thick"), atol=0.05
    )
