"""Regenerate ``docs/human-oracle.png``: the human oracle's rating page for 8x8 digit images
(with ``--form``, the page of another question form: ``docs/human-oracle-<form>.png``).

Needs the ``browser`` extra (the Python ``playwright`` package) and a Chromium binary, by default
Debian's ``/usr/bin/chromium`` (``apt-get install chromium``); no browser is downloaded. Run from
the project root::

    .venv/bin/python docs/make_human_oracle_screenshot.py [--form FORM] [--chromium PATH]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from prefalign.io.feedback import parse_form
from prefalign.io.queries import write_queries
from prefalign.oracles.human.headless import (
    DEFAULT_CHROMIUM,
    launch_chromium,
    oracle_command,
    wait_for_url,
)


def digit_queries(path: Path, count: int = 8, form: str = "rate") -> None:
    """Write ``count`` of scikit-learn's bundled 8x8 digits as queries (k, 1, 8, 8) in [-1, 1],
    asked in ``form`` (consecutive items make a question)."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:count] / 16.0 * 2.0 - 1.0
    if form == "rate":
        ids = np.array([f"round3-q{i:02d}" for i in range(count)])
        np.savez(path, id=ids, x=images[:, None].astype(np.float32))
        return
    size = parse_form(form).items
    ids_list = [f"round3-p{i:02d}" for i in range(count)]
    questions = None if form == "binary" else [f"round3-q{i // size}" for i in range(count)]
    write_queries(path, ids_list, images[:, None], form=form, questions=questions)


#: Per form: how many digits the page shows, and the radio buttons checked before the screenshot
#: (question number, the value's position in its fieldset).
_SHOWN = {
    "rate": (8, [(0, 3), (1, 1), (2, 4)]),
    "binary": (8, [(0, 0), (1, 1), (2, 0)]),
    "pairwise": (8, [(0, 1), (1, 2)]),
    "best-of-4": (12, [(0, 2)]),
}


def main(argv: list[str] | None = None) -> int:
    """Start the oracle on digit queries, rate a few, and screenshot the page."""
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=str(DEFAULT_CHROMIUM), help="Chromium executable")
    parser.add_argument("--form", choices=sorted(_SHOWN), default="rate", help="question form")
    parser.add_argument("--out", type=Path, default=None, help="PNG path")
    args = parser.parse_args(argv)
    if args.out is None:
        suffix = "" if args.form == "rate" else f"-{args.form}"
        args.out = Path(__file__).with_name(f"human-oracle{suffix}.png")
    count, checked = _SHOWN[args.form]
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        queries = folder_path / "queries.npz"
        digit_queries(queries, count, args.form)
        url_file = folder_path / "url.txt"
        options = ["--round", "3", "--budget-left", "40", "--timeout-s", "120"]
        command = oracle_command(queries, folder_path / "rewards.csv", url_file, *options)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            url = wait_for_url(url_file, process)
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright, args.chromium)
                page = browser.new_page(viewport={"width": 1100, "height": 760})
                page.goto(url)
                for index, position in checked:
                    with page.expect_response(lambda response: response.url.endswith("/draft")):
                        page.locator(f"#q{index} input").nth(position).check()
                page.keyboard.press("Tab")  # keyboard focus moves on to the next: show its ring
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
