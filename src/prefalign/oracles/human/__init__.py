"""A person as the oracle: rate a round's queries in a web browser.

Run as an oracle command (the workflow appends the two paths)::

    prefalign oracle human [--host 127.0.0.1] [--port 0] [--timeout-s NONE] [--title T]
        [--scale MIN MAX] [--url-file PATH] [--open] [--campaign NAME] [--round R]
        [--rounds N] [--budget-left B] QUERIES.npz REWARDS.csv

(``python -m prefalign.oracles.human`` is the same command.) ``--campaign``, ``--round``,
``--rounds`` and ``--budget-left`` default to ``PREFALIGN_CAMPAIGN``, ``PREFALIGN_ROUND``,
``PREFALIGN_ROUNDS`` and ``PREFALIGN_BUDGET_LEFT``, which the workflow sets for every oracle.
``docs/human-oracle.md`` describes a whole campaign with a person as the oracle.

What it does, in order:

1. Reads and checks the queries (``id``: unique strings; ``x``: finite floats of shape (k, 2) for
   2-D points, (k, H, W) or (k, C, H, W) with C in {1, 3} for images in [-1, 1]).
2. Serves one page on ``--host`` (loopback by default) and ``--port`` (0 picks a free one), and
   prints its URL to stdout and, after ``open this page to rate the queries:``, to stderr (in the
   workflow both end up in the round's ``query.log``); with ``--url-file`` also to that file
   (its folder is created; the file is removed when the round ends), with ``--open`` it opens
   the page in the default browser. The URL holds a random token
   (:func:`secrets.token_urlsafe`), new for every round; every request (page, pictures, drafts,
   submission) without that token gets 403 and changes nothing.
3. The page shows every query as a picture: an image scaled up with crisp pixels, or a 2-D point
   drawn as a small plot with that point highlighted among all the round's queries. Each query has
   one group of radio buttons, one per whole number of ``--scale MIN MAX`` (default 1 to 5,
   MIN = worst, MAX = best). The page also shows the campaign, the round, the budget left and how
   many queries are rated so far.
4. Each click is saved as a draft on the server (per query id, in memory), so closing the page and
   reopening the same URL shows the ratings entered so far. The page works without JavaScript as
   well: then ratings are kept when a submission is refused.
5. A submission that leaves a query unrated, or is malformed (unknown id, a value that is not a
   whole number of the scale), is refused with a message on the page; nothing is written.
6. Once every query is rated and submitted, ``REWARDS.csv`` is written atomically (temporary file,
   then :func:`os.replace`), the page says thank you, the server stops and the command exits 0.
   The submission is durable the moment the file is renamed into place: the round then ends
   whatever happens to the reply (a tab closed right after Submit, a double click, a reset).
7. Hardening: the URL file is 0600 (it holds the token); a connection idle for
   ``--connection-timeout-s`` (default 30 s) is closed; malformed requests (a ``Content-Length``
   that is not ASCII digits, a draft nested too deeply) get 400; ``--host ''`` is refused.

Exit status: 0 rewards written; 1 unusable input (queries file, rewards folder, URL file,
address); 2 bad command line; 124 ``--timeout-s`` expired; 130 interrupted (Ctrl-C) or terminated
(SIGTERM, e.g. the workflow step was stopped). On every non-zero exit nothing is written to
``REWARDS.csv``, and the ratings entered so far are lost.

The package, one concept a module:

- :mod:`~prefalign.oracles.human.queries`: the round's queries (read by the shared loader,
  :func:`prefalign.io.queries.read_queries`), and what kind of picture each becomes;
- :mod:`~prefalign.oracles.human.pictures`: the queries' PNGs;
- :mod:`~prefalign.oracles.human.ratings`: the ratings entered so far, checked, and the rewards
  file written once all are in;
- :mod:`~prefalign.oracles.human.page`: the pages, from the Jinja templates in ``templates/`` with
  the style and script of ``static/`` inlined (package data);
- :mod:`~prefalign.oracles.human.server`: the HTTP server and its request handler;
- :mod:`~prefalign.oracles.human.address`: the page's URL, the URL file, opening a browser;
- :mod:`~prefalign.oracles.human.cli`: the command line (:func:`main`);
- :mod:`~prefalign.oracles.human.headless`: the oracle driven from a program in headless Chromium
  (the tests and ``docs/make_human_oracle_screenshot.py``).
"""

from prefalign.oracles.human.cli import (
    ENV_BUDGET_LEFT,
    ENV_CAMPAIGN,
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
from prefalign.oracles.human.ratings import RatingError, RatingSession, write_rewards
from prefalign.oracles.human.server import CONNECTION_TIMEOUT_S, MAX_BODY_BYTES, PROG, OracleServer
from prefalign.oracles.human.server import _Handler as _Handler  # the tests patch its replies

__all__ = [
    "CONNECTION_TIMEOUT_S",
    "DISPLAY_PX",
    "ENV_BUDGET_LEFT",
    "ENV_CAMPAIGN",
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
    "OracleServer",
    "PageSettings",
    "Queries",
    "QueriesError",
    "QueryKind",
    "QueryPictures",
    "RatingError",
    "RatingSession",
    "build_parser",
    "image_display_size",
    "image_png",
    "load_queries",
    "main",
    "point_png",
    "render_message_page",
    "render_rating_page",
    "render_thanks_page",
    "square_limits",
    "write_rewards",
]
