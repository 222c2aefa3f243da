"""The loop's levers in one round on mixture2d: the base-sample exploration arm, one question per
lineage, Thompson tilting and the tilt ramp (docs/sampler-levers.md, sections 3-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefalign.loop import steps
from prefalign.loop.spec import CampaignSpec, campaign_spec


def _spec(**method) -> CampaignSpec:
    config = {
        "budget": 16,
        "k": 8,
        "n_particles": 64,
        "eval_particles": 16,
        "domains": {
            "mixture2d": {
                "oracle": ["prefalign", "oracle", "builtin", "mixture2d", "one-mode"],
                "sampler": {"n_steps": 20, "lam_max": 8.0},
                "surrogate": {"epochs": 20, **method.pop("surrogate", {})},
            }
        },
        "methods": {"m": {"sampler": {"variant": "fkc"}, **method}},
    }
    return campaign_spec(config, "mixture2d", "m", 0)


def _round_one(spec: CampaignSpec, tmp: Path) -> tuple[dict, pd.DataFrame, dict]:
    """Round 0 answered by the simulated user, a fit, and round 1's sampling and selection."""
    from prefalign.domains import get_oracle

    d0 = tmp / "r0"
    d0.mkdir()
    steps.sample_round(spec, 0, None, d0 / "p.npz")
    steps.select_round(spec, 0, d0 / "p.npz", d0 / "q.npz", d0 / "s.csv")
    with np.load(d0 / "q.npz") as q:
        ids, x = q["id"], q["x"]
    user = get_oracle("mixture2d", "one-mode")
    pd.DataFrame({"id": ids, "reward": user(x)}).to_csv(d0 / "r.csv", index=False)
    obs = tmp / "obs0.parquet"
    steps.observe_round(spec, 0, None, d0 / "q.npz", d0 / "s.csv", d0 / "r.csv", obs)
    steps.fit_round(spec, 0, obs, None, tmp / "sur")
    stats = steps.sample_round(spec, 1, tmp / "sur", tmp / "p1.npz")
    table = steps.select_round(spec, 1, tmp / "p1.npz", tmp / "q1.npz", tmp / "s1.csv", tmp / "sur")
    with np.load(tmp / "p1.npz") as data:
        particles = {key: data[key] for key in data.files}
    return stats, table, particles


def test_explore_from_base_takes_the_exploring_questions_from_base_samples(
    tmp_path: Path,
) -> None:
    spec = _spec(explore_from="base", batch="lineage")
    stats, table, particles = _round_one(spec, tmp_path)
    assert stats["n_base_particles"] == 32
    proposal = particles["proposal"]
    assert proposal.tolist() == [0] * 32 + [1] * 32
    assert np.isnan(particles["fk_log_weight"][proposal == 1]).all()
    eps = 0.8 - 0.7 * 1 / 2  # the draft's schedule at round 1 of 2
    n_explore = int(np.floor(eps * 8 + 1e-9))
    by = table.set_index("index")["selected_by"]
    assert (by == "explore").sum() == n_explore
    assert all(proposal[i] == 1 for i in by.index[by == "explore"])
    assert all(proposal[i] == 0 for i in by.index[by == "top"])
    # the exploring questions are the base samples the surrogate ranks highest
    base = np.flatnonzero(proposal == 1)
    best = base[np.argsort(-particles["surrogate_pred"][base], kind="stable")[:n_explore]]
    assert set(by.index[by == "explore"]) == set(best.tolist())
    # one question per lineage among the tilted picks, while lineages last
    top = by.index[by == "top"].to_numpy()
    lineages = particles["ancestor"][top]
    assert len(set(lineages.tolist())) == min(len(top), len(set(particles["ancestor"][:32])))


def test_thompson_needs_an_ensemble_and_differs_from_the_mean(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="thompson' needs an ensemble"):
        _round_one(_spec(tilt_member="thompson"), tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    ens = {"ensemble": 3}
    _, _, thompson = _round_one(_spec(tilt_member="thompson", surrogate=ens), tmp_path / "b")
    _, _, mean = _round_one(_spec(surrogate=ens), tmp_path / "c")
    assert not np.array_equal(thompson["x"], mean["x"])


def test_lam_ramp_scales_the_tilt_with_the_answers(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, _, ramped = _round_one(_spec(lam_ramp_queries=80), tmp_path / "a")  # 8/80 of lam_max
    _, _, full = _round_one(_spec(), tmp_path / "b")
    # a weaker tilt: the FK path weights spread less
    assert np.nanstd(ramped["fk_log_weight"]) < np.nanstd(full["fk_log_weight"])


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ({"batch": "dpp"}, "batch must be one of top, lineage, kcenter"),
        ({"explore_from": "nowhere"}, "explore_from must be one of tilted, base"),
        ({"lam_ramp_queries": 0}, "lam_ramp_queries must be >= 1"),
    ],
)
def test_bad_lever_settings_name_the_key(method: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**method)


def test_information_questions_are_the_greedy_variance_reduction(tmp_path: Path) -> None:
    """explore_from: information: eps-greedy's exploring questions are the particles, tilted or
    base, whose answers most reduce the GP's posterior variance over the tilted particles, given
    the top picks (prefalign.learning.information, checked against BoTorch in test_gp.py)."""
    from prefalign.learning.checkpoint import load_surrogate
    from prefalign.learning.information import information_batch

    spec = _spec(explore_from="information", batch="lineage", surrogate={"arch": "gp"})
    stats, table, particles = _round_one(spec, tmp_path)
    assert stats["n_base_particles"] == 32
    by = table.set_index("index")["selected_by"]
    eps = 0.8 - 0.7 * 1 / 2
    n_explore = int(np.floor(eps * 8 + 1e-9))
    assert (by == "information").sum() == n_explore and (by == "top").sum() == 8 - n_explore
    x, proposal = particles["x"], particles["proposal"]
    top = by.index[by == "top"].to_numpy()
    picked = by.index[by == "information"].to_numpy()
    assert all(proposal[i] == 0 for i in top)
    # the same picks as the rule called directly on the round's particles
    candidates = np.setdiff1d(np.arange(len(x)), top)
    order = information_batch(
        load_surrogate(tmp_path / "sur"),
        x[candidates],
        x[proposal == 0],
        n_explore,
        pending=x[top],
    )
    assert set(candidates[order].tolist()) == set(picked.tolist())


def test_information_needs_a_gp_of_ratings() -> None:
    with pytest.raises(ValueError, match="Gaussian-process surrogate of ratings"):
        _spec(explore_from="information")
