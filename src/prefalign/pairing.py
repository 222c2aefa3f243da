"""Which particles make one question of a ``pairwise`` or ``best-of-K`` round (docs/feedback-forms.md).

The method's selection rule (:func:`prefalign.acquisition.select`) picks one *lead* particle per
question; ``pairing`` picks the other ``K - 1`` items of its question:

- ``top-random``: the lead beside ``K - 1`` particles drawn uniformly at random from the
  distinct particles not used yet: the method's best guess against an exploratory one;
- ``uncertain``: among the ``pool * k * K`` distinct particles the method's score ranks highest,
  greedily the question whose answer the surrogate is least sure of: the largest entropy of the
  ensemble's mean choice probabilities ``mean_e softmax(f_e)`` over the question's items (the
  leads are not used; the best-ranked item of each question is labelled ``top``). The pair is
  searched exhaustively; a larger group grows from the best pair one item at a time.

No particle is in two questions, and exactly equal particles count once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prefalign.acquisition import Selection, distinct_in_rank_order

__all__ = ["PAIRINGS", "Questions", "compose_questions", "random_questions"]

PAIRINGS = ("top-random", "uncertain")


@dataclass(frozen=True)
class Questions:
    """The items of a round's questions: ``indices`` into the particles, ``selected_by`` of each
    item, and ``question`` (0..Q-1), the question each item belongs to (contiguous)."""

    indices: np.ndarray  # (Q*K,) int64
    selected_by: np.ndarray  # (Q*K,) str
    question: np.ndarray  # (Q*K,) int64


def _flat(groups: list[list[int]], labels: list[list[str]]) -> Questions:
    return Questions(
        indices=np.asarray([i for g in groups for i in g], dtype=np.int64),
        selected_by=np.asarray([s for g in labels for s in g]),
        question=np.repeat(np.arange(len(groups), dtype=np.int64), [len(g) for g in groups]),
    )


def random_questions(
    x: np.ndarray, n_questions: int, size: int, rng: np.random.Generator
) -> Questions:
    """``n_questions`` questions of ``size`` distinct particles drawn uniformly (the cold start)."""
    distinct = distinct_in_rank_order(x, np.arange(len(x)))
    _enough(distinct, n_questions * size)
    picked = rng.choice(distinct, size=n_questions * size, replace=False)
    groups = [picked[q * size : (q + 1) * size].tolist() for q in range(n_questions)]
    return _flat(groups, [["random"] * size for _ in groups])


def compose_questions(
    pairing: str,
    leads: Selection,
    x: np.ndarray,
    scores: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    utilities: np.ndarray | None = None,
    pool: int = 4,
) -> Questions:
    """The round's questions of ``size`` items, one per lead (see the module's docstring).

    Args:
        pairing: :data:`PAIRINGS`.
        leads: the method's picks, one per question.
        x: ``(N, *event_shape)`` the particles.
        scores: ``(N,)`` the method's ranking score (NaN last).
        size: items per question (2 for pairwise, K for best-of-K).
        rng: the only source of randomness.
        utilities: ``(E, N)`` each ensemble member's utility of each particle (``uncertain``).
        pool: ``uncertain`` chooses among the ``pool * Q * size`` best-ranked particles.

    Raises:
        ValueError: an unknown pairing, too few distinct particles, ``uncertain`` without
            utilities.
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; must be one of {', '.join(PAIRINGS)}")
    n_questions = len(leads.indices)
    order = np.lexsort((np.arange(len(scores)), -np.nan_to_num(scores, nan=-np.inf)))
    distinct = distinct_in_rank_order(x, order)
    _enough(distinct, n_questions * size)
    if pairing == "top-random":
        used = set(leads.indices.tolist())
        rest = np.asarray([i for i in distinct.tolist() if i not in used], dtype=np.int64)
        partners = rng.choice(rest, size=n_questions * (size - 1), replace=False)
        groups = [
            [int(lead), *partners[q * (size - 1) : (q + 1) * (size - 1)].tolist()]
            for q, lead in enumerate(leads.indices)
        ]
        labels = [[str(s), *["partner"] * (size - 1)] for s in leads.selected_by]
        return _flat(groups, labels)
    if utilities is None:
        raise ValueError("pairing 'uncertain' needs the ensemble's utilities of the particles")
    candidates = distinct[: max(pool * n_questions * size, n_questions * size)]
    groups = _most_uncertain(np.asarray(utilities, dtype=np.float64), candidates, n_questions, size)
    labels = [["top", *["uncertain"] * (size - 1)] for _ in groups]
    return _flat(groups, labels)


def _enough(distinct: np.ndarray, needed: int) -> None:
    if distinct.size < needed:
        raise ValueError(
            f"cannot make the round's questions: they show {needed} particles but there are "
            f"only {distinct.size} distinct ones; sample more particles or ask fewer questions"
        )


def choice_entropy(utilities: np.ndarray) -> np.ndarray:
    """Entropy of the ensemble's mean choice distribution for each question.

    Args:
        utilities: ``(E, Q, K)`` member utilities of each question's items.

    Returns:
        ``(Q,)`` entropies in nats, from 0 (sure) to ``log K`` (no idea).
    """
    z = utilities - utilities.max(axis=2, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=2, keepdims=True)
    mean = p.mean(axis=0)  # (Q, K)
    return -(mean * np.log(np.clip(mean, 1e-300, None))).sum(axis=1)


def _most_uncertain(
    utilities: np.ndarray, candidates: np.ndarray, n_questions: int, size: int
) -> list[list[int]]:
    """Greedy: the most uncertain pair among the unused candidates, grown to ``size`` items by
    the most uncertain addition, ``n_questions`` times. Items are listed best-ranked first; ties
    go to the better-ranked candidates."""
    free = list(candidates.tolist())  # in rank order
    groups: list[list[int]] = []
    for _ in range(n_questions):
        idx = np.asarray(free)
        a, b = np.triu_indices(len(idx), k=1)
        pairs = np.stack([utilities[:, idx[a]], utilities[:, idx[b]]], axis=2)  # (E, P, 2)
        best = int(np.argmax(choice_entropy(pairs)))  # first maximum: best-ranked pair
        group = [int(idx[a[best]]), int(idx[b[best]])]
        while len(group) < size:
            others = [i for i in free if i not in group]
            trial = np.stack(
                [np.concatenate([utilities[:, group], utilities[:, [o]]], axis=1) for o in others],
                axis=1,
            )  # (E, len(others), len(group) + 1)
            group.append(int(others[int(np.argmax(choice_entropy(trial)))]))
        rank = {c: r for r, c in enumerate(free)}
        group.sort(key=rank.__getitem__)
        groups.append(group)
        free = [i for i in free if i not in group]
    return groups
