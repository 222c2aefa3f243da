"""The pages a person sees: the rating page, the thank-you page and a page with one message
(the question pages of the other forms are :mod:`~prefalign.oracles.human.question_page`).

They are rendered from the Jinja templates in ``templates/`` with autoescaping (every id, title,
campaign name and message is escaped); both pages take their facts list and the box of a refused
submission from ``templates/_parts.html``. The rating page's style (``static/rating.css``) and
script (``static/drafts.js``: each choice saved as a draft as it is made) are inlined, and
:data:`SECURITY_HEADERS` allow exactly these two by their SHA-256 hashes in the
Content-Security-Policy: no other script or style runs, nothing is loaded from elsewhere. The
question pages inline ``rating.css`` followed by ``questions.css``, and ``drafts.js`` followed by
``questions.js`` (the keyboard shortcuts) as one script, allowed by
:data:`QUESTION_SECURITY_HEADERS`; :func:`security_headers` picks the headers of a round's form.
Templates and static files are package data, read through :mod:`importlib.resources`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from prefalign.io.feedback import QuestionForm
from prefalign.oracles.human.pictures import QueryPictures
from prefalign.oracles.human.ratings import RatingSession

__all__ = [
    "FIELD_PREFIX",
    "QUESTION_SECURITY_HEADERS",
    "SECURITY_HEADERS",
    "PageSettings",
    "render_message_page",
    "render_rating_page",
    "render_thanks_page",
    "security_headers",
]

#: Form fields carrying a rating are named ``rating:<query id>``.
FIELD_PREFIX = "rating:"


def _package_text(folder: str, name: str) -> str:
    """The text of a file shipped in this package's ``folder``."""
    return (resources.files(__package__) / folder / name).read_text(encoding="utf-8")


def _template_source(name: str) -> str | None:
    """Source of the template ``name`` for Jinja; None (template not found) if there is none."""
    try:
        return _package_text("templates", name)
    except FileNotFoundError:
        return None


#: The style and the script inlined into the rating page (and the style into every page).
CSS = _package_text("static", "rating.css")
JS = _package_text("static", "drafts.js")
#: The style and the script inlined into the question pages (binary, pairwise, best-of-K).
QUESTION_CSS = CSS + _package_text("static", "questions.css")
QUESTION_JS = JS + _package_text("static", "questions.js")


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _headers(css: str, js: str) -> dict[str, str]:
    """The headers of every reply of a round whose page inlines ``css`` and ``js``."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; img-src 'self' data:; style-src {_csp_hash(css)}; "
            f"script-src {_csp_hash(js)}; connect-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


#: Headers sent with every reply of a ``rate`` round.
SECURITY_HEADERS = _headers(CSS, JS)
#: Headers sent with every reply of a ``binary``, ``pairwise`` or ``best-of-K`` round; the
#: thank-you and message pages inline ``rating.css`` alone, allowed here as well.
QUESTION_SECURITY_HEADERS = _headers(QUESTION_CSS, QUESTION_JS)
QUESTION_SECURITY_HEADERS["Content-Security-Policy"] = QUESTION_SECURITY_HEADERS[
    "Content-Security-Policy"
].replace("style-src ", f"style-src {_csp_hash(CSS)} ")


def security_headers(form: QuestionForm) -> dict[str, str]:
    """The headers of every reply of a round that asks questions of ``form``."""
    return SECURITY_HEADERS if form.name == "rate" else QUESTION_SECURITY_HEADERS


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FunctionLoader(_template_source),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class PageSettings:
    """What the page says besides the queries.

    Attributes:
        title: the page's heading.
        round: the round number (0 = the first round), or None to leave it out.
        budget_left: queries left in the budget after this round, or None.
        campaign: the campaign's name (e.g. ``digits-human/fkc-al/seed0``), or None.
        rounds: how many rounds the campaign has, or None.
    """

    title: str = "Rate these samples"
    round: int | None = None
    budget_left: int | None = None
    campaign: str | None = None
    rounds: int | None = None

    def document_title(self) -> str:
        """The browser tab's title: the heading, then the round and the campaign when known."""
        parts = [self.title]
        if self.round is not None:
            parts.append(f"round {self.round}")
        if self.campaign:
            parts.append(self.campaign)
        return " - ".join(parts)


@dataclass(frozen=True)
class _Card:
    """One query on the rating page (what ``rating.html`` shows of it)."""

    index: int
    id: str
    label: str
    field: str
    rating: int | None
    missing: bool
    alt: str


def render(
    template: str, title: str, script: bool, *, css: str = CSS, js: str = JS, **context: object
) -> str:
    """Render ``template`` into the page layout (``base.html``) with the style ``css`` inlined,
    and the script ``js`` when ``script``."""
    page = _ENVIRONMENT.get_template(template)
    return page.render(document_title=title, css=css, js=js if script else None, **context)


def render_rating_page(
    session: RatingSession,
    pictures: QueryPictures,
    settings: PageSettings,
    errors: Sequence[str] = (),
) -> str:
    """The HTML rating page: facts, instructions, optional error box, one fieldset per query.

    Args:
        session: the round's ratings so far (radio buttons already checked) and scale.
        pictures: the queries' pictures (their size and text alternatives).
        settings: title, campaign, round and budget shown above the queries.
        errors: why the last submission was refused; with errors the unrated queries are
            marked and linked from the error box.
    """
    ratings = session.snapshot()
    missing = set(session.ids) - set(ratings) if errors else set()
    cards = [
        _Card(
            index,
            query_id,
            session.label(query_id),
            FIELD_PREFIX + query_id,
            ratings.get(query_id),
            query_id in missing,
            pictures.alt_text(index),
        )
        for index, query_id in enumerate(session.ids)
    ]
    width, height = pictures.size()
    low, high = session.scale
    return render(
        "rating.html",
        settings.document_title(),
        script=True,
        settings=settings,
        words=session.words,
        rated=len(ratings),
        cards=cards,
        errors=list(errors),
        scale=range(low, high + 1),
        width=width,
        height=height,
    )


def render_thanks_page(
    settings: PageSettings, count: int, rewards_path: Path, what: str = "ratings"
) -> str:
    """The page shown after the rewards (or answers) are written.

    Args:
        settings: the page's title and the round.
        count: how many ratings (answers) were saved.
        rewards_path: the rewards file (only its name is shown).
        what: what was saved, plural (``ratings``, ``answers``).
    """
    return render(
        "thanks.html",
        f"Thank you - {settings.title}",
        script=False,
        count=count,
        what=what,
        round=settings.round,
        file_name=rewards_path.name,
    )


def render_message_page(settings: PageSettings, heading: str, message: str) -> str:
    """A plain page with one message (the round is closed, a write failed, ...)."""
    return render(
        "message.html",
        f"{heading} - {settings.title}",
        script=False,
        heading=heading,
        message=message,
    )
