"""The population prior (prefalign.learning.population) and the learner that starts a held-out
user's campaign from it: its parts are the training users' own GPs, its posterior is exact GP
regression with the population's kernel, it round-trips as a surrogate checkpoint, and round 0
asks the questions it learns most from."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from prefalign.domains.mixture2d import BumpPreference, Mixture2D
from prefalign.learning.checkpoint import save_population
from prefalign.learning.population import fit_prior

DOMAIN = Mixture2D()


def _user(mode: int, rng: np.random.Generator, n_data: int = 14, n_near: int = 6):
    """A training user who likes one mode: ratings of data samples and of points near it."""
    centre = DOMAIN.means[mode]
    like = BumpPreference((tuple(centre),), 2 * DOMAIN.mode_std)
    data = DOMAIN.sample_data(n_data, torch.Generator().manual_seed(int(rng.integers(2**31))))
    near = centre + DOMAIN.mode_std * rng.standard_normal((n_near, 2))
    x = np.concatenate([data, near]).astype(np.float64)
    return x, like(x) + 0.02 * rng.standard_normal(len(x))


@pytest.fixture(scope="module")
def population():
    rng = np.random.default_rng(0)
    users = [_user(mode, rng) for mode in (0, 4, 0, 4, 2, 6)]
    prior, report = fit_prior(users, seed=3)
    return users, prior, report


def test_each_part_is_that_training_users_gp(population) -> None:
    from prefalign.learning.gp import fit_gp

    users, prior, _ = population
    z = torch.as_tensor(
        DOMAIN.sample_data(50, torch.Generator().manual_seed(9)), dtype=torch.float64
    )
    with torch.no_grad():
        phi = prior.user_functions(z)
    for j, (x, y) in enumerate(users):
        seed = int(np.random.default_rng([3, j]).integers(2**31))
        gp, _ = fit_gp(x, y, prior.config, seed=seed, form="rate")
        with torch.no_grad():
            expected = gp.predict(z)[0]
        torch.testing.assert_close(phi[:, j], expected, rtol=1e-6, atol=1e-8)


def test_posterior_is_gp_regression_with_the_population_kernel(population) -> None:
    """Mean and variance against the textbook formulas, computed here in numpy."""
    _, prior, _ = population
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, (7, 2))
    y = rng.uniform(0, 1, 7)
    z = rng.normal(0, 3, (5, 2))
    model = prior.conditioned(x, y)
    a, b, length, s = model.hyper.numpy()
    assert length == prior.hyper[2]  # the user's own scales; the population's lengthscale
    with torch.no_grad():
        phi_x = prior.user_functions(torch.as_tensor(x)).numpy()
        phi_z = prior.user_functions(torch.as_tensor(z)).numpy()
    j = phi_x.shape[1]

    def kernel(p1, f1, p2, f2):
        d1, d2 = f1 - f1.mean(1, keepdims=True), f2 - f2.mean(1, keepdims=True)
        sq = ((p1[:, None] - p2[None]) ** 2).sum(-1)
        return a**2 / j * d1 @ d2.T + b**2 * np.exp(-0.5 * sq / length**2)

    k_xx = kernel(x, phi_x, x, phi_x) + s**2 * np.eye(7)
    k_zx = kernel(z, phi_z, x, phi_x)
    mean = phi_z.mean(1) + k_zx @ np.linalg.solve(k_xx, y - phi_x.mean(1))
    var = np.diag(kernel(z, phi_z, z, phi_z) - k_zx @ np.linalg.solve(k_xx, k_zx.T))
    with torch.no_grad():
        got_mean, got_std = model.predict(torch.as_tensor(z))
        cov = model.predictive().covariance(torch.as_tensor(z), torch.as_tensor(z))
    np.testing.assert_allclose(got_mean.numpy(), mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got_std.numpy() ** 2, var, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.diag(cov.numpy()), var, rtol=1e-5, atol=1e-8)
    with torch.no_grad():  # no answers: the prior's mean, the population's average user
        prior_mean = prior.predict(torch.as_tensor(z))[0].numpy()
    np.testing.assert_allclose(prior_mean, phi_z.mean(1), rtol=1e-9)


def test_the_population_explains_each_left_out_user_better_than_nothing(population) -> None:
    _, prior, report = population
    assert report.n_users == 6 and report.n_observations == 120
    assert report.loo_log_likelihood > report.independent_log_likelihood + 0.1
    assert all(math.isfinite(v) and v > 0 for v in report.hyper.values())


def test_a_held_out_user_is_placed_among_the_others_by_few_answers(population) -> None:
    """Two ratings near mode 4 (liked by two training users) and two elsewhere: the posterior
    mean is highest at mode 4, which no rating has shown at its centre."""
    _, prior, _ = population
    rng = np.random.default_rng(5)
    like = BumpPreference((tuple(DOMAIN.means[4]),), 2 * DOMAIN.mode_std)
    x = np.concatenate([DOMAIN.means[4] + 0.6 * rng.standard_normal((2, 2)), DOMAIN.means[[1, 2]]])
    model = prior.conditioned(x, like(x))
    with torch.no_grad():
        mean = model.predict(torch.as_tensor(DOMAIN.means))[0].numpy()
    assert int(np.argmax(mean)) == 4


def test_a_taste_no_one_shares_grows_the_residual(population) -> None:
    """A user who likes mode 7, which no training user liked: their answers are what the
    population cannot explain, and the user's residual scale grows above the population's."""
    _, prior, _ = population
    rng = np.random.default_rng(6)
    x, y = _user(7, rng, n_data=6, n_near=6)
    shared = prior.conditioned(*_user(4, rng, n_data=6, n_near=6))
    unshared = prior.conditioned(x, y)
    assert unshared.hyper[1] > 1.5 * prior.hyper[1]
    assert unshared.hyper[1] > shared.hyper[1]
    fixed = prior.conditioned(x, y, adapt=False)
    assert torch.equal(fixed.hyper, prior.hyper)
    with torch.no_grad():  # and the adapted model predicts the new taste's mode better
        at_mode = torch.as_tensor(DOMAIN.means[[7]])
        assert unshared.predict(at_mode)[0] > fixed.predict(at_mode)[0]


def test_checkpoint_round_trip_and_corruption(population, tmp_path: Path) -> None:
    from prefalign.learning.checkpoint import SurrogateCheckpointError, load_surrogate

    _, prior, report = population
    model = prior.conditioned(np.ones((3, 2)), np.array([0.1, 0.2, 0.3]))
    save_population(model, tmp_path / "ckpt", report=report.to_dict())
    loaded = load_surrogate(tmp_path / "ckpt")
    z = torch.randn(11, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(z), model.predict(z), rtol=0, atol=0)
    # the report reads the prior's cost from the checkpoint's meta.json
    from prefalign.reporting.population import read_prior_meta

    cost = read_prior_meta(tmp_path / "ckpt" / "meta.json")
    assert cost == {k: getattr(report, k) for k in ("fit_seconds", "n_users", "n_observations")}
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    with pytest.raises(SurrogateCheckpointError, match="model.safetensors"):
        load_surrogate(tmp_path / "ckpt")


def test_the_fit_is_deterministic(tmp_path: Path) -> None:
    from prefalign.loop.steps.prior import fit_prior_files

    paths = []
    rng = np.random.default_rng(2)
    for j, mode in enumerate((0, 4, 2)):
        x, y = _user(mode, rng, n_data=8, n_near=4)
        paths.append(_observations(tmp_path / f"u{j}.parquet", x, y))
    for out in ("a", "b"):
        fit_prior_files(paths, tmp_path / out, seed=0)
    a, b = ((tmp_path / out / "model.safetensors").read_bytes() for out in ("a", "b"))
    assert a == b
    with pytest.raises(ValueError, match="at least 3 training users"):
        fit_prior_files(paths[:2], tmp_path / "c", seed=0)


def _observations(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    from prefalign.io.observations import new_round_frame, write_observations

    frame = new_round_frame(
        campaign="u",
        seed=0,
        round=0,
        ids=[f"r000-p{i:05d}" for i in range(len(x))],
        x=x,
        rewards=y,
        selected_by=["random"] * len(x),
        fk_log_weight=np.zeros(len(x)),
        surrogate_pred=np.full(len(x), np.nan),
    )
    write_observations(frame, path, (2,))
    return path


def _spec(prior: Path | None, **method):
    from prefalign.loop.spec import campaign_spec

    domain = {
        "oracle": ["prefalign", "oracle", "builtin", "mixture2d", "one-mode"],
        "sampler": {"n_steps": 20, "lam_max": 8.0},
        "surrogate": {"arch": "gp"},
    }
    if prior is not None:
        domain["prior"] = str(prior)
    config = {
        "budget": 16,
        "k": 8,
        "n_particles": 64,
        "eval_particles": 16,
        "domains": {"mixture2d": domain},
        "methods": {
            "m": {
                "sampler": {"variant": "fkc"},
                "learner": "population",
                "explore_from": "base",
                "batch": "lineage",
                **method,
            }
        },
    }
    return campaign_spec(config, "mixture2d", "m", 0)


def test_round_zero_asks_what_the_prior_learns_most_from(population, tmp_path: Path) -> None:
    from prefalign.domains import get_oracle
    from prefalign.learning.information import information_batch
    from prefalign.loop import steps

    _, prior, report = population
    save_population(prior, tmp_path / "prior", report=report.to_dict())
    spec = _spec(tmp_path / "prior")
    assert spec.prior == str(tmp_path / "prior")
    d0 = tmp_path / "r0"
    d0.mkdir()
    steps.sample_round(spec, 0, None, d0 / "p.npz")
    table = steps.select_round(spec, 0, d0 / "p.npz", d0 / "q.npz", d0 / "s.csv")
    by = table.set_index("index")["selected_by"]
    assert sorted(by.value_counts().items()) == [("information", 4), ("random", 4)]
    with np.load(d0 / "p.npz") as data:
        x, pred = data["x"], data["surrogate_pred"]
    assert np.isfinite(pred).all()  # the prior predicts round 0's base samples
    # the informed half: what the prior learns most from, given the random half's answers
    cold = by.index[by == "random"].to_numpy()
    distinct = np.sort(np.unique(x, axis=0, return_index=True)[1])
    pool = np.setdiff1d(distinct, cold)
    expected = pool[information_batch(prior, x[pool], x, 4, pending=x[cold])]
    assert sorted(by.index[by == "information"]) == sorted(expected.tolist())
    # answered, observed, the prior conditioned on the answers, round 1 tilted by it
    with np.load(d0 / "q.npz") as q:
        ids, xq = q["id"], q["x"]
    pd.DataFrame({"id": ids, "reward": get_oracle("mixture2d", "one-mode")(xq)}).to_csv(
        d0 / "r.csv", index=False
    )
    obs = tmp_path / "obs0.parquet"
    steps.observe_round(spec, 0, None, d0 / "q.npz", d0 / "s.csv", d0 / "r.csv", obs)
    steps.fit_round(spec, 0, obs, None, tmp_path / "sur")
    stats = steps.sample_round(spec, 1, tmp_path / "sur", tmp_path / "p1.npz")
    assert stats["variant"] == "fkc" and stats["n_reward_evals"] > 0
    steps.select_round(spec, 1, tmp_path / "p1.npz", tmp_path / "q1.npz", tmp_path / "s1.csv")


def test_the_population_learner_needs_a_prior_and_ratings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="population prior"):
        _spec(None)
    with pytest.raises(ValueError, match="form 'rate'"):
        _spec(tmp_path, form="binary")
    # a method without the population learner ignores a held-out user's prior
    spec = _spec(tmp_path, learner="surrogate")
    assert spec.prior is None and "prior" not in spec.to_dict()
