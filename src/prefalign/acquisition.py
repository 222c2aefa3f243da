"""Query selection: which k of the N sampled particles to show the oracle.

Selection rules, chosen by name through :data:`RULES` (an unknown name lists the valid ones), all
one routine (:func:`select`: the ``n_top`` best, then the rest at random) with their own
``n_top`` and ranking score:

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
from dataclasses import dataclass

import numpy as np

from prefalign.registry import named

__all__ = [
    "BATCH_RULES",
    "RULES",
    "Selection",
    "SelectionRule",
    "distinct_in_rank_order",
    "eps_greedy_epsilon",
    "n_random_picks",
    "rule",
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
# the one selection routine and the rules built on it


def n_random_picks(epsilon: float, k: int) -> int:
    """How many of ``k`` eps-greedy picks explore: ``floor(eps k)`` (with a round-off guard)."""
    return math.floor(epsilon * k + _FLOOR_TOL)


#: How the top slots of a round are filled (see the module docstring).
BATCH_RULES: tuple[str, ...] = ("top", "lineage", "kcenter")


def _as_1d(name: str, values: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one per particle), got {arr.shape}")
    return arr


def select(
    scores: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    x: np.ndarray,
    n_top: int,
    top_label: str = "top",
    batch: str = "top",
    lineage: np.ndarray | None = None,
    min_distance: float = 0.0,
    pool: int = 4,
) -> Selection:
    """Choose ``k`` distinct particles: the ``n_top`` best by ``scores`` (filled by the batch
    rule), then ``k - n_top`` uniformly at random from the rest. Every rule of :data:`RULES` is
    this routine with its own ``n_top`` and ranking score.

    Args:
        scores: ``(N,)`` ranking score per particle; NaN means "no score" and is ranked last.
        k: number of queries, ``1 <= k <=`` number of distinct particles.
        rng: the only source of randomness.
        x: ``(N, *event_shape)`` the particles; exactly equal rows are one query.
        n_top: how many picks go to the best-ranked particles, ``0 <= n_top <= k``.
        top_label: how the top picks are labelled in ``selected_by`` (random picks: ``random``).
        batch: how the top slots are filled: ``top``, ``lineage`` or ``kcenter``.
        lineage: ``(N,)`` lineage id per particle (``SampleResult.ancestors``); ``lineage`` only.
        min_distance: merge particles closer than this (flattened Euclidean) as near-duplicates.
        pool: ``kcenter`` chooses among the ``pool * n_top`` best particles.

    Raises:
        ValueError: inputs of the wrong shape, an unknown batch rule (the message lists the
            valid ones), or fewer than ``k`` distinct particles (the message says how many).
        TypeError: ``rng`` is not a :class:`numpy.random.Generator`.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not 0 <= n_top <= k:
        raise ValueError(f"n_top must lie in [0, k={k}], got {n_top}")
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError("x must have shape (N, *event_shape)")
    n = x.shape[0]
    if x.size and not np.isfinite(x).all():
        raise ValueError("x has non-finite values; cannot compare particles")
    score = _as_1d("scores", scores, n)
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
    rows = x.reshape(n, -1).astype(np.float64) if batch == "kcenter" else None
    ranked_finite = ranked[~np.isnan(score[ranked])]
    top = _pick_top(ranked_finite, n_top, batch, rows, lineage, int(pool))
    rest = np.sort(np.setdiff1d(ranked, top, assume_unique=True))
    n_random = int(k) - top.size
    drawn = rng.choice(rest, size=n_random, replace=False) if n_random else rest[:0]
    indices = np.concatenate([top, drawn]).astype(np.int64)
    labels = np.asarray([top_label] * top.size + ["random"] * n_random, dtype=np.str_)
    indices.setflags(write=False)
    labels.setflags(write=False)
    return Selection(indices=indices, selected_by=labels)


@dataclass(frozen=True)
class SelectionRule:
    """A selection rule: how many of a round's ``k`` picks go to the best-ranked particles and
    what ranks them. A new rule is one entry of :data:`RULES`.

    Attributes:
        name: the rule's name in a method's ``selection``.
        explores: ``floor(eps k)`` of the picks explore (eps-greedy); needs ``epsilon``.
        optimistic: ranks by ``score + kappa std`` (UCB); needs ``std``.
        greedy: every pick that does not explore is a top pick (false: all picks at random).
    """

    name: str
    explores: bool = False
    optimistic: bool = False
    greedy: bool = True

    @property
    def top_label(self) -> str:
        """How the rule's top picks are labelled in ``selected_by``."""
        return "ucb" if self.optimistic else "top"

    def n_top(self, k: int, epsilon: float | None = None) -> int:
        """The top picks among ``k``: all of them, none (random), or ``k - floor(eps k)``."""
        if not self.greedy:
            return 0
        return k - n_random_picks(epsilon, k) if self.explores else k

    def select(
        self,
        scores: np.ndarray,
        k: int,
        rng: np.random.Generator,
        *,
        x: np.ndarray,
        epsilon: float | None = None,
        std: np.ndarray | None = None,
        kappa: float = 1.0,
        **batch,
    ) -> Selection:
        """:func:`select` with this rule's ``n_top`` and ranking score; ``batch``: the batch
        arguments of :func:`select` (``batch``, ``lineage``, ``min_distance``, ``pool``).

        Raises:
            ValueError: a missing or superfluous ``epsilon``/``std``, or ``kappa < 0``.
        """
        if self.explores:
            if epsilon is None:
                raise ValueError(
                    f"{self.name} needs epsilon: pass eps_greedy_epsilon(step, total_steps) "
                    "or a constant"
                )
            if not 0.0 <= epsilon <= 1.0:
                raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        elif epsilon is not None:
            raise ValueError(f"epsilon is only used by rules that explore, not by {self.name!r}")
        score = np.asarray(scores, dtype=np.float64)
        if self.optimistic:
            if std is None:
                raise ValueError(f"{self.name} needs std (the surrogate's spread per particle)")
            spread = _as_1d("std", std, np.asarray(x).shape[0])
            if (spread < 0).any():
                raise ValueError("std must be non-negative")
            if not (math.isfinite(kappa) and kappa >= 0):
                raise ValueError(f"kappa must be finite and >= 0, got {kappa}")
            score = _as_1d("scores", score, np.asarray(x).shape[0]) + kappa * spread
        elif std is not None:
            raise ValueError(f"std is only used by optimistic rules, not by {self.name!r}")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        return select(
            score,
            k,
            rng,
            x=x,
            n_top=self.n_top(int(k), epsilon),
            top_label=self.top_label,
            **batch,
        )


#: The selection rules by name (a method's ``selection``); an unknown name lists these.
RULES: dict[str, SelectionRule] = {
    rule.name: rule
    for rule in (
        SelectionRule("eps_greedy", explores=True),
        SelectionRule("greedy"),
        SelectionRule("random", greedy=False),
        SelectionRule("ucb", optimistic=True),
    )
}


def rule(name: str) -> SelectionRule:
    """The selection rule called ``name``.

    Raises:
        ValueError: no such rule (the message lists the valid ones).
    """
    return named(RULES, "selection", name)
