"""The simulated users shipped with the domains, as an oracle command:
``prefalign oracle builtin DOMAIN USER [--noise-std S] [--temperature T] [--like-threshold L]
[--tie-margin M] [--noise-seed N] QUERIES.npz ANSWERS.csv``.

A user's utility is its reward function on the queries; it answers the queries file's question
form (:mod:`prefalign.io.feedback`) by the noise model of :mod:`prefalign.oracles.choice_model`:
ratings with seeded Gaussian noise per query (:func:`prefalign.domains.answer_noise`), likes,
pairwise and best-of-K choices by a logistic choice model with temperature ``T``. The users
themselves live in the domains' modules (``make_oracle`` / ``Domain.oracle``).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from prefalign.io.atomic import atomic_path
from prefalign.io.queries import read_questions
from prefalign.oracles.choice_model import ChoiceModel
from prefalign.settings import parse_options

StrPath = str | os.PathLike[str]

#: The argv that starts a built-in user (the workflow appends QUERIES REWARDS).
COMMAND = ("prefalign", "oracle", "builtin")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments, on ``parser``."""
    parser.add_argument("domain")
    parser.add_argument("user", help="the simulated user's name (see the domain's docs)")
    parser.add_argument("--domain-option", action="append", metavar="KEY=VALUE")
    parser.add_argument(
        "--noise-std", type=float, default=0.0, help="Gaussian noise on ratings (form rate)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="choice noise of likes, pairs and groups (logistic / softmax; 0: no noise)",
    )
    parser.add_argument(
        "--like-threshold", type=float, default=0.5, help="binary: likes a utility above this"
    )
    parser.add_argument(
        "--tie-margin", type=float, default=0.0, help="pairwise: 'tie' when utilities differ less"
    )
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("queries")
    parser.add_argument("rewards")


def answer_queries(
    domain: str,
    user: str,
    queries: StrPath,
    rewards: StrPath,
    *,
    options: dict[str, Any] | None = None,
    noise_std: float = 0.0,
    noise_seed: int = 0,
    temperature: float = 0.0,
    like_threshold: float = 0.5,
    tie_margin: float = 0.0,
) -> pd.DataFrame:
    """Write ``user``'s answers to the queries file in its form (a rating CSV ``id,reward`` with
    every digit of each float, or the rows of another form); returns the rows written."""
    model = choice_model(
        domain, user, options, noise_std, noise_seed, temperature, like_threshold, tie_margin
    )
    return _write_answers(model, queries, rewards)[1]


def choice_model(
    domain: str,
    user: str,
    options: dict[str, Any] | None,
    noise_std: float,
    noise_seed: int,
    temperature: float,
    like_threshold: float,
    tie_margin: float,
) -> ChoiceModel:
    """The built-in ``user`` of ``domain`` with its noise model in every form."""
    from prefalign.domains import get_oracle

    utility = get_oracle(domain, user, options)
    rating = (
        get_oracle(domain, user, options, noise_std=noise_std, noise_seed=noise_seed)
        if noise_std > 0
        else utility
    )
    return ChoiceModel(
        utility=utility,
        rating=rating,
        temperature=temperature,
        threshold=like_threshold,
        tie_margin=tie_margin,
        seed=noise_seed,
    )


def _write_answers(model: ChoiceModel, queries: StrPath, answers: StrPath):
    """Answer the queries file with ``model`` in the file's form; returns the questions and the
    rows written."""
    questions = read_questions(queries)
    rows = model.answer(questions)
    rows.to_csv(answers, index=False, float_format="%.17g")
    return questions, rows


class _QuietParser(argparse.ArgumentParser):
    """Raises on bad arguments instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise ValueError(message)


def _parse(argv: Sequence[str]) -> argparse.Namespace | None:
    """The arguments of a built-in user's argv (without QUERIES REWARDS), or None for any other
    command."""
    if tuple(argv[: len(COMMAND)]) != COMMAND:
        return None
    parser = _QuietParser(add_help=False)
    add_arguments(parser)
    try:  # the workflow appends QUERIES REWARDS; the spec's argv stops before them
        args, unknown = parser.parse_known_args([*argv[len(COMMAND) :], "QUERIES", "REWARDS"])
    except ValueError:  # not a valid builtin argv: run as the command, which says what is wrong
        return None
    return None if unknown else args


def is_builtin(argv: Sequence[str]) -> bool:
    """Whether an oracle argv starts one of the built-in users (which the workflow answers in
    process, in the round's ``answer`` job) rather than a command of its own."""
    return _parse(argv) is not None


@functools.lru_cache(maxsize=16)
def user_function(argv: tuple[str, ...]) -> ChoiceModel | None:
    """How a built-in user's argv answers (its noise included), or None for any other command;
    built once per argv."""
    args = _parse(argv)
    if args is None:
        return None
    return choice_model(
        args.domain,
        args.user,
        parse_options(args.domain_option),
        args.noise_std,
        args.noise_seed,
        args.temperature,
        args.like_threshold,
        args.tie_margin,
    )


def answer_in_process(
    argv: Sequence[str], queries: StrPath, rewards: StrPath, *args: Any, **kwargs: Any
) -> pd.Series:
    """:func:`~prefalign.io.oracle_command.run_oracle` (same arguments) for a study in one
    process: a built-in user's argv is answered here (the same CSV as the command, no interpreter
    start per batch) and validated the same way; any other oracle runs as its command."""
    from prefalign.io.oracle_command import run_oracle
    from prefalign.io.queries import read_answers

    user = user_function(tuple(argv))
    if user is None:
        return run_oracle(argv, queries, rewards, *args, **kwargs)
    # like run_oracle: the answers file appears only once its answers are valid
    with atomic_path(rewards) as tmp:
        questions, _ = _write_answers(user, queries, tmp)
        answers = read_answers(tmp, questions)
    return answers


def builtin_user(argv: Sequence[str], domain: str) -> str | None:
    """The user an oracle argv runs when it is this domain's built-in user (so the final samples
    can be drawn coloured by its reward), else None."""
    args = _parse(argv)
    return args.user if args is not None and args.domain == domain else None
