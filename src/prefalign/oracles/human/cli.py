"""The command line: ``prefalign oracle human [options] QUERIES.npz REWARDS.csv``.

:func:`main` checks everything that could fail before anyone starts answering (the queries, the
rewards folder, the URL file, the address), serves the page of the queries file's question form
(``rate``, ``binary``, ``pairwise`` or ``best-of-K``), prints its URL and waits for the
submission, the time-out, Ctrl-C or SIGTERM; it returns the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from prefalign.oracles.human.address import (
    is_loopback,
    open_in_browser,
    page_url,
    remove_url_file,
    write_url_file,
)
from prefalign.oracles.human.answers import BinarySession, ChoiceSession
from prefalign.oracles.human.page import PageSettings
from prefalign.oracles.human.pictures import QueryPictures
from prefalign.oracles.human.queries import Queries, QueriesError, load_queries
from prefalign.oracles.human.ratings import RatingSession
from prefalign.oracles.human.server import CONNECTION_TIMEOUT_S, PROG, OracleServer
from prefalign.oracles.human.session import AnswerSession
from prefalign.oracles.human.wording import default_title

EXIT_OK = 0
EXIT_INPUT_ERROR = 1
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

#: Longest scale offered as radio buttons (MAX - MIN).
MAX_SCALE_STEPS = 10
#: Seconds the round waits, once the rewards are written, for the thank-you page to go out.
REPLY_GRACE_S = 5.0
#: The rating scale when ``--scale`` is not given.
DEFAULT_SCALE = (1, 5)


def _timeout(text: str) -> float | None:
    if text.strip().lower() in ("none", "null", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be seconds > 0 or 'none', got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be seconds > 0 or 'none', got {text!r}")
    return value


def _host(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "must not be empty (it would listen on every interface); give 127.0.0.1, or "
            "0.0.0.0 to listen on every interface on purpose"
        )
    return text.strip()


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be 0 (any free port) to 65535, got {value}")
    return value


#: Environment variables the workflow sets for every oracle (``prefalign.loop.steps.oracle_round``);
#: they are the defaults of ``--campaign``, ``--round``, ``--rounds`` and ``--budget-left``.
ENV_CAMPAIGN = "PREFALIGN_CAMPAIGN"
ENV_ROUND = "PREFALIGN_ROUND"
ENV_ROUNDS = "PREFALIGN_ROUNDS"
ENV_BUDGET_LEFT = "PREFALIGN_BUDGET_LEFT"
#: The question form the workflow asks (``docs/feedback-forms.md``); the queries file decides.
ENV_FORM = "PREFALIGN_FORM"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of the human oracle command."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Ask a person to answer one round's queries in a web browser, in the question form "
            "the queries file names (rate, binary, pairwise, best-of-K; rate when it names "
            "none), then write REWARDS.csv: id,reward (rate), id,like (binary) or "
            "question,choice (pairwise, best-of-K). Prints the page's URL (with a secret "
            "token) to stdout, and to stderr after 'open this page to rate the queries:' "
            "('... to answer the questions:' for the other forms)."
        ),
        epilog=(
            f"Run by the workflow, the page shows the campaign, round and budget left from the "
            f"environment ({ENV_CAMPAIGN}, {ENV_ROUND}, {ENV_ROUNDS}, {ENV_BUDGET_LEFT}); the "
            "options override them. Exit status: 0 rewards written; 1 unusable queries file, "
            "rewards folder, URL file or address; 2 bad command line; 124 timed out; "
            "130 interrupted or terminated. Nothing is written unless 0."
        ),
    )
    parser.add_argument("queries", type=Path, metavar="QUERIES.npz", help="queries to ask")
    parser.add_argument(
        "rewards", type=Path, metavar="REWARDS.csv", help="rewards (answer) file to write"
    )
    parser.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help=(
            "address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 or :: for "
            "every interface)"
        ),
    )
    parser.add_argument(
        "--connection-timeout-s",
        type=_timeout,
        default=CONNECTION_TIMEOUT_S,
        metavar="SECONDS",
        help="close a connection idle for this long (default: %(default)g)",
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="port to listen on (default: 0, any free port)"
    )
    parser.add_argument(
        "--timeout-s",
        type=_timeout,
        default=None,
        metavar="SECONDS",
        help="give up after this many seconds, exit 124 and write nothing (default: none)",
    )
    parser.add_argument(
        "--round",
        type=_non_negative,
        default=None,
        metavar="R",
        help=f"round number to show (default: ${ENV_ROUND}, else none)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        default=None,
        metavar="N",
        help=f"number of rounds of the campaign, to show (default: ${ENV_ROUNDS}, else none)",
    )
    parser.add_argument(
        "--budget-left",
        type=_non_negative,
        default=None,
        metavar="B",
        help=(
            "number of queries (questions) left in the budget after this round, to show "
            f"(default: ${ENV_BUDGET_LEFT}, else none)"
        ),
    )
    parser.add_argument(
        "--campaign",
        default=None,
        metavar="NAME",
        help=f"campaign name to show (default: ${ENV_CAMPAIGN}, else none)",
    )
    parser.add_argument(
        "--title",
        default=None,
        help=(
            "page heading, the question asked (default per form: 'Rate these samples', "
            "'Do you like these samples?', 'Which of the two do you prefer?', 'Pick your "
            "favourite in each group of K')"
        ),
    )
    parser.add_argument(
        "--scale",
        type=int,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help=(
            "whole-number rating scale of rate questions, MIN = worst, MAX = best, one radio "
            f"button per value, at most {MAX_SCALE_STEPS + 1} values (default: 1 5; the other "
            "forms ignore it)"
        ),
    )
    parser.add_argument(
        "--url-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=(
            "also write the URL to this file once the server is ready (its folder is created); "
            "the file is removed again when the round ends"
        ),
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="also open the page in this machine's default web browser (default: off)",
    )
    return parser


def _environment_defaults(args: argparse.Namespace) -> list[str]:
    """Fill unset ``--campaign/--round/--rounds/--budget-left`` from the workflow's environment.

    A malformed variable is ignored with a warning (it only changes what the page shows).
    Returns the warnings.
    """
    warnings: list[str] = []
    for attribute, variable, parse in (
        ("round", ENV_ROUND, _non_negative),
        ("rounds", ENV_ROUNDS, _positive),
        ("budget_left", ENV_BUDGET_LEFT, _non_negative),
    ):
        text = os.environ.get(variable, "").strip()
        if getattr(args, attribute) is not None or not text:
            continue
        try:
            setattr(args, attribute, parse(text))
        except argparse.ArgumentTypeError as error:
            warnings.append(f"ignoring {variable}={text!r}: {error}")
    if args.campaign is None:
        args.campaign = os.environ.get(ENV_CAMPAIGN, "").strip() or None
    return warnings


class _Terminated(Exception):
    """SIGTERM arrived (the workflow step was stopped)."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` while serving, so the round ends cleanly
    (server closed, URL file removed, nothing written). Only possible on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def new_session(queries: Queries, scale: tuple[int, int], rewards_path: Path) -> AnswerSession:
    """The answers of a round asking ``queries`` in their form, to be written to ``rewards_path``."""
    form = queries.form
    if form.name == "rate":
        return RatingSession(queries.ids, scale, rewards_path)
    if form.name == "binary":
        return BinarySession(form, queries.ids, rewards_path)
    return ChoiceSession(form, queries.groups(), rewards_path)


def _form_warnings(args: argparse.Namespace, queries: Queries) -> list[str]:
    """Warnings about options and the environment that do not fit the queries file's form."""
    warnings = []
    named = os.environ.get(ENV_FORM, "").strip()
    if named and named != queries.form.name:
        warnings.append(
            f"{ENV_FORM}={named!r} but {args.queries} asks {queries.form.name} questions; the "
            "page asks what the queries file says"
        )
    if args.scale is not None and queries.form.name != "rate":
        warnings.append(f"--scale is for rate questions; ignored for {queries.form.name}")
    return warnings


def main(argv: list[str] | None = None) -> int:
    """Run the human oracle; returns the exit status (see :mod:`prefalign.oracles.human`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    low, high = DEFAULT_SCALE if args.scale is None else args.scale
    if not 1 <= high - low <= MAX_SCALE_STEPS:
        parser.error(
            f"--scale MIN MAX needs MIN < MAX with at most {MAX_SCALE_STEPS + 1} values, "
            f"got {low} {high}"
        )
    for warning in _environment_defaults(args):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)

    def fail(message: str) -> int:
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_INPUT_ERROR

    # 1. Check everything that could fail before anyone starts rating.
    try:
        queries = load_queries(args.queries)
    except QueriesError as error:
        return fail(str(error))
    for warning in _form_warnings(args, queries):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if args.title is None:
        args.title = default_title(queries.form)
    rewards_path: Path = args.rewards
    if not rewards_path.parent.is_dir():
        return fail(f"the folder of the rewards file {rewards_path} does not exist")
    if rewards_path.is_dir():
        return fail(f"the rewards file {rewards_path} is a folder")
    url_file: Path | None = args.url_file
    if url_file is not None:
        if url_file.is_dir():
            return fail(f"--url-file {url_file} is a folder")
        try:
            url_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return fail(f"cannot create the folder of --url-file {url_file}: {error}")

    # 2. Listen.
    session = new_session(queries, (low, high), rewards_path)
    words = session.words
    asked = len(session.keys)
    # the page's settings are the options of the same names
    settings = PageSettings(
        **{field.name: getattr(args, field.name) for field in fields(PageSettings)}
    )
    token = secrets.token_urlsafe(24)
    try:
        server = OracleServer(
            (args.host, args.port),
            session,
            QueryPictures(queries),
            settings,
            token,
            connection_timeout_s=args.connection_timeout_s or CONNECTION_TIMEOUT_S,
        )
    except OSError as error:
        return fail(f"cannot listen on {args.host}:{args.port}: {error}")
    if not is_loopback(args.host):
        print(
            f"{PROG}: warning: listening on {args.host}, reachable from other machines; only the "
            "token in the URL protects the page",
            file=sys.stderr,
        )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()

    # 3. Tell the person where to go, then wait for the submission or the time-out.
    url = page_url(args.host, server.server_address[1], token)
    what = f"round {args.round}" if args.round is not None else "this round"
    if args.campaign:
        what += f" of {args.campaign}"
    try:
        with _sigterm_raises():
            print(url, flush=True)
            if url_file is not None:
                try:
                    write_url_file(url_file, url + "\n")
                except OSError as error:
                    return fail(f"cannot write --url-file {url_file}: {error}")
            if queries.form.name == "rate":
                waiting = f"{asked} queries of {what} wait for a person; open this page to rate"
            else:
                waiting = (
                    f"{asked} {queries.form.name} questions ({len(queries)} pictures) of {what} "
                    "wait for a person; open this page to answer"
                )
            print(
                f"{PROG}: {waiting} the {words.items}: {url}",
                file=sys.stderr,
                flush=True,
            )
            if url_file is not None:
                print(f"{PROG}: the URL is also in {url_file}", file=sys.stderr, flush=True)
            if args.open:
                open_in_browser(url)
            finished = session.done.wait(args.timeout_s)
            if not finished and session.close_on_timeout():
                count = len(session.snapshot())
                print(
                    f"{PROG}: error: timed out after {args.timeout_s:g} s waiting for "
                    f"{words.answers} ({count} of {asked} {words.items} {words.answered}); "
                    "nothing was written to "
                    f"{rewards_path}",
                    file=sys.stderr,
                )
                return EXIT_TIMEOUT
            # The rewards are in place (or a submission won the race against the time-out): give
            # the thank-you page a moment to go out, but never wait on a client that went away.
            session.done.wait(REPLY_GRACE_S)
            session.replied.wait(REPLY_GRACE_S)
    except (KeyboardInterrupt, _Terminated) as error:
        if session.close_on_timeout():
            how = "interrupted" if isinstance(error, KeyboardInterrupt) else "terminated"
            print(
                f"{PROG}: {how}; nothing was written to {rewards_path}; the {words.answers} "
                "entered "
                "in this round are lost",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    finally:
        server.shutdown()
        server.server_close()
        if url_file is not None:
            remove_url_file(url_file, url)
    print(f"{PROG}: wrote {asked} {words.answers} to {rewards_path}", file=sys.stderr)
    return EXIT_OK
