"""The human oracle's question forms (``docs/feedback-forms.md``): like/dislike, which of two,
the favourite of K. Unit checks of the answer sessions, HTTP checks with urllib, and rounds
answered in headless Chromium with clicks and with the keyboard shortcuts.

The browser tests need the ``browser`` extra (the Python ``playwright`` package) and Debian's
Chromium (``apt-get install chromium``; another binary via ``PREFALIGN_CHROMIUM``). They are
skipped, with the reason, only when one of the two is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_human_oracle as rating_tests
from test_human_oracle import Oracle, post_form, request

from prefalign.io.feedback import TIE, parse_form
from prefalign.io.queries import read_answers, read_questions, write_queries
from prefalign.oracles import human

# the fixtures of the rating page's tests: the oracle as a subprocess, one headless Chromium
start_oracle = rating_tests.start_oracle
browser = rating_tests.browser
new_page = rating_tests.new_page


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def form_queries(path: Path, form: str, questions: int, shape: tuple[int, ...] = (8, 8)) -> Path:
    """``questions`` questions of ``form`` over random images: items ``p0``.., questions ``q0``..

    For ``binary`` each item is its own question (its id).
    """
    size = parse_form(form).items
    n = questions * size
    ids = [f"p{i}" for i in range(n)]
    grouped = None if form == "binary" else [f"q{i // size}" for i in range(n)]
    x = np.random.default_rng(n).uniform(-1, 1, size=(n, *shape))
    write_queries(path, ids, x, form=form, questions=grouped)
    return path


def answers(queries: Path, rewards: Path) -> dict[str, float]:
    """The answer file as the workflow reads it: ``{item id: value}``."""
    return read_answers(rewards, read_questions(queries)).to_dict()


def session(tmp_path: Path, form: str, questions: int) -> human.AnswerSession:
    """The answer session of a fresh round of ``form``, writing ``tmp_path/answers.csv``."""
    loaded = human.load_queries(form_queries(tmp_path / "queries.npz", form, questions))
    return human.new_session(loaded, (1, 5), tmp_path / "answers.csv")


def leftovers(tmp_path: Path) -> list[str]:
    """Files beside the answer file other than the queries (temporary files included)."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "queries.npz")


# --------------------------------------------------------------------------------------------
# Without a browser
# --------------------------------------------------------------------------------------------


def test_load_queries_reads_the_form_and_its_questions(tmp_path: Path) -> None:
    pairs = human.load_queries(form_queries(tmp_path / "p.npz", "pairwise", 2))
    assert pairs.form == parse_form("pairwise") and pairs.n_questions == 2
    assert pairs.groups() == {"q0": ["p0", "p1"], "q1": ["p2", "p3"]}
    likes = human.load_queries(form_queries(tmp_path / "b.npz", "binary", 3))
    assert likes.questions == likes.ids == ("p0", "p1", "p2")
    plain = human.load_queries(rating_tests.point_queries(tmp_path / "r.npz")[0])
    assert plain.form.name == "rate" and plain.questions == plain.ids


def test_load_queries_refuses_a_pairwise_item_named_tie(tmp_path: Path) -> None:
    path = tmp_path / "queries.npz"
    write_queries(path, ["a", TIE], np.zeros((2, 2)), form="pairwise", questions=["q", "q"])
    with pytest.raises(human.QueriesError, match='reserves for "can\'t say"'):
        human.load_queries(path)


def test_default_titles_per_form() -> None:
    assert human.default_title(parse_form("rate")) == "Rate these samples"
    assert human.default_title(parse_form("binary")) == "Do you like these samples?"
    assert human.default_title(parse_form("pairwise")) == "Which of the two do you prefer?"
    assert human.default_title(parse_form("best-of-4")) == "Pick your favourite in each group of 4"


def test_binary_session_refuses_anything_but_1_or_0(tmp_path: Path) -> None:
    likes = session(tmp_path, "binary", 3)
    assert isinstance(likes, human.BinarySession)
    for bad in ("0.5", "yes", "", "2"):
        (error,) = likes.submit([("p0", bad), ("p1", "1"), ("p2", "0")])
        assert error == (
            f"the answer to Question 1 (id 'p0') must be 1 (like) or 0 (dislike), got {bad!r}"
        )
    with pytest.raises(human.AnswerError, match="must be 1 .like. or 0 .dislike., got 0.5"):
        likes.save_draft([("p0", 0.5)])
    with pytest.raises(human.AnswerError, match="got True"):
        likes.save_draft([("p0", True)])
    assert likes.submit([("p9", "1")]) == ["unknown question 'p9'"]
    assert likes.snapshot() == {}, "a malformed submission keeps nothing"
    assert likes.save_draft([("p0", 1)]) == 1, "a draft may send the whole number"
    assert likes.submit([("p1", "0")]) == [
        "1 of 3 questions is not answered yet. Answer every question, then submit again."
    ]
    assert likes.snapshot() == {"p0": "1", "p1": "0"}, "an incomplete one is kept as a draft"
    assert leftovers(tmp_path) == [], "nothing written"
    assert likes.submit([("p2", "1")]) == []
    assert (tmp_path / "answers.csv").read_text() == "id,like\np0,1\np1,0\np2,1\n"
    assert answers(tmp_path / "queries.npz", tmp_path / "answers.csv") == {
        "p0": 1.0,
        "p1": 0.0,
        "p2": 1.0,
    }
    assert likes.outcome == "submitted" and likes.done.is_set()
    assert not likes.close_on_timeout(), "a submitted round cannot time out"
    assert likes.submit([("p0", "0")]) == ["this round is closed; answers can no longer be changed"]


def test_pairwise_session_refuses_a_third_id_and_takes_a_tie(tmp_path: Path) -> None:
    pairs = session(tmp_path, "pairwise", 2)
    assert isinstance(pairs, human.ChoiceSession)
    assert pairs.options("q0") == ("p0", "p1", TIE)
    (error,) = pairs.submit([("q0", "p2"), ("q1", "p3")])
    assert error == (
        "Question 1: question 'q0' shows 'p0' and 'p1' (or answer 'tie'); the answer names 'p2'"
    )
    assert pairs.submit([("q0", "p0"), ("q0", "p1"), ("q1", "p3")]) == [
        "question 'q0' was answered twice in one request"
    ]
    with pytest.raises(human.AnswerError, match="the answer names 7"):
        pairs.save_draft([("q1", 7)])
    assert pairs.snapshot() == {}
    assert pairs.submit([("q1", TIE)]) == [
        "1 of 2 questions is not answered yet. Answer every question, then submit again."
    ]
    assert leftovers(tmp_path) == []
    assert pairs.submit([("q0", "p1")]) == []
    assert (tmp_path / "answers.csv").read_text() == "question,choice\nq0,p1\nq1,tie\n"
    assert answers(tmp_path / "queries.npz", tmp_path / "answers.csv") == {
        "p0": 0.0,
        "p1": 1.0,
        "p2": 0.5,
        "p3": 0.5,
    }


def test_best_of_session_refuses_two_favourites_and_a_tie(tmp_path: Path) -> None:
    groups = session(tmp_path, "best-of-4", 2)
    assert groups.submit([("q0", "p1"), ("q0", "p2"), ("q1", "p4")]) == [
        "question 'q0' was answered twice in one request"
    ]
    (error,) = groups.submit([("q0", TIE), ("q1", "p4")])
    assert error == "Question 1: question 'q0' shows 'p0', 'p1', 'p2', 'p3'; the answer names 'tie'"
    (error,) = groups.submit([("q0", "p1"), ("q1", "p0")])
    assert "question 'q1' shows 'p4', 'p5', 'p6', 'p7'; the answer names 'p0'" in error
    assert groups.snapshot() == {} and leftovers(tmp_path) == []
    assert groups.submit([("q0", "p3"), ("q1", "p4")]) == []
    assert (tmp_path / "answers.csv").read_text() == "question,choice\nq0,p3\nq1,p4\n"
    values = answers(tmp_path / "queries.npz", tmp_path / "answers.csv")
    assert [item for item, value in values.items() if value == 1.0] == ["p3", "p4"]


def test_write_answers_validates_before_renaming(tmp_path: Path) -> None:
    """A file the workflow would refuse is never renamed into place (nor left behind)."""
    path = tmp_path / "answers.csv"
    form = parse_form("pairwise")
    with pytest.raises(human.AnswerError, match="failed its check.*the answer names 'c'"):
        human.write_answers(path, form, ["a", "b"], ["q", "q"], [("q", "c")])
    assert list(tmp_path.iterdir()) == []
    human.write_answers(path, form, ["a", "b"], ["q", "q"], [("q", "b")])
    assert path.read_text() == "question,choice\nq,b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["answers.csv"]


def test_forms_over_http_drafts_refusals_and_no_javascript_submission(
    tmp_path: Path, start_oracle: Callable[..., Oracle]
) -> None:
    """The page without JavaScript: POSTed forms, refusals that keep the answers, 403s."""
    queries = form_queries(tmp_path / "queries.npz", "pairwise", 3)
    oracle = start_oracle(queries, name="answers.csv")
    status, body = request(oracle.url)
    page = body.decode()
    assert status == 200 and "<h1>Which of the two do you prefer?</h1>" in page
    assert 'id="answered-count">0</strong> of <strong>3</strong> questions answered' in page
    assert request(f"{oracle.url}query/5.png")[0] == 200
    assert request(f"{oracle.url}query/6.png")[0] == 404, "one picture per item"
    token = oracle.url.rstrip("/").rsplit("/", 1)[1]
    assert post_form(f"{oracle.base}/{token[:-1]}/submit", {"answer:q0": "p0"})[0] == 403

    def draft(payload: object) -> tuple[int, dict[str, Any]]:
        status, body = request(
            f"{oracle.url}draft", json.dumps(payload).encode(), "application/json"
        )
        return status, json.loads(body)

    assert draft({"answers": {"q1": TIE}}) == (200, {"answered": 1, "total": 3})
    status, reply = draft({"answers": {"q2": "p0"}})
    assert status == 400 and "question 'q2' shows 'p4' and 'p5'" in reply["error"]
    status, reply = draft({"ratings": {"q2": "p4"}})
    assert status == 400 and '{"answers": {question: value}}' in reply["error"]

    cases = [
        ({"answer:q0": "p0", "answer:q2": "p9"}, "the answer names &#39;p9&#39;"),
        ({"rating:q0": "p0"}, "unexpected form field"),
        ({"answer:q0": "p1"}, "1 of 3 questions is not answered yet"),
    ]
    for fields, message in cases:
        status, body = post_form(f"{oracle.url}submit", fields)
        assert status == 400 and message in body.decode(), message
    two = b"answer%3Aq2=p4&answer%3Aq2=p5"
    status, body = request(f"{oracle.url}submit", two, "application/x-www-form-urlencoded")
    assert status == 400 and b"question &#39;q2&#39; was answered twice" in body
    page = body.decode()
    assert "Not submitted, nothing was saved to the answer file." in page
    assert 'value="tie" data-keys="ArrowDown 0" checked' in page, "the draft is kept"
    assert 'value="p1" data-keys="ArrowRight 2" checked' in page, "so is the refused answer"
    assert '<a href="#q2">Question 3</a>' in page and 'id="q2" data-id="q2" aria-invalid' in page
    assert oracle.process.poll() is None and not oracle.rewards.exists()

    status, body = post_form(f"{oracle.url}submit", {"answer:q2": "p5"})
    assert status == 200 and b"Your 3 answers were saved to <code>answers.csv</code>" in body
    assert oracle.wait() == human.EXIT_OK
    assert oracle.rewards.read_text() == "question,choice\nq0,p1\nq1,tie\nq2,p5\n"
    assert "wrote 3 answers to" in oracle.stderr()
    assert "open this page to answer the questions: " + oracle.url in oracle.stderr()


def test_binary_timeout_exits_124_and_writes_nothing(
    tmp_path: Path, start_oracle: Callable[..., Oracle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(human.ENV_FORM, "pairwise")  # the queries file decides, with a warning
    queries = form_queries(tmp_path / "queries.npz", "binary", 3)
    oracle = start_oracle(queries, "--timeout-s", "2", name="answers.csv")
    body = json.dumps({"answers": {"p1": "0"}}).encode()
    assert request(f"{oracle.url}draft", body, "application/json")[0] == 200
    assert oracle.wait(timeout_s=60) == human.EXIT_TIMEOUT
    assert "waiting for answers (1 of 3 questions answered)" in oracle.stderr()
    assert "PREFALIGN_FORM='pairwise' but" in oracle.stderr()
    assert not oracle.rewards.exists()


# --------------------------------------------------------------------------------------------
# In a real browser
# --------------------------------------------------------------------------------------------


def progress(page: Any) -> Any:
    """The page's "N of M questions answered" line."""
    return page.locator("#progress")


def submit(page: Any) -> None:
    """Click Submit answers and wait for the thank-you page."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="Submit answers").click()
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()


def watch_console(page: Any) -> list[str]:
    """The console errors of ``page`` (CSP violations, failed loads), as they come."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def test_browser_binary_round_by_clicks(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    from playwright.sync_api import expect

    queries = form_queries(tmp_path / "queries.npz", "binary", 4)
    oracle = start_oracle(queries, "--round", "1", "--budget-left", "8", name="answers.csv")
    page = new_page()
    console = watch_console(page)
    page.goto(oracle.url)
    expect(page.get_by_role("heading", name="Do you like these samples?")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("Budget left 8 questions")
    expect(progress(page)).to_have_text("0 of 4 questions answered")
    expect(page.locator("img.picture")).to_have_count(4)
    clicks = ["Like", "Dislike", "Dislike", "Like"]
    for index, button in enumerate(clicks):
        page.locator(f"#q{index}").get_by_role("radio", name=button, exact=True).click()
    expect(progress(page)).to_have_text("4 of 4 questions answered")
    page.locator("#q2 label.button").first.click()  # change of mind: Like, by its label
    expect(page.locator("#q2").get_by_role("radio", name="Like", exact=True)).to_be_checked()
    submit(page)
    assert oracle.wait() == human.EXIT_OK
    assert oracle.rewards.read_text() == "id,like\np0,1\np1,0\np2,1\np3,1\n"
    assert answers(queries, oracle.rewards) == {"p0": 1.0, "p1": 0.0, "p2": 1.0, "p3": 1.0}
    assert console == [], "no CSP violations or failed loads"


def test_browser_binary_round_by_keyboard(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    """L / D answer the focused question and move on; j / k move between questions."""
    from playwright.sync_api import expect

    queries = form_queries(tmp_path / "queries.npz", "binary", 3)
    oracle = start_oracle(queries, "--title", "Is this a bold 3?", name="answers.csv")
    page = new_page()
    page.goto(oracle.url)
    expect(page.get_by_role("heading", name="Is this a bold 3?")).to_be_visible()
    keyboard = page.keyboard
    keyboard.press("j")  # nothing has the focus: the first question gets it
    expect(page.locator("#q0 input").first).to_be_focused()
    keyboard.press("l")  # like p0, on to the second question
    expect(page.locator("#q1 input").first).to_be_focused()
    keyboard.press("L")  # like p1 (a capital works too)
    keyboard.press("k")  # back to the second question: change of mind
    expect(page.locator("#q1 input:checked")).to_be_focused()
    keyboard.press("d")  # dislike p1, on to the third
    keyboard.press("d")  # dislike p2: the last question keeps the focus
    expect(page.locator("#q2 input:checked")).to_be_focused()
    expect(progress(page)).to_have_text("3 of 3 questions answered")
    keyboard.press("Tab")
    expect(page.get_by_role("button", name="Submit answers")).to_be_focused()
    keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    assert oracle.wait() == human.EXIT_OK
    assert answers(queries, oracle.rewards) == {"p0": 1.0, "p1": 0.0, "p2": 0.0}


def test_browser_pairwise_round_by_clicks_with_a_tie(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    from playwright.sync_api import expect

    queries = form_queries(tmp_path / "queries.npz", "pairwise", 3)
    oracle = start_oracle(queries, name="answers.csv")
    page = new_page()
    console = watch_console(page)
    page.goto(oracle.url)
    expect(page.locator("#q0 img.picture")).to_have_count(2)
    left, right = page.locator("#q0 img.picture").all()
    left_box, right_box = left.bounding_box(), right.bounding_box()
    assert left_box["x"] + left_box["width"] <= right_box["x"], "the pair is side by side"
    assert abs(left_box["y"] - right_box["y"]) < 1
    page.locator("#q0 label.option").nth(1).click()  # the right picture
    page.locator("#q1").get_by_label("Can't say").click()
    page.locator("#q2 label.option").nth(0).click()  # the left picture
    expect(page.locator("#q0 input[value=p1]")).to_be_checked()
    expect(progress(page)).to_have_text("3 of 3 questions answered")
    submit(page)
    assert oracle.wait() == human.EXIT_OK
    assert oracle.rewards.read_text() == "question,choice\nq0,p1\nq1,tie\nq2,p4\n"
    assert answers(queries, oracle.rewards) == {
        "p0": 0.0,
        "p1": 1.0,
        "p2": 0.5,
        "p3": 0.5,
        "p4": 1.0,
        "p5": 0.0,
    }
    assert console == []


def test_browser_pairwise_round_by_keyboard_with_a_tie(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    """Left / right / down arrow (or 1 / 2 / 0) answer a pair and move on to the next."""
    from playwright.sync_api import expect

    queries = form_queries(tmp_path / "queries.npz", "pairwise", 4)
    oracle = start_oracle(queries, name="answers.csv")
    page = new_page()
    page.goto(oracle.url)
    keyboard = page.keyboard
    keyboard.press("Tab")  # the first pair's radio group
    expect(page.locator("#q0 input").first).to_be_focused()
    keyboard.press("ArrowRight")  # q0: right (p1), not the browser's "next radio button"
    expect(page.locator("#q0 input[value=p1]")).to_be_checked()
    expect(page.locator("#q1 input").first).to_be_focused()
    keyboard.press("ArrowDown")  # q1: can't say
    keyboard.press("1")  # q2: left (p4)
    keyboard.press("0")  # q3: can't say; the last pair keeps the focus
    keyboard.press("k")  # back to q2
    keyboard.press("k")  # back to q1
    keyboard.press("ArrowLeft")  # q1: left (p2) after all, on to q2
    expect(page.locator("#q2 input:checked")).to_be_focused()
    keyboard.press("j")  # q3
    keyboard.press("2")  # q3: right (p7)
    expect(progress(page)).to_have_text("4 of 4 questions answered")
    keyboard.press("Tab")
    expect(page.get_by_role("button", name="Submit answers")).to_be_focused()
    keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    assert oracle.wait() == human.EXIT_OK
    assert oracle.rewards.read_text() == "question,choice\nq0,p1\nq1,p2\nq2,p4\nq3,p7\n"


def test_browser_pairwise_without_javascript_keeps_refused_answers(
    tmp_path: Path, start_oracle: Callable[..., Oracle], browser: Any
) -> None:
    from playwright.sync_api import expect

    queries = form_queries(tmp_path / "queries.npz", "pairwise", 2)
    oracle = start_oracle(queries, name="answers.csv")
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        page.goto(oracle.url)
        expect(page.locator("#keys")).to_be_hidden()  # no script, no shortcuts
        page.locator("#q1").get_by_label("Can't say").click()
        page.get_by_role("button", name="Submit answers").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("1 of 2 questions is not answered yet")
        expect(alert.get_by_role("link", name="Question 1")).to_be_visible()
        expect(page.locator("#q0")).to_have_class("query question missing")
        expect(page.locator("#q1 input[value=tie]")).to_be_checked()
        assert not oracle.rewards.exists()
        page.locator("#q0 label.option").nth(0).click()
        page.get_by_role("button", name="Submit answers").click()
        expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    finally:
        context.close()
    assert oracle.wait() == human.EXIT_OK
    assert answers(queries, oracle.rewards) == {"p0": 1.0, "p1": 0.0, "p2": 0.5, "p3": 0.5}


def test_browser_best_of_4_round_by_clicks_and_digits(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    from playwright.sync_api import expect

    queries = form_queries(tmp_path / "queries.npz", "best-of-4", 3, shape=(3, 8, 8))
    oracle = start_oracle(queries, name="answers.csv")
    page = new_page()
    console = watch_console(page)
    page.goto(oracle.url)
    expect(
        page.get_by_role("heading", name="Pick your favourite in each group of 4")
    ).to_be_visible()
    expect(page.locator("#keys")).to_be_visible()  # shown by the script that makes them work
    expect(page.locator("#keys")).to_contain_text("1 to 4 pick that sample")
    expect(page.locator("#q0 img.picture")).to_have_count(4)
    page.locator("#q0 label.option").nth(2).click()  # by a click: the third (p2)
    expect(page.locator("#q0 input[value=p2]")).to_be_focused()
    keyboard = page.keyboard
    keyboard.press("j")  # q1
    keyboard.press("4")  # q1: the fourth (p7), on to q2
    keyboard.press("1")  # q2: the first (p8)
    keyboard.press("k")  # back to q1
    keyboard.press("5")  # no fifth picture: nothing happens
    expect(page.locator("#q1 input[value=p7]")).to_be_checked()
    keyboard.press("2")  # q1: the second (p5) after all
    expect(progress(page)).to_have_text("3 of 3 questions answered")
    submit(page)
    assert oracle.wait() == human.EXIT_OK
    assert oracle.rewards.read_text() == "question,choice\nq0,p2\nq1,p5\nq2,p8\n"
    values = answers(queries, oracle.rewards)
    assert [item for item, value in values.items() if value == 1.0] == ["p2", "p5", "p8"]
    assert console == []


def test_browser_best_of_4_drafts_survive_a_reload_and_a_new_tab(
    tmp_path: Path, start_oracle: Callable[..., Oracle], new_page: Callable[[], Any]
) -> None:
    from playwright.sync_api import expect

    queries = form_queries(tmp_path / "queries.npz", "best-of-4", 3)
    oracle = start_oracle(queries, name="answers.csv")
    page = new_page()
    page.goto(oracle.url)
    with page.expect_response(lambda response: response.url.endswith("/draft")) as draft:
        page.locator("#q0 label.option").nth(1).click()
    assert draft.value.ok
    page.reload()
    expect(page.locator("#q0 input[value=p1]")).to_be_checked()
    expect(progress(page)).to_have_text("1 of 3 questions answered")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("j")  # q2
    with page.expect_response(lambda response: response.url.endswith("/draft")) as draft:
        page.keyboard.press("4")
    assert draft.value.ok
    page.context.close()  # the person closes the tab

    page = new_page()
    page.goto(oracle.url)
    expect(page.locator("#q0 input[value=p1]")).to_be_checked()
    expect(page.locator("#q2 input[value=p11]")).to_be_checked()
    expect(page.locator("#q1 input:checked")).to_have_count(0)
    expect(progress(page)).to_have_text("2 of 3 questions answered")
    page.get_by_role("button", name="Submit answers").click()  # q1 still unanswered
    expect(page.get_by_role("alert")).to_contain_text("1 of 3 questions is not answered yet")
    expect(page.locator("#q1")).to_have_class("query question missing")
    assert not oracle.rewards.exists()
    page.locator("#q1 label.option").nth(3).click()
    submit(page)
    assert oracle.wait() == human.EXIT_OK
    assert oracle.rewards.read_text() == "question,choice\nq0,p1\nq1,p7\nq2,p11\n"
