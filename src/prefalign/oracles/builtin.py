"""The simulated users shipped with the domains, as an oracle command:
``prefalign oracle builtin DOMAIN USER [--noise-std S --noise-seed N] QUERIES.npz REWARDS.csv``.

A user's answers are its reward function on the queries (plus seeded Gaussian noise per query,
:func:`prefalign.domains.answer_noise`); the users themselves live in the domains' modules
(``make_oracle`` / ``Domain.oracle``).
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from prefalign.io.atomic import atomic_path
from prefalign.io.queries import read_queries
from prefalign.settings import parse_options

StrPath = str | os.PathLike[str]

#: The argv that starts a built-in user (the workflow appends QUERIES REWARDS).
COMMAND = ("prefalign", "oracle", "builtin")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments, on ``parser``."""
    parser.add_argument("domain")
    parser.add_argument("user", help="the simulated user's name (see the domain's docs)")
    parser.add_argument("--domain-option", action="append", metavar="KEY=VALUE")
    parser.add_argument("--noise-std", type=float, default=0.0, help="Gaussian noise on answers")
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
) -> np.ndarray:
    """Write ``user``'s answers to the queries file as the rewards CSV (``id,reward``, every
    digit of each float); returns the rewards."""
    from prefalign.domains import get_oracle

    oracle = get_oracle(domain, user, options, noise_std=noise_std, noise_seed=noise_seed)
    return _write_answers(oracle, queries, rewards)[1]


def _write_answers(user, queries: StrPath, rewards: StrPath) -> tuple[np.ndarray, np.ndarray]:
    """Answer the queries file with the reward function ``user``: the rewards CSV (``id,reward``,
    every digit of each float); returns the ids and the answers."""
    ids, x = read_queries(queries)
    answers = np.asarray(user(x), dtype=np.float64)
    pd.DataFrame({"id": ids, "reward": answers}).to_csv(rewards, index=False, float_format="%.17g")
    return ids, answers


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
def user_function(argv: tuple[str, ...]):
    """The reward function a built-in user's argv answers with (its noise included), or None for
    any other command; built once per argv."""
    from prefalign.domains import get_oracle

    args = _parse(argv)
    if args is None:
        return None
    options = parse_options(args.domain_option)
    return get_oracle(
        args.domain, args.user, options, noise_std=args.noise_std, noise_seed=args.noise_seed
    )


def answer_in_process(
    argv: Sequence[str], queries: StrPath, rewards: StrPath, *args: Any, **kwargs: Any
) -> pd.Series:
    """:func:`~prefalign.io.oracle_command.run_oracle` (same arguments) for a study in one
    process: a built-in user's argv is answered here (the same CSV as the command, no interpreter
    start per batch) and validated the same way; any other oracle runs as its command."""
    from prefalign.io.oracle_command import run_oracle
    from prefalign.io.queries import read_rewards

    user = user_function(tuple(argv))
    if user is None:
        return run_oracle(argv, queries, rewards, *args, **kwargs)
    # like run_oracle: the rewards file appears only once its answers are valid
    with atomic_path(rewards) as tmp:
        ids, _ = _write_answers(user, queries, tmp)
        answers = read_rewards(tmp, list(ids))
    return answers


def builtin_user(argv: Sequence[str], domain: str) -> str | None:
    """The user an oracle argv runs when it is this domain's built-in user (so the final samples
    can be drawn coloured by its reward), else None."""
    args = _parse(argv)
    return args.user if args is not None and args.domain == domain else None
