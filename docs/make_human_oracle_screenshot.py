"""Regenerate ``docs/human-oracle.png``: the human oracle's rating page for 8x8 digit images.

Needs the ``browser`` extra (the Python ``playwright`` package) and a Chromium binary, by default
Debian's ``/usr/bin/chromium`` (``apt-get install chromium``); no browser is downloaded. Run from
the project root::

    .venv/bin/python docs/make_human_oracle_screenshot.py [--chromium PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from prefalign.oracles.human.headless import (
    DEFAULT_CHROMIUM,
    launch_chromium,
    oracle_command,
    wait_for_url,
)


def digit_queries(path: Path, count: int = 8) -> None:
    """Write ``count`` of scikit-learn's bundled 8x8 digits as queries (k, 1, 8, 8) in [-1, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:count] / 16.0 * 2.0 - 1.0
    ids = np.array([f"round3-q{i:02d}" for i in range(count)])
    np.savez(path, id=ids, x=images[:, None].astype(np.float32))


def main(argv: list[str] | None = None) -> int:
    """Start the oracle on digit queries, rate a few, and screenshot the page."""
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=str(DEFAULT_CHROMIUM), help="Chromium executable")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("human-oracle.png"), help="PNG path"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        queries = folder_path / "queries.npz"
        digit_queries(queries)
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
                for index, rating in [(0, 4), (1, 2), (2, 5)]:
                    with page.expect_response(lambda response: response.url.endswith("/draft")):
                        page.locator(f"#q{index}").get_by_label(str(rating), exact=True).check()
                page.keyboard.press("Tab")  # keyboard focus moves on to Query 4: show its ring
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
