"""The ``prefalign`` command line: one subcommand per workflow step, each files in, files out.

Run ``prefalign --help`` for the list and ``prefalign SUBCOMMAND --help`` for each one. The
parser is :mod:`prefalign.cli.parser`; each handler (:mod:`prefalign.cli.commands`) calls one
library function.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main", "run_command"]


def build_parser():
    """The argument parser of ``prefalign`` (:func:`prefalign.cli.parser.build_parser`)."""
    from prefalign.cli.parser import build_parser as build

    return build()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefalign`` command: run by the workflow's job server when one is
    up (:mod:`prefalign.cli.job_server`: torch and the rest already imported), else here."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("PREFALIGN_JOB_SERVER"):
        from prefalign.cli.job_server import run_via_server

        code = run_via_server(argv)
        if code is not None:
            return code
    return run_command(argv)


def run_command(argv: Sequence[str]) -> int:
    """Run ``prefalign argv`` in this process: errors are one line naming the subcommand."""
    argv = list(argv)
    if argv[:2] == ["oracle", "human"]:
        # argparse.REMAINDER drops options that come first (python/cpython#61252): the human
        # oracle parses its own arguments, untouched
        from prefalign.oracles.human import main as human_main

        return human_main(argv[2:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SystemExit as err:  # OracleTerminated (prefalign.io.oracle_command), not always imported
        if not isinstance(getattr(err, "signum", None), int):
            raise
        name = signal.Signals(err.signum).name
        print(
            f"prefalign {args.command}: {name}: the oracle and every process it started were "
            "killed; nothing was written",
            file=sys.stderr,
        )
        return int(err.code)
    except KeyboardInterrupt:  # an oracle it ran was killed first (run_oracle)
        print(f"prefalign {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"prefalign {args.command}: error: {err}", file=sys.stderr)
        return 1
