"""The question page of a ``binary``, ``pairwise`` or ``best-of-K`` round (``questions.html``),
and :func:`render_answer_page`, the page of a round of any form.

Each question is one fieldset of radio buttons named ``answer:<question id>``:

- ``binary``: the item's picture, then *Like* (``1``) and *Dislike* (``0``);
- ``pairwise``: the two pictures side by side, each a *Left* / *Right* choice whose value is its
  id, then *Can't say* (``tie``);
- ``best-of-K``: the K pictures in a grid, numbered 1 to K, each a choice whose value is its id.

Each radio button carries its keyboard shortcuts in ``data-keys`` (``static/questions.js``:
L / D, left / right / down arrow or 1 / 2 / 0, digits 1 to K; j / k move between questions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prefalign.io.feedback import TIE
from prefalign.oracles.human.answers import DISLIKE, LIKE, BinarySession, ChoiceSession
from prefalign.oracles.human.page import (
    QUESTION_CSS,
    QUESTION_JS,
    PageSettings,
    render,
    render_rating_page,
)
from prefalign.oracles.human.pictures import QueryPictures
from prefalign.oracles.human.ratings import RatingSession
from prefalign.oracles.human.session import AnswerSession

__all__ = ["render_answer_page", "render_question_page"]

#: Digits pick the first nine pictures of a best-of-K question.
_DIGITS = "123456789"
#: A pair's choices: (text, shortcut keys, the shortcut as shown), left then right; "can't say".
_PAIR = (("Left", "ArrowLeft 1", "\u2190 1"), ("Right", "ArrowRight 2", "\u2192 2"))
_TIE_KEYS = ("ArrowDown 0", "\u2193 0")


@dataclass(frozen=True)
class _Option:
    """One radio button of a question, with the picture it stands for (None: a plain button)."""

    value: str
    text: str
    keys: str  # shortcut keys (KeyboardEvent.key values), space-separated
    hint: str  # the shortcut as shown on the button ("" for none)
    checked: bool
    picture: int | None = None
    alt: str = ""


@dataclass(frozen=True)
class _Question:
    """One question on the page (what ``questions.html`` shows of it)."""

    index: int
    id: str
    label: str
    field: str
    missing: bool
    options: list[_Option]  # the choices with pictures, or binary's Like / Dislike
    buttons: list[_Option]  # choices without a picture: pairwise's Can't say
    picture: int | None  # binary: the item's picture
    alt: str


def _binary(
    session: BinarySession, pictures: QueryPictures, key: str, answer: str | None
) -> dict[str, object]:
    """Binary's parts: the item's picture, then Like / Dislike."""
    index = pictures.queries.ids.index(key)
    buttons = [
        _Option(LIKE, "Like", "l L", "L", answer == LIKE),
        _Option(DISLIKE, "Dislike", "d D", "D", answer == DISLIKE),
    ]
    alt = f"{session.label(key)}: {pictures.describe(index)}"
    return {"options": [], "buttons": buttons, "picture": index, "alt": alt}


def _choice(
    session: ChoiceSession, pictures: QueryPictures, key: str, answer: str | None
) -> dict[str, object]:
    """A pair's or a group's parts: a choice per picture (and Can't say for a pair)."""
    pair = session.form.allows_tie
    label = session.label(key)
    options = []
    for number, item in enumerate(session.groups[key]):
        if pair:
            text, keys, hint = _PAIR[number]
            name = text.lower()
        else:
            text, hint, name = str(number + 1), "", f"sample {number + 1}"
            keys = _DIGITS[number] if number < len(_DIGITS) else ""
        picture = pictures.queries.ids.index(item)
        alt = f"{label}, {name}: {pictures.describe(picture)}"
        options.append(_Option(item, text, keys, hint, answer == item, picture, alt))
    buttons = [_Option(TIE, "Can't say", *_TIE_KEYS, answer == TIE)] if pair else []
    return {"options": options, "buttons": buttons, "picture": None, "alt": ""}


def render_question_page(
    session: BinarySession | ChoiceSession,
    pictures: QueryPictures,
    settings: PageSettings,
    errors: Sequence[str] = (),
) -> str:
    """The HTML page of a ``binary``, ``pairwise`` or ``best-of-K`` round.

    Args:
        session: the round's answers so far (radio buttons already checked) and its questions.
        pictures: the items' pictures (their size and descriptions).
        settings: title, campaign, round and budget shown above the questions.
        errors: why the last submission was refused; with errors the unanswered questions are
            marked and linked from the error box.
    """
    answers = session.snapshot()
    missing = set(session.missing()) if errors else set()
    questions = []
    for index, key in enumerate(session.keys):
        if isinstance(session, BinarySession):
            parts = _binary(session, pictures, key, answers.get(key))
        else:
            parts = _choice(session, pictures, key, answers.get(key))
        questions.append(
            _Question(
                index,
                key,
                session.label(key),
                session.words.field_prefix + key,
                key in missing,
                **parts,
            )
        )
    form = session.form
    kind = "best-of" if form.is_choice and not form.allows_tie else form.name
    width, height = pictures.size()
    return render(
        "questions.html",
        settings.document_title(),
        script=True,
        css=QUESTION_CSS,
        js=QUESTION_JS,
        settings=settings,
        words=session.words,
        kind=kind,
        k=form.items,
        answered=len(answers),
        questions=questions,
        errors=list(errors),
        width=width,
        height=height,
    )


def render_answer_page(
    session: AnswerSession,
    pictures: QueryPictures,
    settings: PageSettings,
    errors: Sequence[str] = (),
) -> str:
    """The page of a round of any form: the rating page for ``rate``, else the question page."""
    if isinstance(session, RatingSession):
        return render_rating_page(session, pictures, settings, errors)
    assert isinstance(session, BinarySession | ChoiceSession)
    return render_question_page(session, pictures, settings, errors)
