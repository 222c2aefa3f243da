"""How the page and the command name what a person answers, per question form.

``rate`` keeps the words the rating page has always used (queries are *rated*, the answers are
*ratings*, the form fields ``rating:<id>``); ``binary``, ``pairwise`` and ``best-of-K`` ask
*questions* that are *answered* (form fields ``answer:<question id>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from prefalign.io.feedback import QuestionForm

__all__ = ["ANSWERS", "RATINGS", "Wording", "default_title", "wording"]


@dataclass(frozen=True)
class Wording:
    """The words of one kind of page.

    Attributes:
        item: what is answered, singular (``query`` / ``question``).
        items: plural (``queries`` / ``questions``).
        key_name: how an error names an answer's key (``query id`` / ``question``).
        answered: the past participle (``rated`` / ``answered``).
        answer: what the person gives for one item, singular (``rating`` / ``answer``).
        answers: plural (``ratings`` / ``answers``).
        verb: the imperative (``Rate`` / ``Answer``).
        draft_key: the JSON key of a draft, ``{draft_key: {key: value}}``.
        draft_example: a draft's shape, for error messages.
        count_key: the JSON key of a draft reply's count, ``{count_key: n, "total": m}``.
        field_prefix: the form fields are named ``<field_prefix><key>``.
        file: how the page names the file written (``rewards file`` / ``answer file``).
    """

    item: str
    items: str
    key_name: str
    answered: str
    answer: str
    answers: str
    verb: str
    draft_key: str
    draft_example: str
    count_key: str
    field_prefix: str
    file: str


#: The rating page's words (``rate``).
RATINGS = Wording(
    item="query",
    items="queries",
    key_name="query id",
    answered="rated",
    answer="rating",
    answers="ratings",
    verb="Rate",
    draft_key="ratings",
    draft_example='{"ratings": {id: value}}',
    count_key="rated",
    field_prefix="rating:",
    file="rewards file",
)
#: The words of the question pages (``binary``, ``pairwise``, ``best-of-K``).
ANSWERS = Wording(
    item="question",
    items="questions",
    key_name="question",
    answered="answered",
    answer="answer",
    answers="answers",
    verb="Answer",
    draft_key="answers",
    draft_example='{"answers": {question: value}}',
    count_key="answered",
    field_prefix="answer:",
    file="answer file",
)


def wording(form: QuestionForm) -> Wording:
    """The words of the page that asks questions of ``form``."""
    return RATINGS if form.name == "rate" else ANSWERS


def default_title(form: QuestionForm) -> str:
    """The page's heading when ``--title`` is not given: the question the form asks."""
    if form.name == "rate":
        return "Rate these samples"
    if form.name == "binary":
        return "Do you like these samples?"
    if form.name == "pairwise":
        return "Which of the two do you prefer?"
    return f"Pick your favourite in each group of {form.items}"
