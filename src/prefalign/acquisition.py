"""Query selection: which k of the N sampled particles to show the oracle.

Strategies, chosen by name through :data:`STRATEGIES` (an unknown name lists the valid ones):

- ``eps_greedy``: the draft paper's rule (Algorithm 1). With ``n_random = floor(ε k)`` and
  ``n_top = k - n_random``, take the ``n_top`` best particles by score, then ``n_random`` particles
  uniformly at random from the rest. ``ε`` comes from :func:`eps_greedy_epsilon` (the draft's
  schedule ``ε = 0.8 - 0.7 step/total_steps``) or is a constant, for the ablation.
- ``greedy``: ``ε = 0``, the k best particles.
- ``random``: k particles uniformly at random (the cold start).
- ``ucb``: the k best by ``score + κ std`` (an ensemble's mean and spread).

How the top slots are filled (``batch``): ``top`` takes them in rank order (the draft's rule);
``lineage`` takes at most one particle per lineage (the initial particle it descends from, so
the copies and near-copies that resampling breeds count once) before a second one of any lineage;
``kcenter`` runs k-center greedy over the ``pool x n_top`` best particles: the best one first,
then each time the candidate farthest from those already chosen, so the questions of a round
spread across the modes the sampler found instead of asking about one mode k times.

The score is whatever the caller ranks by: the FK path log-weight (the default, see
``shared/docs/design.md``, "What top-k by FK weight means"), or the surrogate's prediction.

Copies made by resampling are the same query. Particles whose rows of ``x`` are exactly equal
are merged *before* choosing: the highest-scoring copy (lowest index among equals) represents
them, and random picks are uniform over distinct particles. No two selected particles have
identical ``x``. With ``min_distance > 0`` near-duplicates are merged the same way: a particle
closer than ``min_distance`` (Euclidean, over the flattened ``x``) to a better-ranked kept one is
dropped.

Ranking is deterministic: higher score first, NaN scores after every number (never picked as
"top"; a top slot that only NaN-scored particles could fill is filled at random instead and
labelled ``random``), ties broken by lower index. All randomness comes from the ``rng`` passed in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BATCH_RULES",
    "STRATEGIES",
    "Selection",
    "distinct_in_rank_order",
    "eps_greedy_epsilon",
    "n_random_picks",
    "select",
]

#: Tolerance on ``ε k`` before flooring, so 0.29 * 100 = 28.999999999999996 counts as 29.
_FLOOR_TOL = 1e-9


@dataclass(frozen=True)
class Selection:
    """The chosen queries.

    Attributes:
        indices: ``(k,)`` int64 indices into the particles, top picks first (best first), then
            random picks in the order drawn.
        selected_by: ``(k,)`` str, how each was chosen: ``top``, ``random`` or ``ucb``.
    """

    indices: np.ndarray
    selected_by: np.ndarray

    def __post_init__(self) -> None:
        if self.indices.shape != self.selected_by.shape:
            raise ValueError(
                f"indices {self.indices.shape} and selected_by {self.selected_by.shape} differ"
            )


def eps_greedy_epsilon(
    step: int, total_steps: int, start: float = 0.8, slope: float = 0.7
) -> float:
    """The draft paper's exploration rate ``ε = start - slope step/total_steps``, clipped to [0, 1].

    With the defaults ε falls linearly from 0.8 at step 0 to 0.1 at ``step == total_steps``.

    Args:
        step: active-learning step, ``0 <= step <= total_steps``.
        total_steps: number of steps (the draft's ``budget / k``), positive.
        start: ε at step 0.
        slope: total decrease of ε over the run.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, total_steps={total_steps}], got {step}")
    if not (math.isfinite(start) and math.isfinite(slope)):
        raise ValueError(f"start and slope must be finite, got start={start}, slope={slope}")
    return float(min(1.0, max(0.0, start - slope * step / total_steps)))


# ----------------------------------------------------------------------------------------------
# ranking and deduplication


def _rank(scores: np.ndarray) -> np.ndarray:
    """Indices by score, best first; NaN last; ties by lower index."""
    nan = np.isnan(scores)
    neg = np.where(nan, 0.0, -scores)
    return np.lexsort((np.arange(scores.size), neg, nan))


def distinct_in_rank_order(
    x: np.ndarray, order: np.ndarray, min_distance: float = 0.0
) -> np.ndarray:
    """The first particle (in ``order``) of every group of particles with identical ``x`` rows;
    with ``min_distance > 0`` also drop every particle within that distance of a kept one."""
    rows = np.ascontiguousarray(x.reshape(x.shape[0], -1)) + 0  # + 0 turns -0.0 into 0.0
    if min_distance > 0:
        return _spread_in_rank_order(rows.astype(np.float64), order, min_distance)
    # A short digest keys the lookup (memory stays small for image particles); rows that share
    # a digest are compared exactly, so a digest collision can never merge different particles.
    kept_by_digest: dict[bytes, list[int]] = {}
    keep: list[int] = []
    for i in order:
        row = rows[i]
        digest = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
        same = kept_by_digest.setdefault(digest, [])
        if not any(np.array_equal(rows[j], row) for j in same):
            same.append(int(i))
            keep.append(int(i))
    return np.asarray(keep, dtype=np.int64)


def _spread_in_rank_order(rows: np.ndarray, order: np.ndarray, radius: float) -> np.ndarray:
    """Greedy in rank order: keep a particle unless it lies within ``radius`` of a kept one."""
    keep: list[int] = []
    kept = np.empty((0, rows.shape[1]))
    for i in order:
        row = rows[i]
        if kept.shape[0] and np.min(((kept - row) ** 2).sum(axis=1)) < radius * radius:
            continue
        keep.append(int(i))
        kept = np.vstack([kept, row[None]])
    return np.asarray(keep, dtype=np.int64)


def _pick_top(
    ranked: np.ndarray,
    n_top: int,
    batch: str,
    rows: np.ndarray,
    lineage: np.ndarray | None,
    pool: int,
) -> np.ndarray:
    """``n_top`` particles from ``ranked`` (finite scores, best first) by the batch rule."""
    if n_top <= 0:
        return ranked[:0]
    if batch == "top" or ranked.size <= n_top:
        return ranked[:n_top]
    if batch == "lineage":
        assert lineage is not None
        first, later, seen = [], [], set()
        for i in ranked:
            (later if int(lineage[i]) in seen else first).append(int(i))
            seen.add(int(lineage[i]))
        return np.asarray((first + later)[:n_top], dtype=np.int64)
    # kcenter: the best, then repeatedly the candidate farthest from the chosen set
    cand = ranked[: max(n_top, pool * n_top)]
    feats = rows[cand]
    chosen = [0]
    dist = ((feats - feats[0]) ** 2).sum(axis=1)
    for _ in range(n_top - 1):
        dist[chosen] = -1.0
        j = int(np.argmax(dist))  # ties: the better-ranked candidate
        chosen.append(j)
        dist = np.minimum(dist, ((feats - feats[j]) ** 2).sum(axis=1))
    return cand[np.asarray(chosen)]


# ----------------------------------------------------------------------------------------------
# strategies


@dataclass(frozen=True)
class _Request:
    """Inputs shared by all strategies, already validated and deduplicated."""

    scores: np.ndarray  # (N,) the ranking score (for ucb: mean + kappa std)
    ranked: np.ndarray  # distinct particles, best first
    k: int
    rng: np.random.Generator
    epsilon: float | None
    batch: str = "top"
    rows: np.ndarray | None = None  # (N, D) flattened particles, for kcenter
    lineage: np.ndarray | None = None  # (N,) lineage ids, for lineage
    pool: int = 4


def _top_then_random(req: _Request, n_top: int, top_label: str) -> Selection:
    ranked = req.ranked
    ranked_finite = ranked[~np.isnan(req.scores[ranked])]
    top = _pick_top(ranked_finite, n_top, req.batch, req.rows, req.lineage, req.pool)
    rest = np.sort(np.setdiff1d(ranked, top, assume_unique=True))
    n_random = req.k - top.size
    drawn = req.rng.choice(rest, size=n_random, replace=False) if n_random else rest[:0]
    indices = np.concatenate([top, drawn]).astype(np.int64)
    labels = np.asarray([top_label] * top.size + ["random"] * n_random, dtype=np.str_)
    indices.setflags(write=False)
    labels.setflags(write=False)
    return Selection(indices=indices, selected_by=labels)


def n_random_picks(epsilon: float, k: int) -> int:
    """How many of ``k`` eps-greedy picks explore: ``floor(eps k)`` (with a round-off guard)."""
    return math.floor(epsilon * k + _FLOOR_TOL)


def _eps_greedy(req: _Request) -> Selection:
    assert req.epsilon is not None
    return _top_then_random(req, req.k - n_random_picks(req.epsilon, req.k), "top")


def _greedy(req: _Request) -> Selection:
    return _top_then_random(req, req.k, "top")


def _random(req: _Request) -> Selection:
    return _top_then_random(req, 0, "top")


def _ucb(req: _Request) -> Selection:
    return _top_then_random(req, req.k, "ucb")


#: Strategy name -> implementation. :func:`select` is the public entry point.
STRATEGIES: dict[str, Callable[[_Request], Selection]] = {
    "eps_greedy": _eps_greedy,
    "greedy": _greedy,
    "random": _random,
    "ucb": _ucb,
}

#: How the top slots of a round are filled (see the module docstring).
BATCH_RULES: tuple[str, ...] = ("top", "lineage", "kcenter")


def _as_1d(name: str, values: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one per particle), got {arr.shape}")
    return arr


def select(
    strategy: str,
    scores: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    x: np.ndarray,
    epsilon: float | None = None,
    ucb_std: np.ndarray | None = None,
    kappa: float = 1.0,
    batch: str = "top",
    lineage: np.ndarray | None = None,
    min_distance: float = 0.0,
    pool: int = 4,
) -> Selection:
    """Choose ``k`` distinct particles to query.

    Args:
        strategy: one of :data:`STRATEGIES`: ``eps_greedy``, ``greedy``, ``random``, ``ucb``.
        scores: ``(N,)`` ranking score per particle (FK path log-weight, surrogate prediction, or
            the ensemble mean for ``ucb``); NaN means "no score" and is ranked last.
        k: number of queries, ``1 <= k <=`` number of distinct particles.
        rng: the only source of randomness.
        x: ``(N, *event_shape)`` the particles; exactly equal rows are one query.
        epsilon: exploration rate in [0, 1]; required by ``eps_greedy`` (from
            :func:`eps_greedy_epsilon`, or a constant), rejected by the other strategies.
        ucb_std: ``(N,)`` non-negative spread (ensemble std); required by ``ucb`` only.
        kappa: ``ucb`` exploration weight, ``>= 0``; the ``ucb`` score is
            ``scores + kappa * ucb_std``.
        batch: how the top slots are filled: ``top``, ``lineage`` or ``kcenter``.
        lineage: ``(N,)`` lineage id per particle (``SampleResult.ancestors``); ``lineage`` only.
        min_distance: merge particles closer than this (flattened Euclidean) as near-duplicates.
        pool: ``kcenter`` chooses among the ``pool * n_top`` best particles.

    Returns:
        The :class:`Selection`: ``k`` distinct indices and how each was chosen.

    Raises:
        ValueError: unknown strategy (the message lists the valid ones), inputs of the wrong
            shape, a missing or superfluous ``epsilon``/``ucb_std``, or fewer than ``k`` distinct
            particles (the message says how many there are).
        TypeError: ``rng`` is not a :class:`numpy.random.Generator`.
    """
    if strategy not in STRATEGIES:
        valid = ", ".join(f"`{name}`" for name in STRATEGIES)
        raise ValueError(f"unknown acquisition strategy {strategy!r}; must be one of {valid}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError("x must have shape (N, *event_shape)")
    n = x.shape[0]
    if x.size and not np.isfinite(x).all():
        raise ValueError("x has non-finite values; cannot compare particles")
    score = _as_1d("scores", scores, n)

    if strategy == "eps_greedy":
        if epsilon is None:
            raise ValueError(
                "eps_greedy needs epsilon: pass eps_greedy_epsilon(step, total_steps) or a constant"
            )
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    elif epsilon is not None:
        raise ValueError(f"epsilon is only used by eps_greedy, not by {strategy!r}")
    if strategy == "ucb":
        if ucb_std is None:
            raise ValueError("ucb needs ucb_std (the ensemble's standard deviation per particle)")
        std = _as_1d("ucb_std", ucb_std, n)
        if (std < 0).any():
            raise ValueError("ucb_std must be non-negative")
        if not (math.isfinite(kappa) and kappa >= 0):
            raise ValueError(f"kappa must be finite and >= 0, got {kappa}")
        score = score + kappa * std
    elif ucb_std is not None:
        raise ValueError(f"ucb_std is only used by ucb, not by {strategy!r}")

    if batch not in BATCH_RULES:
        valid = ", ".join(f"`{name}`" for name in BATCH_RULES)
        raise ValueError(f"unknown batch rule {batch!r}; must be one of {valid}")
    if batch == "lineage":
        if lineage is None:
            raise ValueError("batch 'lineage' needs lineage (one lineage id per particle)")
        lineage = np.asarray(lineage)
        if lineage.shape != (n,):
            raise ValueError(f"lineage must have shape ({n},), got {lineage.shape}")
    if not (math.isfinite(min_distance) and min_distance >= 0):
        raise ValueError(f"min_distance must be finite and >= 0, got {min_distance}")
    if isinstance(pool, bool) or not isinstance(pool, int | np.integer) or pool < 1:
        raise ValueError(f"pool must be an integer >= 1, got {pool!r}")
    ranked = distinct_in_rank_order(x, _rank(score), float(min_distance))
    if ranked.size < k:
        raise ValueError(
            f"cannot select k={k} queries: only {ranked.size} distinct particles among {n} "
            "(resampling copies count once); sample more particles or lower k"
        )
    req = _Request(
        scores=score,
        ranked=ranked,
        k=int(k),
        rng=rng,
        epsilon=None if epsilon is None else float(epsilon),
        batch=batch,
        rows=x.reshape(n, -1).astype(np.float64) if batch == "kcenter" else None,
        lineage=lineage,
        pool=int(pool),
    )
    return STRATEGIES[strategy](req)
