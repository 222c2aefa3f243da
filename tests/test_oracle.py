"""Tests for the oracle contract: queries file, rewards CSV, running the oracle command."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefalign.io import oracle_command
from prefalign.io import queries as queries_file
from prefalign.io.oracle_command import run_oracle
from prefalign.io.queries import OracleError, read_queries, read_rewards, write_queries

IDS = ["r1-0000", "r1-0001", "r1-0002"]


@pytest.fixture
def x() -> np.ndarray:
    return np.arange(3 * 2 * 2, dtype=np.float64).reshape(3, 2, 2) / 7


@pytest.fixture
def queries(tmp_path: Path, x: np.ndarray) -> Path:
    path = tmp_path / "queries.npz"
    write_queries(path, IDS, x)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# ----------------------------------------------------------------------------------------------
# queries


def test_queries_round_trip(queries: Path, x: np.ndarray) -> None:
    ids, got = read_queries(queries)
    assert ids.dtype.kind == "U"
    assert ids.tolist() == IDS
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(np.float32))
    with np.load(queries, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["id", "x"]


def test_write_queries_is_deterministic(
    tmp_path: Path, x: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    write_queries(a, IDS, x)
    later = time.time() + 400 * 86400  # a clock-dependent zip timestamp would now differ
    monkeypatch.setattr(time, "time", lambda: later)
    write_queries(b, IDS, x)
    assert a.read_bytes() == b.read_bytes()


def test_write_queries_leaves_no_temp_files_and_readable_mode(queries: Path) -> None:
    assert [p.name for p in queries.parent.iterdir()] == ["queries.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert queries.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_queries_failure_keeps_previous_file(
    queries: Path, x: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = queries.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(queries_file.np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        write_queries(queries, ["other"], x[:1])
    assert queries.read_bytes() == before
    assert [p.name for p in queries.parent.iterdir()] == ["queries.npz"]


@pytest.mark.parametrize(
    ("ids", "rows", "match"),
    [
        (["a", "a", "b"], 3, "duplicate ids 'a'"),
        (["a", "b"], 3, "2 ids but 3 rows"),
        (["a", "", "c"], 3, "empty id"),
    ],
)
def test_write_queries_rejects_bad_ids(
    tmp_path: Path, x: np.ndarray, ids: list[str], rows: int, match: str
) -> None:
    with pytest.raises(OracleError, match=match):
        write_queries(tmp_path / "q.npz", ids, x[:rows])
    assert not (tmp_path / "q.npz").exists()


def test_write_queries_rejects_non_finite(tmp_path: Path, x: np.ndarray) -> None:
    x[1, 0, 0] = np.nan
    with pytest.raises(OracleError, match=r"non-finite values in `x` for ids 'r1-0001'"):
        write_queries(tmp_path / "q.npz", IDS, x)


def test_read_queries_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OracleError, match="does not exist"):
        read_queries(tmp_path / "nope.npz")


def test_read_queries_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "q.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(OracleError, match=f"{path}.*not a readable .npz"):
        read_queries(path)


def test_read_queries_missing_array(tmp_path: Path) -> None:
    path = tmp_path / "q.npz"
    np.savez(path, id=np.array(["a"]))
    with pytest.raises(OracleError, match=r"lacks array\(s\) \['x'\]"):
        read_queries(path)


def test_read_queries_rejects_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "q.npz"
    np.savez(path, id=np.array(["a", 1], dtype=object), x=np.zeros((2, 1)))
    with pytest.raises(OracleError, match="not a readable .npz"):
        read_queries(path)


def test_read_queries_validates_content(tmp_path: Path) -> None:
    path = tmp_path / "q.npz"
    np.savez(path, id=np.array(["a", "a"]), x=np.zeros((2, 1)))
    with pytest.raises(OracleError, match="duplicate ids 'a'"):
        read_queries(path)
    np.savez(path, id=np.array(["a", "b"]), x=np.zeros((3, 1)))
    with pytest.raises(OracleError, match="2 ids but 3 rows"):
        read_queries(path)
    np.savez(path, id=np.array(["a", "b"]), x=np.array([[0.0], [np.inf]]))
    with pytest.raises(OracleError, match="non-finite values in `x` for ids 'b'"):
        read_queries(path)
    np.savez(path, id=np.array([1, 2]), x=np.zeros((2, 1)))
    with pytest.raises(OracleError, match="`id` must be unicode strings"):
        read_queries(path)


# ----------------------------------------------------------------------------------------------
# rewards


def test_read_rewards_valid(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "r.csv",
        """
        id,reward
        r1-0002,-1.5
        r1-0000,2
        r1-0001,3e-2
        """,
    )
    got = read_rewards(path, IDS)
    expected = pd.Series([2.0, 0.03, -1.5], index=pd.Index(IDS, name="id"), name="reward")
    pd.testing.assert_series_equal(got, expected)
    assert got.dtype == np.float64


def test_read_rewards_accepts_crlf_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xef\xbb\xbfid,reward\r\nr1-0000,1\r\nr1-0001,2\r\nr1-0002,3\r\n")
    assert read_rewards(path, IDS).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("id,value\nr1-0000,1\n", "has header 'id,value'; expected exactly 'id,reward'"),
        ("reward,id\n", "has header 'reward,id'"),
        ("id,reward,extra\n", "has header 'id,reward,extra'"),
        ("r1-0000,1\nr1-0001,2\n", "has header 'r1-0000,1'"),
        ("id,reward\nr1-0000,1\nr1-0001,2\n", "missing ids 'r1-0002'"),
        ("id,reward\nr1-0000,1\nr1-0001,2\nr1-0002,3\nr1-0001,2\n", "duplicate ids 'r1-0001'"),
        ("id,reward\nr1-0000,1\nr1-0001,2\nr1-0002,3\nzzz,4\n", "unknown ids .*'zzz'"),
        ("id,reward\nr1-0000,1\nr1-0001,good\nr1-0002,3\n", "non-numeric rewards for 'r1-0001'"),
        ("id,reward\nr1-0000,1\nr1-0001,\nr1-0002,3\n", "non-numeric rewards for 'r1-0001'"),
        ("id,reward\nr1-0000,nan\nr1-0001,2\nr1-0002,3\n", r"non-finite .*'r1-0000' \(nan\)"),
        ("id,reward\nr1-0000,1\nr1-0001,-inf\nr1-0002,3\n", r"non-finite .*'r1-0001'"),
        ("id,reward\nr1-0000,1\nr1-0001,2,3\nr1-0002,3\n", r"exactly 2 fields on line\(s\) \[3\]"),
    ],
)
def test_read_rewards_rejects(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(body)
    with pytest.raises(OracleError, match=match) as info:
        read_rewards(path, IDS)
    assert str(path) in str(info.value)


def test_read_rewards_reports_all_problems_and_truncates_ids(tmp_path: Path) -> None:
    ids = [f"q{i}" for i in range(10)]
    path = tmp_path / "r.csv"
    path.write_text("id,reward\nq0,1\nq0,1\nbogus,2\n")
    with pytest.raises(OracleError) as info:
        read_rewards(path, ids)
    msg = str(info.value)
    assert "duplicate ids 'q0'" in msg
    assert "unknown ids" in msg and "'bogus'" in msg
    assert "missing ids 'q1', 'q2', 'q3', 'q4', 'q5', ... and 4 more" in msg


def test_read_rewards_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OracleError, match="does not exist"):
        read_rewards(tmp_path / "none.csv", IDS)


def test_oracle_error_is_a_value_error() -> None:
    assert issubclass(OracleError, ValueError)


# ----------------------------------------------------------------------------------------------
# run_oracle

# Each script gets QUERIES and REWARDS as its last two arguments.
ORACLES = {
    "good": """
        import sys, numpy as np
        q, r = sys.argv[-2], sys.argv[-1]
        with np.load(q) as d:
            ids, x = d["id"], d["x"]
        print("scoring", len(ids), "queries")
        print("stderr works", file=sys.stderr)
        with open(r, "w") as f:
            f.write("id,reward\\n")
            for i, xi in zip(ids, x):
                f.write(f"{i},{float(xi.sum())}\\n")
    """,
    "pieces": """
        import sys, time
        q, r = sys.argv[-2], sys.argv[-1]
        sys.stdout.write("scoring"); sys.stdout.flush(); time.sleep(0.3)
        print("stderr works", file=sys.stderr, flush=True); time.sleep(0.3)
        sys.stdout.write(" 3 queries\\n"); sys.stdout.flush()
        import numpy as np
        ids = np.load(q)["id"]
        with open(r, "w") as f:
            f.write("id,reward\\n" + "".join(f"{i},1\\n" for i in ids))
    """,
    "fail": """
        import sys
        print("user closed the browser", file=sys.stderr)
        sys.exit(3)
    """,
    "omit": """
        import sys, numpy as np
        ids = np.load(sys.argv[-2])["id"]
        with open(sys.argv[-1], "w") as f:
            f.write("id,reward\\n" + "".join(f"{i},1\\n" for i in ids[:-1]))
    """,
    "repeat": """
        import sys, numpy as np
        ids = np.load(sys.argv[-2])["id"]
        with open(sys.argv[-1], "w") as f:
            f.write("id,reward\\n" + "".join(f"{i},1\\n" for i in [*ids, ids[0]]))
    """,
    "unknown": """
        import sys, numpy as np
        ids = np.load(sys.argv[-2])["id"]
        with open(sys.argv[-1], "w") as f:
            f.write("id,reward\\n" + "".join(f"{i},1\\n" for i in [*ids, "intruder"]))
    """,
    "nan": """
        import sys, numpy as np
        ids = np.load(sys.argv[-2])["id"]
        with open(sys.argv[-1], "w") as f:
            f.write("id,reward\\n" + "".join(f"{i},nan\\n" for i in ids))
    """,
    "text": """
        import sys, numpy as np
        ids = np.load(sys.argv[-2])["id"]
        with open(sys.argv[-1], "w") as f:
            f.write("id,reward\\n" + "".join(f"{i},looks good\\n" for i in ids))
    """,
    "silent": """
        pass
    """,
    "args": """
        import sys, json, numpy as np
        ids = np.load(sys.argv[-2])["id"]
        with open(sys.argv[-1], "w") as f:
            f.write("id,reward\\n" + "".join(f"{i},0\\n" for i in ids))
        with open(sys.argv[1], "w") as f:
            json.dump(sys.argv[2:], f)
    """,
}


def script(tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / f"oracle_{name}.py"
    path.write_text(textwrap.dedent(ORACLES[name]).lstrip("\n"))
    return [sys.executable, str(path)]


def only_expected_files(directory: Path, *names: str) -> None:
    """No temporary rewards file (or anything else unexpected) is left behind."""
    left = sorted(p.name for p in directory.iterdir() if not p.name.startswith("oracle_"))
    assert left == sorted(names)


def test_run_oracle_success(tmp_path: Path, queries: Path, x: np.ndarray) -> None:
    rewards_path = tmp_path / "rewards.csv"
    log = tmp_path / "logs" / "oracle.log"
    got = run_oracle(script(tmp_path, "good"), queries, rewards_path, timeout_s=30, log_path=log)
    expected = x.astype(np.float32).reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-6)
    assert got.index.tolist() == IDS
    pd.testing.assert_series_equal(read_rewards(rewards_path, IDS), got)
    text = log.read_text()
    assert "running oracle" in text
    assert "scoring 3 queries" in text  # stdout logged
    assert "stderr works" in text  # stderr logged
    only_expected_files(tmp_path, "queries.npz", "rewards.csv", "logs")


def test_run_oracle_logs_whole_lines(tmp_path: Path, queries: Path) -> None:
    """An unbuffered oracle writes a line in pieces; the other stream's lines never split it."""
    log = tmp_path / "oracle.log"
    run_oracle(script(tmp_path, "pieces"), queries, tmp_path / "r.csv", 30, log)
    lines = log.read_text().splitlines()
    assert "scoring 3 queries" in lines and "stderr works" in lines


def test_run_oracle_appends_to_log(tmp_path: Path, queries: Path) -> None:
    log = tmp_path / "oracle.log"
    log.write_text("earlier line\n")
    run_oracle(script(tmp_path, "good"), queries, tmp_path / "r.csv", 30, log)
    assert log.read_text().startswith("earlier line\n")


def test_run_oracle_without_log_inherits_output(
    tmp_path: Path, queries: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_oracle(script(tmp_path, "good"), queries, tmp_path / "r.csv", 30, None)
    out, err = capfd.readouterr()
    assert "scoring 3 queries" in out
    assert "stderr works" in err


def test_run_oracle_passes_argv_then_paths(tmp_path: Path, queries: Path) -> None:
    seen = tmp_path / "seen.json"
    cmd = [*script(tmp_path, "args"), str(seen), "--flag", "a b; rm -rf /"]
    run_oracle(cmd, queries, tmp_path / "rewards.csv", 30, None)
    argv = json.loads(seen.read_text())
    assert argv[:2] == ["--flag", "a b; rm -rf /"]  # passed verbatim, no shell
    assert argv[2] == str(queries)
    assert argv[3] != str(tmp_path / "rewards.csv")  # a temporary path ...
    assert Path(argv[3]).parent == tmp_path  # ... beside the final one
    assert argv[3].endswith(".csv")


FAILURES = [
    ("fail", r"(?s)exited with code 3: .*user closed the browser"),
    ("omit", r"missing ids 'r1-0002'"),
    ("repeat", r"duplicate ids 'r1-0000'"),
    ("unknown", r"unknown ids .*'intruder'"),
    ("nan", r"non-finite rewards .*'r1-0000' \(nan\), 'r1-0001'"),
    ("text", r"non-numeric rewards for 'r1-0000' \('looks good'\)"),
    ("silent", r"exited 0 but wrote no rewards file"),
]


@pytest.mark.parametrize(("name", "match"), FAILURES, ids=[f[0] for f in FAILURES])
def test_run_oracle_failures_leave_no_rewards(
    tmp_path: Path, queries: Path, name: str, match: str
) -> None:
    rewards_path = tmp_path / "rewards.csv"
    rewards_path.write_text("id,reward\nstale,1\n")  # from an earlier run: must not survive
    with pytest.raises(OracleError, match=match):
        run_oracle(script(tmp_path, name), queries, rewards_path, 30, tmp_path / "o.log")
    assert not rewards_path.exists()
    only_expected_files(tmp_path, "queries.npz", "o.log")


def test_run_oracle_nonzero_exit_message(tmp_path: Path, queries: Path) -> None:
    with pytest.raises(OracleError) as info:
        run_oracle(script(tmp_path, "fail"), queries, tmp_path / "r.csv", 30, None)
    msg = str(info.value)
    assert "code 3" in msg
    assert "oracle_fail.py" in msg  # names the command
    assert "user closed the browser" in msg  # tail of stderr, also when not logging


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" in state.split()[1]


def test_run_oracle_timeout_kills_process_group(tmp_path: Path, queries: Path) -> None:
    pids = tmp_path / "pids.txt"
    hang = tmp_path / "oracle_hang.py"
    hang.write_text(
        textwrap.dedent(
            f"""
            import os, subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            with open({str(pids)!r}, "w") as f:
                f.write(f"{{os.getpid()}} {{child.pid}}")
            time.sleep(60)
            """
        )
    )
    rewards_path = tmp_path / "rewards.csv"
    start = time.monotonic()
    with pytest.raises(OracleError, match=r"oracle timed out after 1.5s: .*oracle_hang\.py"):
        run_oracle([sys.executable, str(hang)], queries, rewards_path, 1.5, tmp_path / "o.log")
    assert time.monotonic() - start < 15
    leader, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while not (process_gone(leader) and process_gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_gone(leader)
    assert process_gone(child)  # the grandchild died with the group
    assert not rewards_path.exists()


def test_run_oracle_timeout_when_sigterm_is_ignored(
    tmp_path: Path, queries: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oracle_command, "_KILL_GRACE_S", 0.5)
    stubborn = tmp_path / "oracle_stubborn.py"
    stubborn.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    )
    with pytest.raises(OracleError, match="timed out"):
        run_oracle([sys.executable, str(stubborn)], queries, tmp_path / "r.csv", 0.5, None)


def test_run_oracle_missing_executable(tmp_path: Path, queries: Path) -> None:
    rewards_path = tmp_path / "rewards.csv"
    with pytest.raises(OracleError, match="'no-such-oracle-xyz' not found"):
        run_oracle(["no-such-oracle-xyz", "--flag"], queries, rewards_path, 5, None)
    assert not rewards_path.exists()


def test_run_oracle_not_executable(tmp_path: Path, queries: Path) -> None:
    path = tmp_path / "oracle_plain.py"
    path.write_text("print('hi')\n")
    path.chmod(0o644)
    if os.access(path, os.X_OK):  # e.g. root on some file systems
        pytest.skip("file system ignores the execute bit")
    with pytest.raises(OracleError, match="is not executable"):
        run_oracle([str(path)], queries, tmp_path / "r.csv", 5, None)


def test_run_oracle_missing_queries(tmp_path: Path) -> None:
    with pytest.raises(OracleError, match="queries file .* does not exist"):
        run_oracle(script(tmp_path, "good"), tmp_path / "q.npz", tmp_path / "r.csv", 5, None)


@pytest.mark.parametrize("argv", ["python oracle.py", [], [sys.executable, 3]])
def test_run_oracle_rejects_bad_argv(tmp_path: Path, queries: Path, argv: object) -> None:
    with pytest.raises(TypeError, match="argv must be a non-empty list of strings"):
        run_oracle(argv, queries, tmp_path / "r.csv", 5, None)  # type: ignore[arg-type]


def test_run_oracle_rejects_bad_timeout(tmp_path: Path, queries: Path) -> None:
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        run_oracle(script(tmp_path, "good"), queries, tmp_path / "r.csv", 0, None)


def test_rewards_file_hash_is_stable(tmp_path: Path, queries: Path) -> None:
    """The rewards file is the oracle's own bytes, renamed: nothing is rewritten."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    run_oracle(script(tmp_path, "good"), queries, a, 30, None)
    run_oracle(script(tmp_path, "good"), queries, b, 30, None)
    assert hashlib.md5(a.read_bytes()).digest() == hashlib.md5(b.read_bytes()).digest()


# ----------------------------------------------------------------------------------------------
# hardening (issue 13): every process of the oracle dies with its job; bounded inputs and logs

# A hanging oracle: records its pid, starts a grandchild in a new session (``setsid``) that keeps
# stderr open, records its pid, and writes a stray temporary rewards file a few seconds later.
SETSID_ORACLE = """
import os, subprocess, sys, time
pids, mode = sys.argv[1], sys.argv[2]
rewards = sys.argv[-1]
grandchild = subprocess.Popen(
    [sys.executable, "-c",
     "import sys, time; time.sleep(float(sys.argv[1])); open(sys.argv[2], 'w').write('stray')",
     "3", rewards + ".stray"],
    start_new_session=True,
)
with open(pids, "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
if mode == "exit":  # answer well, leave the grandchild behind holding stderr
    import numpy as np
    ids = np.load(sys.argv[-2])["id"]
    with open(rewards, "w") as f:
        f.write("id,reward\\n" + "".join(f"{i},1\\n" for i in ids))
    sys.exit(0)
time.sleep(600)
"""

# The runner takes Ctrl-C as an interactive run does: a test suite started in the background by
# a non-interactive shell (`cmd &`) inherits SIGINT ignored, and Python then leaves it ignored.
RUNNER = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from prefalign.io.oracle_command import run_oracle
run_oracle(sys.argv[4:], sys.argv[1], sys.argv[2], None, sys.argv[3])
"""


def _setsid_oracle(tmp_path: Path, mode: str) -> tuple[list[str], Path]:
    path, pids = tmp_path / "oracle_setsid.py", tmp_path / "oracle_pids.txt"
    path.write_text(SETSID_ORACLE)
    return [sys.executable, str(path), str(pids), mode], pids


def _wait_pids(pids: Path, timeout_s: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline, "the oracle did not start"
        time.sleep(0.02)
    return [int(p) for p in pids.read_text().split()]


def _all_gone(pids: list[int], timeout_s: float = 5) -> bool:
    deadline = time.monotonic() + timeout_s
    while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return all(process_gone(p) for p in pids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_the_runner_kills_the_oracle_and_its_setsid_grandchild(
    tmp_path: Path, queries: Path, sig: signal.Signals
) -> None:
    """SIGTERM (scancel, a CI time-out, Snakemake stopping a job) or SIGINT to the process that
    runs the oracle used to leave the oracle running (its own session), holding the page's port,
    and its grandchild later wrote a stray temporary file."""
    argv, pids = _setsid_oracle(tmp_path, "hang")
    rewards, log = tmp_path / "rewards.csv", tmp_path / "oracle.log"
    env = {**os.environ, "PYTHONPATH": str(Path(queries_file.__file__).parents[2])}
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(queries), str(rewards), str(log), *argv], env=env
    )
    try:
        leader, grandchild = _wait_pids(pids)
        runner.send_signal(sig)
        code = runner.wait(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert code != 0
    assert _all_gone([leader, grandchild]), "a process of the oracle outlived its job"
    time.sleep(3.5)  # the grandchild would have written its stray file by now
    only_expected_files(tmp_path, "queries.npz", "oracle.log")


def test_timeout_kills_a_setsid_grandchild(tmp_path: Path, queries: Path) -> None:
    """The time-out killed the oracle's process group only: a grandchild that called setsid
    survived it."""
    argv, pids = _setsid_oracle(tmp_path, "hang")
    with pytest.raises(OracleError, match="timed out"):
        run_oracle(argv, queries, tmp_path / "rewards.csv", 1.0, tmp_path / "oracle.log")
    assert _all_gone(_wait_pids(pids))
    time.sleep(3.5)
    only_expected_files(tmp_path, "queries.npz", "oracle.log")


def test_grandchild_holding_stderr_open_does_not_delay_the_return(
    tmp_path: Path, queries: Path
) -> None:
    """An oracle that answers and exits, leaving a setsid grandchild with its stderr open: the
    runner waited for the pipe's end (5 s) and left the grandchild running."""
    argv, pids = _setsid_oracle(tmp_path, "exit")
    start = time.monotonic()
    run_oracle(argv, queries, tmp_path / "rewards.csv", 30, tmp_path / "oracle.log")
    assert time.monotonic() - start < 3.0
    assert _all_gone(_wait_pids(pids))
    time.sleep(3.5)
    only_expected_files(tmp_path, "queries.npz", "rewards.csv", "oracle.log")


def test_oracle_output_in_the_log_is_capped(tmp_path: Path, queries: Path) -> None:
    """40 MB of oracle output went to the log uncapped."""
    loud = tmp_path / "oracle_loud.py"
    loud.write_text(
        textwrap.dedent(
            """
            import sys, numpy as np
            block = b"x" * (1 << 20)
            for _ in range(20):
                sys.stdout.buffer.write(block); sys.stderr.buffer.write(block)
            ids = np.load(sys.argv[-2])["id"]
            with open(sys.argv[-1], "w") as f:
                f.write("id,reward\\n" + "".join(f"{i},1\\n" for i in ids))
            """
        )
    )
    log = tmp_path / "oracle.log"
    run_oracle([sys.executable, str(loud)], queries, tmp_path / "rewards.csv", 60, log)
    size = log.stat().st_size
    assert size <= (8 << 20) + 4096, size  # oracle_command.MAX_LOG_BYTES and a few lines of its own
    assert "the rest is not logged" in log.read_text()[-500:]


def test_rewards_file_over_the_size_limit_is_refused_unread(tmp_path: Path, queries: Path) -> None:
    """A 30 MB rewards file was read whole into memory (and reported as unknown ids)."""
    big = tmp_path / "big.csv"
    with big.open("w") as fh:
        fh.write("id,reward\n")
        fh.write("r1-0000,1\nr1-0001,1\nr1-0002,1\n")
        fh.write("x,1\n" * 7_500_000)
    with pytest.raises(OracleError, match=r"larger than the limit of \d+ bytes"):
        read_rewards(big, IDS)
    writer = tmp_path / "oracle_big.py"
    writer.write_text(f"import shutil, sys\nshutil.copyfile({str(big)!r}, sys.argv[-1])\n")
    with pytest.raises(OracleError, match=r"larger than the limit of \d+ bytes"):
        run_oracle([sys.executable, str(writer)], queries, tmp_path / "rewards.csv", 60, None)
    assert not (tmp_path / "rewards.csv").exists()
    assert queries_file.rewards_size_limit(IDS) < 2 << 20  # a few rows: about a megabyte, no more


def test_oracle_log_is_private(tmp_path: Path, queries: Path) -> None:
    """oracle.log holds the human oracle's URL with its token; it was 0644 (and a log the shell
    redirection created first kept the umask's mode)."""
    log = tmp_path / "oracle.log"
    log.write_text("")
    log.chmod(0o644)
    run_oracle(script(tmp_path, "good"), queries, tmp_path / "r.csv", 30, log)
    assert log.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "fresh.log"
    run_oracle(script(tmp_path, "good"), queries, tmp_path / "r2.csv", 30, fresh)
    assert fresh.stat().st_mode & 0o777 == 0o600
