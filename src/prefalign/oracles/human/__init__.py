"""A person as the oracle: answer a round's queries in a web browser, in any question form.

Run as an oracle command (the workflow appends the two paths)::

    prefalign oracle human [--host 127.0.0.1] [--port 0] [--timeout-s NONE] [--title T]
        [--scale MIN MAX] [--url-file PATH] [--open] [--campaign NAME] [--round R]
        [--rounds N] [--budget-left B] QUERIES.npz REWARDS.csv

(``python -m prefalign.oracles.human`` is the same command.) ``--campaign``, ``--round``,
``--rounds`` and ``--budget-left`` default to ``PREFALIGN_CAMPAIGN``, ``PREFALIGN_ROUND``,
``PREFALIGN_ROUNDS`` and ``PREFALIGN_BUDGET_LEFT``, which the workflow sets for every oracle.
``docs/human-oracle.md`` describes a whole campaign with a person as the oracle.

The page asks the questions in the form the queries file names (``docs/feedback-forms.md``,
:func:`prefalign.io.queries.read_questions`; a file that names none asks ``rate``):

========================  ======================================  ============================
form                      each question shows, with               the answer file
========================  ======================================  ============================
``rate``                  a picture, a radio button per rating    ``id,reward`` (REWARDS.csv)
``binary``                a picture, *Like* / *Dislike*           ``id,like``: ``1`` / ``0``
``pairwise``              two pictures side by side: *Left* /     ``question,choice``: an id of
                          *Right* / *Can't say*                   the pair, or ``tie``
``best-of-K``             K pictures in a grid, numbered 1 to K   ``question,choice``: an id
========================  ======================================  ============================

Keyboard: Tab and the arrow keys move through radio buttons as usual; the question pages add
shortcuts (``static/questions.js``): ``j`` / ``k`` the next / previous question, then ``L`` like,
``D`` dislike (binary); left arrow or ``1`` left, right arrow or ``2`` right, down arrow or ``0``
can't say (pairwise); digits ``1`` to ``K`` (best-of-K, up to 9); after a shortcut the focus moves
on to the next question. ``--title`` is the page's heading; its default is the form's question.

What it does, in order:

1. Reads and checks the queries (``id``: unique strings; ``x``: finite floats of shape (k, 2) for
   2-D points, (k, H, W) or (k, C, H, W) with C in {1, 3} for images in [-1, 1]; ``form`` and
   ``question``: groups that fit the form).
2. Serves one page on ``--host`` (loopback by default) and ``--port`` (0 picks a free one), and
   prints its URL to stdout and, after ``open this page to rate the queries:`` (``... to answer
   the questions:`` for the other forms), to stderr (in the workflow both end up in the round's
   ``query.log``); with ``--url-file`` also to that file (its folder is created; the file is
   removed when the round ends), with ``--open`` it opens the page in the default browser. The
   URL holds a random token (:func:`secrets.token_urlsafe`), new for every round; every request
   (page, pictures, drafts, submission) without that token gets 403 and changes nothing.
3. The page shows every item as a picture: an image scaled up with crisp pixels, or a 2-D point
   drawn as a small plot with that point highlighted among all the round's items. For ``rate``
   each query has one group of radio buttons, one per whole number of ``--scale MIN MAX``
   (default 1 to 5, MIN = worst, MAX = best); the other forms have one group of radio buttons per
   question (the table above). The page also shows the campaign, the round, the budget left and
   how many queries are rated (``N of M questions answered``) so far.
4. Each click is saved as a draft on the server (per query or question id, in memory), so closing
   the page and reopening the same URL shows the answers entered so far. The page works without
   JavaScript as well: then answers are kept when a submission is refused.
5. A submission that leaves a question unanswered, or is malformed (unknown id, a value that is
   not a whole number of the scale, a binary answer other than 1 or 0, a choice naming an id the
   question does not show, two answers to one question), is refused with a message on the page;
   nothing is written.
6. Once every question is answered and submitted, ``REWARDS.csv`` is written atomically
   (temporary file, then :func:`os.replace`; the answer files of the other forms are first
   validated by :func:`prefalign.io.feedback.parse_answers`), the page says thank you, the server
   stops and the command exits 0. The submission is durable the moment the file is renamed into
   place: the round then ends whatever happens to the reply (a tab closed right after Submit, a
   double click, a reset).
7. Hardening: the URL file is 0600 (it holds the token); a connection idle for
   ``--connection-timeout-s`` (default 30 s) is closed; malformed requests (a ``Content-Length``
   that is not ASCII digits, a draft nested too deeply) get 400; ``--host ''`` is refused.

Exit status: 0 answers written; 1 unusable input (queries file, rewards folder, URL file,
address); 2 bad command line; 124 ``--timeout-s`` expired; 130 interrupted (Ctrl-C) or terminated
(SIGTERM, e.g. the workflow step was stopped). On every non-zero exit nothing is written to
``REWARDS.csv``, and the answers entered so far are lost.

The package, one concept a module:

- :mod:`~prefalign.oracles.human.queries`: the round's queries and their questions (read by the
  shared loader, :func:`prefalign.io.queries.read_questions`), and what kind of picture each
  becomes;
- :mod:`~prefalign.oracles.human.pictures`: the queries' PNGs;
- :mod:`~prefalign.oracles.human.wording`: how each form's page names things, its default title;
- :mod:`~prefalign.oracles.human.session`: the answers entered so far, checked, and the file
  written once all are in, whatever the form;
- :mod:`~prefalign.oracles.human.ratings`: ``rate``: the ratings and the rewards file;
- :mod:`~prefalign.oracles.human.answers`: ``binary``, ``pairwise``, ``best-of-K``: the answers
  and the answer file, validated before it is renamed into place;
- :mod:`~prefalign.oracles.human.page`: the pages, from the Jinja templates in ``templates/`` with
  the style and script of ``static/`` inlined (package data);
- :mod:`~prefalign.oracles.human.question_page`: the question page of the forms other than
  ``rate``;
- :mod:`~prefalign.oracles.human.server`: the HTTP server and its request handler;
- :mod:`~prefalign.oracles.human.address`: the page's URL, the URL file, opening a browser;
- :mod:`~prefalign.oracles.human.cli`: the command line (:func:`main`);
- :mod:`~prefalign.oracles.human.headless`: the oracle driven from a program in headless Chromium
  (the tests and ``docs/make_human_oracle_screenshot.py``).
"""

from prefalign.oracles.human.answers import BinarySession, ChoiceSession, write_answers
from prefalign.oracles.human.cli import (
    ENV_BUDGET_LEFT,
    ENV_CAMPAIGN,
    ENV_FORM,
    ENV_ROUND,
    ENV_ROUNDS,
    EXIT_INPUT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    MAX_SCALE_STEPS,
    REPLY_GRACE_S,
    build_parser,
    main,
    new_session,
)
from prefalign.oracles.human.page import (
    FIELD_PREFIX,
    PageSettings,
    render_message_page,
    render_rating_page,
    render_thanks_page,
)
from prefalign.oracles.human.pictures import (
    DISPLAY_PX,
    QueryPictures,
    image_display_size,
    image_png,
    point_png,
    square_limits,
)
from prefalign.oracles.human.queries import Queries, QueriesError, QueryKind, load_queries
from prefalign.oracles.human.question_page import render_answer_page, render_question_page
from prefalign.oracles.human.ratings import RatingError, RatingSession, write_rewards
from prefalign.oracles.human.server import CONNECTION_TIMEOUT_S, MAX_BODY_BYTES, PROG, OracleServer
from prefalign.oracles.human.server import _Handler as _Handler  # the tests patch its replies
from prefalign.oracles.human.session import AnswerError, AnswerSession
from prefalign.oracles.human.wording import default_title

__all__ = [
    "CONNECTION_TIMEOUT_S",
    "DISPLAY_PX",
    "ENV_BUDGET_LEFT",
    "ENV_CAMPAIGN",
    "ENV_FORM",
    "ENV_ROUND",
    "ENV_ROUNDS",
    "EXIT_INPUT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "FIELD_PREFIX",
    "MAX_BODY_BYTES",
    "MAX_SCALE_STEPS",
    "PROG",
    "REPLY_GRACE_S",
    "AnswerError",
    "AnswerSession",
    "BinarySession",
    "ChoiceSession",
    "OracleServer",
    "PageSettings",
    "Queries",
    "QueriesError",
    "QueryKind",
    "QueryPictures",
    "RatingError",
    "RatingSession",
    "build_parser",
    "default_title",
    "image_display_size",
    "image_png",
    "load_queries",
    "main",
    "new_session",
    "point_png",
    "render_answer_page",
    "render_message_page",
    "render_question_page",
    "render_rating_page",
    "render_thanks_page",
    "square_limits",
    "write_answers",
    "write_rewards",
]
