"""Tests for query selection (the selection rules of :mod:`prefalign.acquisition`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefalign import acquisition
from prefalign.acquisition import RULES, Selection, eps_greedy_epsilon


def select(strategy: str, scores, k, rng, *, x, epsilon=None, ucb_std=None, **options) -> Selection:
    """The rule called ``strategy``: :meth:`prefalign.acquisition.SelectionRule.select`."""
    return acquisition.rule(strategy).select(
        scores, k, rng, x=x, epsilon=epsilon, std=ucb_std, **options
    )


def particles(n: int = 20, shape: tuple[int, ...] = (2,), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_distinct(x: np.ndarray, sel: Selection) -> None:
    rows = {x[i].tobytes() for i in sel.indices}
    assert len(rows) == len(sel.indices)


# ----------------------------------------------------------------------------------------------
# epsilon schedule


def test_epsilon_schedule_endpoints() -> None:
    assert eps_greedy_epsilon(0, 10) == pytest.approx(0.8)
    assert eps_greedy_epsilon(10, 10) == pytest.approx(0.1)
    assert eps_greedy_epsilon(5, 10) == pytest.approx(0.45)
    assert eps_greedy_epsilon(1, 4) == pytest.approx(0.8 - 0.7 / 4)


def test_epsilon_schedule_decreases_linearly() -> None:
    eps = [eps_greedy_epsilon(s, 7) for s in range(8)]
    np.testing.assert_allclose(np.diff(eps), -0.1)


def test_epsilon_schedule_clipped() -> None:
    assert eps_greedy_epsilon(0, 5, start=1.5) == 1.0
    assert eps_greedy_epsilon(5, 5, start=0.2, slope=0.5) == 0.0


@pytest.mark.parametrize(("step", "total"), [(-1, 5), (6, 5), (0, 0)])
def test_epsilon_schedule_rejects_bad_steps(step: int, total: int) -> None:
    with pytest.raises(ValueError, match="step"):
        eps_greedy_epsilon(step, total)


# ----------------------------------------------------------------------------------------------
# strategies


def test_registry_lists_valid_names() -> None:
    assert set(RULES) == {"eps_greedy", "greedy", "random", "ucb"}
    with pytest.raises(ValueError, match="one of eps_greedy, greedy, random, ucb"):
        select("thompson", np.zeros(3), 1, rng(), x=particles(3))


def test_greedy_takes_top_k_by_score() -> None:
    scores = np.array([0.1, 5.0, -2.0, 3.0, 4.0, 0.0])
    sel = select("greedy", scores, 3, rng(), x=particles(6))
    assert sel.indices.tolist() == [1, 4, 3]  # best first
    assert sel.selected_by.tolist() == ["top"] * 3
    assert sel.indices.dtype == np.int64


def test_eps_greedy_split() -> None:
    scores = np.arange(20, dtype=float)
    sel = select("eps_greedy", scores, 10, rng(), x=particles(20), epsilon=0.8)
    # n_random = floor(0.8 * 10) = 8, n_top = 2
    assert sel.indices[:2].tolist() == [19, 18]
    assert sel.selected_by.tolist() == ["top"] * 2 + ["random"] * 8
    assert not set(sel.indices[2:]) & {19, 18}
    assert len(set(sel.indices.tolist())) == 10


@pytest.mark.parametrize(
    ("epsilon", "k", "n_random"),
    [(0.0, 5, 0), (1.0, 5, 5), (0.45, 4, 1), (0.1, 10, 1), (0.6, 5, 3), (0.7, 10, 7)],
)
def test_eps_greedy_counts(epsilon: float, k: int, n_random: int) -> None:
    sel = select("eps_greedy", np.arange(30.0), k, rng(), x=particles(30), epsilon=epsilon)
    assert (sel.selected_by == "random").sum() == n_random
    assert (sel.selected_by == "top").sum() == k - n_random


def test_eps_greedy_floor_is_robust_to_rounding() -> None:
    # a constant-epsilon ablation: 0.29 * 100 = 28.999999999999996 means 29 random queries
    assert math.floor(0.29 * 100) == 28  # what a plain floor would do
    sel = select("eps_greedy", np.arange(200.0), 100, rng(), x=particles(200), epsilon=0.29)
    assert (sel.selected_by == "random").sum() == 29


def test_eps_greedy_with_schedule() -> None:
    x = particles(50)
    scores = np.arange(50.0)
    for step, n_random in [(0, 8), (5, 4), (10, 1)]:
        eps = eps_greedy_epsilon(step, 10)
        sel = select("eps_greedy", scores, 10, rng(), x=x, epsilon=eps)
        assert (sel.selected_by == "random").sum() == n_random


def test_random_strategy_is_uniform_over_particles() -> None:
    x = particles(10)
    counts = np.zeros(10)
    gen = rng(1)
    for _ in range(400):
        sel = select("random", np.zeros(10), 3, gen, x=x)
        assert sel.selected_by.tolist() == ["random"] * 3
        counts[sel.indices] += 1
    assert counts.min() > 80  # expectation 120 each


def test_ucb_ranks_by_mean_plus_kappa_std() -> None:
    mean = np.array([1.0, 0.0, 0.5, 0.9])
    std = np.array([0.0, 2.0, 0.1, 0.0])
    x = particles(4)
    assert select("ucb", mean, 2, rng(), x=x, ucb_std=std, kappa=1.0).indices.tolist() == [1, 0]
    sel = select("ucb", mean, 2, rng(), x=x, ucb_std=std, kappa=0.0)
    assert sel.indices.tolist() == [0, 3]
    assert sel.selected_by.tolist() == ["ucb", "ucb"]


def test_selection_is_frozen_and_read_only() -> None:
    sel = select("greedy", np.arange(5.0), 2, rng(), x=particles(5))
    with pytest.raises(AttributeError):
        sel.indices = np.array([0, 1])  # type: ignore[misc]
    with pytest.raises(ValueError):
        sel.indices[0] = 3


# ----------------------------------------------------------------------------------------------
# duplicates from resampling


def resampled(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """12 particles that are copies of 4 distinct ones, as after systematic resampling."""
    base = particles(4, shape=(1, 3, 3), seed=seed)
    ancestors = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    log_w = np.array([9.0, 1.0, 5.0, 8.0])[ancestors]  # path weights travel with the copies
    return base[ancestors].copy(), log_w


@pytest.mark.parametrize("strategy", ["greedy", "random", "eps_greedy"])
def test_copies_are_one_query(strategy: str) -> None:
    x, w = resampled()
    eps = {"eps_greedy": 0.5}.get(strategy)
    for seed in range(20):
        sel = select(strategy, w, 4, rng(seed), x=x, epsilon=eps)
        assert_distinct(x, sel)


def test_dedup_keeps_highest_scoring_copy() -> None:
    x, w = resampled()
    sel = select("greedy", w, 3, rng(), x=x)
    assert sel.indices.tolist() == [0, 9, 5]  # first copy of ancestors 0, 3, 2
    # copies with different scores (e.g. surrogate noise): the best copy represents the group
    scores = np.arange(12.0)
    sel = select("greedy", scores, 4, rng(), x=x)
    assert sel.indices.tolist() == [11, 8, 4, 2]


def test_fewer_distinct_particles_than_k() -> None:
    x, w = resampled()
    with pytest.raises(ValueError, match="only 4 distinct particles among 12"):
        select("greedy", w, 5, rng(), x=x)
    with pytest.raises(ValueError, match="only 4 distinct particles"):
        select("random", w, 5, rng(), x=x)


def test_negative_zero_equals_zero() -> None:
    x = np.array([[0.0, 1.0], [-0.0, 1.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="only 2 distinct"):
        select("random", np.zeros(3), 3, rng(), x=x)


def test_nearly_equal_particles_are_distinct() -> None:
    x = np.array([[1.0, 1.0], [1.0, np.nextafter(1.0, 2.0)]])
    sel = select("random", np.zeros(2), 2, rng(), x=x)
    assert sorted(sel.indices.tolist()) == [0, 1]


# ----------------------------------------------------------------------------------------------
# ties, NaN, reproducibility


def test_ties_broken_by_lower_index() -> None:
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    sel = select("greedy", scores, 3, rng(), x=particles(5))
    assert sel.indices.tolist() == [1, 2, 4]


def test_nan_scores_never_top() -> None:
    scores = np.array([np.nan, 1.0, np.nan, -5.0, np.nan])
    sel = select("greedy", scores, 2, rng(), x=particles(5))
    assert sel.indices.tolist() == [1, 3]
    # more top slots than scored particles: the rest is random, and labelled so
    sel = select("greedy", scores, 4, rng(), x=particles(5))
    assert sel.indices[:2].tolist() == [1, 3]
    assert sel.selected_by.tolist() == ["top", "top", "random", "random"]
    assert set(sel.indices[2:].tolist()) <= {0, 2, 4}


def test_all_nan_scores_fall_back_to_random() -> None:
    sel = select("greedy", np.full(6, np.nan), 3, rng(), x=particles(6))
    assert sel.selected_by.tolist() == ["random"] * 3


def test_infinite_scores_rank_in_order() -> None:
    scores = np.array([0.0, np.inf, -np.inf, np.nan, 1.0])
    sel = select("greedy", scores, 4, rng(), x=particles(5))
    assert sel.indices.tolist() == [1, 4, 0, 2]


@pytest.mark.parametrize("strategy", ["eps_greedy", "random", "greedy", "ucb"])
def test_same_seed_same_selection(strategy: str) -> None:
    x, w = resampled()
    x = np.concatenate([x, particles(30, shape=(1, 3, 3), seed=5)])
    w = np.concatenate([w, np.random.default_rng(3).normal(size=30)])
    kwargs: dict[str, object] = {
        "eps_greedy": {"epsilon": 0.7},
        "ucb": {"ucb_std": np.abs(np.sin(np.arange(42.0)))},
    }.get(strategy, {})
    a = select(strategy, w, 8, rng(42), x=x, **kwargs)  # type: ignore[arg-type]
    b = select(strategy, w, 8, rng(42), x=x, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.selected_by, b.selected_by)


def test_different_seeds_differ() -> None:
    x = particles(100)
    picks = {tuple(select("random", np.zeros(100), 5, rng(s), x=x).indices) for s in range(5)}
    assert len(picks) > 1


def test_does_not_touch_global_random_state() -> None:
    before = np.random.get_state()[1].copy()  # noqa: NPY002 (checking the legacy state)
    select("random", np.zeros(10), 3, rng(), x=particles(10))
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


# ----------------------------------------------------------------------------------------------
# argument checks


@pytest.mark.parametrize(
    ("strategy", "kwargs", "match"),
    [
        ("eps_greedy", {}, "eps_greedy needs epsilon"),
        ("eps_greedy", {"epsilon": 1.5}, r"epsilon must be in \[0, 1\]"),
        ("greedy", {"epsilon": 0.5}, "epsilon is only used by rules that explore"),
        ("ucb", {}, "ucb needs std"),
        ("ucb", {"ucb_std": -np.ones(5)}, "non-negative"),
        ("ucb", {"ucb_std": np.ones(4)}, r"std must have shape \(5,\)"),
        ("ucb", {"ucb_std": np.ones(5), "kappa": -1.0}, "kappa"),
        ("random", {"ucb_std": np.ones(5)}, "std is only used by optimistic rules"),
    ],
)
def test_rejects_unsupported_combinations(
    strategy: str, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        select(strategy, np.zeros(5), 2, rng(), x=particles(5), **kwargs)  # type: ignore[arg-type]


def test_rejects_bad_inputs() -> None:
    x = particles(5)
    with pytest.raises(ValueError, match=r"scores must have shape \(5,\)"):
        select("greedy", np.zeros(4), 2, rng(), x=x)
    with pytest.raises(ValueError, match="k must be a positive int"):
        select("greedy", np.zeros(5), 0, rng(), x=x)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        select("greedy", np.zeros(5), 2, 0, x=x)  # type: ignore[arg-type]
    x[2, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        select("greedy", np.zeros(5), 2, rng(), x=x)


# --- batch rules: questions spread across lineages and modes ------------------------------------


def _two_clusters() -> tuple[np.ndarray, np.ndarray]:
    """Ten particles near (0, 0) with the best scores, five near (5, 5) scored a bit lower."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.01, (10, 2)), rng.normal(5, 0.01, (5, 2))])
    scores = np.concatenate([np.linspace(10, 9, 10), np.linspace(8, 7, 5)])
    return x, scores


def test_top_batch_asks_one_mode_k_times_and_kcenter_spreads() -> None:
    x, scores = _two_clusters()
    top = select("greedy", scores, 4, np.random.default_rng(0), x=x)
    assert set(top.indices.tolist()) <= set(range(10))  # all four from the first cluster
    spread = select("greedy", scores, 4, np.random.default_rng(0), x=x, batch="kcenter")
    assert spread.indices[0] == 0  # the best particle first
    assert any(i >= 10 for i in spread.indices)  # the second mode gets a question
    assert (spread.selected_by == "top").all()


def test_kcenter_pool_bounds_how_far_down_the_ranking_it_goes() -> None:
    x, scores = _two_clusters()
    chosen = select("greedy", scores, 2, np.random.default_rng(0), x=x, batch="kcenter", pool=2)
    assert set(chosen.indices.tolist()) <= set(range(4))  # only the 4 best are candidates


def test_lineage_batch_takes_one_particle_per_lineage_first() -> None:
    x, scores = _two_clusters()
    lineage = np.array([0] * 10 + [1] * 5)
    chosen = select(
        "greedy", scores, 3, np.random.default_rng(0), x=x, batch="lineage", lineage=lineage
    )
    assert chosen.indices.tolist() == [0, 10, 1]


def test_near_duplicates_merge_within_min_distance() -> None:
    x, scores = _two_clusters()
    chosen = select("greedy", scores, 2, np.random.default_rng(0), x=x, min_distance=0.5)
    assert chosen.indices.tolist() == [0, 10]
    with pytest.raises(ValueError, match="only 2 distinct particles"):
        select("greedy", scores, 3, np.random.default_rng(0), x=x, min_distance=0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(batch="dpp"), "unknown batch rule 'dpp'; must be one of `top`, `lineage`"),
        (dict(batch="lineage"), "batch 'lineage' needs lineage"),
        (dict(min_distance=-1.0), "min_distance must be finite and >= 0"),
        (dict(pool=0), "pool must be an integer >= 1"),
    ],
)
def test_batch_arguments_are_checked(kwargs: dict, message: str) -> None:
    x, scores = _two_clusters()
    with pytest.raises(ValueError, match=message):
        select("greedy", scores, 2, np.random.default_rng(0), x=x, **kwargs)
