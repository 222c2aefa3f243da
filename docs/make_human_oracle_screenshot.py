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
import time
from pathlib import Path

import numpy as np

#: Flags for Chromium in a closed sandbox-less container (no network, no GPU).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def digit_queries(path: Path, count: int = 8) -> None:
    """Write ``count`` of scikit-learn's bundled 8x8 digits as queries (k, 1, 8, 8) in [-1, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images[:count] / 16.0 * 2.0 - 1.0
    ids = np.array([f"round3-q{i:02d}" for i in range(count)])
    np.savez(path, id=ids, x=images[:, None].astype(np.float32))


def wait_for_url(url_file: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> str:
    """The URL the oracle writes to ``url_file`` once it listens."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if url_file.exists():
            return url_file.read_text().strip()
        if process.poll() is not None:
            raise RuntimeError(f"the oracle exited early with status {process.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"the oracle wrote no URL to {url_file} within {timeout_s} s")


def main(argv: list[str] | None = None) -> int:
    """Start the oracle on digit queries, rate a few, and screenshot the page."""
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("human-oracle.png"), help="PNG path"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        queries = folder_path / "queries.npz"
        digit_queries(queries)
        url_file = folder_path / "url.txt"
        command = [sys.executable, "-m", "prefalign.oracles.human", "--url-file", str(url_file)]
        command += ["--round", "3", "--budget-left", "40", "--timeout-s", "120"]
        command += [str(queries), str(folder_path / "rewards.csv")]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            url = wait_for_url(url_file, process)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=args.chromium, args=CHROMIUM_ARGS
                )
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
