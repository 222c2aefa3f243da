"""The human oracle: unit checks, HTTP checks with urllib, and rounds driven in headless Chromium.

The browser tests need the ``browser`` extra (the Python ``playwright`` package) and Debian's
Chromium (``apt-get install chromium``; another binary via ``PREFALIGN_CHROMIUM``). They are
skipped, with the reason, only when one of the two is missing.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from prefalign.oracles import human
from prefalign.oracles.human.headless import CHROMIUM_ARGS as CHROMIUM_ARGS  # re-export
from prefalign.oracles.human.headless import (
    browser_missing,
    chromium_path,
    launch_chromium,
    oracle_command,
    wait_for_url,
)

SRC = Path(__file__).resolve().parents[1] / "src"
CHROMIUM = chromium_path()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def write_queries(path: Path, ids: list[str], x: np.ndarray) -> Path:
    """Save queries the way the select step does: arrays ``id`` (unicode) and ``x`` (float32)."""
    np.savez(path, id=np.array(ids), x=x.astype(np.float32))
    return path


def point_queries(path: Path, k: int = 3) -> tuple[Path, list[str]]:
    """k 2-D point queries with ids ``p0``..."""
    ids = [f"p{i}" for i in range(k)]
    x = np.random.default_rng(0).normal(size=(k, 2))
    return write_queries(path, ids, x), ids


def read_rewards(path: Path) -> dict[str, float]:
    """REWARDS.csv as {id: reward}, checking the header and that ids are unique."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "reward"]
    rewards = {query_id: float(value) for query_id, value in rows[1:]}
    assert len(rewards) == len(rows) - 1, "duplicate ids in REWARDS.csv"
    return rewards


@dataclass
class Oracle:
    """A human oracle running as a subprocess, and where it writes."""

    process: subprocess.Popen[bytes]
    url: str
    rewards: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def base(self) -> str:
        """``http://host:port`` without the token."""
        return self.url.split("/", 3)[0] + "//" + self.url.split("/", 3)[2]

    def wait(self, timeout_s: float = 30) -> int:
        """Wait for the process to exit; returns its status."""
        return self.process.wait(timeout=timeout_s)

    def stderr(self) -> str:
        """What the oracle wrote to stderr so far."""
        return self.stderr_path.read_text()


@pytest.fixture
def start_oracle(tmp_path: Path) -> Iterator[Callable[..., Oracle]]:
    """Start ``python -m prefalign.oracles.human`` on port 0; kills leftovers at teardown."""
    started: list[Oracle] = []

    def start(queries: Path, *options: str, name: str = "rewards.csv") -> Oracle:
        rewards = tmp_path / name
        url_file = tmp_path / f"{name}.url"
        stdout_path, stderr_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
        command = oracle_command(queries, rewards, url_file, "--port", "0", *options)
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        try:
            url = wait_for_url(url_file, process, timeout_s=60)
        except (RuntimeError, TimeoutError) as error:
            process.kill()
            raise AssertionError(f"{error}: {stderr_path.read_text()}") from error
        oracle = Oracle(process, url, rewards, stdout_path, stderr_path)
        started.append(oracle)
        return oracle

    yield start
    for oracle in started:
        if oracle.process.poll() is None:
            oracle.process.kill()
            oracle.process.wait(timeout=30)


def request(
    url: str, data: bytes | None = None, content_type: str | None = None
) -> tuple[int, bytes]:
    """(status, body) of a GET (or POST when ``data`` is given), without raising on 4xx/5xx."""
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post_form(url: str, fields: dict[str, str]) -> tuple[int, bytes]:
    """POST ``rating:<id>=value`` style fields as a urlencoded form."""
    from urllib.parse import urlencode

    return request(url, urlencode(fields).encode(), "application/x-www-form-urlencoded")


# --------------------------------------------------------------------------------------------
# Without a browser
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"id": np.array(["a", "b"])}, "lacks array(s) 'x'"),
        ({"id": np.array(["a", "a"]), "x": np.zeros((2, 2))}, "duplicate ids ['a']"),
        ({"id": np.array(["a", "b"]), "x": np.zeros((3, 2))}, "one row per id (2)"),
        ({"id": np.array(["a"]), "x": np.full((1, 2), np.nan)}, "non-finite"),
        ({"id": np.array(["a"]), "x": np.zeros((1, 3))}, "cannot show queries of shape (1, 3)"),
        ({"id": np.array(["a"]), "x": np.zeros((1, 2, 4, 4))}, "cannot show queries of shape"),
        ({"id": np.array([1, 2]), "x": np.zeros((2, 2))}, "1-D unicode string array"),
    ],
)
def test_load_queries_rejects_what_it_cannot_show(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    path = tmp_path / "queries.npz"
    np.savez(path, **arrays)
    with pytest.raises(human.QueriesError) as raised:
        human.load_queries(path)
    assert message in str(raised.value)


def test_load_queries_kinds(tmp_path: Path) -> None:
    ids = ["a", "b"]
    points = human.load_queries(write_queries(tmp_path / "p.npz", ids, np.zeros((2, 2))))
    grey = human.load_queries(write_queries(tmp_path / "g.npz", ids, np.zeros((2, 8, 8))))
    rgb = human.load_queries(write_queries(tmp_path / "c.npz", ids, np.zeros((2, 3, 8, 8))))
    assert (points.kind, grey.kind, rgb.kind) == ("points2d", "image", "image")
    assert points.ids == ("a", "b") and points.x.dtype == np.float32


def test_image_png_scales_up_with_crisp_pixels() -> None:
    image = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    picture = Image.open(io.BytesIO(human.image_png(image)))
    assert picture.size == (192, 192) == human.image_display_size(image.shape)
    pixels = np.asarray(picture)
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255
    assert np.all(pixels[:24, :24] == pixels[0, 0]), "each source pixel is one flat 24x24 block"
    colour = Image.open(io.BytesIO(human.image_png(np.zeros((3, 5, 7), np.float32))))
    assert colour.mode == "RGB" and colour.size == (7 * 27, 5 * 27)


def test_point_png_is_a_png_of_the_display_size() -> None:
    points = np.array([[0.0, 0.0], [1.0, 2.0], [-1.0, 0.5]], np.float32)
    picture = Image.open(io.BytesIO(human.point_png(points, 1, human.square_limits(points))))
    assert picture.format == "PNG" and picture.size == (human.DISPLAY_PX, human.DISPLAY_PX)


def test_write_rewards_is_in_query_order_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "rewards.csv"
    human.write_rewards(path, ["b", "a,1"], {"a,1": 2, "b": 5})
    assert path.read_text() == 'id,reward\nb,5.0\n"a,1",2.0\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rewards.csv"]


def test_session_refuses_incomplete_and_malformed_submissions(tmp_path: Path) -> None:
    session = human.RatingSession(["a", "b"], (1, 5), tmp_path / "rewards.csv")
    assert "outside the scale 1 to 5" in session.submit([("a", "6"), ("b", "1")])[0]
    assert "not a whole number" in session.submit([("a", "2.5"), ("b", "1")])[0]
    assert "unknown query id 'c'" in session.submit([("c", "1")])[0]
    assert "rated twice" in session.submit([("a", "1"), ("a", "2"), ("b", "1")])[0]
    assert session.snapshot() == {}, "a malformed submission keeps nothing"
    assert session.submit([("a", "4")]) == [
        "1 of 2 queries is not rated yet. Rate every query, then submit again."
    ]
    assert session.snapshot() == {"a": 4}, "an incomplete one is kept as a draft"
    assert not (tmp_path / "rewards.csv").exists()
    assert session.submit([("b", "1")]) == []
    assert read_rewards(tmp_path / "rewards.csv") == {"a": 4.0, "b": 1.0}
    assert not session.close_on_timeout(), "a submitted round cannot time out"


def test_cli_rejects_unusable_input_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_queries(tmp_path / "bad.npz", ["a"], np.zeros((1, 5)))
    assert human.main([str(bad), str(tmp_path / "rewards.csv")]) == human.EXIT_INPUT_ERROR
    assert "cannot show queries of shape (1, 5)" in capsys.readouterr().err
    good, _ = point_queries(tmp_path / "good.npz")
    assert human.main([str(good), str(tmp_path / "missing" / "r.csv")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        human.main(["--scale", "5", "1", str(good), str(tmp_path / "r.csv")])
    assert exited.value.code == 2
    assert "--scale MIN MAX needs MIN < MAX" in capsys.readouterr().err


def test_wrong_or_missing_token_gets_403_and_writes_nothing(
    tmp_path: Path, start_oracle: Callable[..., Oracle]
) -> None:
    queries, ids = point_queries(tmp_path / "queries.npz")
    oracle = start_oracle(queries)
    assert oracle.stdout_path.read_text().splitlines()[0] == oracle.url, "URL printed to stdout"
    token = oracle.url.rstrip("/").rsplit("/", 1)[1]
    wrong = f"{oracle.base}/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}/"
    complete = {f"rating:{query_id}": "3" for query_id in ids}
    draft = json.dumps({"ratings": {ids[0]: "3"}}).encode()
    for url in [wrong, f"{oracle.base}/", f"{oracle.base}/favicon.ico", f"{wrong}query/0.png"]:
        assert request(url)[0] == 403, url
    assert post_form(f"{wrong}submit", complete)[0] == 403
    assert post_form(f"{oracle.base}/submit", complete)[0] == 403
    assert request(f"{wrong}draft", draft, "application/json")[0] == 403
    status, body = request(oracle.url)  # the right token still works, and nothing was kept
    assert status == 200 and b'id="rated-count">0<' in body
    assert request(f"{oracle.url}query/0.png")[0] == 200
    assert oracle.process.poll() is None
    assert not oracle.rewards.exists()


def test_malformed_submissions_are_refused_over_http(
    tmp_path: Path, start_oracle: Callable[..., Oracle]
) -> None:
    queries, ids = point_queries(tmp_path / "queries.npz")
    oracle = start_oracle(queries)
    good = {f"rating:{query_id}": "3" for query_id in ids}
    cases = [
        ({**good, f"rating:{ids[0]}": "6"}, "outside the scale 1 to 5"),
        ({**good, f"rating:{ids[0]}": "abc"}, "not a whole number"),
        ({**good, "rating:nope": "3"}, "unknown query id"),
        ({**good, "comment": "hi"}, "unexpected form field"),
        ({}, "3 of 3 queries are not rated yet"),
    ]
    for fields, message in cases:
        status, body = post_form(f"{oracle.url}submit", fields)
        assert status == 400 and message in body.decode(), message
    status, body = request(
        f"{oracle.url}draft", json.dumps({"ratings": {ids[0]: 0}}).encode(), "application/json"
    )
    assert status == 400 and "outside the scale" in json.loads(body)["error"]
    assert request(f"{oracle.url}draft", b"not json", "application/json")[0] == 400
    assert oracle.process.poll() is None and not oracle.rewards.exists()
    status, _ = post_form(f"{oracle.url}submit", good)
    assert status == 200 and oracle.wait() == 0
    assert read_rewards(oracle.rewards) == dict.fromkeys(ids, 3.0)


def test_timeout_exits_non_zero_and_writes_nothing(
    tmp_path: Path, start_oracle: Callable[..., Oracle]
) -> None:
    queries, ids = point_queries(tmp_path / "queries.npz")
    oracle = start_oracle(queries, "--timeout-s", "2")
    status, _ = request(
        f"{oracle.url}draft", json.dumps({"ratings": {ids[0]: "4"}}).encode(), "application/json"
    )
    assert status == 200
    assert oracle.wait(timeout_s=60) == human.EXIT_TIMEOUT
    assert "timed out after 2 s" in oracle.stderr()
    assert "1 of 3 queries rated" in oracle.stderr()
    assert not oracle.rewards.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rewards.csv")]


# --------------------------------------------------------------------------------------------
# In a real browser
# --------------------------------------------------------------------------------------------


def _browser_missing() -> str | None:
    return browser_missing(CHROMIUM)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the module (playwright never downloads a browser)."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright, CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """Open pages in fresh browser contexts (no shared cache, cookies or form state)."""
    contexts = []

    def open_page() -> Any:
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def radio(page: Any, index: int, value: int) -> Any:
    """The radio button of ``value`` in the fieldset of query ``index`` (0-based)."""
    return page.locator(f"#q{index}").get_by_label(str(value), exact=True)


def test_browser_full_round_rated_by_clicks(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    from playwright.sync_api import expect

    queries, ids = point_queries(tmp_path / "queries.npz", k=4)
    oracle = start_oracle(queries, "--round", "2", "--budget-left", "12", "--title", "Pick")
    page = new_page()
    page.goto(oracle.url)
    expect(page.get_by_role("heading", name="Pick")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("Round 2")
    expect(page.locator(".facts")).to_contain_text("Budget left 12 queries")
    expect(page.locator("#progress")).to_have_text("Rated 0 of 4")
    clicked = {ids[0]: 5, ids[1]: 1, ids[2]: 3, ids[3]: 4}
    for index, query_id in enumerate(ids):
        radio(page, index, clicked[query_id]).click()
    expect(page.locator("#progress")).to_have_text("Rated 4 of 4")
    radio(page, 1, 2).click()  # change of mind: the last click counts
    clicked[ids[1]] = 2
    page.get_by_role("button", name="Submit ratings").click()
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    assert oracle.wait() == 0
    assert read_rewards(oracle.rewards) == {key: float(value) for key, value in clicked.items()}
    assert list(read_rewards(oracle.rewards)) == ids, "rows in query order"


def test_browser_keyboard_only_round(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    from playwright.sync_api import expect

    queries, ids = point_queries(tmp_path / "queries.npz", k=2)
    oracle = start_oracle(queries)
    page = new_page()
    page.goto(oracle.url)
    keyboard = page.keyboard
    keyboard.press("Tab")  # first query's radio group
    keyboard.press("ArrowRight")  # 2
    keyboard.press("ArrowRight")  # 3
    keyboard.press("Tab")  # second query's radio group
    for _ in range(4):  # 2, 3, 4, 5
        keyboard.press("ArrowRight")
    expect(page.locator("#progress")).to_have_text("Rated 2 of 2")
    keyboard.press("Tab")  # the submit button
    expect(page.get_by_role("button", name="Submit ratings")).to_be_focused()
    keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    assert oracle.wait() == 0
    assert read_rewards(oracle.rewards) == {ids[0]: 3.0, ids[1]: 5.0}


def test_browser_incomplete_submission_is_refused_then_completed(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    from playwright.sync_api import expect

    queries, ids = point_queries(tmp_path / "queries.npz", k=3)
    oracle = start_oracle(queries)
    page = new_page()
    page.goto(oracle.url)
    radio(page, 0, 4).click()
    radio(page, 1, 2).click()
    page.get_by_role("button", name="Submit ratings").click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("1 of 3 queries is not rated yet")
    expect(alert.get_by_role("link", name="Query 3")).to_be_visible()
    expect(page.locator("#q2")).to_have_class("query missing")
    expect(radio(page, 0, 4)).to_be_checked()  # the entered ratings are still there
    expect(radio(page, 1, 2)).to_be_checked()
    assert oracle.process.poll() is None
    assert not oracle.rewards.exists()
    radio(page, 2, 1).click()
    page.get_by_role("button", name="Submit ratings").click()
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    assert oracle.wait() == 0
    assert read_rewards(oracle.rewards) == {ids[0]: 4.0, ids[1]: 2.0, ids[2]: 1.0}


def test_browser_reopening_the_page_resumes(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    from playwright.sync_api import expect

    queries, ids = point_queries(tmp_path / "queries.npz", k=3)
    oracle = start_oracle(queries, "--scale", "0", "10")
    page = new_page()
    page.goto(oracle.url)
    for index, value in [(0, 7), (2, 0)]:
        with page.expect_response(lambda response: response.url.endswith("/draft")) as draft:
            radio(page, index, value).click()
        assert draft.value.ok
    page.context.close()  # the person closes the tab

    page = new_page()
    page.goto(oracle.url)
    expect(radio(page, 0, 7)).to_be_checked()
    expect(radio(page, 2, 0)).to_be_checked()
    expect(page.locator("#q1 input:checked")).to_have_count(0)
    expect(page.locator("#progress")).to_have_text("Rated 2 of 3")
    assert not oracle.rewards.exists()
    radio(page, 1, 10).click()
    page.get_by_role("button", name="Submit ratings").click()
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    assert oracle.wait() == 0
    assert read_rewards(oracle.rewards) == {ids[0]: 7.0, ids[1]: 10.0, ids[2]: 0.0}


@pytest.mark.parametrize(
    ("shape", "natural_size"),
    [((5, 2), (192, 192)), ((4, 1, 8, 8), (192, 192)), ((3, 8, 8), (192, 192))],
    ids=["points2d", "images-1x8x8", "images-8x8"],
)
def test_browser_queries_render_as_pictures(
    tmp_path: Path,
    start_oracle: Callable[..., Oracle],
    new_page: Callable[[], Any],
    shape: tuple[int, ...],
    natural_size: tuple[int, int],
) -> None:
    from playwright.sync_api import expect

    k = shape[0]
    x = np.random.default_rng(1).uniform(-1, 1, size=shape)
    queries = write_queries(tmp_path / "queries.npz", [f"q{i}" for i in range(k)], x)
    oracle = start_oracle(queries)
    page = new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(oracle.url)
    pictures = page.locator("img.picture")
    expect(pictures).to_have_count(k)
    page.wait_for_function("Array.from(document.images).every((image) => image.complete)")
    sizes = pictures.evaluate_all(
        "(images) => images.map((i) => [i.naturalWidth, i.naturalHeight])"
    )
    assert sizes == [list(natural_size)] * k
    for index in range(k):
        assert pictures.nth(index).get_attribute("alt").startswith(f"Query {index + 1}:")
    assert console_errors == [], "no CSP violations or failed loads"


# --------------------------------------------------------------------------------------------
# Hardening (issue 13): a submission is durable whatever happens to the reply; small parsing
# crashes are 400s or named errors; idle connections time out; files with the token are 0600
# --------------------------------------------------------------------------------------------


def _run_main_in_thread(argv: list[str]) -> tuple[threading.Thread, dict[str, int]]:
    result: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: result.update(code=human.main(argv)), daemon=True, name="human-main"
    )
    thread.start()
    return thread, result


def _wait_for_file(path: Path, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)
    return path.read_text().strip()


def test_submission_is_durable_when_the_thank_you_page_cannot_be_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops (tab closed, double-click, proxy reset) while the thank-you page is
    sent: the rewards were renamed into place, so the round ends with exit 0 anyway (it used to
    wait for ever, or until the time-out threw the ratings away)."""
    queries, ids = point_queries(tmp_path / "queries.npz")
    original = human._Handler._send

    def dropped(self: Any, status: Any, content_type: str, payload: bytes) -> None:
        if b"<h1>Thank you</h1>" in payload:
            raise ConnectionResetError(104, "Connection reset by peer")
        original(self, status, content_type, payload)

    monkeypatch.setattr(human._Handler, "_send", dropped)
    url_file, rewards = tmp_path / "url.txt", tmp_path / "rewards.csv"
    argv = ["--port", "0", "--timeout-s", "20", "--url-file", str(url_file)]
    thread, result = _run_main_in_thread([*argv, str(queries), str(rewards)])
    url = _wait_for_file(url_file)
    with contextlib.suppress(OSError, http.client.HTTPException):
        post_form(f"{url}submit", {f"rating:{i}": "4" for i in ids})
    thread.join(timeout=10)
    assert not thread.is_alive(), "the oracle kept serving after the rewards were written"
    assert result["code"] == human.EXIT_OK
    assert read_rewards(rewards) == dict.fromkeys(ids, 4.0)


def test_submission_then_connection_reset_ends_the_round(
    tmp_path: Path, start_oracle: Callable[..., Oracle]
) -> None:
    """A real client that sends a full, valid submission and resets the connection at once."""
    from urllib.parse import urlencode, urlsplit

    queries, ids = point_queries(tmp_path / "queries.npz")
    oracle = start_oracle(queries)
    parts = urlsplit(oracle.url)
    body = urlencode({f"rating:{i}": "2" for i in ids}).encode()
    head = (
        f"POST {parts.path}submit HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(head + body)
    assert oracle.wait(timeout_s=30) == human.EXIT_OK, oracle.stderr()
    assert read_rewards(oracle.rewards) == dict.fromkeys(ids, 2.0)
    assert "Traceback" not in oracle.stderr()


def _raw_request(url: str, head_lines: list[bytes], body: bytes = b"") -> bytes:
    """Send one hand-made request to the oracle; returns everything it answered."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(head_lines) + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_non_ascii_digit_content_length_is_a_400(
    tmp_path: Path, start_oracle: Callable[..., Oracle]
) -> None:
    """``Content-Length: ²`` passed ``str.isdigit()`` and crashed ``int()`` (no answer)."""
    from urllib.parse import urlsplit

    queries, _ = point_queries(tmp_path / "queries.npz")
    oracle = start_oracle(queries)
    path = urlsplit(oracle.url).path.encode()
    for value in ("\N{SUPERSCRIPT TWO}".encode("latin-1"), b"-1", b"1e3", b"12 34"):
        reply = _raw_request(
            oracle.url,
            [b"POST " + path + b"draft HTTP/1.1", b"Host: x", b"Content-Length: " + value],
        )
        assert reply.startswith(b"HTTP/1.0 400"), (value, reply[:200])
    assert oracle.process.poll() is None
    assert "Traceback" not in oracle.stderr()


def test_deeply_nested_json_draft_is_a_400(
    tmp_path: Path, start_oracle: Callable[..., Oracle]
) -> None:
    """A draft nested 200,000 deep raised an uncaught RecursionError (no answer)."""
    queries, _ = point_queries(tmp_path / "queries.npz")
    oracle = start_oracle(queries)
    depth = 200_000
    body = b'{"ratings": ' + b"[" * depth + b"]" * depth + b"}"
    status, reply = request(f"{oracle.url}draft", body, "application/json")
    assert status == 400, reply[:200]
    assert "too deeply nested" in json.loads(reply)["error"]
    assert oracle.process.poll() is None
    assert "Traceback" not in oracle.stderr()


def test_idle_connections_time_out(tmp_path: Path, start_oracle: Callable[..., Oracle]) -> None:
    """Idle sockets were held for ever, one thread each (201 idle sockets -> 204 threads)."""
    from urllib.parse import urlsplit

    assert 0 < human.CONNECTION_TIMEOUT_S <= 120
    queries, _ = point_queries(tmp_path / "queries.npz")
    oracle = start_oracle(queries, "--connection-timeout-s", "1")
    parts = urlsplit(oracle.url)
    sockets = [socket.create_connection((parts.hostname, parts.port)) for _ in range(30)]
    try:
        time.sleep(0.5)
        for sock in sockets:
            sock.settimeout(10)
            assert sock.recv(1024) == b"", "the server closed the idle connection"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = Path(f"/proc/{oracle.process.pid}/status").read_text()
            threads = int(status.split("Threads:")[1].split()[0])
            if threads <= 4:
                break
            time.sleep(0.1)
        assert threads <= 4, f"{threads} threads left after the idle connections timed out"
    finally:
        for sock in sockets:
            sock.close()
    assert request(oracle.url)[0] == 200  # still serving


def test_empty_host_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--host ''`` bound every interface and printed ``http://:PORT/...``."""
    queries, _ = point_queries(tmp_path / "queries.npz")
    with pytest.raises(SystemExit) as exit_info:
        human.main(["--host", "", "--timeout-s", "1", str(queries), str(tmp_path / "r.csv")])
    assert exit_info.value.code == 2
    assert "--host" in capsys.readouterr().err


def test_truncated_queries_file_is_a_named_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated queries ``.npz`` given by hand printed a BadZipFile traceback."""
    queries, _ = point_queries(tmp_path / "queries.npz")
    queries.write_bytes(queries.read_bytes()[:200])
    code = human.main(["--timeout-s", "1", str(queries), str(tmp_path / "rewards.csv")])
    assert code == human.EXIT_INPUT_ERROR
    assert "cannot read queries file" in capsys.readouterr().err


def test_url_file_holding_the_token_is_private(
    tmp_path: Path, start_oracle: Callable[..., Oracle]
) -> None:
    """The URL file (it holds the page's token) was 0644, readable by every local user."""
    queries, _ = point_queries(tmp_path / "queries.npz")
    oracle = start_oracle(queries)
    url_file = tmp_path / "rewards.csv.url"
    assert url_file.stat().st_mode & 0o777 == 0o600
    assert oracle.url in url_file.read_text()


def test_browser_closed_right_after_submit(
    tmp_path: Path, start_oracle: Callable[..., Oracle], browser: Any
) -> None:
    """The person clicks Submit and closes the browser at once: the ratings are kept and the
    round ends."""
    queries, ids = point_queries(tmp_path / "queries.npz", k=3)
    oracle = start_oracle(queries)
    context = browser.new_context()
    page = context.new_page()
    page.goto(oracle.url)
    for index in range(len(ids)):
        radio(page, index, 5).click()
    submitted = lambda r: r.method == "POST" and r.url.endswith("/submit")  # noqa: E731
    with page.expect_request(submitted):
        page.get_by_role("button", name="Submit ratings").click(no_wait_after=True)
    context.close()  # the tab and its connections go away while the submission is in flight
    assert oracle.wait(timeout_s=30) == human.EXIT_OK, oracle.stderr()
    assert read_rewards(oracle.rewards) == dict.fromkeys(ids, 5.0)
