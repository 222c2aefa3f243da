"""Shared fixtures: one thread for torch so timings and results are stable on 2 cores, and no
process outliving the test that started it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from processes import reap_strays

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_process_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that has a ``tmp_path``: any process still running in it (its working
    directory or a path on its command line below ``tmp_path``) is ended, and the test fails
    naming it. Module-scoped runs (``tmp_path_factory``) are checked at the end of the session."""
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if folder is None:
        return
    strays = reap_strays(folder, settle_s=5.0)
    if strays:
        pytest.fail("processes outlived the test that started them:\n" + "\n".join(strays))


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """At the end of the session, every process still running in the session's temporary
    folder is ended and reported as an error."""
    yield
    strays = reap_strays(tmp_path_factory.getbasetemp(), settle_s=10.0)
    if strays:
        pytest.fail("processes outlived the test session:\n" + "\n".join(strays))
