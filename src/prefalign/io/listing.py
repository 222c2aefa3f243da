"""Short listings of offending values for error messages: the first few, then a count."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

#: How many values an error message lists before "... and N more".
MAX_SHOWN = 5


def shorten(items: Sequence[str], sep: str = ", ") -> str:
    """The first few items joined by ``sep``, then ``... and N more``."""
    shown = sep.join(items[:MAX_SHOWN])
    if len(items) > MAX_SHOWN:
        shown += f"{sep}... and {len(items) - MAX_SHOWN} more"
    return shown


def show(values: Iterable[object], fmt: Callable[[object], str] = repr) -> str:
    """``shorten`` of the values, each formatted by ``fmt`` (``repr``: strings quoted)."""
    return shorten([fmt(v) for v in values])


def duplicates(values: Iterable[str]) -> list[str]:
    """Values seen more than once, in order of their second appearance, each once."""
    seen: set[str] = set()
    dup: dict[str, None] = {}
    for v in values:
        if v in seen:
            dup[v] = None
        seen.add(v)
    return list(dup)


def key_problems(
    got: list[str], expected: list[str], what: str, *, skip_duplicates: bool = False
) -> list[str]:
    """Duplicate, unknown and missing keys of an answer file, as message parts.

    ``got`` are the keys the file names, in file order; ``expected`` those the queries ask.
    """
    problems = []
    dup = duplicates(got)
    if dup and not skip_duplicates:
        problems.append(f"duplicate {what} {show(dup)}")
    known = set(expected)
    unknown = [k for k in dict.fromkeys(got) if k not in known]
    if unknown:
        problems.append(f"unknown {what} (not among the queries) {show(unknown)}")
    present = set(got)
    missing = [k for k in expected if k not in present]
    if missing:
        problems.append(f"missing {what} {show(missing)}")
    return problems
