"""A whole campaign with a person as the oracle: config/human.yaml, answered in headless Chromium.

``test_two_rounds_rated_in_a_browser`` (slow): Snakemake runs the two-round digits campaign of
``config/human.yaml`` in the background, shrunk (a tiny DDPM trained into the temporary folder,
few particles) and with the oracle on a free port. For each round the test waits for the URL in
``--url-file``, opens it in Chromium, clicks a rating for every query and submits. Snakemake must
then finish the campaign, its final evaluation and the experiment's tables without asking the
person again; the base-model report is left out to save time. The observation dataset must hold
exactly the clicked values as rewards, with the same schema as a dataset answered by a simulated
user. It needs the ``browser`` extra (playwright) and Debian's Chromium, like
tests/test_human_oracle.py, and is skipped, with the reason, only when one of the two is missing.

``test_oracle_takes_the_workflow_context_and_cleans_up_on_sigterm`` (fast, no browser):
``prefalign oracle human`` with the environment the workflow gives an oracle.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from test_human_oracle import CHROMIUM, CHROMIUM_ARGS, _browser_missing, radio
from workflow_helpers import REPO, env, snakemake_in_background, workdir

from prefalign.io.feedback import TIE, parse_form
from prefalign.io.observations import COLUMNS, read_observations
from prefalign.io.oracle_command import run_oracle
from prefalign.loop.spec import merge_settings, read_spec
from prefalign.loop.steps import observe_round

DOMAIN, METHOD = "digits-human", "fkc-al"
#: The campaign's name (PREFALIGN_CAMPAIGN, shown on the page) and its folder under results/.
CAMPAIGN, CAMPAIGN_DIR = f"{DOMAIN}/{METHOD}/0", f"{DOMAIN}/{METHOD}/seed0"
#: Everything Snakemake has to do after the person rated both rounds, from the test's start.
DEADLINE_S = 300
#: The simulated user whose answers give the reference dataset for the schema comparison.
SIMULATED_ORACLE = [sys.executable, "-m", "prefalign.cli", "oracle", "builtin", "digits", "thick-3"]


def human_config() -> dict:
    """config/human.yaml over config/config.yaml, reduced to its campaign and shrunk for a test.

    The oracle command stays the configured one (``prefalign oracle human ... --url-file
    results/human/url.txt --scale 0 10``) except for ``--port 0``: any free port.
    """
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    human = yaml.safe_load((REPO / "config" / "human.yaml").read_text())
    config = merge_settings(base, human)
    (experiment,) = config["run"]
    config["experiments"] = {experiment: config["experiments"][experiment]}
    assert config["experiments"][experiment]["domains"] == [DOMAIN]
    assert config["experiments"][experiment]["methods"] == [METHOD]
    config["domains"] = {DOMAIN: config["domains"][DOMAIN]}
    config["methods"] = {METHOD: config["methods"][METHOD]}
    config.pop("populations", None)  # U1's users copy domains and methods left out here
    config["n_particles"], config["eval_particles"] = 32, 16
    domain = config["domains"][DOMAIN]
    oracle = list(domain["oracle"])
    oracle[oracle.index("--port") + 1] = "0"
    domain["oracle"] = oracle
    domain["sampler"] = {**domain["sampler"], "n_steps": 10}
    domain["surrogate"] = {**domain["surrogate"], "hidden": 8, "layers": 2, "epochs": 20}
    return config


def _url_file(config: dict) -> str:
    oracle = config["domains"][DOMAIN]["oracle"]
    return oracle[oracle.index("--url-file") + 1]


def _scale(config: dict) -> tuple[int, int]:
    oracle = config["domains"][DOMAIN]["oracle"]
    at = oracle.index("--scale")
    return int(oracle[at + 1]), int(oracle[at + 2])


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no output)"


def wait_for_new_url(
    url_file: Path, seen: list[str], proc: subprocess.Popen[bytes], deadline: float, log: Path
) -> str:
    """The URL in ``url_file`` once it differs from every URL already used (a new round)."""
    while time.monotonic() < deadline:
        if url_file.exists():
            url = url_file.read_text().strip()
            if url and url not in seen:
                return url
        if proc.poll() is not None:
            raise AssertionError(
                f"snakemake exited ({proc.returncode}) before round {len(seen)} asked the "
                f"person:\n{_tail(log)}"
            )
        time.sleep(0.1)
    raise AssertionError(f"no URL for round {len(seen)} in {url_file}:\n{_tail(log)}")


def rate_round(browser: Any, url: str, round_: int, scale: tuple[int, int]) -> dict[str, float]:
    """Open the round's page, click a rating for every query, submit; returns {id: value}."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        page.goto(url)
        facts = page.locator(".facts")
        expect(facts).to_contain_text(f"Campaign {CAMPAIGN}")
        expect(facts).to_contain_text(f"Round {round_} of rounds 0 to 1")
        expect(facts).to_contain_text(f"Budget left {8 * (1 - round_)} queries")
        expect(page).to_have_title(
            f"{page.locator('h1').inner_text()} - round {round_} - {CAMPAIGN}"
        )
        cards = page.locator("fieldset.query")
        expect(cards).to_have_count(8)
        page.wait_for_function("Array.from(document.images).every((i) => i.complete)")
        assert cards.locator("img.picture").evaluate_all(
            "(images) => images.every((i) => i.naturalWidth === 192)"
        ), "every query is shown as a 192 px picture of its 8x8 image"
        low, high = scale
        clicked: dict[str, float] = {}
        for index in range(8):
            query_id = cards.nth(index).get_attribute("data-id")
            assert query_id and query_id not in clicked
            value = low + (3 * index + 5 * round_) % (high - low + 1)
            radio(page, index, value).click()
            clicked[query_id] = float(value)
        expect(page.locator("#progress")).to_have_text("Rated 8 of 8")
        page.get_by_role("button", name="Submit ratings").click()
        expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
        return clicked
    finally:
        context.close()


def simulated_dataset(wd: Path, out: Path) -> Path:
    """The same two rounds (same queries, same selection) answered by a simulated user."""
    rounds = wd / f"results/campaigns/{CAMPAIGN_DIR}"
    spec = read_spec(rounds / "spec.json")
    previous = None
    for round_ in (0, 1):
        queries = rounds / f"round{round_}/queries.npz"
        rewards = out / f"rewards{round_}.csv"
        run_oracle(SIMULATED_ORACLE, queries, rewards, timeout_s=120)
        path = out / f"round{round_}.parquet"
        observe_round(
            spec, round_, previous, queries, rounds / f"round{round_}/selection.csv", rewards, path
        )
        previous = path
    return previous


def test_oracle_takes_the_workflow_context_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    """What the workflow relies on, without a browser: the environment's campaign, round and
    budget on the page, the URL on stderr and in a --url-file whose folder is created, and on
    SIGTERM (the step stopped) exit 130, nothing written, the URL file removed."""
    queries = tmp_path / "queries.npz"
    np.savez(queries, id=np.array(["r000-p1", "r000-p2"]), x=np.zeros((2, 1, 8, 8), np.float32))
    url_file, rewards = tmp_path / "human" / "url.txt", tmp_path / "rewards.csv"
    context = {
        "PREFALIGN_CAMPAIGN": CAMPAIGN,
        "PREFALIGN_ROUND": "0",
        "PREFALIGN_ROUNDS": "2",
        "PREFALIGN_BUDGET_LEFT": "8",
    }
    command = [sys.executable, "-m", "prefalign.cli", "oracle", "human", "--port", "0"]
    command += ["--url-file", str(url_file), "--title", "Pick", str(queries), str(rewards)]
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            command, env={**env(), **context}, stdout=subprocess.PIPE, stderr=err
        )
    try:
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:"), stderr.read_text()
        deadline = time.monotonic() + 30
        while not url_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert url_file.read_text().strip() == url
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
        assert f"<title>Pick - round 0 - {CAMPAIGN}</title>" in page
        assert f'Campaign <strong id="campaign">{CAMPAIGN}</strong>' in page
        assert "Round <strong>0</strong> of rounds 0 to 1" in page
        assert "Budget left <strong>8</strong> queries" in page
        assert f"open this page to rate the queries: {url}" in stderr.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "terminated; nothing was written" in stderr.read_text()
    assert not url_file.exists() and not rewards.exists()


@pytest.mark.slow
def test_two_rounds_rated_in_a_browser(tmp_path: Path) -> None:
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    config = human_config()
    (tmp_path / "wd").mkdir()
    wd = workdir(tmp_path / "wd", config)  # with the shipped digits model
    url_file = wd / _url_file(config)
    evaluation = wd / f"results/evaluation/{CAMPAIGN_DIR}.json"
    observations = wd / f"results/observations/{CAMPAIGN_DIR}/round1.parquet"
    (experiment,) = config["run"]
    table = wd / f"results/experiments/{experiment}/tables/final.md"  # the aggregation
    log = tmp_path / "snakemake.log"
    deadline = time.monotonic() + DEADLINE_S
    targets = (str(evaluation.relative_to(wd)), str(table.relative_to(wd)))
    with snakemake_in_background(wd, log, *targets) as proc:
        seen: list[str] = []
        clicked: dict[str, float] = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                for round_ in (0, 1):
                    url = wait_for_new_url(url_file, seen, proc, deadline, log)
                    seen.append(url)
                    clicked |= rate_round(browser, url, round_, _scale(config))
            finally:
                browser.close()
        while proc.poll() is None and time.monotonic() < deadline:
            if url_file.exists() and url_file.read_text().strip() not in ("", *seen):
                raise AssertionError(
                    "the workflow asked the person a third time (the final evaluation must use "
                    "eval_oracle only, oracle_in_evaluation: false)"
                )
            time.sleep(0.2)
        assert proc.poll() is not None, f"snakemake still running after {DEADLINE_S} s"
        assert proc.returncode == 0, f"snakemake failed:\n{_tail(log)}"

    # Each round's URL was announced in its oracle log, then the URL file was removed.
    for round_, url in enumerate(seen):
        oracle_log = (wd / f"logs/{CAMPAIGN_DIR}/round{round_}/query.log").read_text()
        assert f"open this page to rate the queries: {url}" in oracle_log
    assert not url_file.exists()

    # The clicked values are the rewards, in a dataset shaped like a simulated user's.
    df, event_shape = read_observations(observations)
    assert len(df) == 16 and tuple(df.columns) == COLUMNS and event_shape == (1, 8, 8)
    assert df["round"].tolist() == [0] * 8 + [1] * 8
    assert df.set_index("id")["reward"].to_dict() == clicked
    reference_path = simulated_dataset(wd, tmp_path)
    reference, reference_shape = read_observations(reference_path)
    assert pq.read_schema(observations).equals(pq.read_schema(reference_path), check_metadata=True)
    assert reference_shape == event_shape
    pd.testing.assert_series_equal(df.dtypes, reference.dtypes)
    others = [column for column in COLUMNS if column not in ("x", "reward")]
    pd.testing.assert_frame_equal(df[others], reference[others])
    assert np.array_equal(np.stack(df["x"]), np.stack(reference["x"]))
    assert not np.array_equal(df["reward"], reference["reward"])

    # The final evaluation ran without the person: the simulated evaluator scored the samples.
    result = json.loads(evaluation.read_text())
    assert result["oracle_in_evaluation"] is False
    assert result["eval_oracle"] == " ".join(config["domains"][DOMAIN]["eval_oracle"])
    assert 0.0 <= result["mean_reward"] <= 1.0 and result["n_samples"] == 16
    assert f"| {DOMAIN} | {METHOD} | 1 |" in table.read_text()


#: The question forms other than ``rate``, each a domain of the forms test: (form, domain).
FORMS = (("binary", "digits-human-binary"), ("pairwise", "digits-human-pairwise"),
         ("best-of-4", "digits-human-best-of-4"))  # fmt: skip


def forms_config() -> dict:
    """:func:`human_config` with one two-round campaign per question form: the same digits user
    asked like/dislike, which of two, and the favourite of 4, each on its own page (port 0, its
    own URL file, the form's default question), 4 questions a round."""
    config = human_config()
    template = config["domains"].pop(DOMAIN)
    oracle = template["oracle"][: template["oracle"].index("--url-file")]  # ... --port 0
    config["domains"] = {
        domain: {
            **template,
            "form": form,
            "oracle": [*oracle, "--url-file", f"results/human/{form}-url.txt"],
        }
        for form, domain in FORMS
    }
    (experiment,) = config["run"]
    config["experiments"][experiment]["domains"] = [domain for _, domain in FORMS]
    config["budget"], config["k"] = 8, 4
    return config


def answer_round(browser: Any, url: str, form: str, round_: int) -> dict[str, str]:
    """Open a round's question page, answer every question by clicks (one pair a tie), submit;
    returns ``{question id: the answer as the file says it}`` (``1`` / ``0`` for like/dislike,
    the chosen id or ``tie`` for a choice)."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        page.goto(url)
        expect(page.locator(".facts")).to_contain_text(f"Round {round_} of rounds 0 to 1")
        expect(page.locator(".facts")).to_contain_text(f"Budget left {4 * (1 - round_)} questions")
        questions = page.locator("fieldset.question")
        expect(questions).to_have_count(4)
        shown = parse_form(form).items
        expect(page.locator("img.picture")).to_have_count(4 * shown)
        given: dict[str, str] = {}
        for index in range(4):
            question = page.locator(f"#q{index}")
            if form == "binary":
                button = "Like" if (index + round_) % 2 == 0 else "Dislike"
                question.get_by_role("radio", name=button, exact=True).click()
            elif form == "pairwise" and index == 1:
                question.get_by_label("Can't say").click()
            else:
                question.locator("label.option").nth((index + round_) % shown).click()
            given[question.get_attribute("data-id")] = question.locator(
                "input:checked"
            ).get_attribute("value")
        expect(page.locator("#progress")).to_have_text("4 of 4 questions answered")
        page.get_by_role("button", name="Submit answers").click()
        expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
        return given
    finally:
        context.close()


@pytest.mark.slow
def test_two_rounds_of_each_form_answered_in_a_browser(tmp_path: Path) -> None:
    """Like/dislike, which of two and favourite of 4: Snakemake runs one two-round digits campaign
    per form with the page as the oracle; the browser answers each round's page as it appears,
    and each observation dataset records the form, the questions and exactly those answers."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    config = forms_config()
    (tmp_path / "wd").mkdir()
    wd = workdir(tmp_path / "wd", config)  # with the shipped digits model
    campaign = {form: f"{domain}/{METHOD}/seed0" for form, domain in FORMS}
    url_files = {form: wd / f"results/human/{form}-url.txt" for form, _ in FORMS}
    (experiment,) = config["run"]
    table = wd / f"results/experiments/{experiment}/tables/final.md"
    log = tmp_path / "snakemake.log"
    deadline = time.monotonic() + 2 * DEADLINE_S
    seen: dict[str, list[str]] = {form: [] for form, _ in FORMS}
    given: dict[str, dict[str, str]] = {form: {} for form, _ in FORMS}
    with snakemake_in_background(wd, log, str(table.relative_to(wd))) as proc:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                while any(len(urls) < 2 for urls in seen.values()):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError(
                            f"pages answered {seen}; snakemake {proc.poll()}:\n{_tail(log)}"
                        )
                    for form, url_file in url_files.items():
                        url = url_file.read_text().strip() if url_file.exists() else ""
                        if url and url not in seen[form] and len(seen[form]) < 2:
                            given[form] |= answer_round(browser, url, form, len(seen[form]))
                            seen[form].append(url)
                    time.sleep(0.1)
            finally:
                browser.close()
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, f"snakemake failed:\n{_tail(log)}"

    for form, _ in FORMS:
        for round_, url in enumerate(seen[form]):
            text = (wd / f"logs/{campaign[form]}/round{round_}/query.log").read_text()
            assert f"open this page to answer the questions: {url}" in text
        df, _ = read_observations(wd / f"results/observations/{campaign[form]}/round1.parquet")
        assert tuple(df.columns) == COLUMNS and set(df["form"]) == {form}
        assert df["round"].tolist() == [0] * (len(df) // 2) + [1] * (len(df) // 2)
        if form == "binary":  # each picture is its own question: its like is its reward
            assert df.set_index("id")["reward"].to_dict() == {
                item: float(answer) for item, answer in given[form].items()
            }
            continue
        assert df["question"].nunique() == 8 and set(given[form]) == set(df["question"])
        for question, rows in df.groupby("question"):
            answer = given[form][question]
            expected = [0.5] * len(rows) if answer == TIE else (rows["id"] == answer).astype(float)
            assert rows["reward"].tolist() == list(expected), f"{form} question {question}"
    assert all(f"| {domain} | {METHOD} | 1 |" in table.read_text() for _, domain in FORMS)
