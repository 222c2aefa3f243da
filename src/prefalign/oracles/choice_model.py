"""How a simulated user answers each question form from one latent utility (docs/feedback-forms.md).

=============  ============================================================  ===================
form           answer                                                        noise setting
=============  ============================================================  ===================
``rate``       ``u(x)`` plus Gaussian noise (:func:`prefalign.domains.answer_noise`)  ``noise_std``
``binary``     like with probability ``sigmoid((u(x) - threshold) / T)``     ``temperature`` T
``pairwise``   ``a`` with probability ``sigmoid((u(a) - u(b)) / T)``;        ``temperature``,
               ``tie`` when ``|u(a) - u(b)| <= tie_margin``                  ``tie_margin``
``best-of-K``  item ``i`` with probability ``softmax(u / T)_i``              ``temperature``
=============  ============================================================  ===================

``T = 0`` answers without noise: like exactly when ``u > threshold``, the larger utility, the
argmax (the first of equal ones). Every draw is seeded by ``seed`` and the float32 bytes of the
question's items, so the same question gets the same answer in any batch, round or order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prefalign.io.feedback import BINARY_HEADER, CHOICE_HEADER, RATE_HEADER, TIE, parse_form
from prefalign.io.queries import Questions

__all__ = ["ChoiceModel"]

UtilityFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ChoiceModel:
    """A simulated user's noise model, per form; ``utility`` is its noiseless reward."""

    utility: UtilityFn  # (n, *event_shape) -> (n,) float
    rating: UtilityFn | None = None  # what ``rate`` answers (the utility plus its noise)
    temperature: float = 0.0
    threshold: float = 0.5
    tie_margin: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("temperature", "tie_margin"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def rate(self, x: np.ndarray) -> np.ndarray:
        """What the user answers when asked to rate ``x`` (its utility plus its noise)."""
        return np.asarray((self.rating or self.utility)(x), np.float64)

    def answer(self, questions: Questions) -> pd.DataFrame:
        """The answer file's rows for ``questions``, with the form's header as columns."""
        form = parse_form(questions.form)
        ids = questions.ids.tolist()
        if form.name == "rate":
            return pd.DataFrame({RATE_HEADER[0]: ids, RATE_HEADER[1]: self.rate(questions.x)})
        u = np.asarray(self.utility(questions.x), dtype=np.float64)
        if form.name == "binary":
            likes = [int(self._likes(u[i], questions.x[i : i + 1])) for i in range(len(ids))]
            return pd.DataFrame({BINARY_HEADER[0]: ids, BINARY_HEADER[1]: likes})
        rows = []
        order = list(dict.fromkeys(questions.questions.tolist()))
        position = {q: np.flatnonzero(questions.questions == q) for q in order}
        for question in order:
            items = position[question]
            rows.append((question, self._choose(u[items], questions.x[items], ids, items, form)))
        return pd.DataFrame(rows, columns=list(CHOICE_HEADER))

    def _uniform(self, x: np.ndarray) -> float:
        """A uniform draw in [0, 1) seeded by ``seed`` and the bytes of the question's items."""
        data = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).tobytes()
        key = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
        return float(np.random.default_rng([self.seed, key]).random())

    def _likes(self, u: float, x: np.ndarray) -> bool:
        if self.temperature == 0:
            return bool(u > self.threshold)
        p = 1.0 / (1.0 + np.exp(-(u - self.threshold) / self.temperature))
        return self._uniform(x) < p

    def _choose(self, u: np.ndarray, x: np.ndarray, ids: list[str], items, form) -> str:
        if form.allows_tie and abs(u[0] - u[1]) <= self.tie_margin:
            return TIE
        if self.temperature == 0:
            return ids[int(items[int(np.argmax(u))])]
        z = (u - u.max()) / self.temperature
        p = np.exp(z) / np.exp(z).sum()
        pick = int(np.searchsorted(np.cumsum(p), self._uniform(x) * p.sum(), side="right"))
        return ids[int(items[min(pick, len(u) - 1)])]
