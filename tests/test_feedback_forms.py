"""Question forms (docs/feedback-forms.md): the queries and answer files of each form, their
strict validation, the observations that record them, the simulated users' choice models, the
surrogates that learn from each form, the pairing of particles into questions, and a campaign
per form end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from prefalign import pairing
from prefalign.acquisition import Selection
from prefalign.io.feedback import FeedbackError, choices_table, parse_answers, parse_form
from prefalign.io.observations import (
    ObservationError,
    append_round,
    new_round_frame,
    read_observations,
    write_observations,
)
from prefalign.io.queries import OracleError, read_answers, read_questions, write_queries
from prefalign.learning.checkpoint import load_surrogate, save_surrogate
from prefalign.learning.surrogate import SurrogateConfig, fit, training_set_hash
from prefalign.oracles.choice_model import ChoiceModel

FORMS = ("rate", "binary", "pairwise", "best-of-4")


def _ids(n: int) -> list[str]:
    return [f"r000-p{i:05d}" for i in range(n)]


def _questions(n_questions: int, size: int) -> list[str]:
    return [f"r000-q{q:02d}" for q in range(n_questions) for _ in range(size)]


# ---------------------------------------------------------------------------------------------
# forms, queries and answers


def test_form_names() -> None:
    assert [parse_form(f).items for f in FORMS] == [1, 1, 2, 4]
    assert parse_form("best-of-2").is_choice and not parse_form("binary").is_choice
    for bad in ("best-of-1", "best-of-k", "ranking", ""):
        with pytest.raises(FeedbackError, match="valid: rate, binary, pairwise, best-of-K"):
            parse_form(bad)


def test_a_rate_queries_file_is_what_it_always_was(tmp_path: Path) -> None:
    """No `form` or `question` array for ratings: the bytes of a rate round do not change."""
    x = np.random.default_rng(0).normal(size=(3, 2))
    write_queries(tmp_path / "q.npz", _ids(3), x)
    with np.load(tmp_path / "q.npz") as npz:
        assert sorted(npz.files) == ["id", "x"]
    asked = read_questions(tmp_path / "q.npz")
    assert asked.form == "rate" and asked.questions.tolist() == _ids(3) and asked.n_questions == 3


def test_queries_of_pairs_round_trip_and_groups_are_checked(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(4, 2))
    write_queries(tmp_path / "q.npz", _ids(4), x, form="pairwise", questions=_questions(2, 2))
    asked = read_questions(tmp_path / "q.npz")
    assert (asked.form, asked.n_questions) == ("pairwise", 2)
    assert asked.questions.tolist() == _questions(2, 2)
    with pytest.raises(OracleError, match=r"shows 2 item\(s\).*'a' \(1\), 'q1' \(3\)"):
        write_queries(
            tmp_path / "b.npz", _ids(4), x, form="pairwise", questions=["a", "q1", "q1", "q1"]
        )
    with pytest.raises(OracleError, match="not contiguous"):
        write_queries(tmp_path / "b.npz", _ids(4), x, form="pairwise", questions=list("abab"))
    assert not (tmp_path / "b.npz").exists()


PAIR_IDS, PAIR_QUESTIONS = _ids(4), _questions(2, 2)


def test_each_form_parses_to_one_value_per_item() -> None:
    ids = _ids(4)
    rate = parse_answers("id,reward\n" + "".join(f"{i},0.{n}\n" for n, i in enumerate(ids)),
                         parse_form("rate"), ids, ids, "t")  # fmt: skip
    assert rate.tolist() == [0.0, 0.1, 0.2, 0.3]
    binary = parse_answers("id,like\n" + "".join(f"{i},{n % 2}\n" for n, i in enumerate(ids)),
                           parse_form("binary"), ids, ids, "t")  # fmt: skip
    assert binary.tolist() == [0.0, 1.0, 0.0, 1.0]
    text = f"question,choice\nr000-q00,{ids[1]}\nr000-q01,tie\n"
    pairs = parse_answers(text, parse_form("pairwise"), PAIR_IDS, PAIR_QUESTIONS, "t")
    assert pairs.tolist() == [0.0, 1.0, 0.5, 0.5]
    assert list(pairs.index) == ids and pairs.name == "reward"
    group = parse_answers(
        f"question,choice\nr000-q00,{ids[2]}\n", parse_form("best-of-4"), ids, ["r000-q00"] * 4, "t"
    )
    assert group.tolist() == [0.0, 0.0, 1.0, 0.0]
    table = choices_table(pairs, PAIR_QUESTIONS, parse_form("pairwise"))
    assert table.values.tolist() == [["r000-q00", ids[1]], ["r000-q01", "tie"]]


@pytest.mark.parametrize(
    ("form", "text", "message"),
    [
        (
            "pairwise",
            "question,choice\nr000-q00,r000-p00003\nr000-q01,r000-p00002\n",
            "question 'r000-q00' shows 'r000-p00000' and 'r000-p00001' (or answer 'tie'); "
            "the answer names 'r000-p00003'",
        ),
        (
            "best-of-4",
            "question,choice\nr000-q00,r000-p00001\nr000-q00,r000-p00002\n",
            "best-of-4 takes one favourite, but 'r000-q00' has 2 ('r000-p00001', 'r000-p00002')",
        ),
        ("binary", "id,like\nr000-p00000,1\nr000-p00001,0.5\nr000-p00002,0\nr000-p00003,1\n",
         "binary answers must be 1 (like) or 0 (dislike), got 'r000-p00001' ('0.5')"),
        ("binary", "id,reward\nr000-p00000,1\n", "expected exactly 'id,like'"),
        ("pairwise", "question,choice\nr000-q00,tie\n", "missing questions 'r000-q01'"),
        ("pairwise", "question,choice\nr000-q00,tie\nr000-q01,tie\nr000-q09,tie\n",
         "unknown questions"),
        ("best-of-4", "question,choice\nr000-q00,tie\n", "the answer names 'tie'"),
    ],
)  # fmt: skip
def test_bad_answers_of_each_form_are_named(form: str, text: str, message: str) -> None:
    parsed = parse_form(form)
    questions = _ids(4) if parsed.items == 1 else _questions(4 // parsed.items, parsed.items)
    with pytest.raises(FeedbackError) as err:
        parse_answers(text, parsed, _ids(4), questions, "answers file A.csv")
    assert message in str(err.value) and "answers file A.csv" in str(err.value)


def test_read_answers_reads_the_file_in_the_queries_form(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(4, 2))
    write_queries(tmp_path / "q.npz", PAIR_IDS, x, form="pairwise", questions=PAIR_QUESTIONS)
    (tmp_path / "a.csv").write_text("question,choice\nr000-q00,r000-p00000\nr000-q01,r000-p00003\n")
    values = read_answers(tmp_path / "a.csv", read_questions(tmp_path / "q.npz"))
    assert values.tolist() == [1.0, 0.0, 0.0, 1.0]


# ---------------------------------------------------------------------------------------------
# observations


def _frame(form: str, round_: int = 0, values=None):
    size = parse_form(form).items
    ids = [f"r{round_:03d}-p{i:05d}" for i in range(4)]
    questions = None if size == 1 else [f"r{round_:03d}-q{q:02d}" for q in range(4 // size)
                                        for _ in range(size)]  # fmt: skip
    values = values if values is not None else {
        "rate": [0.1, 0.2, 0.3, 0.4], "binary": [1, 0, 0, 1],
        "pairwise": [1, 0, 0.5, 0.5], "best-of-4": [0, 0, 1, 0],
    }[form]  # fmt: skip
    x = np.arange(8, dtype=np.float32).reshape(4, 2) + 10 * round_
    return new_round_frame("c", 0, round_, ids, x, values, "random", np.nan, None,
                           form=form, questions=questions)  # fmt: skip


@pytest.mark.parametrize("form", FORMS)
def test_observations_record_the_form_and_the_question(tmp_path: Path, form: str) -> None:
    df = append_round(append_round(None, _frame(form)), _frame(form, 1))
    write_observations(df, tmp_path / "o.parquet", (2,))
    back, _ = read_observations(tmp_path / "o.parquet")
    assert set(back["form"]) == {form}
    assert back["question"].nunique() == 8 // parse_form(form).items
    assert pq.ParquetFile(tmp_path / "o.parquet").schema_arrow.metadata[b"prefalign_format"] == (
        b"observations/2"
    )


def test_answers_that_choose_nothing_or_two_are_not_observations() -> None:
    with pytest.raises(ObservationError, match="do not choose one item"):
        _frame("best-of-4", values=[1, 0, 1, 0])
    with pytest.raises(ObservationError, match="binary answers other than 0 or 1"):
        _frame("binary", values=[1, 0.5, 0, 1])
    with pytest.raises(ObservationError, match="round 1 has form 'binary'"):
        append_round(append_round(None, _frame("rate")), _frame("binary", 1))


def test_an_observations_file_of_format_1_reads_as_ratings(tmp_path: Path) -> None:
    df = append_round(None, _frame("rate"))
    write_observations(df, tmp_path / "o.parquet", (2,))
    table = pq.read_table(tmp_path / "o.parquet").drop_columns(["form", "question"])
    meta = {**table.schema.metadata, b"prefalign_format": b"observations/1"}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "v1.parquet")
    back, _ = read_observations(tmp_path / "v1.parquet")
    assert set(back["form"]) == {"rate"} and back["question"].tolist() == back["id"].tolist()


# ---------------------------------------------------------------------------------------------
# simulated users


def _utility(x: np.ndarray) -> np.ndarray:
    return x[:, 0].astype(np.float64)


@pytest.mark.parametrize("form", ["pairwise", "best-of-4"])
def test_a_noiseless_user_chooses_its_best_item(tmp_path: Path, form: str) -> None:
    size = parse_form(form).items
    x = np.random.default_rng(1).uniform(size=(4 * size, 2)).astype(np.float32)
    write_queries(tmp_path / "q.npz", _ids(4 * size), x, form=form, questions=_questions(4, size))
    asked = read_questions(tmp_path / "q.npz")
    rows = ChoiceModel(_utility).answer(asked)
    assert list(rows.columns) == ["question", "choice"]
    for q, choice in rows.itertuples(index=False):
        items = np.flatnonzero(asked.questions == q)
        assert choice == asked.ids[items[np.argmax(x[items, 0])]]


def test_choice_noise_follows_the_logistic_model_and_is_seeded_per_question(
    tmp_path: Path,
) -> None:
    """P(a over b) = sigmoid((u(a) - u(b)) / T): utilities 0.1 apart at T = 0.1 choose the
    better one 73 % of the time; the same question gets the same answer in another batch."""
    n = 2000
    rng = np.random.default_rng(0)
    a = rng.uniform(0.4, 0.6, size=n)
    x = np.zeros((2 * n, 2), np.float32)
    x[0::2, 0], x[1::2, 0] = a + 0.1, a
    x[:, 1] = rng.normal(size=2 * n)  # every question distinct
    ids, questions = _ids(2 * n), _questions(n, 2)
    write_queries(tmp_path / "q.npz", ids, x, form="pairwise", questions=questions)
    model = ChoiceModel(_utility, temperature=0.1, seed=3)
    rows = model.answer(read_questions(tmp_path / "q.npz"))
    better = np.mean([c == ids[2 * j] for j, c in enumerate(rows["choice"])])
    assert abs(better - 1 / (1 + np.exp(-1.0))) < 0.03
    # the first question alone, under other ids: the same item chosen
    write_queries(tmp_path / "r.npz", ["a", "b"], x[:2], form="pairwise", questions=["q", "q"])
    again = model.answer(read_questions(tmp_path / "r.npz"))["choice"][0]
    assert (again == "a") == (rows["choice"][0] == ids[0])


def test_a_user_likes_above_its_threshold(tmp_path: Path) -> None:
    x = np.array([[0.2, 0], [0.7, 0], [0.5, 0], [0.51, 0]], np.float32)
    write_queries(tmp_path / "q.npz", _ids(4), x, form="binary")
    rows = ChoiceModel(_utility, threshold=0.5).answer(read_questions(tmp_path / "q.npz"))
    assert rows.columns.tolist() == ["id", "like"] and rows["like"].tolist() == [0, 1, 0, 1]


# ---------------------------------------------------------------------------------------------
# surrogates


def _pairs_data(n_questions: int, size: int, seed: int):
    """Items on a line, answered by a noiseless user who prefers larger x[0]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n_questions * size, 2)).astype(np.float32)
    y = np.zeros(len(x))
    for q in range(n_questions):
        items = np.arange(q * size, (q + 1) * size)
        y[items[np.argmax(x[items, 0])]] = 1.0
    return x, y, np.repeat([f"q{q}" for q in range(n_questions)], size)


@pytest.mark.parametrize("form", ["pairwise", "best-of-4"])
def test_a_choice_surrogate_learns_the_order_on_the_scale_of_what_was_shown(
    form: str, tmp_path: Path
) -> None:
    """0 at the worst item observed, 1 at the best: the grid spans the data's range."""
    size = parse_form(form).items
    x, y, questions = _pairs_data(160 // size, size, seed=0)
    config = SurrogateConfig(hidden=32, epochs=150, ensemble=2)
    surrogate, report = fit(x, y, config, seed=0, form=form, questions=questions)
    test = np.stack([np.linspace(-2, 2, 41), np.zeros(41)], axis=1).astype(np.float32)
    with torch.no_grad():
        score = surrogate(torch.as_tensor(test)).numpy()
    assert surrogate.head == "choice"
    assert np.corrcoef(np.argsort(np.argsort(score)), np.arange(41))[0, 1] > 0.95
    assert score[0] < 0.15 and score[-1] > 0.85, score[[0, -1]]
    # the checkpoint keeps the head and its anchor: the same scores after loading
    save_surrogate(surrogate, tmp_path / "s", config=config, report=report,
                   training_set_hash=training_set_hash(x, y, form, questions))  # fmt: skip
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["head"]["kind"] == "choice" and len(meta["head"]["anchor"]) == 2
    assert all(s > 0 for s in meta["head"]["span"])
    with torch.no_grad():
        again = load_surrogate(tmp_path / "s")(torch.as_tensor(test)).numpy()
    np.testing.assert_array_equal(again, score)


def test_a_binary_surrogate_is_the_probability_of_a_like() -> None:
    x = np.random.default_rng(0).uniform(-2, 2, size=(200, 2)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.float64)
    surrogate, _ = fit(x, y, SurrogateConfig(hidden=32, epochs=200), seed=0, form="binary")
    with torch.no_grad():
        p = surrogate(torch.tensor([[-1.5, 0.0], [1.8, 0.0]])).numpy()
    assert p[0] < 0.1 and p[1] > 0.9


def test_fits_are_deterministic_and_forms_do_not_warm_start_each_other() -> None:
    x, y, questions = _pairs_data(40, 2, seed=1)
    config = SurrogateConfig(hidden=16, epochs=20)
    a, _ = fit(x, y, config, seed=4, form="pairwise", questions=questions)
    b, _ = fit(x, y, config, seed=4, form="pairwise", questions=questions)
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    warm = SurrogateConfig(hidden=16, epochs=20, warm_start=True)
    with pytest.raises(ValueError, match="cannot warm-start a 'binary' surrogate from a 'choice'"):
        fit(x, y, warm, seed=0, form="binary", init=a)
    with pytest.raises(ValueError, match="need the question of each item"):
        fit(x, y, config, seed=0, form="pairwise")


# ---------------------------------------------------------------------------------------------
# pairing


def test_top_random_puts_each_lead_beside_random_partners() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    leads = Selection(indices=np.array([3, 7, 9]), selected_by=np.array(["top", "top", "random"]))
    got = pairing.compose_questions("top-random", leads, x, x[:, 0], 4, rng)
    assert got.indices.reshape(3, 4)[:, 0].tolist() == [3, 7, 9]
    assert len(set(got.indices.tolist())) == 12
    assert got.selected_by.reshape(3, 4)[:, 1:].tolist() == [["partner"] * 3] * 3
    assert got.question.tolist() == np.repeat([0, 1, 2], 4).tolist()


def test_uncertain_asks_the_pair_the_ensemble_is_least_sure_of() -> None:
    """Brute force over every pair of the candidates: the first question is the pair with the
    largest entropy of the ensemble's mean choice probability."""
    rng = np.random.default_rng(2)
    n = 12
    x = rng.normal(size=(n, 2))
    scores = -np.arange(n, dtype=float)  # particle i ranks i-th
    utilities = rng.normal(size=(3, n)) * 2
    leads = Selection(indices=np.array([0, 1]), selected_by=np.array(["top", "top"]))
    got = pairing.compose_questions(
        "uncertain", leads, x, scores, 2, rng, utilities=utilities, pool=3
    )
    best, best_h = None, -1.0
    for i in range(n):
        for j in range(i + 1, n):
            h = pairing.choice_entropy(utilities[:, [i, j]][:, None, :])[0]
            if h > best_h + 1e-12:
                best, best_h = [i, j], h
    assert got.indices[:2].tolist() == best
    assert len(set(got.indices.tolist())) == 4


# ---------------------------------------------------------------------------------------------
# a campaign per form, end to end (mixture2d, in process)


def _spec(form: str, pairing_rule: str = "top-random", oracle_extra: tuple[str, ...] = ()):
    import yaml

    from prefalign.loop.spec import campaign_spec

    config = yaml.safe_load((Path(__file__).parents[1] / "config/config.yaml").read_text())
    dom = config["domains"]["mixture2d"]
    dom.update(form=form, budget=16, oracle=[*dom["oracle"], *oracle_extra])
    dom["surrogate"]["epochs"] = 30
    dom["sampler"]["n_steps"] = 20
    config["methods"]["fkc-al"]["pairing"] = pairing_rule
    config["n_particles"] = 64
    return campaign_spec(config, "mixture2d", "fkc-al", 0)


@pytest.mark.parametrize(
    ("form", "rule"),
    [("rate", "top-random"), ("binary", "top-random"), ("pairwise", "top-random"),
     ("pairwise", "uncertain"), ("best-of-4", "uncertain")],
)  # fmt: skip
def test_a_campaign_runs_in_each_form(tmp_path: Path, form: str, rule: str) -> None:
    from prefalign.loop.campaign import run_campaign
    from prefalign.oracles.builtin import answer_in_process

    spec = _spec(form, rule, ("--temperature", "0.05") if form != "rate" else ())
    run = run_campaign(spec, tmp_path / "c", runner=answer_in_process, fit_last=True)
    df, _ = read_observations(tmp_path / "c" / "observations-round1.parquet")
    size = parse_form(form).items
    assert set(df["form"]) == {form} and len(df) == 16 * size
    assert df["question"].nunique() == 16  # one question, one unit of budget
    if size > 1:  # each question shows distinct particles, grouped
        assert (df.groupby("question")["id"].count() == size).all()
        sel = pd.read_csv(tmp_path / "c" / "round1" / "selection.csv")
        assert sel["question"].nunique() == 8
    meta = json.loads((run.surrogate / "meta.json").read_text())
    assert meta["head"]["kind"] == {"rate": "rate", "binary": "binary"}.get(form, "choice")


def _bad_answer(form: str, asked) -> tuple[str, str]:
    """An answer file with one bad answer of ``form`` and the message it must fail with."""
    questions = list(dict.fromkeys(asked.questions.tolist()))
    first = questions[0]
    items = [i for i, q in zip(asked.ids.tolist(), asked.questions.tolist(), strict=True)
             if q == first]  # fmt: skip
    if form == "binary":
        rows = [f"{i},{0.5 if n == 0 else 1}" for n, i in enumerate(asked.ids.tolist())]
        return "id,like\n" + "\n".join(rows), f"got '{items[0]}' \\('0.5'\\)"
    if form == "pairwise":  # a third id
        other = next(i for i in asked.ids.tolist() if i not in items)
        rows = [f"{first},{other}"] + [f"{q},tie" for q in questions[1:]]
        return "question,choice\n" + "\n".join(rows), f"question '{first}' shows .* names '{other}'"
    rows = [f"{first},{items[0]}", f"{first},{items[1]}"]  # two favourites
    rows += [f"{q},{i}" for q, i in zip(questions[1:], asked.ids.tolist()[4::4], strict=False)]
    return "question,choice\n" + "\n".join(
        rows
    ), f"'{first}' has 2 \\('{items[0]}', '{items[1]}'\\)"


@pytest.mark.parametrize("form", ["binary", "pairwise", "best-of-4"])
def test_a_bad_answer_fails_the_round_and_records_nothing(tmp_path: Path, form: str) -> None:
    """A binary 0.5, a pair answered with a third id, a group with two favourites: the round's
    observe step names the problem and writes no observations."""
    from prefalign.loop import steps

    spec = _spec(form)
    steps.sample_round(spec, 0, None, tmp_path / "p.npz")
    steps.select_round(spec, 0, tmp_path / "p.npz", tmp_path / "q.npz", tmp_path / "s.csv")
    text, message = _bad_answer(form, read_questions(tmp_path / "q.npz"))
    (tmp_path / "a.csv").write_text(text + "\n")
    with pytest.raises(OracleError, match=message):
        steps.observe_round(
            spec, 0, None, tmp_path / "q.npz", tmp_path / "s.csv", tmp_path / "a.csv",
            tmp_path / "o.parquet",
        )  # fmt: skip
    assert not (tmp_path / "o.parquet").exists()
