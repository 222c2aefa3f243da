"""The HTTP server of one round: the page, the pictures, drafts and the submission.

Every request must carry the round's secret token as the first part of its path; one without it
gets 403 and changes nothing. ``GET /TOKEN/`` is the page (the rating page, or the question page
of the round's form), ``GET /TOKEN/query/<i>.png`` the picture of item ``i``, ``POST /TOKEN/draft``
keeps answers as the person clicks (JSON ``{"ratings": {id: value}}`` for ``rate``,
``{"answers": {question: value}}`` for the other forms), ``POST /TOKEN/submit`` (the form) ends the
round once every question is answered. A connection idle for ``connection_timeout_s`` is closed;
malformed requests get 400.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from prefalign.oracles.human.page import (
    PageSettings,
    render_message_page,
    render_thanks_page,
    security_headers,
)
from prefalign.oracles.human.pictures import QueryPictures
from prefalign.oracles.human.question_page import render_answer_page
from prefalign.oracles.human.session import AnswerError, AnswerSession

__all__ = ["CONNECTION_TIMEOUT_S", "MAX_BODY_BYTES", "PROG", "OracleServer"]

#: The command's name: the start of every line it prints.
PROG = "prefalign oracle human"
#: Largest request body accepted (a submission of thousands of answers fits easily).
MAX_BODY_BYTES = 1 << 20
#: Seconds a connection may sit idle (no byte sent or taken) before the server closes it.
CONNECTION_TIMEOUT_S = 30.0


class OracleServer(ThreadingHTTPServer):
    """The HTTP server of one round; every request must carry ``token`` as its first path part."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        session: AnswerSession,
        pictures: QueryPictures,
        settings: PageSettings,
        token: str,
        connection_timeout_s: float = CONNECTION_TIMEOUT_S,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.session = session
        self.pictures = pictures
        self.settings = settings
        self.token = token
        self.connection_timeout_s = connection_timeout_s
        self.headers = security_headers(session.form)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that went away (closed tab, reset) is one line on stderr, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            print(f"{PROG}: a connection ended early: {error}", file=sys.stderr)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: OracleServer
    server_version = "prefalign-human-oracle"
    sys_version = ""

    def setup(self) -> None:
        """Give the connection a socket time-out: an idle client (no request line, a body that
        never comes, a reply never taken) cannot hold a thread for ever."""
        self.timeout = self.server.connection_timeout_s
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing: request lines hold the token, and stderr ends up in workflow logs."""

    # -- routing ---------------------------------------------------------------------------

    def _route(self) -> str | None:
        """The path after the token (``""`` for the page), or None after answering 403/301."""
        path = urlsplit(self.path).path
        first, slash, rest = path.removeprefix("/").partition("/")
        expected = self.server.token.encode("ascii")
        if not secrets.compare_digest(first.encode("latin-1", "replace"), expected):
            self._send_text(
                HTTPStatus.FORBIDDEN,
                "403 Forbidden: this URL lacks the right token. Use the exact URL the human "
                "oracle printed when it started.\n",
            )
            return None
        if not slash:
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", f"/{self.server.token}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return rest

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """Serve the page and the items' pictures."""
        rest = self._route()
        if rest is None:
            return
        session = self.server.session
        if session.outcome is not None:
            self._send_closed()
        elif rest == "":
            page = render_answer_page(session, self.server.pictures, self.server.settings)
            self._send_html(HTTPStatus.OK, page)
        elif match := re.fullmatch(r"query/(\d{1,9})\.png", rest):
            index = int(match.group(1))
            if index >= len(self.server.pictures):
                self._send_text(HTTPStatus.NOT_FOUND, f"no query number {index}\n")
                return
            self._send(HTTPStatus.OK, "image/png", self.server.pictures.png(index))
        else:
            self._send_text(HTTPStatus.NOT_FOUND, f"not found: {rest!r}\n")

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """Accept draft answers (JSON) and the final submission (a form)."""
        rest = self._route()
        if rest is None:
            return
        if rest == "draft":
            self._post_draft()
        elif rest == "submit":
            self._post_submit()
        else:
            self._send_text(HTTPStatus.NOT_FOUND, f"not found: {rest!r}\n")

    # -- endpoints -------------------------------------------------------------------------

    def _post_draft(self) -> None:
        body = self._read_body()
        if body is None:
            return
        session = self.server.session
        words = session.words
        try:
            request = json.loads(body.decode("utf-8"))
            answers = request[words.draft_key]
            if not isinstance(answers, dict):
                raise TypeError(f"'{words.draft_key}' must be an object")
        except RecursionError:
            self._send_json(
                HTTPStatus.BAD_REQUEST, {"error": "the draft is too deeply nested to be a draft"}
            )
            return
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            self._send_json(
                HTTPStatus.BAD_REQUEST,
                {"error": f"a draft must be JSON {words.draft_example}: {error}"},
            )
            return
        try:
            count = session.save_draft(answers.items())
        except AnswerError as error:
            status = HTTPStatus.GONE if session.outcome else HTTPStatus.BAD_REQUEST
            self._send_json(status, {"error": str(error)})
            return
        self._send_json(HTTPStatus.OK, {words.count_key: count, "total": len(session.keys)})

    def _post_submit(self) -> None:
        server = self.server
        session = server.session
        body = self._read_body()
        if body is None:
            return
        prefix = session.words.field_prefix
        pairs: list[tuple[str, object]] = []
        errors: list[str] = []
        try:
            fields = parse_qsl(
                body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict"
            )
        except (UnicodeDecodeError, ValueError) as error:
            fields = []
            errors.append(f"the submission is not a valid form: {error}")
        for name, value in fields:
            if name.startswith(prefix):
                pairs.append((name.removeprefix(prefix), value))
            else:
                errors.append(f"unexpected form field {name!r}")
        if session.outcome is not None:
            self._send_closed()
            return
        if not errors:
            try:
                errors = session.submit(pairs)
            except OSError as error:
                print(
                    f"{PROG}: error: cannot write {session.rewards_path}: {error}", file=sys.stderr
                )
                message = (
                    f"Could not write the {session.words.file}: {error}. Your "
                    f"{session.words.answers} are kept; fix the problem and submit again."
                )
                page = render_answer_page(session, server.pictures, server.settings, [message])
                self._send_html(HTTPStatus.INTERNAL_SERVER_ERROR, page)
                return
        if errors:
            page = render_answer_page(session, server.pictures, server.settings, errors)
            self._send_html(HTTPStatus.BAD_REQUEST, page)
            return
        # the answers are in place and session.done is set: the round ends whatever happens to
        # this reply (the main thread gives it cli.REPLY_GRACE_S to go out)
        try:
            page = render_thanks_page(
                server.settings, len(session.keys), session.rewards_path, session.words.answers
            )
            self._send_html(HTTPStatus.OK, page)
        except OSError as error:  # BrokenPipeError, ConnectionResetError, a time-out
            print(
                f"{PROG}: the {session.words.answers} were saved, but the thank-you page could "
                f"not be sent ({error})",
                file=sys.stderr,
            )
            self.close_connection = True
        finally:
            session.replied.set()

    # -- helpers ---------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._send_text(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required\n")
            return None
        # ASCII digits only: str.isdigit() also takes '²', which int() then refuses
        if not re.fullmatch(r"[0-9]{1,12}", length_header.strip(), flags=re.ASCII):
            self._send_text(
                HTTPStatus.BAD_REQUEST,
                f"Content-Length must be a whole number of bytes, got {length_header!r}\n",
            )
            return None
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._send_text(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes exceeds the limit of {MAX_BODY_BYTES}\n",
            )
            return None
        return self.rfile.read(length)

    def _send_closed(self) -> None:
        session = self.server.session
        outcome = session.outcome
        message = (
            f"The {session.words.answers} of this round were already submitted."
            if outcome == "submitted"
            else "This round timed out; nothing was saved. Ask whoever runs the workflow."
        )
        page = render_message_page(self.server.settings, "This round is closed", message)
        self._send_html(HTTPStatus.GONE, page)

    def _send(self, status: HTTPStatus, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _send_html(self, status: HTTPStatus, page: str) -> None:
        self._send(status, "text/html; charset=utf-8", page.encode("utf-8"))

    def _send_text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode("utf-8"))

    def _send_json(self, status: HTTPStatus, payload: dict[str, object]) -> None:
        self._send(status, "application/json", json.dumps(payload).encode("utf-8"))
