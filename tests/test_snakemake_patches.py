"""The scheduler fix of prefalign.snakemake_patches: one pending wake-up, and it still wakes."""

from __future__ import annotations

import threading
import time

from prefalign import snakemake_patches


class FakeScheduler:
    """What the patched method touches: the semaphore that wakes the scheduling loop."""

    def __init__(self) -> None:
        self._open_jobs = threading.Semaphore(0)


def test_many_requests_leave_one_pending_wakeup_that_fires() -> None:
    scheduler = FakeScheduler()
    for _ in range(50):  # 50 passes, each asking for a wake-up one window later
        snakemake_patches.schedule_one_wakeup(scheduler, 0.2)
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    pending = getattr(scheduler, snakemake_patches._PENDING)
    assert pending in timers and pending.daemon  # a daemon: never holds the process open
    assert sum(t is pending for t in timers) == 1
    assert scheduler._open_jobs.acquire(timeout=5)  # the one wake-up came
    assert not scheduler._open_jobs.acquire(timeout=0.5)  # and only one


def test_a_request_after_the_wakeup_fired_schedules_the_next() -> None:
    scheduler = FakeScheduler()
    snakemake_patches.schedule_one_wakeup(scheduler, 0.05)
    assert scheduler._open_jobs.acquire(timeout=5)
    getattr(scheduler, snakemake_patches._PENDING).join(timeout=5)
    start = time.monotonic()
    snakemake_patches.schedule_one_wakeup(scheduler, 0.05)
    assert scheduler._open_jobs.acquire(timeout=5)
    assert time.monotonic() - start >= 0.04


def test_patch_applies_to_the_pinned_snakemake() -> None:
    from snakemake.scheduling.job_scheduler import JobScheduler

    original = JobScheduler._schedule_reevalutation
    try:
        assert snakemake_patches.patch_job_scheduler()
        assert JobScheduler._schedule_reevalutation is snakemake_patches.schedule_one_wakeup
    finally:
        JobScheduler._schedule_reevalutation = original
